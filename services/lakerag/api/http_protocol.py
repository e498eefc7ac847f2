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
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
