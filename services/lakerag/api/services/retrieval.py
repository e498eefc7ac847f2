"""Semantic search over the served index, with out-of-context detection.

A query is "out of context" when even its best chunk scores below an absolute
cut-off; hits far below the best one are dropped by a relative cut-off
(``score >= relative * best``). Cosine scores are not comparable between models
(bge-large puts unrelated text near 0.6, MiniLM near 0.1), so the defaults are
per model; ``LAKERAG_MIN_SCORE`` / ``LAKERAG_RELATIVE_SCORE`` override them.

Modes: ``dense`` (FAISS), ``lexical`` (BM25 stored in the same index version)
and ``hybrid`` (both, fused by weighted reciprocal rank with per-query weights,
``lakerag.adaptive``; docs/retrieval.md says why). An optional cross-encoder reranks the best
candidates of any mode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...adaptive import Weights, adaptive_weights, query_signals, word_pieces
from ...config import SEARCH_MODES, Settings
from ...embedding import Embedder
from ...fusion import weighted_rrf
from ...index.artifacts import LoadedIndex
from ...index.lexical import top_positive
from ..metrics import Metrics

# lower-cased model name -> (min_score, relative_score), calibrated on the sample
# questions against off-topic ones (see tests/api/services/test_retrieval.py).
MODEL_CUTOFFS = {
    "sentence-transformers/all-minilm-l6-v2": (0.30, 0.60),
    "baai/bge-large-en-v1.5": (0.62, 0.85),
    "baai/bge-base-en-v1.5": (0.60, 0.85),
    "baai/bge-small-en-v1.5": (0.60, 0.85),
}
DEFAULT_CUTOFFS = (0.30, 0.60)
# Under this tokenizer coverage the dense cosine says nothing (e.g. Arabic with an English model).
BLIND_COVERAGE = 0.5
FUSION_DEPTH, FUSION_FACTOR = 50, 5  # each retriever contributes max(50, 5k) candidates to a fusion
NO_INDEX = "no index yet — run the pipeline (`lakerag pipeline run`, or `make run`)"


class IndexNotLoaded(Exception):
    """No index is being served yet."""


@dataclass(frozen=True)
class Cutoffs:
    min_score: float
    relative: float


def cutoffs_for(settings: Settings, model: str) -> Cutoffs:
    base_min, base_rel = MODEL_CUTOFFS.get(model.lower().rstrip("/"), DEFAULT_CUTOFFS)
    return Cutoffs(settings.min_score if settings.min_score >= 0 else base_min,
                   settings.relative_score if settings.relative_score >= 0 else base_rel)


@dataclass
class SearchOutcome:
    query: str
    index_version: str
    model: str
    min_score: float
    hits: list[dict] = field(default_factory=list)
    reason: str | None = None
    best_score: float | None = None
    encode_seconds: float = 0.0
    search_seconds: float = 0.0
    mode: str = "dense"
    note: str | None = None  # e.g. why a hybrid request was answered dense only
    reranked_by: str | None = None
    rerank_seconds: float = 0.0
    fusion: dict | None = None  # hybrid: the weights used and the signals they came from


    @property
    def matched(self) -> bool:
        return bool(self.hits)


HIT_COLUMNS = ("doc_id", "chunk_id", "chunk_index", "text", "source", "title", "page", "source_version",
               "content_hash")


def _plain(value):
    """None for pandas' missing values (None, NaN, pd.NA), the value otherwise."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def prepare(index: LoadedIndex) -> None:
    """Plain Python columns for building hits: a few microseconds per hit instead of a
    pandas row lookup (~0.4 ms). Done once per version, before it is swapped in."""
    missing = [None] * len(index.chunks)  # lineage columns of a version built before lineage
    columns = {name: index.chunks[name].tolist() if name in index.chunks else missing for name in HIT_COLUMNS}
    columns["chunk_index"] = [int(v) for v in columns["chunk_index"]]
    columns["title"] = [_plain(v) or None for v in columns["title"]]
    columns["page"] = [None if _plain(v) is None else int(v) for v in columns["page"]]
    for name in ("source_version", "content_hash"):
        columns[name] = [_plain(v) for v in columns[name]]
    index.hit_columns = columns


