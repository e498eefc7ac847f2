"""Faults the API must survive and report truthfully: a CURRENT that does not verify (fall back
to the newest version that does, and say so), and a store that goes away and comes back."""

from __future__ import annotations

import boto3
import pytest
from lakerag.store import open_store

from .conftest import publish
from .routes.test_index import V1, V2, metric

KEY = {"X-API-Key": "k"}


def _tamper(settings, version):
    store = open_store(settings.store_uri, settings.aws_endpoint_url, settings.aws_region)
    data = bytearray(store.get(f"index/{version}/index.faiss"))
    data[-10] ^= 0xFF
    store.put(f"index/{version}/index.faiss", bytes(data))


def test_a_fresh_api_serves_the_newest_version_that_verifies(local_settings, sample_index, sample_index_v2,
                                                              start_api, caplog):
    publish(local_settings, sample_index)
    publish(local_settings, sample_index_v2)
    _tamper(local_settings, V2)
    with start_api(local_settings) as api:  # empty index dir, like a new pod
        status = api.client.get("/index").json()
        assert status["loaded"] and status["version"] == V1, status
        assert status["sync_state"] == "fallback" and status["rejected_version"] == V2
        assert V2 in status["last_error"] and "checksum" in status["last_error"]
        assert metric(api, "lakerag_index_fallback") == 1
        # /ready (and the console's status bar) said only "serving index V1", as if it were current.
        ready = api.client.get("/ready").json()["message"]
        assert ready.startswith(f"serving index {V1}, not {V2}") and "refuses" in ready, ready
        assert status["message"] == ready
        assert metric(api, "lakerag_index_reload_failures_total") == 1
        reload = api.client.post("/admin/reload").json()
        assert reload["version"] == V1 and V2 in reload["message"] and "does not verify" in reload["message"]
        assert api.client.post("/search", json={"query": "hotel cap per night"}).json()["index_version"] == V1
    assert any("does not verify" in r.getMessage() for r in caplog.records)
    # The fallback is logged once per sync, saying what is served instead, not "still serving nothing".
    assert not any("still serving nothing" in r.getMessage() for r in caplog.records)


@pytest.fixture
def bucket_admin(s3_settings):
    s3 = boto3.client("s3", endpoint_url=s3_settings.aws_endpoint_url, region_name="us-east-1")
    bucket = s3_settings.store_uri.removeprefix("s3://").split("/")[0]

    def drop():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)

    return drop, lambda: s3.create_bucket(Bucket=bucket)


def test_store_down_then_up_is_reported_as_such_and_recovers(s3_settings, sample_index, sample_index_v2, start_api,
                                                             bucket_admin):
    drop, create = bucket_admin
    publish(s3_settings, sample_index)
    with start_api(s3_settings, api_key="k") as api:
        assert api.client.get("/index").json()["version"] == V1
        drop()  # the store is gone (bucket deleted)
        response = api.client.post("/admin/reload", headers=KEY)
        assert response.status_code == 503, response.text  # not 200 "unchanged"
        assert "store unreachable" in response.json()["detail"]
        status = api.client.get("/index").json()
        assert status["version"] == V1 and status["sync_state"] == "store_unreachable"
        assert status["store_errors"] == 1 and status["reload_failures"] == 0 and status["last_error"]
        assert metric(api, "lakerag_index_store_unreachable_total") == 1
        assert "the store is unreachable" in api.client.get("/ready").json()["message"]
        assert metric(api, "lakerag_index_reload_failures_total") == 0
        assert api.client.post("/search", json={"query": "hotel cap per night"}).status_code == 200

        create()  # back, empty: the pipeline publishes again
        publish(s3_settings, sample_index_v2)
        response = api.client.post("/admin/reload", headers=KEY)
        assert response.status_code == 200 and response.json()["version"] == V2
        status = api.client.get("/index").json()
        assert status["sync_state"] == "ok" and status["last_error"] is None  # not stale
        assert api.client.get("/ready").json()["message"] == f"serving index {V2}"
        assert api.client.post("/admin/reload", headers=KEY).json()["message"].endswith("(unchanged)")


def test_a_new_api_whose_store_is_down_says_so_not_run_the_pipeline(local_settings, start_api, monkeypatch):
    """A new pod that could not reach its store said "no index yet — run the pipeline", which would not help."""
    from conftest import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    down = local_settings.replace(store_uri="s3://bucket/root", aws_region="us-east-1",
                                  aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    with start_api(down) as api:
        message = api.client.get("/ready").json()["message"]
        assert message.startswith("no index served: cannot sync from s3://bucket/root: S3 unreachable"), message
        assert "run the pipeline" not in message and "check LAKERAG_STORE_URI, AWS_ENDPOINT_URL" in message, message
        search = api.client.post("/search", json={"query": "hotel cap per night"})
        assert search.status_code == 503 and search.json()["detail"] == message
