"""POST /search: ranked chunks, or an explicit "no relevant match"."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from ...search import search as run_search
from .. import replay
from ..cpu import run_cpu_bound
from ..deps import Index, Model, State
from ..schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse,
             responses={404: {"description": "as_of names a version that is not retained"}})
async def search(body: SearchRequest, state: State, model: Model, served: Index) -> Response:
    work = partial(_search, body, state, model, served)
    if body.as_of and body.as_of != served.version:  # may download a retained version: never on the loop
        return await run_in_threadpool(work)
    return await run_cpu_bound(state.metrics, work)


def _search(body: SearchRequest, state: State, model: Model, served: Index) -> Response:
    index = replay.index_for(state, served, body.as_of)
    outcome = run_search(index, model, body.query, body.k, state.cutoffs, state.metrics,
                               doc_id=body.doc_id, source_prefix=body.source_prefix,
                               **state.search_options(body.mode))
    if not outcome.matched:
        state.metrics.no_answer.labels("/search").inc()
    # Validated when built and sent as its JSON: returned as a model, FastAPI would validate and
    # encode it again, after a second thread hop (~0.7 ms a request, measured).
    return Response(SearchResponse(
        matched=outcome.matched, reason=outcome.reason, query=body.query, index_version=outcome.index_version,
        model=outcome.model, mode=outcome.mode, note=outcome.note, reranked_by=outcome.reranked_by,
        fusion=outcome.fusion,
        min_score=outcome.min_score, best_score=outcome.best_score, hits=outcome.hits,
        encode_ms=round(outcome.encode_seconds * 1000, 3), search_ms=round(outcome.search_seconds * 1000, 3),
        rerank_ms=round(outcome.rerank_seconds * 1000, 3), lineage=replay.lineage(index, served),
    ).model_dump_json(), media_type="application/json")