def hits_for(index: LoadedIndex, ids, scores) -> list[dict]:
    columns = getattr(index, "hit_columns", None)
    if columns is None:
        prepare(index)
        columns = index.hit_columns
    hits = []
    for rank, (i, score) in enumerate(zip(np.asarray(ids).tolist(), scores), start=1):
        hit = {"rank": rank, "score": round(float(score), 4)}
        hit.update((name, columns[name][i]) for name in HIT_COLUMNS)
        hits.append(hit)
    return hits


def _filter_params(index: LoadedIndex, doc_id: str | None, source_prefix: str | None, k: int):
    """FAISS search parameters restricting the search to matching chunks (exact for flat
    indexes), or None without filters; an empty id array when nothing matches."""
    import faiss

    mask = np.ones(len(index.chunks), dtype=bool)
    if doc_id:
        mask &= (index.chunks["doc_id"] == doc_id).to_numpy()
    if source_prefix:
        mask &= index.chunks["source"].str.startswith(source_prefix).to_numpy(dtype=bool, na_value=False)
    allowed = np.flatnonzero(mask).astype(np.int64)
    if len(allowed) == 0:
        return allowed, None
    selector = faiss.IDSelectorBatch(allowed)
    if index.manifest.get("index_type") == "hnsw":
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(256, 4 * k))
    elif index.manifest.get("index_type") == "ivf":
        # Matching chunks may sit in lists the query does not probe: scan every list.
        params = faiss.SearchParametersIVF(sel=selector, nprobe=int(index.manifest["ivf"]["lists"]))
    else:
        params = faiss.SearchParameters(sel=selector)
    params._keep = selector  # the params object does not own the selector
    return allowed, params


@dataclass(frozen=True)
class Fusion:
    """Weighted reciprocal-rank fusion parameters (settings LAKERAG_FUSION*): per-query
    weights (``adaptive``, the default) or the two fixed ones."""

    dense_weight: float = 1.0
    lexical_weight: float = 0.3
    rrf_k: float = 60.0
    rule: str = "adaptive"

    @classmethod
    def from_settings(cls, settings: Settings) -> Fusion:
        return cls(settings.fusion_dense_weight, settings.fusion_lexical_weight, settings.fusion_rrf_k,
                   settings.fusion)


def _word_pieces(embedder: Embedder):
    """(the embedding model's tokenizer as a function, its unknown token) for either encoder."""
    return word_pieces(getattr(getattr(embedder, "model", None), "tokenizer", None))


def fusion_weights(fusion: Fusion, index: LoadedIndex, embedder: Embedder, query: str,
                   lexical_ids: np.ndarray) -> tuple[Weights, dict]:
    """This query's weights and, for the response, the signals behind them."""
    if fusion.rule != "adaptive":
        return Weights(fusion.dense_weight, fusion.lexical_weight, 0.0), {"rule": "fixed"}
    pieces, unknown = _word_pieces(embedder)
    top_terms = index.lexical.terms(index.chunks["text"].iat[int(lexical_ids[0])]) if len(lexical_ids) else []
    signals = query_signals(query, pieces, index.lexical.terms(query), top_terms, unknown)
    return adaptive_weights(signals), {"rule": "adaptive", "coverage": round(signals.coverage, 4),
                                       "identifier": round(signals.identifier, 4),
                                       "lexical_match": round(signals.lexical_match, 4)}


def candidate_depth(k: int) -> int:
    """How many chunks each retriever contributes to a fusion or a rerank."""
    return max(FUSION_DEPTH, FUSION_FACTOR * k)


