"""Each request's access line, written off the event loop.

Writing a line (a LogRecord, uvicorn's AccessFormatter, a write to stdout) took
~0.1 ms of the loop's time per request on a 2-vCPU VM, right after each
response: 13% of the loop's time outside the search itself (py-spy, POST
/search), and bench/search.py measured 0.06-0.08 ms more HTTP overhead with it than
without. Here the loop only queues the line's fields; a thread logs them through
``uvicorn.access`` within ``FLUSH_SECONDS`` of the response, in the order the
responses left, like nginx's ``access_log ... buffer= flush=``. The logger's
level, handler and format stay as uvicorn sets them (LAKERAG_LOG_LEVEL); only
the record's thread and time are the writer's. ``close()`` writes what is queued.
"""

from __future__ import annotations

import logging
import threading
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
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._writer: threading.Thread | None = None  # started with the first line

    def add(self, scope, status: int) -> None:
        """Queue the line of a request whose response has been sent (event loop, cheap)."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        self._pending.append((client_addr(scope), scope["method"], path_with_query(scope), scope["http_version"],
                              status))
        if self._writer is None:  # add() runs on the event loop only: no race to start two
            self._writer = threading.Thread(target=self._write, name="access-log", daemon=True)
            self._writer.start()
        if not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Log every queued line (the writer thread, and ``close``)."""
        while True:
            try:
                fields = self._pending.popleft()
            except IndexError:
                return
            self._logger.info('%s - "%s %s HTTP/%s" %d', *fields)

    def close(self) -> None:
        """Stop the writer and log what is queued (app shutdown: every response has been sent)."""
        self._closed.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
        self.flush()

    def _write(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            self._closed.wait(FLUSH_SECONDS)  # let a burst's lines gather (not when closing)
            # Cleared before the queue is read: a line queued from here on sets it again.
            self._wake.clear()
            self.flush()
