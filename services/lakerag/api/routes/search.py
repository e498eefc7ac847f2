"""POST /search: ranked chunks, or an explicit "no relevant match"."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Response
from pydantic_core import to_json
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
PATH = "/search"


@router.post(PATH, response_model=SearchResponse,
             responses={404: {"description": "as_of names a version that is not retained"}})
async def search(body: SearchRequest, state: State, model: Model, served: Index) -> Response:
    return await answer(body, state, model, served)


async def answer(body: SearchRequest, state: AppState, model: Embedder, served: LoadedIndex) -> Response:
    """The search's JSON response (the route above and ``api.search_fast_path``)."""
    work = partial(search_json, body, state, model, served)
    if replay.names_another_version(body.as_of, served):  # may download a retained version: never on the loop
        content, timings = await run_in_threadpool(work)
    else:
        content, timings = await run_cpu_bound(state.metrics, work)
    return JsonResponse(content, after=timings.record)


def search_json(body: SearchRequest, state: AppState, model: Embedder, served: LoadedIndex) \
        -> tuple[bytes, AfterResponse]:
    """The response body, and the search's timings to record once it is sent."""
    index = replay.index_for(state, served, body.as_of)
    timings = AfterResponse(state.metrics)
    outcome = run_search(index, model, body.query, body.k, state.cutoffs, timings,
                               doc_id=body.doc_id, source_prefix=body.source_prefix,
                               **state.search_options(body.mode))
    if not outcome.matched:
        state.metrics.no_answer.labels(PATH).inc()
    # Every field of SearchResponse, built here from the engine's outcome and sent as JSON without
    # validating it again: validation + encoding cost ~0.09 ms a search on the caches the FAISS scan
    # has just flushed, encoding alone ~0.03 (measured). The hits are written by the outcome (their
    # rows spliced in as stored) between the fields before and after them.
    # tests/api/test_search_fast_path.py checks answers against SearchResponse.
    before = to_json({
        "matched": outcome.matched, "reason": outcome.reason, "query": body.query,
        "index_version": outcome.index_version, "model": outcome.model, "mode": outcome.mode, "note": outcome.note,
        "reranked_by": outcome.reranked_by, "fusion": outcome.fusion, "min_score": outcome.min_score,
        "best_score": outcome.best_score}, inf_nan_mode="null")
    after = to_json({
        "encode_ms": round(outcome.encode_seconds * 1000, 3), "search_ms": round(outcome.search_seconds * 1000, 3),
        "rerank_ms": round(outcome.rerank_seconds * 1000, 3), "lineage": replay.lineage(index, served)})
    return b"%s,\"hits\":%s,%s" % (before[:-1], outcome.hits_json(), after[1:]), timings


class JsonResponse(Response):
    """A JSON body already encoded, its headers built directly, and ``after`` (an async callable)
    awaited once it is sent. Starlette's Response + BackgroundTask cost ~0.06 ms a search on the
    caches the FAISS scan has just flushed (header assembly, ``inspect`` of the task); this ~0.01 ms."""

    media_type = "application/json"

    def __init__(self, body: bytes, after=None):
        self.status_code, self.body, self.background = 200, body, after
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
