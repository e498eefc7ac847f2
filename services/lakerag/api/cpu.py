"""Where a request's CPU-bound work (query encoding + FAISS) runs.

A sync route runs in the thread pool: two thread hand-offs per request, each a
wake-up of a sleeping thread (~0.5 ms a search together on a 2-vCPU VM,
measured). A request that is alone needs no other thread: its work runs on the
event loop. When other requests are in flight, the work goes to the thread
pool, so the loop keeps serving them and the cores share the searches. The loop
is therefore never held longer than one search, and only when nothing else
waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from .metrics import Metrics

T = TypeVar("T")


async def run_cpu_bound(metrics: Metrics, work: Callable[[], T]) -> T:
    # Requests that arrived together are registered (metrics middleware) before this one decides.
    await asyncio.sleep(0)
    if metrics.in_flight <= 1:
        return work()
    return await run_in_threadpool(work)
