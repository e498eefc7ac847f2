"""Fusing ranked lists from several retrievers (pure functions, no I/O).

Two ways are here because both were measured (docs/retrieval.md):

* ``weighted_rrf``: reciprocal-rank fusion, ``sum(weight / (k + rank))`` with
  1-based ranks; a document absent from a list gets nothing from it. Only
  ranks count, so BM25's unbounded scores and cosine scores need no common
  scale. The served default (dense 1.0, lexical 0.3, k 60).
* ``convex``: ``alpha * dense + (1 - alpha) * lexical`` over min-max
  normalised scores; a document missing from a list counts as that list's
  minimum (0 after normalisation).

Ties are broken by first appearance across the input lists (dense first), so
results are reproducible.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

Ranking = Sequence[Hashable]  # ids, best first


def weighted_rrf(rankings: Mapping[str, Ranking], weights: Mapping[str, float], k: float = 60.0
                 ) -> list[tuple[Hashable, float]]:
    """(id, fused score) best first. ``rankings`` maps a retriever name to its ids
    best first; ``weights`` gives each retriever's weight (missing = 1.0)."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    scores: dict[Hashable, float] = {}
    for name, ids in rankings.items():
        weight = float(weights.get(name, 1.0))
        for rank, doc in enumerate(ids, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    return _sorted(scores)


def min_max(scores: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Scores scaled to [0, 1]; all equal -> all 1.0 (each is the best)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return {doc: 1.0 for doc in scores}
    return {doc: (value - low) / (high - low) for doc, value in scores.items()}


def convex(dense: Mapping[Hashable, float], lexical: Mapping[Hashable, float], alpha: float
           ) -> list[tuple[Hashable, float]]:
    """(id, alpha * dense' + (1 - alpha) * lexical') best first, where ' is min-max
    normalisation within each list (in its order: dense ids first for ties)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    dense_n, lexical_n = min_max(dense), min_max(lexical)
    scores: dict[Hashable, float] = {}
    for doc in [*dense_n, *lexical_n]:
        if doc not in scores:
            scores[doc] = alpha * dense_n.get(doc, 0.0) + (1.0 - alpha) * lexical_n.get(doc, 0.0)
    return _sorted(scores)


def _sorted(scores: dict[Hashable, float]) -> list[tuple[Hashable, float]]:
    order = {doc: i for i, doc in enumerate(scores)}  # insertion order = first appearance
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
