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
results are reproducible. ``Fusion`` is the search step built on them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from ..adaptive import Weights, adaptive_weights, query_signals, word_pieces
from ..config import Settings
from ..embedding import Embedder
from ..index.loaded import LoadedIndex
from .ranking import Ranked

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


@dataclass(frozen=True)
class Fusion:
    """The served fusion: weighted reciprocal rank (settings LAKERAG_FUSION*), with per-query
    weights (``adaptive``, the default: ``lakerag.adaptive``) or the two fixed ones."""

    dense_weight: float = 1.0
    lexical_weight: float = 0.3
    rrf_k: float = 60.0
    rule: str = "adaptive"

    @classmethod
    def from_settings(cls, settings: Settings) -> Fusion:
        return cls(settings.fusion_dense_weight, settings.fusion_lexical_weight, settings.fusion_rrf_k,
                   settings.fusion)

    def weights(self, index: LoadedIndex, embedder: Embedder, query: str, lexical: Ranked) -> tuple[Weights, dict]:
        """This query's weights and, for the response, the signals behind them."""
        if self.rule != "adaptive":
            return Weights(self.dense_weight, self.lexical_weight, 0.0), {"rule": "fixed"}
        pieces, unknown = word_pieces(getattr(getattr(embedder, "model", None), "tokenizer", None))
        top_terms = index.lexical_terms(index.texts([int(lexical.ids[0])])[0]) if len(lexical) else []
        signals = query_signals(query, pieces, index.lexical_terms(query), top_terms, unknown)
        return adaptive_weights(signals), {"rule": "adaptive", "coverage": round(signals.coverage, 4),
                                           "identifier": round(signals.identifier, 4),
                                           "lexical_match": round(signals.lexical_match, 4)}

    def fuse(self, dense: Ranked, lexical: Ranked, weights: Weights | None = None) -> Ranked:
        """One ranking of the union of both lists, scored by weighted RRF (``weights``: this
        query's, from ``weights()``; None: the fixed ones)."""
        dense_weight, lexical_weight = (weights.dense, weights.lexical) if weights else \
            (self.dense_weight, self.lexical_weight)
        fused = weighted_rrf({"dense": dense.ids.tolist(), "lexical": lexical.ids.tolist()},
                             {"dense": dense_weight, "lexical": lexical_weight}, self.rrf_k)
        return Ranked.of([doc for doc, _ in fused], [score for _, score in fused])
