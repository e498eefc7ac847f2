"""GET /index and POST /admin/reload: hot swap under concurrent load, and versions that
must not be served (tampered, other model) are refused while the old one keeps serving."""

from __future__ import annotations

import errno
import threading
import time

import httpx
import numpy as np
import pandas as pd
from lakerag.index import huge_pages
from lakerag.index.artifacts import CHUNK_COLUMNS
from lakerag.store import open_store

from ..conftest import publish, write_index

V1, V2 = "20260101T000000Z-samples1", "20260102T000000Z-samples2"
TRAVEL = "What is the hotel cap per night for business trips in most cities?"


def metric(api, name: str) -> float:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


def test_index_status_and_reload(served, local_settings, sample_index_v2):
    status = served.client.get("/index").json()
    assert status["loaded"] and status["version"] == V1 and status["vectors"] > 50
    assert status["model"] == "sentence-transformers/all-MiniLM-L6-v2" and status["dimension"] == 384
    assert status["age_seconds"] > 0 and status["reloads"] == 1 and status["reload_failures"] == 0
    unchanged = served.client.post("/admin/reload").json()
    assert unchanged["changed"] is False and unchanged["version"] == V1

    publish(local_settings, sample_index_v2)
    swapped = served.client.post("/admin/reload").json()
    assert swapped == {**swapped, "changed": True, "version": V2}
    assert served.client.get("/index").json()["version"] == V2
    assert metric(served, "lakerag_index_reloads_total") == 2
    assert f'lakerag_index_info{{model="sentence-transformers/all-MiniLM-L6-v2",version="{V2}"}} 1.0' in \
        served.client.get("/metrics").text
    hits = served.client.post("/search", json={"query": TRAVEL}).json()["hits"]
    assert all(h["source"] != "raw/employee-travel-policy.pdf" for h in hits)  # v2 lacks that document


def test_reload_needs_the_api_key_when_set(local_settings, start_api):
    with start_api(local_settings, api_key="k") as api:
        assert api.client.post("/admin/reload").status_code == 401
        assert api.client.post("/admin/reload", headers={"X-API-Key": "x"}).status_code == 403
        assert api.client.post("/admin/reload", headers={"X-API-Key": "k"}).status_code == 200


def test_tampered_version_is_refused_and_the_old_one_kept(served, local_settings, sample_index_v2):
    publish(local_settings, sample_index_v2)
    store = open_store(local_settings.store_uri)
    data = bytearray(store.get(f"index/{V2}/index.faiss"))
    data[-10] ^= 0xFF
    store.put(f"index/{V2}/index.faiss", bytes(data))
    result = served.client.post("/admin/reload").json()
    assert result["changed"] is False and result["version"] == V1
    status = served.client.get("/index").json()
    assert status["version"] == V1 and status["reload_failures"] == 1 and "checksum" in status["last_error"]
    assert metric(served, "lakerag_index_reload_failures_total") == 1
    assert served.client.post("/search", json={"query": TRAVEL}).json()["matched"]
    # the watcher does not re-download a rejected version on every poll
    served.state.watcher.check()
    assert served.client.get("/index").json()["reload_failures"] == 1


def test_index_of_another_model_is_refused(served, local_settings, sample_vectors, tmp_path, embedder):
    chunks, vectors = sample_vectors
    other = write_index(tmp_path / "other", embedder, chunks, "20260103T000000Z-othermdl", vectors=vectors,
                        model="BAAI/bge-large-en-v1.5")
    publish(local_settings, other)
    served.client.post("/admin/reload")
    status = served.client.get("/index").json()
    assert status["version"] == V1 and status["reload_failures"] == 1
    assert "BAAI/bge-large-en-v1.5" in status["last_error"] and "LAKERAG_EMBEDDING_MODEL" in status["last_error"]


