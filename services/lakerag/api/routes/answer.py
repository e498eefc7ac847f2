"""POST /answer: retrieval, then an answer with numbered citations into the returned chunks."""

from __future__ import annotations

from fastapi import APIRouter

from ...search import search
from .. import replay
from ..deps import Index, Model, State
from ..schemas import AnswerRequest, AnswerResponse
from ..services.llm import UpstreamError

router = APIRouter(tags=["answer"])


@router.post("/answer", response_model=AnswerResponse,
             responses={404: {"description": "as_of names a version that is not retained"},
                        502: {"description": "the LLM failed (reason in detail); LAKERAG_LLM_FALLBACK=false only"},
                        503: {"description": "no index yet, or the model still loading; with LAKERAG_LLM_FALLBACK=false also "
                                            "the LLM's quota spent (Retry-After)"},
                        504: {"description": "the LLM timed out; LAKERAG_LLM_FALLBACK=false only"}})
def answer(body: AnswerRequest, state: State, model: Model, served: Index) -> AnswerResponse:
    index = replay.index_for(state, served, body.as_of)
    outcome = search(index, model, body.question, body.k, state.cutoffs, state.metrics, doc_id=body.doc_id,
                     source_prefix=body.source_prefix, **state.search_options(body.mode))
    if not outcome.matched:  # nothing relevant: say so, and do not spend an LLM call
        state.metrics.no_answer.labels("/answer").inc()
        return AnswerResponse(matched=False, mode="none", reason=outcome.reason, question=body.question,
                              index_version=index.version, chunks=[], lineage=replay.lineage(index, served),
                              answer="I found nothing relevant to this question in the indexed documents.")
    try:
        written = state.writer.answer(body.question, outcome.hits)
    except UpstreamError as exc:  # LAKERAG_LLM_FALLBACK=false
        raise exc.as_http() from None
    return AnswerResponse(matched=True, answer=written.text, mode=written.mode,
                          fallback_reason=written.fallback_reason, question=body.question,
                          index_version=index.version, chunks=outcome.hits,
                          lineage=replay.lineage(index, served))
