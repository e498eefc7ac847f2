"""Hostile bodies and names get a documented 4xx, never a 5xx, and never reach an object key."""

from __future__ import annotations

import pytest
from lakerag.store import open_store

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("path,body", [
    ("/search", b'{"query": "\\ud800"}'),
    ("/search", b'{"query": "ok", "doc_id": "\\udfff"}'),
    ("/answer", b'{"question": "\\ud800 and more"}'),
    ("/summarize", b'{"doc_id": "\\ud800"}'),
    ("/summarize", b'{"query": "\\udbff"}'),
])
def test_lone_surrogates_are_422_not_500(served, path, body):
    response = served.client.post(path, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert "UTF-8" in response.text or "unicode" in response.text


@pytest.mark.parametrize("body,status", [
    (b'{"query": "\xff\xfe caf\xe9"}', 400),  # not UTF-8
    (b"[" * 50_000 + b"]" * 50_000, 400),  # nested deeper than any parser should follow
    (b'{"query": "x"', 422),  # truncated: a JSON syntax error, reported field by field
])
def test_unparseable_bodies_get_a_documented_400(served, body, status):
    response = served.client.post("/search", content=body, headers=JSON)
    assert response.status_code == status, response.text
    assert "JSON" in response.text
    documented = served.client.get("/openapi.json").json()["paths"]["/search"]["post"]["responses"]
    assert str(status) in documented


@pytest.mark.parametrize("query", ["   ", "\t\n\r", "\x00\x01\x02", " \u200b\u2028 ", "\x7f\x1b"])
def test_blank_or_control_character_queries_are_422(served, query):
    for path, field in (("/search", "query"), ("/answer", "question"), ("/summarize", "query")):
        response = served.client.post(path, json={field: query})
        assert response.status_code == 422, (path, query, response.text)
        assert "no words" in response.text


def test_summarize_empty_fields_are_rejected_as_the_schema_says(served):
    schema = served.client.get("/openapi.json").json()["components"]["schemas"]["SummarizeRequest"]
    for field in ("doc_id", "query"):
        variants = schema["properties"][field].get("anyOf", [schema["properties"][field]])
        assert any(v.get("minLength") == 1 for v in variants), schema["properties"][field]
    for body in ({"doc_id": "", "query": ""}, {"doc_id": ""}, {"query": ""}, {"doc_id": "", "query": "x"}):
        assert served.client.post("/summarize", json=body).status_code == 422, body


@pytest.mark.parametrize("path,methods", [("/search", {"POST"}), ("/documents", {"GET", "POST"}),
                                          ("/documents/abc", {"DELETE"}), ("/index", {"GET"}),
                                          ("/admin/reload", {"POST"})])
def test_options_lists_every_method_of_a_path(served, path, methods):
    response = served.client.options(path)
    assert response.status_code == 204, response.text
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed >= methods | {"OPTIONS"}, allowed
    wrong = served.client.put(path)
    assert wrong.status_code == 405
    assert {m.strip() for m in wrong.headers["allow"].split(",")} >= methods


def _multipart(filename: bytes, data: bytes = b"plain words here") -> tuple[bytes, dict]:
    boundary = b"lakeragboundary"
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename +
            b"\"\r\nContent-Type: text/plain\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n")
    return body, {"content-type": "multipart/form-data; boundary=lakeragboundary"}


@pytest.mark.parametrize("raw_name", [b'\\"ok.txt', b"a\\\"b'c.txt", b"%22q%22.txt", b"x%0D%0Ay.md", b"t\tab.txt"])
def test_quotes_and_line_breaks_never_reach_a_key(local_settings, start_api, raw_name):
    with start_api(local_settings) as api:
        body, headers = _multipart(raw_name)
        response = api.client.post("/documents", content=body, headers=headers)
        assert response.status_code in (201, 400), response.text
        keys = [o.key for o in open_store(local_settings.store_uri).list("")]
        for key in keys:
            assert not set(key) & set("\"'\r\n\t`"), keys
        if response.status_code == 201:
            assert keys == [response.json()["key"]]
