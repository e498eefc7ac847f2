"""The API's HTTP protocol (api/http_protocol.py): a response's header block and body leave in
one send, and nothing is held back: HEAD answers, streamed bodies and "100 Continue" all arrive.
Each request's access line is written once, after its response has left, off the event loop.
A lone search is answered from the parser's callbacks; every other request reaches the app whole."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
import uvicorn
from lakerag.api.access_log import AccessLog, client_addr, path_with_query
from lakerag.api.http_protocol import CoalescingHttpToolsProtocol, protocol_for
from lakerag.api.metrics import Metrics, RequestMetricsMiddleware
from lakerag.api.protocol import MAX_BODY_BYTES
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
    ``wait_for_lines`` lines awaited from the loop, which writes them, before the access log is closed."""
    access_log = AccessLog()
    config = _config(RequestMetricsMiddleware(APP, Metrics(), access_log), log_level)
    access, log = logging.getLogger("uvicorn.access"), EventLog()
    access.addHandler(log)

    async def exchange_and_wait() -> None:
        await _exchange(*requests, config=config, transport=log)
        deadline = time.monotonic() + 10
        while len(log.threads) < wait_for_lines and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    try:
        asyncio.run(exchange_and_wait())
        assert len(log.threads) >= wait_for_lines
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
    # Written by the event loop, where the requests ran: a thread writing them took the GIL and a core
    # in the middle of the next search (its encode ~0.1 ms slower, docs/search-latency.md).
    assert log.threads == [threading.current_thread().name] * 2


def _position(kinds: list[str], kind: str, n: int) -> int:
    return [i for i, each in enumerate(kinds) if each == kind][n - 1]


def test_lines_still_queued_are_written_at_close():
    """Shutdown loses no line: close() writes what the loop has not yet."""
    access, log = logging.getLogger("uvicorn.access"), EventLog()
    access.addHandler(log)
    access.setLevel(logging.INFO)
    access_log = AccessLog()
    scope = {"type": "http", "method": "GET", "path": "/health", "query_string": b"", "http_version": "1.1",
             "client": ("10.0.0.7", 41000), "root_path": ""}

    async def burst_then_close() -> list[str]:
        for status in (200, 503, 200):
            access_log.add(scope, status)
        assert log.events == []  # gathered for the loop's next batch
        access_log.close()  # before that batch is due
        return [message for _, message in log.events]

    try:
        written = asyncio.run(burst_then_close())
    finally:
        access.removeHandler(log)
        _config()
    assert written == [f'10.0.0.7:41000 - "GET /health HTTP/1.1" {status}' for status in (200, 503, 200)]


def test_the_access_line_names_the_target_with_or_without_raw_path():
    """uvicorn 0.55's helper read scope["raw_path"], which ASGI leaves optional and the fast path's
    scope lacked: every access line raised KeyError in the writer thread and was lost."""
    bare = {"path": "/documents/a b", "query_string": b"", "root_path": "/api"}
    assert path_with_query(bare) == "/api/documents/a%20b"
    assert path_with_query({**bare, "raw_path": b"/api/documents/a%20b", "query_string": b"k=5"}) == \
        "/api/documents/a%20b?k=5"
    assert path_with_query({"path": '/x"y', "query_string": b""}) == "/x%22y"
    assert client_addr({"client": ["10.0.0.7", 41000]}) == "10.0.0.7:41000" and client_addr({}) == ""


def test_no_access_line_above_info():
    log = _logged_exchange("warning", b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [kind for kind, _ in log.events] == ["write"]


# A lone search (api/http_protocol.LoneSearchProtocol): answered from the parser's callbacks by
# the app's answer_alone, or passed on to the app exactly as uvicorn would have.

SEARCH_APP = Starlette(routes=[Route(path, _json, methods=["GET", "POST"]) for path in ("/search", "/search/")])
LONE_BODY = b'{"query": "hotel cap"}'


def _search(body: bytes = LONE_BODY, head: bytes = b"POST /search HTTP/1.1", extra: bytes = b"") -> bytes:
    return head + b"\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b\r\n%b" % (
        len(body), extra, body)


class LoneAnswers:
    """An answer_alone that records what it was given and when each answer was recorded as sent."""

    def __init__(self, decline: bool = False, fail: bool = False):
        self.decline, self.fail = decline, fail
        self.calls: list[tuple[object, list, bytes]] = []
        self.sent: list[int] = []  # the number of socket writes when each answer's sent() ran
        self.transport: RecordingTransport | None = None

    def __call__(self, client, headers, body):
        self.calls.append((client, list(headers), body))
        if self.fail:
            raise RuntimeError("the search failed")
        if self.decline:
            return None
        return b'{"alone":%d}' % len(body), lambda: self.sent.append(len(self.transport.writes))


def _lone_exchange(*chunks: bytes, answers: LoneAnswers | None = None, server_state: ServerState | None = None,
                   before_close=None) -> tuple[RecordingTransport, LoneAnswers]:
    answers = answers or LoneAnswers()
    server_state = server_state or ServerState()
    protocol_class = protocol_for("/search", answers)

    async def exchange() -> RecordingTransport:
        protocol = protocol_class(_config(SEARCH_APP), server_state, app_state={})
        answers.transport = transport = RecordingTransport()
        protocol.connection_made(transport)
        for chunk in chunks:
            protocol.data_received(chunk)
            for _ in range(50):
                await asyncio.sleep(0)
        if before_close:
            before_close(protocol)
            for _ in range(50):
                await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(exchange()), answers


def test_a_lone_search_is_answered_by_the_app_s_answer_alone_in_one_write():
    state = ServerState()
    state.default_headers = [(b"date", b"Tue, 01 Dec 2026 15:00:00 GMT")]
    transport, answers = _lone_exchange(_search(), server_state=state)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ndate: Tue, 01 Dec 2026 15:00:00 GMT\r\ncontent-length: 12\r\n"
                                b"content-type: application/json\r\n\r\n" + b'{"alone":%d}' % len(LONE_BODY)]
    client, headers, body = answers.calls[0]
    assert client == ("127.0.0.1", 50000) and body == LONE_BODY
    assert (b"content-type", b"application/json") in headers
    assert answers.sent == [1]  # recorded once the response had left
    assert state.total_requests == 1  # counted as uvicorn counts a response (--limit-max-requests)


