"""/metrics: the metric set of docs/architecture.md, valid for promtool, scraped by a real Prometheus."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from conftest import free_port, wait_for_port

EXPECTED = ["lakerag_http_requests_total", "lakerag_http_request_duration_seconds_bucket",
            "lakerag_search_encode_seconds_bucket", "lakerag_search_index_seconds_bucket", "lakerag_index_info",
            "lakerag_index_vectors", "lakerag_index_age_seconds", "lakerag_model_load_seconds",
            "lakerag_index_reloads_total", "lakerag_index_reload_failures_total", "lakerag_no_answer_total",
            "lakerag_llm_request_duration_seconds_bucket", "lakerag_llm_errors_total", "lakerag_upload_bytes_total"]


def test_exposition_has_the_metric_set_and_passes_promtool(served):
    served.client.post("/search", json={"query": "incident bridge phone number"})
    served.client.post("/search", json={"query": "sourdough bread"})
    response = served.client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in EXPECTED:
        if name == "lakerag_llm_errors_total":  # a labelled counter appears with its first error
            assert "# TYPE lakerag_llm_errors_total counter" in text
            continue
        assert f"\n{name}" in text, name
    assert 'lakerag_http_requests_total{method="POST",route="/search",status="200"} 2.0' in text
    assert "lakerag_search_encode_seconds_count 2.0" in text
    assert float(text.split("\nlakerag_index_age_seconds ")[1].split()[0]) > 0
    assert float(text.split("\nlakerag_model_load_seconds ")[1].split()[0]) > 0
    served.client.get("/no/such/path")
    assert 'route="unmatched",status="404"' in served.client.get("/metrics").text  # bounded label values
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: `make prometheus` (apt-get install prometheus) installs it")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                           check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_real_prometheus_scrapes_request_and_search_latency(served, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus missing: `make prometheus` (apt-get install prometheus) installs it")
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: lakerag-api\n    static_configs: [{{targets: ['127.0.0.1:{served.port}']}}]\n")
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
    try:
        wait_for_port(port, timeout=60)
        for query in ("hotel cap per night", "incident bridge phone number", "personal data retention"):
            assert served.client.post("/search", json={"query": query}).status_code == 200

        def series(expr: str) -> list[dict]:
            body = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert body["status"] == "success", body
            return body["data"]["result"]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            requests = series('lakerag_http_requests_total{route="/search",method="POST",status="200"}')
            encode = series("lakerag_search_encode_seconds_count")
            if requests and float(requests[0]["value"][1]) >= 3 and encode and float(encode[0]["value"][1]) >= 3:
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus never scraped the search requests")
        assert series("lakerag_search_index_seconds_bucket")
        assert series('lakerag_index_info{version="20260101T000000Z-samples1"}')
        p50 = series("histogram_quantile(0.5, sum by (le) (lakerag_http_request_duration_seconds_bucket"
                     '{route="/search"}))')
        assert 0 < float(p50[0]["value"][1]) < 10
        [target] = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        assert target["health"] == "up" and target["scrapeUrl"].endswith("/metrics")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_search_timings_are_recorded_once_the_response_is_sent():
    import asyncio

    from lakerag.api.metrics import AfterResponse, Metrics

    metrics = Metrics()
    timings = AfterResponse(metrics)
    timings.encode_seconds.observe(0.004)
    timings.index_seconds.observe(0.005)
    count = lambda name: metrics.registry.get_sample_value(f"lakerag_search_{name}_seconds_count")
    assert count("encode") == 0 and count("index") == 0
    asyncio.run(timings.record())
    assert count("encode") == 1 and count("index") == 1
    assert metrics.registry.get_sample_value("lakerag_search_index_seconds_sum") == 0.005
