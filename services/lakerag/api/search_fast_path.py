"""POST /search's common case, answered without FastAPI's generic request handling.

A search is ~10 ms of query encoding + FAISS. FastAPI's routing, dependency
injection and body handling added ~0.5 ms to each (measured on a 2-vCPU VM: the
FAISS scan has just evicted the caches, so every generic layer runs cold). This
middleware answers a JSON search of the served index with the route's own code
(``routes.search.answer``); everything else goes on to the FastAPI route
unchanged, which answers it as documented: a body that does not parse or
validate, another content type, a model still loading, no index yet, ``as_of``
another version. The route stays the one definition in the OpenAPI schema.
``answer_alone`` answers the same searches for the API's HTTP protocol when one
arrives alone, before any ASGI task (``api.http_protocol``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import ValidationError
from starlette.routing import Match

from ..index.loaded import LoadedIndex
from . import replay
from .deps import AppState
from .protocol import MAX_BODY_BYTES  # larger: protocol.BodyLimit answers 413
from .routes import search as search_route
from .schemas import SearchRequest


class SearchFastPath:
    def __init__(self, app, state: AppState):
        self.app = app
        self.state = state
        # The route of POST /search: its path matching, and the route the metrics label requests by.
        self.route = next(route for route in search_route.router.routes if "POST" in route.methods)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not self._is_search(scope):
            await self.app(scope, receive, send)
            return
        received, body = await _read_body(receive)
        answerable = _answerable(self.state, scope["headers"], body)
        if answerable is None:
            await self.app(scope, _replay(received, receive), send)
            return
        scope["route"] = self.route
        request, served = answerable
        response = await search_route.answer(request, self.state, self.state.embedder, served)
        await response(scope, receive, send)

    def _is_search(self, scope) -> bool:
        # The route's path compared as is (Starlette's match: ~0.02 ms on cold caches); matched by
        # the route itself only behind a root_path.
        if not scope.get("root_path"):
            return scope["path"] == self.route.path
        return self.route.matches(scope)[0] is Match.FULL


def answer_alone(state: AppState, client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> tuple[bytes, Callable[[], None]] | None:
    """A lone POST /search, answered by the API's HTTP protocol before any ASGI task
    (``api.http_protocol``): the response body and what to record once it is sent, or None for
    every case the middleware above or the route decides on."""
    started = time.perf_counter()
    answerable = _answerable(state, headers, body)
    if answerable is None:
        return None
    request, served = answerable
    content, timings = search_route.search_json(request, state, state.embedder, served)

    def sent() -> None:  # what RequestMetricsMiddleware and the route's response record
        timings.record_now()
        state.metrics.observe_request(search_route.PATH, "POST", 200, time.perf_counter() - started)
        state.access_log.add({"client": client, "method": "POST", "path": search_route.PATH, "query_string": b"",
                              "http_version": "1.1"}, 200)

    return content, sent


def _answerable(state: AppState, headers: list[tuple[bytes, bytes]], body: bytes | None) \
        -> tuple[SearchRequest, LoadedIndex] | None:
    """The request and the index it searches, when the fast path answers it; None: the route decides."""
    request, served = _request(headers, body), state.index
    if request is None or state.embedder is None or served is None or \
            replay.names_another_version(request.as_of, served):
        return None
    return request, served


def _request(headers: list[tuple[bytes, bytes]], body: bytes | None) -> SearchRequest | None:
    """The request if FastAPI would read it the same way (a JSON body that validates), else None."""
    if not body or not _is_json(headers):
        return None
    try:
        # Parsed and validated in one pass (pydantic's JSON parser is at most stricter than FastAPI's
        # json.loads; whatever it refuses, the route decides on).
        return SearchRequest.model_validate_json(body)
    except (ValueError, RecursionError, ValidationError):
        return None


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


async def _read_body(receive) -> tuple[list[dict], bytes | None]:
    """The messages read and the whole body, or None when the body is too large or the client left."""
    received, parts, size = [], [], 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > MAX_BODY_BYTES:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(parts)


def _replay(received: list[dict], receive):
    """A receive that gives back what the fast path read, then the rest of the request."""
    pending = list(received)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed
