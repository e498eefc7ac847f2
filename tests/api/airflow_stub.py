"""A local stand-in for the three calls of Airflow 3's REST API the pipeline trigger makes.

It answers as Airflow's SimpleAuthManager and public API do (POST /auth/token -> 201
{"access_token"}; GET /api/v2/assets -> {"assets": [...]}; POST /api/v2/assets/events ->
the event) and refuses what Airflow refuses: no or stale bearer token (401), an unknown
asset id (404), a body with other fields than CreateAssetEventsBody's (422). The body
check against Airflow's own model runs in tests/airflow (this venv has no Airflow).
``mode``: ``ok``, ``down`` (503 on every call), ``slow`` (events answered after ``delay``).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

from json_http import send_json

ASSET_ID = 7
EVENT_FIELDS = {"asset_id", "partition_key", "extra", "access_control"}


class AirflowStub:
    def __init__(self, asset_uri: str = "x-lakerag://raw", username: str = "lakerag-trigger",
                 password: str = "s3cret"):
        self.mode = "ok"
        self.delay = 0.5
        self.asset_uri, self.username, self.password = asset_uri, username, password
        self.logins = 0
        self.tokens: set[str] = set()
        self.events: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

            def _authorised(self) -> bool:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if token in stub.tokens:
                    return True
                self._send(401, {"detail": "Invalid JWT token"})
                return False

            def do_GET(self):
                url = urlsplit(self.path)
                stub.requests.append(("GET", url.path))
                if stub.mode == "down":
                    return self._send(503, {"detail": "unavailable"})
                if url.path != "/api/v2/assets":
                    return self._send(404, {"detail": "Not Found"})
                if not self._authorised():
                    return None
                pattern = parse_qs(url.query).get("uri_pattern", [""])[0]
                assets = [{"id": ASSET_ID, "uri": stub.asset_uri, "name": "lakerag_raw"},
                          {"id": ASSET_ID + 1, "uri": stub.asset_uri + "-archive", "name": "other"}]
                matching = [a for a in assets if pattern in a["uri"]]
                return self._send(200, {"assets": matching, "total_entries": len(matching)})

            def do_POST(self):
                path = urlsplit(self.path).path
                stub.requests.append(("POST", path))
                body = self._body()
                if stub.mode == "down":
                    return self._send(503, {"detail": "unavailable"})
                if path == "/auth/token":
                    if (body.get("username"), body.get("password")) != (stub.username, stub.password):
                        return self._send(401, {"detail": "Invalid credentials"})
                    stub.logins += 1
                    token = f"jwt-{stub.logins}"
                    stub.tokens.add(token)
                    return self._send(201, {"access_token": token})
                if path != "/api/v2/assets/events":
                    return self._send(404, {"detail": "Not Found"})
                if not self._authorised():
                    return None
                if set(body) - EVENT_FIELDS or not isinstance(body.get("asset_id"), int) \
                        or not isinstance(body.get("extra", {}), dict):
                    return self._send(422, {"detail": f"bad body {body}"})
                if body["asset_id"] != ASSET_ID:
                    return self._send(404, {"detail": f"Asset with ID: `{body['asset_id']}` was not found"})
                if stub.mode == "slow":
                    time.sleep(stub.delay)
                stub.events.append(body)
                return self._send(200, {"id": len(stub.events), "asset_id": ASSET_ID, "uri": stub.asset_uri,
                                        "extra": {**body.get("extra", {}), "from_rest_api": True}})

            def _send(self, status: int, payload: dict) -> None:
                send_json(self, status, payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def wait_for_events(self, count: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events

    def __enter__(self) -> Self:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
