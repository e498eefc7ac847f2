"""The API's HTTP protocol (api/http_protocol.py): a response's header block and body leave in
one send, and nothing is held back: HEAD answers, streamed bodies and "100 Continue" all arrive.
Each request's access line is written once, after its response has left, off the event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from conftest import wait_until
from lakerag.api.access_log import AccessLog
from lakerag.api.http_protocol import CoalescingHttpToolsProtocol
from lakerag.api.metrics import Metrics, RequestMetricsMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState


class RecordingTransport(asyncio.Transport):
    """What the protocol sends, one entry per write the socket would see."""

    def __init__(self):
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


async def _json(request: Request):
    body = await request.body()
    return JSONResponse({"received": len(body)})


async def _stream(request: Request):
    async def parts():
        for part in (b"one,", b"two,", b"three"):
            yield part
            await asyncio.sleep(0)
    return StreamingResponse(parts(), media_type="text/plain")


APP = Starlette(routes=[Route("/json", _json, methods=["GET", "HEAD", "POST"]), Route("/stream", _stream)])


def _config(app=APP, log_level: str = "warning") -> uvicorn.Config:
    config = uvicorn.Config(app, lifespan="off", log_level=log_level)  # configures uvicorn's loggers
    config.load()
    return config


async def _exchange(*chunks: bytes, settle_turns: int = 50, config: uvicorn.Config | None = None,
                    transport: RecordingTransport | None = None) -> RecordingTransport:
    """Feed ``chunks`` to one connection (letting the loop run after each); return what it wrote."""
    config = config or _config()
    protocol = CoalescingHttpToolsProtocol(config, ServerState(), app_state={})
    transport = transport or RecordingTransport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        for _ in range(settle_turns):
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def test_headers_and_body_leave_in_one_send():
    transport = asyncio.run(_exchange(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b'{"received":0}'


def test_a_head_response_is_sent_without_a_body_write():
    transport = asyncio.run(_exchange(b"HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 200")


def test_keep_alive_requests_each_get_their_whole_response():
    request = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
    transport = asyncio.run(_exchange(request, request))
    assert len(transport.writes) == 2
    assert all(w.endswith(b'{"received":0}') for w in transport.writes)


def test_a_streamed_body_arrives_whole():
    transport = asyncio.run(_exchange(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
    sent = b"".join(transport.writes)
    assert sent.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in sent
    assert sent.endswith(b"0\r\n\r\n")
    body = sent.partition(b"\r\n\r\n")[2]
    assert b"one," in body and b"two," in body and b"three" in body


def test_100_continue_is_sent_before_the_client_sends_its_body():
    """The client waits for "100 Continue" before it sends the body: a held-back interim
    response would stall the request until the client's own timeout."""

    async def exchange() -> tuple[list[bytes], RecordingTransport]:
        protocol = CoalescingHttpToolsProtocol(_config(), ServerState(), app_state={})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        for _ in range(50):
            await asyncio.sleep(0)
        before_body = list(transport.writes)
        protocol.data_received(b"hello")
        for _ in range(50):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return before_body, transport

    before_body, transport = asyncio.run(exchange())
    assert before_body == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert transport.writes[-1].endswith(b'{"received":5}')


class EventLog(RecordingTransport, logging.Handler):
    """The socket writes and the access lines of one connection, in the order they happened."""

    def __init__(self):
        RecordingTransport.__init__(self)
        logging.Handler.__init__(self)
        self.events: list[tuple[str, object]] = []
        self.threads: list[str] = []  # the thread that wrote each access line

    def write(self, data):
        super().write(data)
        self.events.append(("write", bytes(data)))

    def emit(self, record):
        self.events.append(("log", record.getMessage()))
        self.threads.append(record.threadName)


def _logged_exchange(log_level: str, *requests: bytes, wait_for_lines: int = 0) -> EventLog:
    """Requests through the API's request middleware, served with uvicorn's ``log_level``; then
    ``wait_for_lines`` lines awaited from the access log's writer before it is closed."""
    access_log = AccessLog()
    config = _config(RequestMetricsMiddleware(APP, Metrics(), access_log), log_level)
    access, log = logging.getLogger("uvicorn.access"), EventLog()
    access.addHandler(log)
    try:
        asyncio.run(_exchange(*requests, config=config, transport=log))
        assert wait_until(lambda: len(log.threads) >= wait_for_lines, timeout=10)
        access_log.close()
    finally:
        access.removeHandler(log)
        _config()  # uvicorn's loggers back as the other tests configure them
    return log


def test_each_access_line_is_written_once_after_its_response_left():
    """uvicorn writes the line before the response: at INFO every request waited for it."""
    log = _logged_exchange("info", b"GET /json?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                           b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", wait_for_lines=2)
    kinds = [kind for kind, _ in log.events]
    assert sorted(kinds) == ["log", "log", "write", "write"]
    for n in (1, 2):  # the n-th line after the n-th response
        assert _position(kinds, "log", n) > _position(kinds, "write", n)
    assert [message for kind, message in log.events if kind == "log"] == [
        '127.0.0.1:50000 - "GET /json?x=1 HTTP/1.1" 200', '127.0.0.1:50000 - "GET /missing HTTP/1.1" 404']
    # Written by the access log's thread, not on the event loop (where the requests ran).
    assert log.threads == ["access-log", "access-log"]


def _position(kinds: list[str], kind: str, n: int) -> int:
    return [i for i, each in enumerate(kinds) if each == kind][n - 1]


def test_lines_still_queued_are_written_at_close():
    """Shutdown loses no line: close() writes what the writer has not yet."""
    access, log = logging.getLogger("uvicorn.access"), EventLog()
    access.addHandler(log)
    access.setLevel(logging.INFO)
    access_log = AccessLog()
    scope = {"type": "http", "method": "GET", "path": "/health", "query_string": b"", "http_version": "1.1",
             "client": ("10.0.0.7", 41000), "root_path": ""}
    try:
        for status in (200, 503, 200):
            access_log.add(scope, status)
        access_log.close()  # the writer is still gathering the burst
        written = [message for _, message in log.events]
    finally:
        access.removeHandler(log)
        _config()
    assert written == [f'10.0.0.7:41000 - "GET /health HTTP/1.1" {status}' for status in (200, 503, 200)]


def test_no_access_line_above_info():
    log = _logged_exchange("warning", b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [kind for kind, _ in log.events] == ["write"]
