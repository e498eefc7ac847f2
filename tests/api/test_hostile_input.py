"""Hostile bodies and names get a documented 4xx, never a 5xx, and never reach an object key."""

from __future__ import annotations

import pytest
from conftest import wait_until
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
    (b"[" * 30_000 + b"]" * 30_000, 400),  # nested deeper than any parser should follow (within the size limit)
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


@pytest.mark.parametrize("cut_at", [b"half", b"\r\n--lakeragboundary--"])
def test_a_body_cut_short_inside_the_file_stores_nothing(local_settings, start_api, cut_at):
    """A proxy or client that stops sending mid-file, with a Content-Length that matches what it sent."""
    body, headers = _multipart(b"cut.txt", b"the first half of a report, " * 100 + b"half and the rest")
    with start_api(local_settings) as api:
        response = api.client.post("/documents", content=body[:body.index(cut_at)], headers=headers)
        assert response.status_code == 400, response.text
        assert "cut short" in response.json()["detail"]
        assert list(open_store(local_settings.store_uri).list("")) == []
        whole = api.client.post("/documents", content=body, headers=headers)
        assert whole.status_code == 201, whole.text
        cut_again = api.client.post("/documents", content=body[:body.index(cut_at)], headers=headers)
        assert cut_again.status_code == 400, cut_again.text
        assert open_store(local_settings.store_uri).get(whole.json()["key"]).endswith(b"half and the rest")


