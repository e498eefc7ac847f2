"""Each request's access line, written after its response, in batches on the event loop.

Writing a line (a LogRecord, uvicorn's AccessFormatter, a write to stdout) took
~0.1 ms of the loop's time per request on a 2-vCPU VM, right after each
response: 13% of the loop's time outside the search itself (py-spy, POST
/search). Here the loop only queues the line's fields, and writes what is queued
``FLUSH_SECONDS`` after the first of them, in the order the responses left, like
nginx's ``access_log ... buffer= flush=``: a burst's lines cost the loop one
pause between requests, not a step after each. Not a thread: its Python work
took the GIL and a core in the middle of the next search, and the API's query
encodes ran ~0.1 ms slower than without access lines (docs/search-latency.md,
2026-12-06). The logger's level, handler and format stay as uvicorn sets them
(LAKERAG_LOG_LEVEL). ``close()`` writes what is queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from urllib.parse import quote

# uvicorn's access logger: its handler, format and level stay as uvicorn sets them.
ACCESS_LOG = logging.getLogger("uvicorn.access")
FLUSH_SECONDS = 0.05  # a burst's lines are written together; a lone request's line appears this late


def client_addr(scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


def path_with_query(scope) -> str:
    """The request target as the client sent it: ``raw_path`` (optional in ASGI) or the quoted path.
    Ours, not uvicorn's helper: uvicorn 0.55 made that one require ``raw_path``."""
    raw = scope.get("raw_path")
    path = raw.decode("latin1") if raw else quote(scope.get("root_path", "") + scope["path"])
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode("ascii")
    return path.replace('"', "%22")


class AccessLog:
    def __init__(self, logger: logging.Logger = ACCESS_LOG):
        self._logger = logger
        self._pending: deque[tuple] = deque()
        self._flush_due = False  # a flush is scheduled on the loop

    def add(self, scope, status: int) -> None:
        """Queue the line of a request whose response has been sent (event loop, cheap)."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        self._pending.append((client_addr(scope), scope["method"], path_with_query(scope), scope["http_version"],
                              status))
        if not self._flush_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on a loop: written now
                self.flush()
                return
            loop.call_later(FLUSH_SECONDS, self.flush)
            self._flush_due = True

    def flush(self) -> None:
        """Log every queued line (the loop, ``FLUSH_SECONDS`` after the first; and ``close``)."""
        self._flush_due = False
        while True:
            try:
                fields = self._pending.popleft()
            except IndexError:
                return
            self._logger.info('%s - "%s %s HTTP/%s" %d', *fields)

    def close(self) -> None:
        """Log what is queued (app shutdown: every response has been sent)."""
        self.flush()
