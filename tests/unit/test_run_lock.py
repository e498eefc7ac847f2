"""Two pipeline runs over one store at once left every bronze, silver and gold row twice and the
index with duplicate chunks: the second run now waits for the first."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from lakerag.lake.run_lock import LEASE_KEY, pipeline_lock, store_lease
from lakerag.store import open_store, store_for

LAKERAG = str(Path(sys.executable).with_name("lakerag"))


def test_a_second_run_on_the_store_waits_for_the_first_then_runs(tmp_path):
    store = f"file://{tmp_path / 'lake'}"
    env = {**os.environ, "LAKERAG_STORE_URI": store, "LAKERAG_INDEX_DIR": str(tmp_path / "index")}
    with pipeline_lock(open_store(store), "the test's run"):
        second = subprocess.Popen([LAKERAG, "pipeline", "index"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert second.poll() is None, second.communicate()  # it waits while the first holds the store
    out, err = second.communicate(timeout=120)
    assert second.returncode in (0, 1), err
    assert f"waiting for the pipeline run in flight on {store} to finish (the test's run, pid {os.getpid()}" in err
    assert "LakeRAG pipeline index:" in out  # then it ran


def test_other_stores_and_a_dead_holder_do_not_block(tmp_path):
    store = f"file://{tmp_path / 'lake'}"
    killed = ("from lakerag.lake.run_lock import pipeline_lock\nfrom lakerag.store import open_store\n"
              f"with pipeline_lock(open_store({store!r}), 'killed'):\n    import os; os._exit(9)")
    holder = subprocess.run([sys.executable, "-c", killed], check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.returncode == 9
    started = time.monotonic()
    with pipeline_lock(open_store(store), "after a killed run"), \
            pipeline_lock(open_store(f"file://{tmp_path / 'other'}"), "another store"):
        pass
    assert time.monotonic() - started < 5


def test_without_a_writable_temp_dir_the_run_goes_ahead_and_says_so(tmp_path, monkeypatch, caplog):
    """A container with a read-only root and no writable /tmp must still run its pipeline."""
    locked_out = tmp_path / "ro"
    locked_out.mkdir()
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(locked_out / "missing"))
    ran = []
    with pipeline_lock(open_store(f"file://{tmp_path / 'lake'}"), "a run"):
        ran.append(True)
    assert ran == [True]
    assert "running without the store's run lock" in caplog.text


# --- across hosts: the lease in an S3 store (a real moto server) -------------------------------------------

@pytest.fixture
def s3_store(s3_settings):
    return store_for(s3_settings)


def test_a_run_on_another_host_waits_for_the_lease_in_the_store(s3_settings, s3_store, tmp_path):
    """Another host has its own temp dir, so the flock cannot see this run: the store's lease must."""
    other_host_tmp = tmp_path / "other-host-tmp"
    other_host_tmp.mkdir()
    env = {**os.environ, "LAKERAG_STORE_URI": s3_settings.store_uri, "LAKERAG_INDEX_DIR": str(tmp_path / "index"),
           "TMPDIR": str(other_host_tmp)}
    with pipeline_lock(s3_store, "the test's run"):
        second = subprocess.Popen([LAKERAG, "pipeline", "index"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(5)
        assert second.poll() is None, second.communicate()  # it waits while this run holds the lease
        assert s3_store.exists(LEASE_KEY)
    out, err = second.communicate(timeout=120)
    assert second.returncode in (0, 1), err
    assert (f"waiting for the pipeline run in flight on {s3_store.uri} to finish (the test's run, pid {os.getpid()}"
            in err), err
    assert f"host {socket.gethostname()}; its lease in {LEASE_KEY} is renewed every 20 s" in err
    assert "LakeRAG pipeline index:" in out  # then it ran
    assert not s3_store.exists(LEASE_KEY)  # and let go of it


def one_run_beside_another(store) -> list[str]:
    """A run holding a 1.5 s lease for 4 s (more than twice its length: renewals keep it) while a
    second run waits for it; the order things happened in."""
    order = []

    def hold():
        with store_lease(store, "a long run", seconds=1.5):
            order.append("first holds")
            time.sleep(4)
            order.append("first done")

    first = threading.Thread(target=hold)
    first.start()
    while not order:
        time.sleep(0.05)
    with store_lease(store, "a second run", seconds=1.5):
        order.append("second holds")
    first.join()
    return order


def test_a_live_holder_keeps_its_lease_past_its_length(s3_store, caplog):
    assert one_run_beside_another(s3_store) == ["first holds", "first done", "second holds"]
    assert "took over" not in caplog.text and "lost the store's run lock" not in caplog.text
    assert "waiting for the pipeline run in flight" in caplog.text and "a long run" in caplog.text


def test_a_lease_nobody_renews_is_taken_over_after_its_length(s3_store, caplog):
    """A pod killed mid-run (OOM, SIGKILL) cannot release its lease: the next run waits it out, not forever."""
    dead = {"pid": 4242, "host": "node-7", "what": "lakerag pipeline gold", "since": "2026-12-05T12:00:00+00:00"}
    assert s3_store.create(LEASE_KEY, json.dumps(dead).encode())
    assert s3_store.create(LEASE_KEY, b"{}") is None  # the condition holds: one lease at a time
    started = time.monotonic()
    with store_lease(s3_store, "the next run", seconds=1.5):
        waited = time.monotonic() - started
        assert json.loads(s3_store.get(LEASE_KEY))["what"] == "the next run"
    assert 1.5 <= waited < 10
    assert "took over the store's run lock from lakerag pipeline gold, pid 4242" in caplog.text
    assert "host node-7" in caplog.text


def test_a_holder_that_lost_its_lease_says_so_and_leaves_the_new_one(s3_store, caplog):
    with store_lease(s3_store, "a stalled run", seconds=1.5):
        s3_store.put(LEASE_KEY, json.dumps({"what": "a run that took over", "pid": 1, "since": "now"}).encode())
        time.sleep(1.2)  # one renewal: it finds another's lease
    assert "lost the store's run lock to a run that took over" in caplog.text
    assert json.loads(s3_store.get(LEASE_KEY))["what"] == "a run that took over"  # not deleted on the way out


def test_a_store_without_conditional_writes_runs_without_the_lease_and_says_so(s3_store, monkeypatch, caplog):
    from botocore.exceptions import ClientError

    put_object = s3_store.client.put_object

    def old_server(**kwargs):  # an S3-compatible server from before conditional writes
        if "IfNoneMatch" in kwargs or "IfMatch" in kwargs:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "not implemented"}}, "PutObject")
        return put_object(**kwargs)

    monkeypatch.setattr(s3_store.client, "put_object", old_server)
    ran = []
    with store_lease(s3_store, "a run"):
        ran.append(True)
    assert ran == [True] and not s3_store.exists(LEASE_KEY)
    assert "running without the store's lease" in caplog.text and "does not support conditional writes" in caplog.text


