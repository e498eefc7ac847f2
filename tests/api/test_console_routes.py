"""The console, /docs and /redoc are served by the API itself (offline, same origin); the raw
file route behind citations; the pipeline's last run per stage at /pipeline and in /metrics."""

from __future__ import annotations

import re

import pytest
from lakerag.lake import Lake, doc_id_for


def local_asset_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)\s*[=:]\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
    return urls


def test_console_page_and_its_assets_come_from_the_api(served):
    page = served.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp  # the browser refuses any CDN
    urls = local_asset_urls(page.text)
    assert "static/console/console.js" in urls and "static/console/console.css" in urls
    for url in urls:
        if url.startswith("#"):
            continue
        assert not url.startswith(("http:", "https:", "//")), url
        assert served.client.get("/" + url).status_code == 200, url


def test_docs_and_redoc_load_only_local_assets(served):
    for path, needed in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        page = served.client.get(path)
        assert page.status_code == 200, path
        assert "cdn.jsdelivr" not in page.text and "fonts.googleapis" not in page.text, path
        scripts = re.findall(r"""<script src=["']([^"']+)""", page.text)
        styles = re.findall(r"""<link[^>]+href=["']([^"']+)""", page.text)
        for name in needed:
            [url] = [u for u in scripts + styles if u.endswith(name)]
            assert url.startswith("/static/docs/"), url
            asset = served.client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 50_000, url
    assert served.client.get("/openapi.json").json()["info"]["title"] == "LakeRAG"


@pytest.mark.parametrize("store", ["local_settings", "s3_settings"])
def test_document_content_serves_the_raw_file_sandboxed(store, request, start_api):
    with start_api(request.getfixturevalue(store)) as api:
        html = b"<html><body><script>alert(1)</script><p>hi</p></body></html>"
        assert api.client.post("/documents", files={"file": ("page.html", html)}).status_code == 201
        response = api.client.get(f"/documents/{doc_id_for('raw/page.html')}/content")
        assert response.status_code == 200 and response.content == html
        # Its size up front (was chunked, no length): a browser shows the download's progress and size.
        assert response.headers["content-length"] == str(len(html))
        assert "transfer-encoding" not in response.headers
        assert response.headers["content-security-policy"] == "sandbox"  # no script in the API's origin
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-content-type-options"] == "nosniff"
        missing = api.client.get("/documents/0123456789abcdef/content")
        assert missing.status_code == 404 and "GET /documents" in missing.json()["detail"]


