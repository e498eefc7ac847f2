"""POST /summarize: a whole document in chunk order (doc_id), or what the corpus says about a query."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ...search import Ranked, hits_for, search
from .. import replay
from ..deps import Index, Model, State
from ..schemas import SummarizeRequest, SummarizeResponse
from ..services.llm import UpstreamError

router = APIRouter(tags=["answer"])

MAX_DOCUMENT_CHUNKS = 60  # a summary prompt of ~12k tokens; longer documents are sampled evenly


def _document_hits(index, doc_id: str) -> list[dict]:
    rows = index.document_rows(doc_id)
    if len(rows) > MAX_DOCUMENT_CHUNKS:
        step = len(rows) / MAX_DOCUMENT_CHUNKS
        rows = rows[[int(i * step) for i in range(MAX_DOCUMENT_CHUNKS)]]
    hits = hits_for(index, Ranked.of(rows, [float("nan")] * len(rows)))
    for hit in hits:
        hit["score"] = None
    return hits


@router.post("/summarize", response_model=SummarizeResponse,
             responses={404: {"description": "doc_id is not in the served index, or as_of is not retained"},
                        502: {"description": "the LLM failed; LAKERAG_LLM_FALLBACK=false only"},
                        503: {"description": "no index yet, or the model still loading; with LAKERAG_LLM_FALLBACK=false also "
                                            "the LLM's quota spent (Retry-After)"},
                        504: {"description": "the LLM timed out; LAKERAG_LLM_FALLBACK=false only"}})
def summarize(body: SummarizeRequest, state: State, model: Model, served: Index) -> SummarizeResponse:
    index = replay.index_for(state, served, body.as_of)
    if body.doc_id:
        hits = _document_hits(index, body.doc_id)
        if not hits:
            raise HTTPException(404, detail=f"document {body.doc_id} is not in the served index {index.version} "
                                            "(GET /documents shows each document's state)")
        title = hits[0]["title"]
    else:
        outcome = search(index, model, body.query, body.k, state.cutoffs, state.metrics,
                         source_prefix=body.source_prefix, **state.search_options(body.mode))
        if not outcome.matched:
            state.metrics.no_answer.labels("/summarize").inc()
            return SummarizeResponse(matched=False, summary="I found nothing relevant to summarise in the indexed "
                                     "documents.", mode="none", reason=outcome.reason, query=body.query,
                                     index_version=index.version, chunks=[],
                                     lineage=replay.lineage(index, served))
        hits, title = outcome.hits, None
    try:
        written = state.writer.summarize(hits, query=body.query, title=title)
    except UpstreamError as exc:  # LAKERAG_LLM_FALLBACK=false
        raise exc.as_http() from None
    return SummarizeResponse(matched=True, summary=written.text, mode=written.mode,
                             fallback_reason=written.fallback_reason, doc_id=body.doc_id, title=title,
                             query=body.query, index_version=index.version, chunks=hits,
                             lineage=replay.lineage(index, served))