def test_a_backup_taken_during_a_run_leaves_its_lease_behind(s3_settings, s3_store, tmp_path):
    from lakerag.backup import backup, read_catalog

    s3_store.put("raw/a.txt", b"a document")
    with store_lease(s3_store, "a run"):
        backup(s3_settings, f"file://{tmp_path / 'backup'}")
    catalog = read_catalog(open_store(f"file://{tmp_path / 'backup'}"))
    assert "raw/a.txt" in catalog["objects"] and LEASE_KEY not in catalog["objects"]


def test_status_from_another_pod_tells_a_run_in_flight_from_a_killed_one(s3_settings, s3_store, monkeypatch):
    """The API's /pipeline and the DAG's health task run in other pods than the stage: a started
    marker alone read "still running, or killed" (unhealthy) for the whole of every DAG run."""
    from lakerag.pipeline import status

    marker = {"stage": "etl", "started_at": "2026-12-05T12:00:00+00:00", "pid": os.getpid(), "host": "etl-pod"}
    s3_store.put("lake/_runs/etl.started.json", json.dumps(marker).encode())
    report = status(s3_settings)
    assert not report["healthy"] and report["unfinished"] == ["etl"]
    assert any("still running, or killed" in problem for problem in report["problems"])

    # The lease the pod holds (only the lock module sees the pod's host name: this test is the other pod).
    monkeypatch.setattr("lakerag.lake.run_lock.socket", SimpleNamespace(gethostname=lambda: "etl-pod"))
    with store_lease(s3_store, "lakerag pipeline etl"):
        report = status(s3_settings)
        assert report["healthy"] and report["running"] == ["etl"] and report["unfinished"] == []
    # A lease its holder stopped renewing minutes ago: the pod was killed.
    stale = {"pid": os.getpid(), "host": "etl-pod", "what": "lakerag pipeline etl", "lease_seconds": 60,
             "since": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(timespec="seconds")}
    s3_store.put(LEASE_KEY, json.dumps(stale).encode())
    assert status(s3_settings)["unfinished"] == ["etl"]
    # A live lease of another process (the next run) says nothing about this marker.
    s3_store.put(LEASE_KEY, json.dumps({**stale, "host": "next-pod", "since": datetime.now(UTC).isoformat()}).encode())
    assert status(s3_settings)["unfinished"] == ["etl"]


def test_a_server_with_create_but_not_replace_conditions_still_keeps_runs_apart(s3_store, monkeypatch, caplog):
    """Renewals and take-overs need If-Match; on a server with only If-None-Match they failed, and a
    waiter then ran beside the live holder once the lease looked unrenewed."""
    from botocore.exceptions import ClientError

    put_object = s3_store.client.put_object

    def without_if_match(**kwargs):
        if "IfMatch" in kwargs:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "not implemented"}}, "PutObject")
        return put_object(**kwargs)

    monkeypatch.setattr(s3_store.client, "put_object", without_if_match)
    assert one_run_beside_another(s3_store) == ["first holds", "first done", "second holds"]
    assert "running without" not in caplog.text and "could not renew" not in caplog.text

    dead = {"pid": 4242, "host": "node-7", "what": "lakerag pipeline gold", "since": "2026-12-05T12:00:00+00:00"}
    assert s3_store.create(LEASE_KEY, json.dumps(dead).encode())
    with store_lease(s3_store, "the next run", seconds=1.5):  # a dead holder's lease is still taken over
        assert json.loads(s3_store.get(LEASE_KEY))["what"] == "the next run"
