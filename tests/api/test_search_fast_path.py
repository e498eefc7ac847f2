"""POST /search's fast path (api/search_fast_path.py): it answers a plain JSON search of the
served index exactly as the FastAPI route would, and hands everything else to the route with
the request body intact."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from conftest import wait_until
from lakerag.api.search_fast_path import MAX_BODY_BYTES, SearchFastPath

TIMINGS = ("encode_ms", "search_ms", "rerank_ms")
# FastAPI reads any */*+json body as JSON; the fast path takes application/json only, so this
# content type sends the same request through the route.
ROUTE_ONLY = "application/merge-patch+json"


class Downstream:
    """The app behind the fast path: records what reached it and the body it could read."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"route"})


def call(fast_path: SearchFastPath, body: bytes, content_type: bytes = b"application/json", chunk: int = 0,
         path: str = "/search", method: str = "POST") -> tuple[int, bytes]:
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)]
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"",
             "headers": [(b"content-type", content_type)] if content_type else []}
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(fast_path(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def fast_path(served):
    return SearchFastPath(Downstream(), served.state)


def test_a_json_search_is_answered_without_the_route(fast_path):
    status, body = call(fast_path, json.dumps({"query": "hotel cap per night", "k": 2}).encode())
    assert status == 200 and fast_path.app.bodies == []
    answer = json.loads(body)
    assert answer["matched"] and len(answer["hits"]) == 2


@pytest.mark.parametrize("body, content_type, why", [
    (b'{"query": ""}', b"application/json", "fails validation"),
    (b'{"query": "x", "k": 0}', b"application/json", "fails validation"),
    (b'{"query": "x"', b"application/json", "not JSON"),
    (b'[1, 2]', b"application/json", "not an object"),
    (b'{"query": "x\\ud800"}', b"application/json", "a lone surrogate: not text"),
    (b'{"query": "x", "k": NaN}', b"application/json", "not a number"),
    (b'{"query": "x"}', b"text/plain", "another content type"),
    (b'{"query": "x"}', b"", "no content type"),
    (b'{"query": "x"}', ROUTE_ONLY.encode(), "JSON the route decides on"),
    (b'{"query": "x", "as_of": "20990101T000000Z-none"}', b"application/json", "another version"),
    (b"", b"application/json", "no body"),
])
def test_anything_else_reaches_the_route_with_its_body(fast_path, body, content_type, why):
    assert call(fast_path, body, content_type) == (299, b"route"), why
    assert fast_path.app.bodies == [body]


def test_a_body_in_pieces_is_read_whole_and_a_large_one_goes_to_the_route(fast_path):
    body = json.dumps({"query": "hotel cap per night", "k": 1}).encode()
    assert call(fast_path, body, chunk=7)[0] == 200
    large = json.dumps({"query": "x", "pad": "y" * MAX_BODY_BYTES}).encode()
    assert call(fast_path, large, chunk=4096) == (299, b"route")
    assert fast_path.app.bodies == [large]  # what was read, then the rest


def test_other_routes_and_methods_are_not_touched(fast_path):
    body = json.dumps({"query": "x"}).encode()
    assert call(fast_path, body, path="/answer")[0] == 299
    assert call(fast_path, body, path="/search/")[0] == 299
    assert call(fast_path, body, method="PUT")[0] == 299


def test_a_search_before_the_model_or_the_index_is_loaded_reaches_the_route(fast_path):
    state = fast_path.state
    body = json.dumps({"query": "x"}).encode()
    embedder, state.embedder = state.embedder, None
    try:
        assert call(fast_path, body)[0] == 299
    finally:
        state.embedder = embedder
    watcher, state.watcher = state.watcher, None  # no index served
    try:
        assert call(fast_path, body)[0] == 299
    finally:
        state.watcher = watcher


@pytest.mark.parametrize("request_body", [
    {"query": "What is the hotel cap per night?", "k": 3, "mode": "dense"},
    {"query": "incident bridge phone number", "k": 5, "mode": "hybrid"},
    {"query": "retention of personal data", "mode": "lexical", "source_prefix": "raw/data-"},
    {"query": "Who won the football world cup in 2018?"},  # no match
    {"query": "retention", "as_of": "20260101T000000Z-samples1"},  # the served version, by name
])
def test_over_http_the_fast_path_answers_as_the_route_does(served, request_body):
    fast = served.client.post("/search", json=request_body)
    route = served.client.post("/search", content=json.dumps(request_body), headers={"content-type": ROUTE_ONLY})
    assert fast.status_code == route.status_code == 200
    assert fast.headers["content-type"] == route.headers["content-type"]
    fast_body, route_body = fast.json(), route.json()
    for key in TIMINGS:
        fast_body.pop(key), route_body.pop(key)
    assert fast_body == route_body


@pytest.mark.parametrize("request_body", [
    {"query": "hotel cap per night", "k": 4, "mode": "hybrid"},
    {"query": "retention of personal data", "mode": "lexical"},
    {"query": "hotel cap per night", "k": 3, "mode": "dense"},
])
def test_rows_spliced_from_chunks_hits_answer_exactly_as_rows_read_from_sqlite(served, monkeypatch, request_body):
    """A version's hits come from its ready JSON rows (chunks.hits); a version written before
    that file is read from chunks.sqlite. Both must send the same bytes up to the timings."""
    index = served.state.index
    assert index.hit_rows is not None
    spliced = served.client.post("/search", json=request_body).content
    monkeypatch.setattr(served.state.watcher, "current", dataclasses.replace(index, hit_rows=None))
    read = served.client.post("/search", json=request_body).content
    before_timings = spliced.index(b',"encode_ms"')
    assert json.loads(spliced)["hits"] and spliced[:before_timings] == read[:read.index(b',"encode_ms"')]


def test_fast_path_searches_are_counted_under_the_search_route(served):
    served.client.post("/search", json={"query": "hotel cap per night"})
    metrics = served.client.get("/metrics").text
    assert 'lakerag_http_requests_total{method="POST",route="/search",status="200"} 1.0' in metrics


@pytest.mark.parametrize("request_body", [
    {"query": "hotel cap per night", "k": 4, "mode": "hybrid"},
    {"query": "retention of personal data", "mode": "lexical"},
    {"query": "Who won the football world cup in 2018?", "mode": "dense"},
])
def test_answers_are_search_responses_with_every_field(served, request_body):
    """The route sends JSON it builds field by field (no validation on the hot path): it must
    stay exactly a SearchResponse."""
    from lakerag.api.schemas import SearchResponse

    body = served.client.post("/search", json=request_body).json()
    assert list(body) == list(SearchResponse.model_fields)
    assert SearchResponse.model_validate(body).model_dump(mode="json") == body


def test_the_app_answers_json_searches_on_the_fast_path(served):
    from fastapi import HTTPException
    from lakerag.api.deps import get_state

    async def route_taken():
        raise HTTPException(418, detail="the route answered")

    served.app.dependency_overrides[get_state] = route_taken
    try:
        request = {"query": "hotel cap per night", "k": 2}
        assert served.client.post("/search", json=request).status_code == 200
        route = served.client.post("/search", content=json.dumps(request), headers={"content-type": ROUTE_ONLY})
        assert route.status_code == 418
    finally:
        served.app.dependency_overrides.clear()


def test_over_http_a_lone_search_is_answered_before_the_app(served, monkeypatch):
    """A lone search never reaches the ASGI app (api/http_protocol.py); one with a query string does."""

    async def app_reached(self, scope, receive, send):
        raise RuntimeError("the ASGI app was reached")

    monkeypatch.setattr(SearchFastPath, "__call__", app_reached)
    request = {"query": "hotel cap per night", "k": 2}
    answer = served.client.post("/search", json=request)
    assert answer.status_code == 200 and len(answer.json()["hits"]) == 2
    assert answer.headers["content-type"] == "application/json" and "date" in answer.headers
    assert served.client.post("/search?via=app", json=request).status_code == 500


def test_a_lone_search_records_its_metrics_and_access_line_once_sent(served):
    import logging

    from lakerag.api.search_fast_path import answer_alone

    metrics = served.state.metrics.registry.get_sample_value
    encodes = metrics("lakerag_search_encode_seconds_count")
    requests = metrics("lakerag_http_requests_total", {"route": "/search", "method": "POST", "status": "200"}) or 0
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        content, sent = answer_alone(served.state, ("10.0.0.9", 4000), [(b"content-type", b"application/json")],
                                     json.dumps({"query": "hotel cap per night", "k": 1}).encode())
        assert len(json.loads(content)["hits"]) == 1
        assert metrics("lakerag_search_encode_seconds_count") == encodes  # not before the response is sent
        served.state.on_loop(0.0, sent)  # as the API's protocol calls it: on the event loop, once sent
        assert wait_until(lambda: lines, timeout=10)  # written by the loop, in its next batch
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert metrics("lakerag_search_encode_seconds_count") == encodes + 1
    assert metrics("lakerag_http_requests_total", {"route": "/search", "method": "POST", "status": "200"}) == \
        requests + 1
    assert lines == ['10.0.0.9:4000 - "POST /search HTTP/1.1" 200']
