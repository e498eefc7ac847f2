"""POST /search: ranked chunks, or an explicit "no relevant match"."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Response
from pydantic_core import to_json
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ...embedding import Embedder
from ...index.loaded import LoadedIndex
from ...search import search as run_search
from .. import replay
from ..cpu import run_cpu_bound
from ..deps import AppState, Index, Model, State
from ..metrics import AfterResponse
from ..schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse,
             responses={404: {"description": "as_of names a version that is not retained"}})
async def search(body: SearchRequest, state: State, model: Model, served: Index) -> Response:
    return await answer(body, state, model, served)


async def answer(body: SearchRequest, state: AppState, model: Embedder, served: LoadedIndex) -> Response:
    """The search's JSON response (the route above and ``api.search_fast_path``)."""
    work = partial(_search, body, state, model, served)
    if replay.names_another_version(body.as_of, served):  # may download a retained version: never on the loop
        return await run_in_threadpool(work)
    return await run_cpu_bound(state.metrics, work)


def _search(body: SearchRequest, state: State, model: Model, served: Index) -> Response:
    index = replay.index_for(state, served, body.as_of)
    timings = AfterResponse(state.metrics)
    outcome = run_search(index, model, body.query, body.k, state.cutoffs, timings,
                               doc_id=body.doc_id, source_prefix=body.source_prefix,
                               **state.search_options(body.mode))
    if not outcome.matched:
        state.metrics.no_answer.labels("/search").inc()
    # Every field of SearchResponse, built here from the engine's outcome and sent as JSON without
    # validating it again: validation + encoding cost ~0.09 ms a search on the caches the FAISS scan
    # has just flushed, encoding alone ~0.03 (measured). tests/api/test_search_fast_path.py checks
    # answers against SearchResponse.
    return Response(to_json({
        "matched": outcome.matched, "reason": outcome.reason, "query": body.query,
        "index_version": outcome.index_version, "model": outcome.model, "mode": outcome.mode, "note": outcome.note,
        "reranked_by": outcome.reranked_by, "fusion": outcome.fusion, "min_score": outcome.min_score,
        "best_score": outcome.best_score, "hits": outcome.hits, "encode_ms": round(outcome.encode_seconds * 1000, 3),
        "search_ms": round(outcome.search_seconds * 1000, 3), "rerank_ms": round(outcome.rerank_seconds * 1000, 3),
        "lineage": replay.lineage(index, served),
    }, inf_nan_mode="null"), media_type="application/json", background=BackgroundTask(timings.record))
