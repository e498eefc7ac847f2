"""uvicorn's HTTP/1.1 protocol, with each response's header block and body sent together.

uvicorn writes the header block on ``http.response.start`` and the body on
``http.response.body``: two sends, so the client wakes for the headers, finds no
body and sleeps again. On a 2-vCPU VM each extra send + wake-up cost ~0.2 ms of a
~12 ms search (bench/search.py). Here the transport holds one write back until the
next write, the end of the response or the next turn of the event loop, whichever
comes first, and sends the two as one.

uvicorn also writes each request's access line before the response; here it does
not, and the app's request middleware has the same line written after the response
(``api.access_log``).

A lone search (``protocol_for``): a POST /search that arrives while no other request is
in flight and no other connection has bytes waiting is answered here, from the
parser's callbacks, by the app's ``answer_alone``: no ASGI task, scope, middleware
chain or response messages. On a 2-vCPU VM those cost ~0.15 ms of a ~9 ms search,
run on the caches the previous FAISS scan flushed (bench/search.py). Anything else,
or whatever ``answer_alone`` declines, goes to the app as uvicorn would pass it,
replayed from the same parser callbacks.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .protocol import MAX_BODY_BYTES

# (client, headers, body) -> (JSON body, called once it is sent) or None: the app answers instead.
LoneSearch = Callable[[tuple[str, int] | None, list[tuple[bytes, bytes]], bytes],
                      tuple[bytes, Callable[[], None]] | None]
# Beyond this many other connections, checking them costs more than the lone path saves.
MAX_CONNECTIONS_CHECKED = 32


class _CoalescingTransport:
    """A transport that holds back at most one write (see module docstring)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)  # a lone write (e.g. "100 Continue") still leaves promptly
        else:
            held, self._held = self._held, None
            self._transport.write(held + data)

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def write_whole(self, response: bytes) -> None:
        """A whole response, sent now (nothing to coalesce it with)."""
        self.flush()
        self._transport.write(response)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):  # everything else: the real transport
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # No access line before the response: RequestMetricsMiddleware queues it after (api/access_log.py).
        self.access_log = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))

    def on_response_complete(self) -> None:
        self.transport.flush()  # e.g. a HEAD response: headers only
        super().on_response_complete()


def protocol_for(path: str, answer_alone: LoneSearch) -> type[CoalescingHttpToolsProtocol]:
    """The API's protocol class (uvicorn's ``http`` setting): a lone POST to ``path`` is answered
    by ``answer_alone``."""
    return type("LakeRAGHttpProtocol", (LoneSearchProtocol,),
                {"lone_path": path.encode("ascii"), "answer_alone": staticmethod(answer_alone)})


class LoneSearchProtocol(CoalescingHttpToolsProtocol):
    lone_path: bytes
    answer_alone: LoneSearch
    held: bytearray | None = None  # a lone search's body so far, while it is held back

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.held = None
        # A lone search's response arms the keep-alive timeout from inside the parser; a request
        # pipelined behind it is no idle connection (uvicorn disarms it only as bytes arrive).
        self._unset_keepalive_if_required()

    def on_headers_complete(self) -> None:
        if self._may_be_alone():
            self.held = bytearray()
        else:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.held is None:
            super().on_body(body)
            return
        self.held += body
        if len(self.held) > MAX_BODY_BYTES:  # the app's 413
            self._pass_on(final=False)

    def on_message_complete(self) -> None:
        if self.held is None:
            super().on_message_complete()
            return
        if self.tasks or self._others_waiting():  # not alone: the app shares the cores (api/cpu.py)
            self._pass_on(final=True)
            return
        try:
            answered = self.answer_alone(self.client, self.headers, bytes(self.held))
        except Exception:  # noqa: BLE001 - the app answers it and logs the failure, as any request's
            answered = None
        if answered is None:
            self._pass_on(final=True)
            return
        self.held = None
        body, sent = answered
        head = [STATUS_LINE[200]]
        for name, value in self.server_state.default_headers:  # e.g. date, as uvicorn sends
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\ncontent-type: application/json\r\n\r\n" % len(body))
        self.transport.write_whole(b"".join(head) + body)
        sent()
        self.on_response_complete()

    def shutdown(self) -> None:
        if self.held is not None:  # a body still arriving: the app answers it before the connection closes
            self._pass_on(final=False)
        super().shutdown()

    def _may_be_alone(self) -> bool:
        """A keep-alive HTTP/1.1 POST to ``lone_path`` the app would see exactly as sent: no query, no root
        path, no 100-continue, no proxy headers to apply, no response of this connection pending."""
        parser = self.parser
        return (self.url == self.lone_path and parser.get_method() == b"POST" and not self.root_path
                and parser.get_http_version() == "1.1" and parser.should_keep_alive()
                and not parser.should_upgrade() and not self.expect_100_continue
                and self.limit_concurrency is None and not self.pipeline
                and (self.cycle is None or self.cycle.response_complete)
                and not any(name.startswith(b"x-forwarded-") for name, _ in self.headers))

    def _others_waiting(self) -> bool:
        """Whether another connection has bytes the event loop has not read yet."""
        others = [connection for connection in self.connections if connection is not self]
        if not others:
            return False
        if len(others) > MAX_CONNECTIONS_CHECKED:
            return True
        poller = select.poll()
        try:
            for connection in others:
                poller.register(connection.transport.get_extra_info("socket"), select.POLLIN)
        except (ValueError, TypeError):  # a connection closing (no socket, or fd -1): don't wait on it
            return True
        return bool(poller.poll(0))

    def _pass_on(self, final: bool) -> None:
        """Give the held request to the app, as uvicorn's callbacks would have."""
        held, self.held = bytes(self.held), None
        super().on_headers_complete()
        if held:
            super().on_body(held)
        if final:
            super().on_message_complete()
