"""HTTP edge cases answered the same way on every route: unparseable bodies, validation
errors that echo unencodable input, OPTIONS and the Allow header.

Any body, any bytes get a documented 4xx: a body that is not UTF-8 (or nests too deep
for the parser) is 400; a JSON syntax error or a body that breaks the schema is 422.
"""

from __future__ import annotations

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


class ErrorMessage(BaseModel):
    detail: str


BAD_BODY_RESPONSE = {400: {"model": ErrorMessage, "description": "body is not UTF-8 JSON or nests too deep"}}


def _printable(value):
    """Lone surrogates cannot be encoded as UTF-8: show them escaped instead of failing with a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _printable(jsonable_encoder(exc.errors()))}, status_code=422)


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

    def _allowed(self, scope) -> set[str]:
        methods: set[str] = set()
        for route in _flatten(self.routes):
            match, _ = route.matches(scope)
            if match != Match.NONE:
                methods |= route.methods
        return methods

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Matched against every route only for OPTIONS and 405s: not on the path of every request.
        if scope["method"] == "OPTIONS":
            allowed = self._allowed(scope)
            if allowed:
                header = ", ".join(sorted(allowed | {"OPTIONS"})).encode()
                await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", header)]})
                await send({"type": "http.response.body", "body": b""})
                return
        request_scope = dict(scope)  # as it came in: routing adds to the scope it is given

        async def send_with_allow(message):
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = self._allowed(request_scope)
                if allowed:
                    header = ", ".join(sorted(allowed | {"OPTIONS"})).encode()
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": headers + [(b"allow", header)]}
            await send(message)

        await self.app(scope, receive, send_with_allow)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_middleware(AllowedMethods, routes=app.router.routes)
