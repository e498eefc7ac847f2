"""A local stand-in for Gemini's REST endpoint (``POST /v1beta/models/{model}:generateContent``).

The real ``google-genai`` client talks to it through ``LAKERAG_GEMINI_BASE_URL``;
only the transport's far end is fake. ``mode`` picks the behaviour: ``ok``
(an answer citing [1]), ``error`` (a Google-style 503 body), ``rate_limited`` (429), ``slow`` (answers
after ``delay`` seconds, past the client's timeout), ``empty`` (no candidates).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from json_http import send_json


class GeminiStub:
    def __init__(self):
        self.mode = "ok"
        self.text = "According to the sources, the answer is in the first passage [1]."  # what "ok" answers
        self.delay = 5.0
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append({"path": self.path, "api_key": self.headers.get("x-goog-api-key"),
                                      "body": body})
                if stub.mode == "slow":
                    time.sleep(stub.delay)
                if stub.mode == "error":
                    self._send(503, {"error": {"code": 503, "message": "The model is overloaded. Please try "
                                                                       "again later.", "status": "UNAVAILABLE"}})
                    return
                if stub.mode == "rate_limited":
                    self._send(429, {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check "
                                                                       "quota).", "status": "RESOURCE_EXHAUSTED"}})
                    return
                if stub.mode == "empty":
                    self._send(200, {"candidates": [{"finishReason": "SAFETY", "content": {"parts": []}}]})
                    return
                self._send(200, {
                    "candidates": [{"content": {"role": "model", "parts": [
                        {"text": stub.text}]},
                        "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 12, "totalTokenCount": 112},
                    "modelVersion": "stub"})

            def _send(self, status: int, payload: dict) -> None:
                try:
                    send_json(self, status, payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
