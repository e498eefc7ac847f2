"""The FastAPI app (``create_app``) and ``lakerag serve`` (``serve``: one uvicorn worker).

Start-up order: configuration is checked before anything binds (fail fast);
the port opens at once so /health answers while the model loads in a warm-up
thread; then the index is synced and loaded, and a watcher thread polls for
new versions. /ready turns 200 when the model is loaded.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ..config import Settings
from ..embedding import Embedder, cap_threads, load_embedder
from ..encoder_identity import check_served_encoder
from ..index.loaded import LoadedIndex
from ..index.sync import IndexWatcher
from ..lake import doc_id_for
from ..search import cutoffs_for, load_reranker
from . import pipeline_status, protocol
from .airflow_trigger import PipelineTrigger
from .deps import AppState
from .http_protocol import protocol_for
from .metrics import Metrics, RequestMetricsMiddleware
from .routes import answer, console, document_files, documents, health, index, search, summarize
from .search_fast_path import SearchFastPath, answer_alone
from .services import startup
from .services.llm import make_writer

log = logging.getLogger("lakerag.api")
SEARCH_THREADS = 1
SAMPLE_QUESTIONS = Path(__file__).resolve().parents[1] / "samples" / "questions.json"
# SIGTERM: stop accepting, give requests in flight this long, exit. The chart's
# api.shutdown.terminationGracePeriodSeconds must exceed its preStop wait plus this.
GRACEFUL_SHUTDOWN_SECONDS = 15


def cap_search_threads(embedder: Embedder) -> None:
    """The API's thread settings for searches (bench/search.py applies the same in process).

    FAISS (and torch, when it encodes) get one thread per query; the cores serve concurrent
    requests instead: split queries wait on each other's thread barriers whenever the cores
    are busy (measured with torch: 2 threads 3-10x slower than 1 under load). The ONNX session
    keeps the pod's CPU quota: its idle threads sleep, and 2 threads beat 1 on a lone query's
    latency (bench/search.py: p50 13.4-13.7 against 13.8-16.9 ms). torch only when it
    encodes: importing it just to cap its threads cost seconds of start-up.
    """
    cap_threads(SEARCH_THREADS, torch=embedder.encoder.get("runtime") == "torch")


def warm_up(state: AppState, embedder: Embedder | None = None, watch: bool = True) -> None:
    """Load the model while the index downloads (``IndexWatcher.prefetch``), then load the
    index and start the watcher. Runs in a thread."""
    settings, metrics = state.settings, state.metrics
    loaded_model: list[Embedder] = []

    def on_swap(loaded) -> None:
        metrics.reloads.inc()
        metrics.set_index(loaded.version, loaded.model, loaded.vector_count, _created_unix(loaded.manifest))

    def check(loaded) -> None:
        check_served_encoder(loaded, loaded_model[0])

    # The dimension is known once the model is loaded; the model name now (it names the model).
    watcher = IndexWatcher(settings, expected_model=embedder.name if embedder else settings.embedding_model,
                           expected_dimension=None, on_swap=on_swap,
                           on_failure=lambda _message, reason: metrics.count_reload_failure(reason), check=check,
                           schedule=state.on_loop)
    threading.Thread(target=watcher.prefetch, name="index-prefetch", daemon=True).start()
    try:
        embedder = embedder or load_embedder(settings)
        state.reranker = load_reranker(settings)  # None unless LAKERAG_RERANK_MODEL is set
    except Exception as exc:  # noqa: BLE001 - any loader failure is fatal and must be reported, not a trace
        state.model_error = f"{type(exc).__name__}: {exc}"
        log.error("model %s failed to load: %s", settings.embedding_model if embedder is None else
                  settings.rerank_model, exc)
        state.ready.set()
        if state.on_fatal:
            state.on_fatal(state.model_error)
        return
    loaded_model.append(embedder)
    metrics.model_load_seconds.set(embedder.load_seconds)
    cap_search_threads(embedder)
    embedder.encode_queries(["warm up"])  # the first encode allocates; keep it off the first request
    state.cutoffs = cutoffs_for(settings, embedder.name)
    state.writer = make_writer(settings, embedder, metrics)
    watcher.expected_model, watcher.expected_dimension = embedder.name, embedder.dimension
    state.watcher = watcher
    metrics.index_fallback.set_function(lambda: float(watcher.sync_state == "fallback"))
    _, message = watcher.check()  # waits for the prefetch; loads what it fetched
    log.info("model %s ready (dimension %d, loaded from %s in %.1fs); index: %s; cut-offs min %.2f relative %.2f",
             embedder.name, embedder.dimension, embedder.source, embedder.load_seconds, message,
             state.cutoffs.min_score, state.cutoffs.relative)
    state.embedder = embedder  # ready from here on
    if watch:
        watcher.start()
    state.ready.set()
    if state.on_ready:
        state.on_ready(state)


def _created_unix(manifest: dict) -> float:
    try:
        return datetime.fromisoformat(manifest["created_at"]).timestamp()
    except (KeyError, ValueError, AttributeError):
        return 0.0


def create_app(settings: Settings, embedder: Embedder | None = None, watch: bool = True) -> FastAPI:
    """A fresh app with its own metrics registry. ``embedder`` skips loading the model
    (tests share one); ``watch=False`` loads the index once and does not poll."""
    state = AppState(settings=settings, metrics=Metrics())
    state.trigger = PipelineTrigger.from_settings(settings, store_factory=lambda: state.lake.store,
                                                  on_result=state.metrics.count_trigger)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        state.on_loop = lambda delay, callback: loop.call_soon_threadsafe(loop.call_later, delay, callback)
        thread = threading.Thread(target=warm_up, args=(state, embedder, watch), name="warm-up", daemon=True)
        thread.start()
        if state.trigger is not None:
            state.trigger.start()
        yield
        if state.watcher is not None:
            state.watcher.stop()
        if state.trigger is not None:
            state.trigger.stop()
        state.access_log.close()  # every response has been sent: its line is written before the process ends

    # FastAPI's native OpenTelemetry needs an SDK the api image does not ship (its metrics are
    # Prometheus, below): off, so no request pays for looking for one.
    app = FastAPI(title="LakeRAG", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Semantic search, answers with citations and summaries over a Delta Lake corpus.",
                  responses=protocol.BAD_BODY_RESPONSE)
    app.state.lakerag = state
    for module in (search, answer, summarize, documents, document_files, index, health, pipeline_status):
        app.include_router(module.router)
    app.state.pipeline_status = pipeline_status.PipelineStatus(lambda: state.lake)
    state.metrics.registry.register(app.state.pipeline_status)
    console.install(app)  # / (the web console), /docs and /redoc with their assets served offline
    protocol.install(app, streamed={("POST", "/documents")})  # uploads stream under LAKERAG_MAX_UPLOAD_BYTES
    app.add_middleware(SearchFastPath, state=state)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics, access_log=state.access_log)
    return app


def example_question(index: LoadedIndex | None = None) -> str:
    """A question ``index`` answers: the first sample question whose document it holds, else one
    about its first document's title (a store of one's own documents)."""
    try:
        questions = [q for q in json.loads(SAMPLE_QUESTIONS.read_text()) if isinstance(q, dict) and "question" in q]
    except (OSError, ValueError):
        questions = []
    documents = index.chunk_rows.chunks_per_document() if index is not None else {}
    for question in questions:
        if index is None or doc_id_for(str(question.get("expected_source"))) in documents:
            return question["question"]
    first = index.chunk_rows.rows([0])[0] if index is not None and index.vector_count else {}
    title = (first.get("title") or " ".join(str(first.get("text") or "").split()[:8])).rstrip(" .!?:;")
    return f"What do the documents say about {title}?" if title else "What does the on-call runbook say to do first?"


def announcement(settings: Settings, index: LoadedIndex | None) -> str:
    """What ``lakerag run`` prints once ready: questions to try, or, with nothing indexed yet,
    how to add documents (the sample questions would only get 503 "no index yet")."""
    base = f"http://{'127.0.0.1' if settings.host in {'0.0.0.0', '::'} else settings.host}:{settings.port}"
    lines = ["", f"LakeRAG API is serving on {base}  (console: {base}/, OpenAPI: {base}/docs)"]
    if index is not None:
        question = example_question(index)
        search_body = shlex.quote(json.dumps({"query": question, "k": 3}))
        answer_body = shlex.quote(json.dumps({"question": question, "k": 3}))
        lines += ["Try:",
                  f"  curl -s -X POST {base}/search -H 'Content-Type: application/json' -d {search_body}",
                  f"  curl -s -X POST {base}/answer -H 'Content-Type: application/json' -d {answer_body}",
                  f"  lakerag ask {shlex.quote(question)} --url {base}"]
    else:
        lines += ["Nothing to search yet: add documents (PDF, TXT, JSON, JSON Lines, Markdown, HTML) and the pipeline indexes them:",
                  f"  drop files on the console at {base}/",
                  f"  lakerag upload DIR --url {base}",
                  f"  or copy them into {settings.store_uri.rstrip('/')}/raw/"]
    return "\n".join([*lines, "Stop with Ctrl-C.", ""])


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def server_config(app: FastAPI, settings: Settings, **overrides) -> uvicorn.Config:
    """The uvicorn server the API runs under (``serve`` and the tests)."""
    options = {"host": settings.host, "port": settings.port, "workers": 1,
               # Each response's headers and body in one send; a lone search answered before any ASGI task.
               "http": protocol_for(search.PATH, partial(answer_alone, app.state.lakerag)),
               "log_level": settings.log_level.lower(), "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
               # Longer than load balancers' usual idle timeout (60 s): the balancer closes
               # idle connections first, so it never reuses one the API just closed.
               "timeout_keep_alive": 75, "server_header": False}
    return uvicorn.Config(app, **{**options, **overrides})


class PortUnavailable(Exception):
    pass


def listen_socket(settings: Settings) -> socket.socket:
    """The API's socket, bound now, so a port in use is said before anything else runs (``lakerag
    run`` binds it before its first pipeline run; uvicorn would only find out after it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        where = f"cannot listen on {settings.host}:{settings.port} ({exc.strerror})"
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):  # the address, not the port: unknown or not here
            raise PortUnavailable(f"{where}: set LAKERAG_HOST to an address of this machine (0.0.0.0: all "
                                  "interfaces, 127.0.0.1: this machine only)") from None
        other = settings.port + 1 if settings.port < 65535 else 8000
        raise PortUnavailable(f"{where}: stop what holds the port, or choose another with LAKERAG_PORT "
                              f"(make run PORT={other})") from None
    return sock


