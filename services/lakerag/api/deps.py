"""What route handlers depend on: the app's state, the loaded model and index, the API key.

The dependencies are ``async`` because they never block: FastAPI runs sync
dependencies in the thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from ..config import Settings
from ..embedding import Embedder
from ..index.huge_pages import Schedule
from ..index.loaded import LoadedIndex
from ..index.sync import INDEX_DIR_UNUSABLE, STORE_UNREACHABLE, IndexWatcher
from ..lake import Lake
from ..search import NO_INDEX, Cutoffs, Fusion, Reranker
from ..store import ObjectStore, StoreError
from .access_log import AccessLog
from .airflow_trigger import PipelineTrigger
from .metrics import Metrics
from .services.llm import Writer


@dataclass
class AppState:
    """Everything one API instance holds; set up by main.create_app, filled by its warm-up thread."""

    settings: Settings
    metrics: Metrics
    access_log: AccessLog = field(default_factory=AccessLog)  # each request's line, off the event loop
    started: float = field(default_factory=time.monotonic)
    embedder: Embedder | None = None
    model_error: str | None = None
    writer: Writer | None = None
    cutoffs: Cutoffs | None = None
    reranker: Reranker | None = None  # LAKERAG_RERANK_MODEL, loaded in warm-up
    watcher: IndexWatcher | None = None
    trigger: PipelineTrigger | None = None  # LAKERAG_AIRFLOW_API_URL: uploads/deletes ask Airflow for a run
    raw_watched: bool = False  # `lakerag run`: its own watcher reruns the pipeline on every raw/ change
    ready: threading.Event = field(default_factory=threading.Event)
    on_ready: Callable[[AppState], None] | None = None
    on_fatal: Callable[[str], None] | None = None
    # Runs a callback on the event loop's thread (set at start-up): the thread that answers lone
    # searches collapses the index into huge pages between requests (index/huge_pages.py).
    on_loop: Schedule | None = None
    _lake: Lake | None = None
    # Built once from the settings (they do not change while the app runs), not per search:
    # ~0.03 ms a request on the caches a FAISS scan has just flushed (py-spy, bench/search.py's index).
    fusion: Fusion = field(init=False)

    def __post_init__(self) -> None:
        self.fusion = Fusion.from_settings(self.settings)

    @property
    def index(self) -> LoadedIndex | None:
        return self.watcher.current if self.watcher else None

    def search_options(self, mode: str | None) -> dict:
        """Keyword arguments of search.search for a request's ``mode`` (None: the configured default)."""
        return {"mode": mode or self.settings.search_mode, "fusion": self.fusion, "reranker": self.reranker}

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            self._lake = Lake.open(self.settings)
        return self._lake

    def index_message(self) -> str:
        index = self.index
        if index is not None:
            # Serving, but not what the store says is current: say so where people look (/ready, console).
            sync_state = self.watcher.sync_state if self.watcher else "ok"
            if sync_state in {"fallback", "rejected"} and self.watcher.rejected_version:
                return (f"serving index {index.version}, not {self.watcher.rejected_version} that index/CURRENT "
                        "names: this API refuses it (GET /index: last_error)")
            if sync_state == STORE_UNREACHABLE:
                return f"serving index {index.version}; the store is unreachable, so a newer version cannot be " \
                       "synced (GET /index: last_error)"
            if sync_state == INDEX_DIR_UNUSABLE:
                return f"serving index {index.version}; the local index directory cannot hold a newer version " \
                       "(GET /index: last_error)"
            return f"serving index {index.version}"
        error = self.watcher.last_error if self.watcher else None
        sync_state = self.watcher.sync_state if self.watcher else "ok"
        if error and sync_state in {INDEX_DIR_UNUSABLE, STORE_UNREACHABLE}:  # a pipeline run would not help
            check = "; check LAKERAG_STORE_URI, AWS_ENDPOINT_URL and the credentials, and that the store is up"
            return f"no index served: {error}" + (check if sync_state == STORE_UNREACHABLE else "")
        return NO_INDEX + (f" (last error: {error})" if error else "")


async def get_state(request: Request) -> AppState:
    return request.app.state.lakerag


State = Annotated[AppState, Depends(get_state)]


async def loaded_model(state: State) -> Embedder:
    if state.embedder is None:
        detail = f"embedding model failed to load: {state.model_error}" if state.model_error else \
            f"embedding model {state.settings.embedding_model} is still loading; retry in a few seconds"
        raise HTTPException(503, detail=detail, headers={"Retry-After": "5"})
    return state.embedder


async def served_index(state: State) -> LoadedIndex:
    index = state.index  # taken once: this request uses this version to the end
    if index is None:
        raise HTTPException(503, detail=state.index_message(), headers={"Retry-After": "30"})
    return index


async def require_api_key(state: State, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Writes need X-API-Key when LAKERAG_API_KEY is set: 401 without it, 403 with a wrong one."""
    expected = state.settings.api_key
    if not expected:
        return
    if not x_api_key:
        raise HTTPException(401, detail="this endpoint needs the X-API-Key header (LAKERAG_API_KEY is set)",
                            headers={"WWW-Authenticate": "X-API-Key"})
    if not hmac.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(403, detail="X-API-Key does not match LAKERAG_API_KEY")


async def opened_store(state: State) -> ObjectStore:
    try:
        return state.lake.store
    except StoreError as exc:  # e.g. a file:// store that is a file: no route can use it
        raise HTTPException(502, detail=f"cannot open the store: {exc}") from None


Model = Annotated[Embedder, Depends(loaded_model)]
Index = Annotated[LoadedIndex, Depends(served_index)]
Store = Annotated[ObjectStore, Depends(opened_store)]
ApiKey = Depends(require_api_key)
