"""bench/search.py's raw-socket HTTP client: what it reads is what the server sent."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("bench_search", Path(__file__).parents[2] / "bench" / "search.py")
bench_search = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_search)


def serve_once(responses: list[list[bytes | float]]) -> int:
    """A server that answers each request on one connection with the next response, sent in the given
    pieces (a number: seconds to wait before the next piece)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run():
        connection, _ = listener.accept()
        with connection, listener:
            for pieces in responses:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += connection.recv(65536)
                assert json.loads(body) == {"query": "q"}
                for piece in pieces:
                    if isinstance(piece, float):
                        time.sleep(piece)
                    else:
                        connection.sendall(piece)

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.timeout(30)
def test_status_and_body_are_read_whatever_the_header_case_order_and_packet_split():
    body = json.dumps({"hits": ["x" * 5000]}).encode()
    last_header = b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\nContent-Length: %d\r\n\r\n" % len(body)
    first_header = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n"
    port = serve_once([[last_header + body[:10], body[10:]],      # body arrives in two pieces
                       [first_header[:20], first_header[20:] + b"{}"]])  # the head itself split
    client = bench_search.HttpClient("127.0.0.1", port)
    try:
        status, data, seconds = client.post_json("/search", {"query": "q"})
        assert (status, data) == (200, body) and 0 < seconds < 30
        status, data, seconds = client.post_json("/search", {"query": "q"})
        assert (status, data) == (422, b"{}") and 0 < seconds < 30
    finally:
        client.close()


@pytest.mark.timeout(30)
def test_an_exchange_is_timed_until_the_response_s_last_byte():
    body = b'{"hits": []}'
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
    port = serve_once([[head + body[:3], 0.3, body[3:]]])
    client = bench_search.HttpClient("127.0.0.1", port)
    try:
        status, data, seconds = client.post_json("/search", {"query": "q"})
    finally:
        client.close()
    assert (status, data) == (200, body)
    assert 0.3 <= seconds < 10  # not stopped at the first piece
