"""Search over one loaded index version: the steps of this package, composed.

    filters -> dense and/or lexical -> fusion (hybrid) -> cut-off -> rerank -> hits

Modes: ``dense`` (FAISS), ``lexical`` (BM25 stored in the same index version)
and ``hybrid`` (both, fused by weighted reciprocal rank with per-query weights,
``lakerag.adaptive``; docs/retrieval.md says why). An optional cross-encoder reranks the best
candidates of any mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic_core import to_json

from ..config import SEARCH_MODES
from ..embedding import Embedder
from ..index.loaded import LoadedIndex
from . import cutoff, filters, retrieve
from .cutoff import Cutoffs
from .fusion import Fusion
from .ranking import Ranked
from .rerank import Reranker

FUSION_DEPTH, FUSION_FACTOR = 50, 5  # each retriever contributes max(50, 5k) candidates to a fusion
NO_INDEX = "no index yet — run the pipeline (`lakerag pipeline run`, or `make run`)"


class Timings(Protocol):
    """Where search reports its timings (the API's Prometheus metrics)."""

    encode_seconds: object  # each with .observe(seconds)
    index_seconds: object


class IndexNotLoaded(Exception):
    """No index is being served yet."""


@dataclass
class SearchOutcome:
    query: str
    index_version: str
    model: str
    min_score: float
    reason: str | None = None
    best_score: float | None = None
    encode_seconds: float = 0.0
    search_seconds: float = 0.0
    mode: str = "dense"
    note: str | None = None  # e.g. why a hybrid request was answered dense only
    reranked_by: str | None = None
    rerank_seconds: float = 0.0
    fusion: dict | None = None  # hybrid: the weights used and the signals they came from
    searched: LoadedIndex | None = field(default=None, repr=False)  # the version the hits' rows come from
    hit_ids: list[int] = field(default_factory=list)
    hit_scores: list[dict] = field(default_factory=list)  # per hit: rank, score and where it came from
    _hits: list[dict] | None = field(default=None, init=False, repr=False)

    @property
    def matched(self) -> bool:
        return bool(self.hit_ids)

    @property
    def hits(self) -> list[dict]:
        """Each hit: its ``hit_scores`` and its chunk's row (read on first use)."""
        if self._hits is None:
            rows = self.searched.rows(self.hit_ids) if self.hit_ids else []
            self._hits = [{**scores, **row} for scores, row in zip(self.hit_scores, rows, strict=True)]
        return self._hits

    def hits_json(self) -> bytes:
        """``hits`` as a JSON array. Where the version has its rows as ready JSON (``index.hit_rows``)
        they are spliced in as they are: no row is read from SQLite or decoded (~0.15 ms a search)."""
        members = self.searched.row_members(self.hit_ids) if self._hits is None and self.hit_ids else None
        if members is None:
            return to_json(self.hits, inf_nan_mode="null")
        return b"[" + b",".join(to_json(scores, inf_nan_mode="null")[:-1] + b"," + row + b"}"
                                for scores, row in zip(self.hit_scores, members, strict=True)) + b"]"


def candidate_depth(k: int) -> int:
    """How many chunks each retriever contributes to a fusion or a rerank."""
    return max(FUSION_DEPTH, FUSION_FACTOR * k)


def hits_for(index: LoadedIndex, ranked: Ranked) -> list[dict]:
    """Ranked rows as response hits: rank, score and the chunk's fields."""
    return [{"rank": rank, "score": round(score, 4), **row}
            for rank, (score, row) in enumerate(zip(ranked.scores.tolist(), index.rows(ranked.ids)), start=1)]


def search(index: LoadedIndex | None, embedder: Embedder, query: str, k: int, cutoffs: Cutoffs,
           metrics: Timings | None = None, doc_id: str | None = None, source_prefix: str | None = None,
           apply_cutoffs: bool = True, mode: str = "dense", fusion: Fusion | None = None,
           reranker: Reranker | None = None) -> SearchOutcome:
    """The best ``k`` chunks for ``query`` in ``mode`` (dense | lexical | hybrid), optionally reranked.

    Cut-offs: dense as described in ``cutoff``. Lexical: only chunks that contain a
    query term. Hybrid: the dense cut-offs judge the dense component; a chunk that
    contains every query term (an exact name or code) is kept, and makes the
    query in context, whatever its dense score.
    """
    if index is None:
        raise IndexNotLoaded(NO_INDEX)
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
    outcome = SearchOutcome(query=query, index_version=index.version, model=index.model,
                            min_score=cutoffs.min_score, mode=mode)
    if mode != "dense" and not index.has_lexical:
        outcome.note = (f"index {index.version} has no lexical (BM25) part (built before hybrid search): answered "
                        f"with dense search; republish it (`lakerag pipeline index --full-rebuild`) for {mode} search")
        mode = outcome.mode = "dense"
    depth = k if mode == "dense" and reranker is None else candidate_depth(k)
    if reranker is not None:
        depth = max(depth, reranker.candidates)
    allowed = filters.allowed_rows(index, doc_id, source_prefix)
    if allowed is not None and len(allowed) == 0:
        outcome.reason = filters.no_match_reason(doc_id, source_prefix)
        return outcome

    started = time.perf_counter()
    vector = embedder.encode_queries([query]) if mode != "lexical" else None
    encoded = time.perf_counter()
    dense = retrieve.dense(index, vector, depth, allowed) if vector is not None else Ranked.empty()
    lexical_scores = index.lexical_scores(query) if mode != "dense" else None
    lexical = retrieve.lexical(lexical_scores, depth, allowed) if lexical_scores is not None else Ranked.empty()
    done = time.perf_counter()
    outcome.encode_seconds, outcome.search_seconds = encoded - started, done - encoded
    if metrics is not None:
        if vector is not None:
            metrics.encode_seconds.observe(outcome.encode_seconds)
        metrics.index_seconds.observe(outcome.search_seconds)

    if mode == "dense":
        candidates = dense
    elif mode == "lexical":
        candidates = lexical
    else:
        fusion = fusion or Fusion()
        weights, signals = fusion.weights(index, embedder, query, lexical)
        outcome.fusion = {"dense_weight": weights.dense, "lexical_weight": weights.lexical, "rrf_k": fusion.rrf_k,
                          **signals}
        candidates = fusion.fuse(dense, lexical, weights)
    if len(candidates) == 0:
        outcome.reason = "the index is empty" if index.vector_count == 0 else \
            "no relevant match: no indexed chunk contains any term of the query"
        return outcome

    # The dense score of every candidate, for the cut-offs and for transparency; fused or lexical
    # candidates that dense retrieval did not return are scored here.
    dense_of = dict(zip(dense.ids.tolist(), dense.scores.tolist()))
    if vector is not None and mode != "dense":
        missing = [i for i in candidates.ids.tolist() if i not in dense_of]
        if missing:
            dense_of.update(zip(missing, index.dense_scores(missing, vector).tolist()))

    if mode != "lexical":
        best = float(dense.scores[0]) if len(dense) else float("-inf")
        outcome.best_score = round(best, 4) if len(dense) else None
        if apply_cutoffs:
            exact = None
            if mode == "hybrid":  # a chunk holding every query term is an exact lookup (a name, a code)
                covering = set(index.covering(query).tolist())
                if outcome.fusion and outcome.fusion.get("coverage", 1.0) < cutoff.BLIND_COVERAGE:
                    covering |= set(lexical.ids.tolist())  # the model cannot judge this query: BM25's hits stand
                exact = np.array([i in covering for i in candidates.ids.tolist()], dtype=bool)
            kept = cutoff.apply(candidates, dense_of, best, exact, cutoffs)
            if kept is None:
                outcome.reason = cutoff.out_of_context_reason(best, cutoffs, index.model, mode == "hybrid")
                return outcome
            candidates = kept

    if reranker is not None and len(candidates):
        rerank_started = time.perf_counter()
        candidates = reranker.rerank(index, query, candidates)
        outcome.rerank_seconds = time.perf_counter() - rerank_started
        outcome.reranked_by = reranker.name
    candidates = candidates.head(k)
    dense_rank, lexical_rank = dense.ranks(), lexical.ranks()
    outcome.searched, outcome.hit_ids = index, candidates.ids.tolist()
    outcome.hit_scores = [  # where each hit came from (the hits only)
        {"rank": rank, "score": round(score, 4), "dense_rank": dense_rank.get(i),
         "dense_score": round(dense_of[i], 4) if i in dense_of else None, "lexical_rank": lexical_rank.get(i),
         "lexical_score": round(float(lexical_scores[i]), 4) if lexical_scores is not None else None}
        for rank, (i, score) in enumerate(zip(outcome.hit_ids, candidates.scores.tolist()), start=1)]
    return outcome
