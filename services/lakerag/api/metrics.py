"""Prometheus metrics of one API instance (the metric set in docs/architecture.md, "Metrics").

Each app gets its own CollectorRegistry, so tests can run several apps in one
process. Request metrics are recorded, and each request's access line queued, by a
plain ASGI middleware (no BaseHTTPMiddleware: it costs a task and a queue per request
on the hot path).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from .access_log import AccessLog

# `*_created` series double the exposition and no dashboard here uses them.
disable_created_metrics()

# Search latencies are milliseconds on a warm model; requests may take seconds (LLM).
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
                2.5)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("lakerag_http_requests_total", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("lakerag_http_request_duration_seconds", "HTTP request latency",
                                         ["route", "method"], buckets=REQUEST_BUCKETS, registry=r)
        self.encode_seconds = Histogram("lakerag_search_encode_seconds", "Query embedding time per search",
                                        buckets=FAST_BUCKETS, registry=r)
        self.index_seconds = Histogram("lakerag_search_index_seconds", "FAISS search time per search",
                                       buckets=FAST_BUCKETS, registry=r)
        self.index_info = Gauge("lakerag_index_info", "The served index version (value 1)",
                                ["version", "model"], registry=r)
        self.index_vectors = Gauge("lakerag_index_vectors", "Vectors in the served index", registry=r)
        self.index_created = Gauge("lakerag_index_created_timestamp_seconds",
                                   "Creation time of the served index (unix seconds)", registry=r)
        self.index_age = Gauge("lakerag_index_age_seconds", "Age of the served index", registry=r)
        self.index_age.set_function(self._index_age)
        self.model_load_seconds = Gauge("lakerag_model_load_seconds", "Embedding model load time", registry=r)
        self.reloads = Counter("lakerag_index_reloads_total", "Index versions swapped in", registry=r)
        self.reload_failures = Counter("lakerag_index_reload_failures_total",
                                       "Index versions rejected: checksum, model or incomplete (old index kept)",
                                       registry=r)
        self.store_unreachable = Counter("lakerag_index_store_unreachable_total",
                                         "Index polls that could not reach the store (local copy kept)", registry=r)
        self.index_fallback = Gauge("lakerag_index_fallback", "1 while index/CURRENT does not verify and an older "
                                    "version that does is served", registry=r)
        self.no_answer = Counter("lakerag_no_answer_total", "Queries with no relevant match", ["route"],
                                 registry=r)
        self.llm_seconds = Histogram("lakerag_llm_request_duration_seconds", "LLM call latency",
                                     buckets=REQUEST_BUCKETS, registry=r)
        self.llm_errors = Counter("lakerag_llm_errors_total", "LLM calls that failed", ["reason"], registry=r)
        self.upload_bytes = Counter("lakerag_upload_bytes_total", "Bytes accepted by POST /documents", registry=r)
        self.airflow_triggers = Counter("lakerag_airflow_triggers_total", "Airflow asset events the API recorded "
                                        "to start the pipeline (sent) or could not (failed)", ["outcome"],
                                        registry=r)
        # Requests being handled now; read by the event loop only (api/cpu.py), so a plain int.
        self.in_flight = 0
        Gauge("lakerag_http_requests_in_flight", "HTTP requests being handled", registry=r).set_function(
            lambda: self.in_flight)
        for outcome in ("sent", "failed"):  # both series exist from the start (alerts on rate())
            self.airflow_triggers.labels(outcome)

    def _index_age(self) -> float:
        created = self.index_created._value.get()
        return max(0.0, time.time() - created) if created else 0.0

    def set_index(self, version: str, model: str, vectors: int, created_unix: float) -> None:
        self.index_info.clear()
        self.index_info.labels(version=version, model=model).set(1)
        self.index_vectors.set(vectors)
        self.index_created.set(created_unix)

    def count_reload_failure(self, reason: str) -> None:
        (self.store_unreachable if reason == "store_unreachable" else self.reload_failures).inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route, method).observe(seconds)

    def count_trigger(self, ok: bool) -> None:
        self.airflow_triggers.labels("sent" if ok else "failed").inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class AfterResponse:
    """search's ``Timings``, held and recorded into ``metrics`` by ``record()`` once the response is
    sent: right after the FAISS scan has flushed the caches, two histogram observations cost
    ~0.03 ms of a search's latency (measured)."""

    def __init__(self, metrics: Metrics):
        self._held: list[tuple[Histogram, float]] = []
        self.encode_seconds = _Held(self._held, metrics.encode_seconds)
        self.index_seconds = _Held(self._held, metrics.index_seconds)

    def record_now(self) -> None:
        for histogram, seconds in self._held:
            histogram.observe(seconds)

    async def record(self) -> None:  # async: awaited after the response on the loop (no thread hop)
        self.record_now()


class _Held:
    def __init__(self, held: list, histogram: Histogram):
        self._held, self._histogram = held, histogram

    def observe(self, seconds: float) -> None:
        self._held.append((self._histogram, seconds))


class RequestMetricsMiddleware:
    """Count and time every HTTP request by the matched route template (bounded cardinality), and
    queue its access line once the response is sent (``api.access_log`` writes it).

    uvicorn writes the line before it sends the response, so at INFO every request waited for it:
    0.13-0.17 ms of a ~10 ms search (bench/search.py). The API's protocol turns uvicorn's off
    (``api.http_protocol``); the line and its format are the same.
    """

    def __init__(self, app, metrics: Metrics, access_log: AccessLog):
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        self.metrics.in_flight += 1

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight -= 1
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status[0], time.perf_counter() - started)
            self.access_log.add(scope, status[0])