def serve(settings: Settings, announce: bool = False, on_ready=None, on_shutdown=None,
          sock: socket.socket | None = None) -> int:
    """Run the API in this process with one uvicorn worker until SIGTERM/SIGINT, then end the process.
    ``on_ready(state)`` runs once the model is loaded, ``on_shutdown()`` once the server has stopped
    (``lakerag run`` starts and stops its pipeline watcher with them); ``sock`` from ``listen_socket``."""
    try:
        startup.check(settings)
        sock = sock or listen_socket(settings)
    except (startup.StartupError, PortUnavailable) as exc:
        print(f"lakerag serve: {exc}", file=sys.stderr)
        return 2
    startup.log_environment(settings)
    app = create_app(settings)
    state: AppState = app.state.lakerag
    config = server_config(app, settings)
    server = uvicorn.Server(config)

    def fatal(message: str) -> None:
        print(f"lakerag serve: cannot serve: {message}", file=sys.stderr)
        server.should_exit = True

    state.on_fatal = fatal

    def ready(ready_state: AppState) -> None:
        if on_ready:
            on_ready(ready_state)
        if announce:
            print(announcement(settings, ready_state.index), flush=True)

    state.on_ready = ready
    # uvicorn re-raises the stop signal once it has shut down; end with a status instead
    # of a KeyboardInterrupt trace (Ctrl-C in `make run`) or death by SIGTERM.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if on_shutdown:
        on_shutdown()
    return _exit_now(1 if state.model_error else 0)


def _exit_now(code: int) -> int:
    """Every request is answered and the app shut down: exit without the interpreter's teardown,
    which spends 6-11 s garbage-collecting the model (measured in the api image) while
    Kubernetes counts the pod's grace period down."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
    return code  # not reached