def _send_and_count(url: str, head: bytes, total: int) -> tuple[int, bytes]:
    """Send ``head`` then zeros until the server answers or closes; (bytes sent, first response bytes)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        block = b"\0" * 65536
        answer = b""
        while sent < total:
            try:
                answer = sock.recv(4096)
                if answer:
                    break
            except TimeoutError:
                pass
            try:
                sock.settimeout(5)
                sent += sock.send(block)
                sock.settimeout(0.05)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
        if not answer:
            sock.settimeout(10)
            try:
                answer = sock.recv(4096)
            except OSError:
                pass
    return sent, answer


@pytest.mark.parametrize("headers,status", [
    (b"", b"401"),  # no key
    (b"X-API-Key: wrong\r\n", b"403"),
    (b"X-API-Key: s3cret\r\n", b"413"),  # declared length over the limit
])
def test_auth_and_declared_size_are_checked_before_the_body_is_read(local_settings, start_api, headers, status):
    total = 200 * 1024 * 1024
    with start_api(local_settings, api_key="s3cret", max_upload_bytes=1_000_000) as api:
        head = (b"POST /documents HTTP/1.1\r\nHost: x\r\n" + headers +
                b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: " + str(total).encode() +
                b"\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\r\n")
        sent, answer = _send_and_count(api.url, head, total)
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert sent < 16 * 1024 * 1024, sent  # the server answered long before 200 MB went in
        assert list(open_store(local_settings.store_uri).list("")) == []


def test_undeclared_length_is_limited_while_streaming(local_settings, start_api):
    import httpx

    def chunks():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\r\n"
        for _ in range(40):
            yield b"y" * 65536
        yield b"\r\n--b--\r\n"

    with start_api(local_settings, api_key="s3cret", max_upload_bytes=1_000_000) as api:
        response = httpx.post(api.url + "/documents", content=chunks(), timeout=30,
                              headers={"X-API-Key": "s3cret", "Content-Type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413, response.text
        assert list(open_store(local_settings.store_uri).list("")) == []  # the partial file was removed
        stray = [p for p in (open_store(local_settings.store_uri).root).rglob("*") if p.is_file()]
        assert stray == []


def test_streamed_upload_lands_whole_on_s3_in_parts(s3_settings, start_api):
    from lakerag.store import S3_PART_BYTES

    data = bytes(range(256)) * (S3_PART_BYTES * 2 // 256 + 1000)  # three parts, the last one short
    with start_api(s3_settings, max_upload_bytes=len(data)) as api:
        response = api.client.post("/documents", files={"file": ("parts.txt", data)})
        assert response.status_code == 201, response.text
        assert response.json()["size"] == len(data)
    store = open_store(s3_settings.store_uri, s3_settings.aws_endpoint_url, s3_settings.aws_region)
    assert store.get("raw/parts.txt") == data


def test_published_files_are_group_readable(local_settings):
    import stat

    store = open_store(local_settings.store_uri)
    store.put("index/CURRENT", b"v1")
    writer = store.writer("raw/a.txt")
    writer.write(b"abc")
    writer.commit()
    for key in ("index/CURRENT", "raw/a.txt"):
        mode = (store.root / key).stat().st_mode
        assert mode & stat.S_IRGRP, oct(mode)


@pytest.mark.parametrize("path,body", [
    ("/search", b'{"query": "x", "k": 1e400}'),  # valid JSON: a number no float holds
    ("/answer", b'{"question": "hello", "k": NaN}'),
    ("/answer", b'{"query": "x", "k": 1e400}'),  # "missing field" echoes the whole body
    ("/summarize", b'{"doc_id": "d", "k": -Infinity}'),
])
def test_numbers_json_cannot_hold_are_422_not_500(served, path, body):
    response = served.client.post(path, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert "k" in str(response.json()["detail"])


@pytest.mark.parametrize("path,field", [("/search", "query"), ("/answer", "question"), ("/summarize", "query")])
def test_a_body_far_over_any_valid_one_is_413_before_it_is_read_whole(served, path, field):
    """Queries are at most 2000 characters: a 5 MB body is refused, declared or streamed, with the limit named."""
    import httpx

    big = b'{"' + field.encode() + b'": "hello", "pad": "' + b"y" * 5_000_000 + b'"}'
    declared = served.client.post(path, content=big, headers=JSON)
    assert declared.status_code == 413, declared.text[:300]
    assert "65536 bytes" in declared.json()["detail"]
    assert "413" in served.client.get("/openapi.json").json()["paths"][path]["post"]["responses"]

    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    streamed = httpx.post(served.url + path, content=chunks(), headers=JSON, timeout=30)
    assert streamed.status_code == 413, streamed.text[:300]
    assert served.client.post(path, json={field: "hello"}).status_code != 413


def test_json_sent_as_a_form_says_which_content_type_to_use(served):
    # curl -d's default: application/x-www-form-urlencoded
    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {"content-type": "text/plain"}):
        response = served.client.post("/search", content=b'{"query": "hello"}', headers=headers)
        assert response.status_code == 422, response.text
        assert "Content-Type: application/json" in response.text, response.text


@pytest.mark.parametrize("path,body,field,takes", [
    ("/search", {"query": "travel approvals", "top_k": 1}, "top_k", "query, k, doc_id, source_prefix, mode, as_of"),
    ("/search", {"query": "travel approvals", "mdoe": "lexical"}, "mdoe", "mode"),
    ("/answer", {"question": "who approves travel?", "asOf": "20260101T000000Z-0a1b2c3d"}, "asOf", "as_of"),
    ("/summarize", {"query": "travel", "document_id": "abc"}, "document_id", "doc_id"),
])
def test_an_unknown_field_is_refused_naming_the_fields_the_request_takes(served, path, body, field, takes):
    """A typo of an optional field used to be ignored: the default k, the default mode, the served
    index version instead of as_of's, every document instead of one, and a 200 that looked right."""
    response = served.client.post(path, json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field] and error["type"] == "extra_forbidden"
    assert error["msg"].startswith(f"unknown field {field!r}: this request takes ") and takes in error["msg"]
    schema = served.client.get("/openapi.json").json()["components"]["schemas"]
    assert schema[path.strip("/").capitalize() + "Request"]["additionalProperties"] is False


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/documents", "/index", "/"])
def test_head_answers_wherever_get_does(served, path):
    get, head = served.client.get(path), served.client.head(path)
    assert get.status_code == 200, get.text[:200]
    assert head.status_code == 200, head.headers
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    allowed = {m.strip() for m in served.client.options(path).headers["allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed
    # Both are counted under the route they asked about, not as "unmatched". A request is counted once
    # its handler returns, which can be after the client has the response: "/" (a FileResponse) closes
    # its file in a worker thread first, and on a loaded machine the next requests overtake that.
    wanted = [f'lakerag_http_requests_total{{method="{method}",route="{path}",status="{status}"}}'
              for method, status in (("HEAD", 200), ("OPTIONS", 204))]
    wait_until(lambda: all(sample in served.client.get("/metrics").text for sample in wanted), timeout=10)
    metrics = served.client.get("/metrics").text
    for sample in wanted:
        assert sample in metrics, sample


def test_a_name_over_255_bytes_is_cut_to_fit_the_store(local_settings, start_api):
    """150 CJK characters are 450 UTF-8 bytes: more than a file name may hold on the local store."""
    name = "日" * 150 + ".txt"
    with start_api(local_settings) as api:
        body, headers = _multipart(name.encode())
        response = api.client.post("/documents", content=body, headers=headers)
        assert response.status_code == 201, response.text
        key = response.json()["key"]
        assert key.endswith(".txt") and len(key.removeprefix("raw/").encode()) <= 200
        assert [o.key for o in open_store(local_settings.store_uri).list("")] == [key]
