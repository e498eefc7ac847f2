"""The watcher with the real pipeline (Spark local, Delta, the packaged model, FAISS) on
file:// and moto S3, and `lakerag run` over HTTP: upload -> searchable -> deleted -> gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from lakerag.index.publish import load_current
from lakerag.lake import Lake, doc_id_for
from lakerag.watch import PipelineWatcher

pytestmark = pytest.mark.slow

DOC = ("raw/glacier.txt", ("Glaciers carve U-shaped valleys as they move downhill. Moraines are ridges of rock "
                          "debris that a glacier pushes ahead of it or leaves at its sides."))
OTHER = ("raw/bread.txt", "Sourdough bread rises with wild yeast and lactic acid bacteria kept in a starter.")


def wait_until(predicate, timeout=900.0, step=0.2):  # generous: Spark starts slowly on a busy machine
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not true after {timeout}s")


def served_doc_ids(settings, tmp_path, embedder) -> set[str]:
    loaded = load_current(Lake.open(settings).store, tmp_path / "check", embedder.name, embedder.dimension)
    return set(loaded.chunks["doc_id"]) if loaded else set()


def test_watcher_indexes_new_and_deleted_raw_objects_on_one_spark_session(settings, embedder, tmp_path):
    settings = settings.replace(watch_poll_seconds=0.2, watch_debounce_seconds=0.2)
    store = Lake.open(settings).store
    store.put(OTHER[0], OTHER[1].encode())
    published = []
    watcher = PipelineWatcher(settings, on_published=published.append)
    watcher.start()
    try:
        wait_until(lambda: len(published) == 1)
        session = watcher._spark
        store.put(DOC[0], DOC[1].encode())
        wait_until(lambda: doc_id_for(DOC[0]) in served_doc_ids(settings, tmp_path, embedder))
        store.delete(DOC[0])
        wait_until(lambda: doc_id_for(DOC[0]) not in served_doc_ids(settings, tmp_path, embedder))
        assert served_doc_ids(settings, tmp_path, embedder) == {doc_id_for(OTHER[0])}
        assert watcher._spark is session, "the watcher started a second Spark session"
        assert watcher.last_summary["etl"]["seconds.spark_start"] < 1.0  # reused, not started
        assert watcher.failures == 0 and len(published) == 3
    finally:
        watcher.stop()


def test_a_run_that_starts_spark_counts_the_start_and_shows_as_running_meanwhile(local_settings, embedder,
                                                                                   monkeypatch):
    """The watcher used to start its Spark session before the run: `make run`'s first summary said
    26 s with spark_start 0.00 for a run of 50 s, and status showed no run during the start."""
    import lakerag_spark.session

    lake = Lake.open(local_settings)
    lake.store.put(OTHER[0], OTHER[1].encode())
    real_start = lakerag_spark.session.spark_session
    marker_during_start = []

    def slow_start(settings, app_name):
        marker_during_start.append(lake.read_run_started("etl"))
        time.sleep(1.5)  # Spark's own start is ~25 s here; this test's session may exist already
        return real_start(settings, app_name=app_name)

    monkeypatch.setattr(lakerag_spark.session, "spark_session", slow_start)
    watcher = PipelineWatcher(local_settings)
    try:
        summary = watcher.run_once()
        assert summary["ok"], summary
        assert summary["etl"]["seconds.spark_start"] >= 1.5
        assert summary["seconds"] >= 1.5 + summary["embed"]["seconds"]
        assert marker_during_start[0] is not None and marker_during_start[0]["stage"] == "etl"
        assert watcher.run_once()["etl"]["seconds.spark_start"] < 1.0  # the next run reuses the session
    finally:
        watcher.stop()


def start_pipeline_watch(settings, tmp_path) -> tuple[subprocess.Popen, Path]:
    """`lakerag pipeline watch` on ``settings``' store as a real process, polling fast; its log file."""
    env = {**os.environ, "LAKERAG_STORE_URI": settings.store_uri, "LAKERAG_INDEX_DIR": str(tmp_path / "idx"),
           "LAKERAG_WATCH_POLL_SECONDS": "0.5", "LAKERAG_WATCH_DEBOUNCE_SECONDS": "0.2"}
    log = tmp_path / "watch.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lakerag.cli", "pipeline", "watch"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, log