def test_a_body_in_pieces_and_pipelined_searches_are_each_answered_whole_in_order():
    first, second = _search(b'{"query": "a"}'), _search(b'{"query": "bb"}')
    transport, answers = _lone_exchange(first[:-5], first[-5:] + second)
    assert [body for _, _, body in answers.calls] == [b'{"query": "a"}', b'{"query": "bb"}']
    assert [write.rpartition(b"\r\n\r\n")[2] for write in transport.writes] == [b'{"alone":14}', b'{"alone":15}']


@pytest.mark.parametrize("request_bytes, why", [
    (_search(head=b"POST /search?k=2 HTTP/1.1"), "a query string"),
    (_search(head=b"POST /search/ HTTP/1.1"), "another path"),
    (_search(head=b"GET /search HTTP/1.1"), "another method"),
    (_search(head=b"POST /search HTTP/1.0"), "HTTP/1.0"),
    (_search(extra=b"Connection: close\r\n"), "the client closes after it"),
    (_search(extra=b"X-Forwarded-For: 10.1.2.3\r\n"), "proxy headers uvicorn applies to the scope"),
    (_search(b'{"pad": "%b"}' % (b"y" * MAX_BODY_BYTES)), "a body over the limit (the app's 413)"),
])
def test_anything_but_a_plain_search_reaches_the_app_with_its_body(request_bytes, why):
    transport, answers = _lone_exchange(request_bytes[:100], request_bytes[100:])
    body = request_bytes.partition(b"\r\n\r\n")[2]
    assert answers.calls == [], why
    assert transport.writes[-1].endswith(b'{"received":%d}' % len(body)), why


def test_a_search_the_app_declines_or_fails_is_answered_by_the_app():
    for answers in (LoneAnswers(decline=True), LoneAnswers(fail=True)):
        transport, answers = _lone_exchange(_search(), answers=answers)
        assert len(answers.calls) == 1
        assert transport.writes[-1].endswith(b'{"received":%d}' % len(LONE_BODY))


def test_a_search_waits_for_the_thread_pool_while_other_requests_are_in_flight():
    """Searches that arrive together share the cores (the app's thread pool), not the event loop."""
    state = ServerState()
    state.tasks.add(object())  # another request's task
    transport, answers = _lone_exchange(_search(), server_state=state)
    assert answers.calls == [] and transport.writes[-1].endswith(b'{"received":%d}' % len(LONE_BODY))


class OtherConnection:
    def __init__(self, sock):
        self.transport = RecordingTransport()
        self.transport.get_extra_info = lambda name, default=None: sock if name == "socket" else default


def test_a_search_is_not_answered_alone_while_another_connection_has_bytes_waiting():
    import socket

    waiting, sender = socket.socketpair()
    try:
        state = ServerState()
        state.connections.add(OtherConnection(waiting))
        _, answers = _lone_exchange(_search(), server_state=state)
        assert len(answers.calls) == 1  # the other connection is idle
        sender.sendall(b"POST /search HTTP/1.1\r\n")
        transport, answers = _lone_exchange(_search(), server_state=state)
        assert answers.calls == [] and transport.writes[-1].endswith(b'{"received":%d}' % len(LONE_BODY))
        waiting.close()  # a connection closing: no socket to ask, so the app's pool answers
        transport, answers = _lone_exchange(_search(), server_state=state)
        assert answers.calls == [] and transport.writes[-1].endswith(b'{"received":%d}' % len(LONE_BODY))
    finally:
        waiting.close()
        sender.close()


def test_a_search_whose_body_is_still_arriving_at_shutdown_is_answered_by_the_app():
    request = _search()
    transport, answers = _lone_exchange(request[:-3], before_close=lambda protocol: (
        protocol.shutdown(), protocol.data_received(request[-3:])))
    assert answers.calls == []
    assert transport.writes[-1].endswith(b'{"received":%d}' % len(LONE_BODY))
    assert b"connection: close" in transport.writes[-1] and transport.closed


def test_a_connection_that_has_sent_nothing_yet_closes_at_shutdown():
    transport, answers = _lone_exchange(before_close=lambda protocol: protocol.shutdown())
    assert transport.closed and transport.writes == [] and answers.calls == []


def test_a_request_pipelined_behind_a_lone_search_is_not_timed_out_as_an_idle_connection():
    armed = []
    _lone_exchange(_search() + b"GET /json HTTP/1.1\r\nHo",  # the next request still arriving
                   before_close=lambda protocol: armed.append(protocol.timeout_keep_alive_task))
    assert armed == [None]