def test_hot_swap_under_load_drops_no_request(local_settings, sample_index, sample_index_v2, start_api):
    """8 clients query while the watcher (polling every 0.2 s) picks up a new version."""
    publish(local_settings, sample_index)
    with start_api(local_settings, watch=True, index_poll_seconds=0.2) as api:
        stop = threading.Event()
        results: list[tuple[int, str]] = []
        errors: list[str] = []

        def client():
            with httpx.Client(base_url=api.url, timeout=30) as http:
                while not stop.is_set():
                    try:
                        response = http.post("/search", json={"query": TRAVEL, "k": 3})
                        results.append((response.status_code, response.json().get("index_version", "")))
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        publish(local_settings, sample_index_v2)
        deadline = time.monotonic() + 30
        while api.client.get("/index").json()["version"] != V2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert len(results) > 20 and {status for status, _ in results} == {200}
        versions = [version for _, version in results]
        assert versions[0] == V1 and versions[-1] == V2
        assert api.client.post("/search", json={"query": TRAVEL}).json()["index_version"] == V2


def test_empty_corpus_index_serves_no_match(local_settings, start_api, embedder, tmp_path):
    """A corpus whose documents were all deleted publishes an empty index."""
    chunks = pd.DataFrame({c: pd.Series(dtype="object") for c in CHUNK_COLUMNS})
    write_index(tmp_path / "empty", embedder, chunks, "20260104T000000Z-emptyidx",
                vectors=np.zeros((0, 384), dtype=np.float32))
    publish(local_settings, tmp_path / "empty")
    with start_api(local_settings) as api:
        body = api.client.post("/search", json={"query": TRAVEL}).json()
        assert body["matched"] is False and body["reason"] == "the index is empty"


def test_a_loaded_version_is_collapsed_into_huge_pages_by_the_loop_that_searches(local_settings, start_api,
                                                                                  sample_vectors, tmp_path,
                                                                                  monkeypatch):
    """The watcher loads a version in its own thread; the collapse of its vectors into huge pages runs on
    the event loop, one huge page per turn. Collapsed from another thread, the process's later query
    encodes ran ~0.1 ms slower (docs/search-latency.md, 2026-12-06)."""
    real_madvise = huge_pages._libc_madvise()
    calls: list[tuple[int, int, int]] = []  # (advice, thread, errno)

    def recording(start: int, length: int, advice: int) -> int:
        error = real_madvise(start, length, advice)
        calls.append((advice, threading.get_ident(), error))
        return error

    monkeypatch.setattr(huge_pages, "_libc_madvise", lambda: recording)
    chunks, _ = sample_vectors
    rows = 6_000  # 9.2 MB of vectors: whole huge pages to collapse
    many = chunks.iloc[np.arange(rows) % len(chunks)].reset_index(drop=True)
    many["chunk_id"] = [f"{chunk_id}-{i}" for i, chunk_id in enumerate(many["chunk_id"])]
    vectors = np.random.default_rng(5).standard_normal((rows, 384)).astype(np.float32)
    write_index(tmp_path / "large", None, many, "20260105T000000Z-largeidx",
                vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True), model=local_settings.embedding_model)
    publish(local_settings, tmp_path / "large")
    with start_api(local_settings) as api:
        steps = huge_pages._vectors_span(api.state.index.index)[1] // huge_pages.STEP_BYTES
        deadline = time.monotonic() + 30
        # Done when every huge page is collapsed, or the kernel refused (no THP or MADV_COLLAPSE here).
        while sum(1 for advice, _, error in calls if advice == huge_pages.MADV_COLLAPSE and not error) < steps \
                and not any(error and error != errno.EAGAIN for _, _, error in calls):
            assert time.monotonic() < deadline, calls
            time.sleep(0.05)
        assert api.client.post("/search", json={"query": TRAVEL, "k": 3}).status_code == 200
    assert steps >= 2 and calls[0][0] == huge_pages.MADV_HUGEPAGE
    assert {thread for _, thread, _ in calls} == {api.thread.ident}  # the loop's thread, not the watcher's
