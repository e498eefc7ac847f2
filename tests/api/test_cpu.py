"""Where /search's CPU work runs (api/cpu.py): on the event loop for a lone request, in the
thread pool as soon as another request is in flight, so the loop keeps serving."""

from __future__ import annotations

import asyncio
import threading

from lakerag.api.cpu import run_cpu_bound
from lakerag.api.metrics import Metrics


def _thread_of_work(metrics: Metrics) -> int:
    return asyncio.run(run_cpu_bound(metrics, threading.get_ident))


def test_a_lone_request_computes_on_the_event_loop():
    metrics = Metrics()
    metrics.in_flight = 1  # this request, counted by the metrics middleware
    assert _thread_of_work(metrics) == threading.get_ident()  # asyncio.run's loop runs in this thread


def test_with_another_request_in_flight_the_work_goes_to_the_thread_pool():
    metrics = Metrics()
    metrics.in_flight = 2
    assert _thread_of_work(metrics) != threading.get_ident()


def test_requests_arriving_together_all_leave_the_loop():
    """A burst: each request is counted before any decides, so none holds the loop while the
    others wait to be parsed (the first to run would otherwise see itself alone)."""
    metrics = Metrics()
    loop_thread = threading.get_ident()

    async def request() -> int:
        metrics.in_flight += 1  # what the middleware does as the request starts
        try:
            return await run_cpu_bound(metrics, threading.get_ident)
        finally:
            metrics.in_flight -= 1

    async def burst() -> list[int]:
        return await asyncio.gather(*(request() for _ in range(4)))

    threads = asyncio.run(burst())
    assert loop_thread not in threads
    assert metrics.in_flight == 0


def test_requests_in_flight_are_exported(served):
    text = served.client.get("/metrics").text
    # The scrape itself is the one request in flight while the exposition is made.
    assert "\nlakerag_http_requests_in_flight 1.0" in text