def _children_named(pid: int, name: str) -> list[int]:
    """The running children of ``pid`` whose command is ``name`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == name and int(fields[1]) == pid and fields[0] not in {"Z", "X"}:
            found.append(int(stat.parent.name))
    return found


def test_the_watcher_starts_a_new_spark_session_after_its_jvm_died(local_settings, embedder, tmp_path):
    """The kernel's OOM killer (or anyone) ending the Spark JVM left `lakerag run` failing every
    later run in 0.1 s (ConnectionRefusedError) until it was restarted, and printed a traceback."""
    store = Lake.open(local_settings).store
    store.put(OTHER[0], OTHER[1].encode())
    proc, log = start_pipeline_watch(local_settings, tmp_path)
    try:
        wait_until(lambda: doc_id_for(OTHER[0]) in served_doc_ids(local_settings, tmp_path, embedder))
        jvms = _children_named(proc.pid, "java")
        assert len(jvms) == 1, jvms
        os.kill(jvms[0], 9)
        store.put(DOC[0], DOC[1].encode())
        wait_until(lambda: doc_id_for(DOC[0]) in served_doc_ids(local_settings, tmp_path, embedder), timeout=600)
        assert "starting a new one" in log.read_text()
        jvms = _children_named(proc.pid, "java")  # and dead when the watcher stops (systemd's SIGTERM to all)
        os.kill(jvms[0], 9)
        time.sleep(1)
    finally:
        proc.terminate()
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "the Spark JVM is gone (ConnectionRefusedError); forgetting its session" in text
    # PySpark's accumulator server and py4j printed the dead JVM's closed connection as tracebacks.
    assert "Traceback" not in text, text[-3000:]


def test_ctrl_c_during_a_run_of_pipeline_watch_lets_the_run_finish_then_stops(local_settings, tmp_path):
    """PySpark replaced the watcher's SIGINT handler with its own (cancel every job, raise
    KeyboardInterrupt): Ctrl-C cut the run short with screens of py4j tracebacks and exit 130."""
    lake = Lake.open(local_settings)
    lake.store.put(OTHER[0], OTHER[1].encode())
    proc, log = start_pipeline_watch(local_settings, tmp_path)
    try:
        bronze_committed = Path(local_settings.store_uri.removeprefix("file://")) / "lake/bronze/_delta_log"
        wait_until(lambda: bronze_committed.exists() or proc.poll() is not None)  # mid-run, Spark started
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "stopping after the current run" in text, text[-3000:]
    assert load_current(lake.store, tmp_path / "check", "sentence-transformers/all-MiniLM-L6-v2", 384) is not None


def test_lakerag_run_serves_an_upload_and_forgets_a_delete(local_settings, tmp_path):
    port = free_port()
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri, "LAKERAG_INDEX_DIR": str(tmp_path / "idx"),
           "LAKERAG_PORT": str(port), "LAKERAG_INDEX_POLL_SECONDS": "3600",  # only the in-process notify reloads
           "LAKERAG_WATCH_POLL_SECONDS": "0.5", "LAKERAG_WATCH_DEBOUNCE_SECONDS": "0.2"}
    Lake.open(local_settings).store.put(OTHER[0], OTHER[1].encode())
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lakerag.cli", "run"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    query = {"query": "what ridges does a glacier leave", "k": 3}

    def hit_sources():
        try:
            response = httpx.post(f"{base}/search", json=query, timeout=10)
        except httpx.TransportError:
            return None
        return {h["source"] for h in response.json()["hits"]} if response.status_code == 200 else None

    try:
        wait_until(lambda: hit_sources() is not None)
        assert DOC[0] not in hit_sources()
        upload = httpx.post(f"{base}/documents", files={"file": ("glacier.txt", DOC[1].encode())}, timeout=10)
        assert upload.status_code == 201
        # Not "the next pipeline run (`lakerag pipeline run`)": a second, manual run would only repeat the work.
        assert upload.json()["note"] == "stored; this server's pipeline watcher (`lakerag run`) indexes it within seconds"
        wait_until(lambda: DOC[0] in (hit_sources() or set()))
        deleted = httpx.delete(f"{base}/documents/{doc_id_for(DOC[0])}", timeout=10)
        assert deleted.status_code == 200 and "pipeline watcher (`lakerag run`)" in deleted.json()["note"]
        # gone: a 200 whose hits lack it (no hits at all once nothing relevant is left)
        wait_until(lambda: (sources := hit_sources()) is not None and DOC[0] not in sources)
    finally:
        proc.terminate()
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
