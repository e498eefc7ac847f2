"""Probes and metrics: /health (liveness), /ready (readiness), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ..deps import State
from ..schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process answers: nothing else is checked (a slow model load must not get the pod killed)."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready, "description": "not ready"}})
async def ready(state: State):
    """Ready once the model is loaded; an index is not required (the first install has none)."""
    index = state.index
    body = Ready(ready=state.embedder is not None, model=state.embedder.name if state.embedder else None,
                 model_error=state.model_error, index_loaded=index is not None,
                 index_version=index.version if index else None,
                 message=state.model_error or ("loading the embedding model" if state.embedder is None
                                               else state.index_message()))
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    payload, content_type = state.metrics.exposition()
    return Response(payload, media_type=content_type)