@pytest.mark.parametrize("store", ["local_settings", "s3_settings"])
def test_document_content_serves_byte_ranges(store, request, start_api):
    """A browser's PDF viewer asks for the pages it shows as byte ranges, and `curl -C -` resumes a
    download with one: both got the whole file again, as no Range was honoured."""
    data = bytes(range(256)) * 40  # 10,240 bytes
    with start_api(request.getfixturevalue(store)) as api:
        assert api.client.post("/documents", files={"file": ("scan.pdf", data)}).status_code == 201
        url = f"/documents/{doc_id_for('raw/scan.pdf')}/content"
        whole = api.client.get(url)
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        for asked, first, last in (("bytes=100-199", 100, 199), ("bytes=10000-", 10000, 10239),
                                   ("bytes=-40", 10200, 10239), ("bytes=10200-99999", 10200, 10239)):
            part = api.client.get(url, headers={"Range": asked})
            assert part.status_code == 206, (asked, part.status_code)
            assert part.content == data[first:last + 1], asked
            assert part.headers["content-range"] == f"bytes {first}-{last}/10240", asked
            assert part.headers["content-length"] == str(last - first + 1), asked
            assert part.headers["content-security-policy"] == "sandbox"
        beyond = api.client.get(url, headers={"Range": "bytes=10240-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10240"
        # What the server may ignore, it does: the whole file, as before.
        for ignored in ({"Range": "bytes=0-1,5-6"}, {"Range": "pages=1"}, {"Range": "bytes=9-2"},
                        {"Range": "bytes=0-9", "If-Range": '"an-old-etag"'}):
            full = api.client.get(url, headers=ignored)
            assert full.status_code == 200 and full.content == data, ignored


def gauge(text: str, name: str, stage: str) -> float | None:
    match = re.search(rf'^{name}{{stage="{stage}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_pipeline_summaries_become_gauges_and_the_last_success_survives_a_failure(local_settings, start_api):
    lake = Lake.open(local_settings)
    lake.write_run_summary("etl", {"title": "etl", "ok": True, "files": {"quarantined": 2}})
    lake.write_run_summary("embed", {"title": "pipeline embed", "ok": True})
    first_success = lake.read_run_summary("embed")["last_success_at"]
    lake.write_run_summary("embed", {"title": "pipeline embed", "ok": False, "error": "RuntimeError: boom"})
    embed = lake.read_run_summary("embed")
    assert embed["last_success_at"] == first_success and embed["finished_at"] >= first_success

    with start_api(local_settings) as api:
        status = api.client.get("/pipeline").json()
        assert status["readable"] and not status["healthy"] and status["quarantined"] == 2
        stages = {s["stage"]: s for s in status["stages"]}
        assert stages["etl"]["ok"] and not stages["embed"]["ok"] and stages["embed"]["error"] == "RuntimeError: boom"
        assert stages["index"] == {"stage": "index", "ran": False}
        text = api.client.get("/metrics").text
    assert "lakerag_pipeline_status_readable 1.0" in text
    assert gauge(text, "lakerag_pipeline_stage_healthy", "etl") == 1.0
    assert gauge(text, "lakerag_pipeline_stage_healthy", "embed") == 0.0
    assert gauge(text, "lakerag_pipeline_stage_healthy", "index") is None  # never ran: no series
    assert gauge(text, "lakerag_pipeline_quarantined_files", "etl") == 2.0
    assert gauge(text, "lakerag_pipeline_last_success_timestamp_seconds", "embed") <= \
        gauge(text, "lakerag_pipeline_last_run_timestamp_seconds", "embed")
    assert gauge(text, "lakerag_pipeline_last_success_timestamp_seconds", "etl") > 1.7e9


def test_the_api_and_the_cli_give_one_verdict_on_quarantined_files(local_settings, start_api):
    """GET /pipeline said healthy where `lakerag pipeline status` said unhealthy and exited 1."""
    from lakerag.pipeline import status

    lake = Lake.open(local_settings)
    for stage in ("etl", "embed", "index"):
        lake.write_run_summary(stage, {"title": stage, "ok": True, "files": {"quarantined": 4} if stage == "etl" else {}})
    cli = status(local_settings)
    with start_api(local_settings) as api:
        api_view = api.client.get("/pipeline").json()
    assert cli["healthy"] is False and api_view["healthy"] is False
    assert api_view["problems"] == cli["problems"] and "4 file(s) in quarantine" in cli["problems"][0]
    assert api_view["quarantined"] == 4 and all(stage["ok"] for stage in api_view["stages"])


def test_a_stage_in_flight_is_running_for_the_api_too(local_settings, start_api):
    """The console showed "unfinished: etl" while a run was in flight (a second `make run`)."""
    lake = Lake.open(local_settings)
    for stage in ("etl", "embed", "index"):
        lake.write_run_summary(stage, {"title": stage, "ok": True, "files": {"quarantined": 0}})
    lake.mark_run_started("etl")  # this test's process: alive, on the API's host
    with start_api(local_settings) as api:
        view = api.client.get("/pipeline").json()
    assert view["healthy"] is True and view["running"] == ["etl"] and view["unfinished"] == [], view


def test_unreadable_summaries_are_a_gauge_not_a_broken_scrape(local_settings, start_api):
    lake = Lake.open(local_settings)
    lake.store.put("lake/_runs/etl.json", b"{not json")
    with start_api(local_settings) as api:
        response = api.client.get("/metrics")
        assert response.status_code == 200
        assert "lakerag_pipeline_status_readable 0.0" in response.text
        assert api.client.get("/pipeline").json()["readable"] is False


def test_a_file_appended_to_while_it_is_served_stops_at_its_content_length():
    """Content-Length is the size when the file was opened; bytes appended after it would make
    the server abort the response ("too much data for declared Content-Length")."""
    import io

    from lakerag.api.routes.document_files import _blocks

    grown = io.BytesIO(b"opened with 10 bytes, then appended to")
    assert b"".join(_blocks(grown, "raw/log.txt", 10)) == b"opened wit"
    assert grown.closed
    assert b"".join(_blocks(io.BytesIO(b"unknown size"), "raw/x.txt", None)) == b"unknown size"
