"""Semantic search over the served index, with out-of-context detection.

A query is "out of context" when even its best chunk scores below an absolute
cut-off; hits far below the best one are dropped by a relative cut-off
(``score >= relative * best``). Cosine scores are not comparable between models
(bge-large puts unrelated text near 0.6, MiniLM near 0.1), so the defaults are
per model; ``LAKERAG_MIN_SCORE`` / ``LAKERAG_RELATIVE_SCORE`` override them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...config import Settings
from ...embedding import Embedder
from ...index.artifacts import LoadedIndex
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

    @property
    def matched(self) -> bool:
        return bool(self.hits)


HIT_COLUMNS = ("doc_id", "chunk_id", "chunk_index", "text", "source", "title", "page")


def _plain(value):
    """None for pandas' missing values (None, NaN, pd.NA), the value otherwise."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def prepare(index: LoadedIndex) -> None:
    """Plain Python columns for building hits: a few microseconds per hit instead of a
    pandas row lookup (~0.4 ms). Done once per version, before it is swapped in."""
    columns = {name: index.chunks[name].tolist() for name in HIT_COLUMNS}
    columns["chunk_index"] = [int(v) for v in columns["chunk_index"]]
    columns["title"] = [_plain(v) or None for v in columns["title"]]
    columns["page"] = [None if _plain(v) is None else int(v) for v in columns["page"]]
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
    else:
        params = faiss.SearchParameters(sel=selector)
    params._keep = selector  # the params object does not own the selector
    return allowed, params


def search(index: LoadedIndex | None, embedder: Embedder, query: str, k: int, cutoffs: Cutoffs,
           metrics: Metrics | None = None, doc_id: str | None = None, source_prefix: str | None = None,
           apply_cutoffs: bool = True) -> SearchOutcome:
    if index is None:
        raise IndexNotLoaded(NO_INDEX)
    outcome = SearchOutcome(query=query, index_version=index.version, model=index.model,
                            min_score=cutoffs.min_score)
    started = time.perf_counter()
    vector = embedder.encode_queries([query])
    encoded = time.perf_counter()
    params = None
    if doc_id or source_prefix:
        allowed, params = _filter_params(index, doc_id, source_prefix, k)
        if len(allowed) == 0:
            outcome.reason = "no indexed chunk matches the filter " + \
                ", ".join(f"{n}={v!r}" for n, v in (("doc_id", doc_id), ("source_prefix", source_prefix)) if v)
            return outcome
        scores, ids = index.index.search(vector, min(k, len(allowed)), params=params)
    else:
        scores, ids = index.search(vector, k)
    done = time.perf_counter()
    outcome.encode_seconds, outcome.search_seconds = encoded - started, done - encoded
    if metrics is not None:
        metrics.encode_seconds.observe(outcome.encode_seconds)
        metrics.index_seconds.observe(outcome.search_seconds)

    scores, ids = scores[0], ids[0]
    valid = ids >= 0
    scores, ids = scores[valid], ids[valid]
    if len(ids) == 0:
        outcome.reason = "the index is empty"
        return outcome
    best = float(scores[0])
    outcome.best_score = round(best, 4)
    if apply_cutoffs:
        if best < cutoffs.min_score:
            outcome.reason = (f"no relevant match: the best chunk scores {best:.3f}, below the relevance cut-off "
                              f"{cutoffs.min_score:.2f} for {index.model}; the indexed documents do not seem to "
                              "cover this")
            return outcome
        keep = scores >= max(cutoffs.min_score, best * cutoffs.relative)
        scores, ids = scores[keep], ids[keep]
    outcome.hits = hits_for(index, ids, scores)
    return outcome