@dataclass
class Reranker:
    """A sentence-transformers CrossEncoder that reorders the best ``candidates`` chunks."""

    name: str
    model: Any = field(repr=False)
    candidates: int = 20

    def scores(self, query: str, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict([(query, text) for text in texts], show_progress_bar=False),
                          dtype=np.float32).reshape(len(texts))


def load_reranker(settings: Settings) -> Reranker | None:
    """The CrossEncoder LAKERAG_RERANK_MODEL names (a local directory or a model id in the
    cache), or None when it is empty (reranking off)."""
    if not settings.rerank_model:
        return None
    from pathlib import Path

    from ...embedding import ModelUnavailable, offline_requested

    local = Path(settings.rerank_model).expanduser()
    try:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(str(local) if local.is_dir() else settings.rerank_model, device="cpu",
                             cache_folder=settings.model_cache_dir or None,
                             local_files_only=local.is_dir() or offline_requested(settings))
    except Exception as exc:  # any loader failure means the setting cannot be honoured
        raise ModelUnavailable(
            f"LAKERAG_RERANK_MODEL={settings.rerank_model!r} could not be loaded as a sentence-transformers "
            f"CrossEncoder ({type(exc).__name__}: {exc}); point it at a local model directory or one in "
            "LAKERAG_MODEL_CACHE_DIR, or unset it to search without reranking") from exc
    return Reranker(name=settings.rerank_model, model=model, candidates=settings.rerank_candidates)


def search(index: LoadedIndex | None, embedder: Embedder, query: str, k: int, cutoffs: Cutoffs,
           metrics: Metrics | None = None, doc_id: str | None = None, source_prefix: str | None = None,
           apply_cutoffs: bool = True, mode: str = "dense", fusion: Fusion | None = None,
           reranker: Reranker | None = None) -> SearchOutcome:
    """The best ``k`` chunks for ``query`` in ``mode`` (dense | lexical | hybrid), optionally reranked.

    Cut-offs: dense as described above. Lexical: only chunks that contain a query
    term. Hybrid: the dense cut-offs judge the dense component; a chunk that
    contains every query term (an exact name or code) is kept, and makes the
    query in context, whatever its dense score.
    """
    if index is None:
        raise IndexNotLoaded(NO_INDEX)
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
    outcome = SearchOutcome(query=query, index_version=index.version, model=index.model,
                            min_score=cutoffs.min_score, mode=mode)
    if mode != "dense" and index.lexical is None:
        outcome.note = (f"index {index.version} has no lexical (BM25) part (built before hybrid search): answered "
                        f"with dense search; republish it (`lakerag pipeline index --full-rebuild`) for {mode} search")
        mode = outcome.mode = "dense"
    depth = k if mode == "dense" and reranker is None else candidate_depth(k)
    if reranker is not None:
        depth = max(depth, reranker.candidates)
    allowed, params = None, None
    if doc_id or source_prefix:
        allowed, params = _filter_params(index, doc_id, source_prefix, depth)
        if len(allowed) == 0:
            outcome.reason = "no indexed chunk matches the filter " + \
                ", ".join(f"{n}={v!r}" for n, v in (("doc_id", doc_id), ("source_prefix", source_prefix)) if v)
            return outcome

    started = time.perf_counter()
    vector = embedder.encode_queries([query]) if mode != "lexical" else None
    encoded = time.perf_counter()
    dense_ids, dense_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    if vector is not None:
        if params is not None:
            scores, ids = index.index.search(vector, min(depth, len(allowed)), params=params)
        else:
            scores, ids = index.search(vector, depth)
        valid = ids[0] >= 0
        dense_ids, dense_scores = ids[0][valid], scores[0][valid]
    lexical_ids, lexical_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    lexical_all = None
    if mode != "dense":
        lexical_all = index.lexical.scores(query)
        lexical_scores, lexical_ids = top_positive(lexical_all, depth, allowed)
    done = time.perf_counter()
    outcome.encode_seconds, outcome.search_seconds = encoded - started, done - encoded
    if metrics is not None:
        if vector is not None:
            metrics.encode_seconds.observe(outcome.encode_seconds)
        metrics.index_seconds.observe(outcome.search_seconds)

    if mode == "dense":
        ids, scores = dense_ids, dense_scores
    elif mode == "lexical":
        ids, scores = lexical_ids, lexical_scores
    else:
        fusion = fusion or Fusion()
        weights, signals = fusion_weights(fusion, index, embedder, query, lexical_ids)
        outcome.fusion = {"dense_weight": weights.dense, "lexical_weight": weights.lexical, "rrf_k": fusion.rrf_k,
                          **signals}
        fused = weighted_rrf({"dense": dense_ids.tolist(), "lexical": lexical_ids.tolist()},
                             {"dense": weights.dense, "lexical": weights.lexical}, fusion.rrf_k)
        ids = np.array([doc for doc, _ in fused], dtype=np.int64)
        scores = np.array([score for _, score in fused], dtype=np.float32)
    if len(ids) == 0:
        outcome.reason = "the index is empty" if index.vector_count == 0 else \
            "no relevant match: no indexed chunk contains any term of the query"
        return outcome

    # Both components of every candidate, for the cut-offs and for transparency.
    dense_rank = {int(i): r for r, i in enumerate(dense_ids, start=1)}
    lexical_rank = {int(i): r for r, i in enumerate(lexical_ids, start=1)}
    dense_of = dict(zip(dense_ids.tolist(), dense_scores.tolist()))
    if vector is not None:
        missing = [int(i) for i in ids if int(i) not in dense_of]
        if missing:
            stored = np.vstack([index.index.reconstruct(i) for i in missing])
            dense_of.update(zip(missing, (stored @ vector[0]).tolist()))
    components = {int(i): {"dense_rank": dense_rank.get(int(i)),
                           "dense_score": round(dense_of[int(i)], 4) if int(i) in dense_of else None,
                           "lexical_rank": lexical_rank.get(int(i)),
                           "lexical_score": round(float(lexical_all[i]), 4) if lexical_all is not None else None}
                  for i in ids}

    if mode != "lexical":
        best = float(dense_scores[0]) if len(dense_scores) else float("-inf")
        outcome.best_score = round(best, 4) if len(dense_scores) else None
        if apply_cutoffs:
            # Hybrid: a chunk holding every query term is an exact lookup (a name, a code).
            covering = set(index.lexical.covering(query).tolist()) if mode == "hybrid" else set()
            if mode == "hybrid" and outcome.fusion and outcome.fusion.get("coverage", 1.0) < BLIND_COVERAGE:
                covering |= set(lexical_ids.tolist())  # the model cannot judge this query: BM25's hits stand
            exact = np.array([int(i) in covering for i in ids], dtype=bool)
            if best < cutoffs.min_score and not exact.any():
                outcome.reason = (f"no relevant match: the best chunk scores {best:.3f}, below the relevance cut-off "
                                  f"{cutoffs.min_score:.2f} for {index.model}; the indexed documents do not seem to "
                                  "cover this" + (", and no chunk contains all of the query's terms"
                                                  if mode == "hybrid" else ""))
                return outcome
            floor = max(cutoffs.min_score, best * cutoffs.relative)
            keep = np.array([dense_of[int(i)] >= floor for i in ids], dtype=bool) | exact
            ids, scores = ids[keep], scores[keep]

    if reranker is not None and len(ids):
        rerank_started = time.perf_counter()
        head = ids[:reranker.candidates]
        rerank_scores = reranker.scores(query, index.chunks["text"].iloc[head].tolist())
        order = np.argsort(-rerank_scores, kind="stable")
        ids, scores = head[order], rerank_scores[order]
        outcome.rerank_seconds = time.perf_counter() - rerank_started
        outcome.reranked_by = reranker.name
    ids, scores = ids[:k], scores[:k]
    outcome.hits = hits_for(index, ids, scores)
    for hit, i in zip(outcome.hits, ids):
        hit.update(components[int(i)])
    return outcome

