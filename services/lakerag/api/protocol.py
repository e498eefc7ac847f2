"""HTTP edge cases answered the same way on every route: unparseable bodies, validation
errors that echo unencodable input, bodies far larger than any valid one, HEAD, OPTIONS
and the Allow header.

Any body, any bytes get a documented 4xx: a body that is not UTF-8 (or nests too deep
for the parser) is 400; a JSON syntax error or a body that breaks the schema is 422; a
body over ``MAX_BODY_BYTES`` is 413 before it is read whole.
"""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

UNPARSEABLE = ("request body could not be decoded (bytes that are not UTF-8, or JSON nested too deep); send "
               "a UTF-8 JSON object as the OpenAPI schema at /docs shows")
FASTAPI_PARSE_ERROR = "There was an error parsing the body"
# Far above any valid JSON body (queries and questions are at most 2000 characters, ~24 KB even
# with every character escaped); uploads (POST /documents) stream under their own limit.
MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = (f"request body over {MAX_BODY_BYTES} bytes: search, answer and summarize take a small JSON "
             "object (query or question at most 2000 characters); see /docs")
NOT_JSON = "send the body as JSON with the header Content-Type: application/json"


class ErrorMessage(BaseModel):
    detail: str


BAD_BODY_RESPONSE = {400: {"model": ErrorMessage, "description": "body is not UTF-8 JSON or nests too deep"},
                     413: {"model": ErrorMessage, "description": f"body over {MAX_BODY_BYTES} bytes"}}


def _printable(value):
    """Lone surrogates cannot be encoded as UTF-8, nor NaN or 1e400 as JSON: show them as text
    instead of failing with a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _printable(jsonable_encoder(exc.errors()))
    for error in errors:
        # A JSON body sent as a form or as text arrives as one string: say which header to send.
        if error.get("type") == "model_attributes_type" and list(error.get("loc", [])) == ["body"] and \
                not _is_json(request.headers.get("content-type")):
            error["msg"] = NOT_JSON
        elif error.get("type") == "extra_forbidden":
            fields = _body_fields(request)
            error["msg"] = f"unknown field {error['loc'][-1]!r}" + (f": this request takes {', '.join(fields)}"
                                                                   if fields else "; see /docs")
    return JSONResponse({"detail": errors}, status_code=422)


def _body_fields(request: Request) -> list[str]:
    """The fields of the route's JSON body model (empty where the route has none)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for param in getattr(dependant, "body_params", ()):
        model = getattr(param.field_info, "annotation", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return list(model.model_fields)
    return []


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


async def http_error(request: Request, exc: HTTPException):
    if exc.status_code == 400 and exc.detail == FASTAPI_PARSE_ERROR:  # UnicodeDecodeError, RecursionError
        return JSONResponse({"detail": UNPARSEABLE}, status_code=400)
    return await http_exception_handler(request, exc)


def _flatten(routes):
    """Routes with methods, looking inside included routers (our routers have no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        elif getattr(route, "methods", None):
            yield route


class AllowedMethods:
    """OPTIONS answers 204 with every method of the path; a 405's Allow lists them all too
    (Starlette names only the first route that matched the path)."""

    def __init__(self, app, routes):
        self.app = app
        self.routes = routes

    def _matching(self, scope) -> tuple[set[str], object]:
        """The methods of every route of the path (HEAD wherever GET), and the first such route."""
        methods, first = set(), None
        for route in _flatten(self.routes):
            if route.matches(scope)[0] != Match.NONE:
                methods |= route.methods
                first = first or route
        return (methods | {"HEAD"} if "GET" in methods else methods), first

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Matched against every route only for HEAD, OPTIONS and 405s: not on the path of every request.
        if scope["method"] == "HEAD" and "GET" in self._matching({**scope, "method": "GET"})[0]:
            # HEAD is GET without the body (RFC 9110), which uvicorn leaves out for the HEAD request
            # it parsed: the routes see a GET in a copy of the scope.
            get = {**scope, "method": "GET"}
            try:
                await self._answer(get, receive, send)
            finally:
                scope["route"] = get.get("route")  # what the request metrics label it by
            return
        if scope["method"] == "OPTIONS":
            allowed, scope["route"] = self._matching(scope)
            if allowed:
                header = ", ".join(sorted(allowed | {"OPTIONS"})).encode()
                await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", header)]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self._answer(scope, receive, send)

    async def _answer(self, scope, receive, send):
        request_scope = dict(scope)  # as it came in: routing adds to the scope it is given

        async def send_with_allow(message):
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed, _ = self._matching(request_scope)
                if allowed:
                    header = ", ".join(sorted(allowed | {"OPTIONS"})).encode()
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": headers + [(b"allow", header)]}
            await send(message)

        await self.app(scope, receive, send_with_allow)


class BodyLimit:
    """413 for a body over ``MAX_BODY_BYTES``: at once when its Content-Length says so, else as
    soon as that much has arrived, so no request makes the server hold megabytes. Requests in
    ``streamed`` ((method, path): uploads) have limits of their own."""

    def __init__(self, app, streamed: set[tuple[str, str]]):
        self.app = app
        self.streamed = streamed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.streamed:
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"0")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await JSONResponse({"detail": TOO_LARGE}, status_code=413)(scope, receive, send)
            return
        size = 0

        async def limited():
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES:
                raise HTTPException(413, TOO_LARGE)  # FastAPI passes it on from its body reading
            return message

        await self.app(scope, limited, send)


def install(app: FastAPI, streamed: set[tuple[str, str]]) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_middleware(AllowedMethods, routes=app.router.routes)
    app.add_middleware(BodyLimit, streamed=streamed)
