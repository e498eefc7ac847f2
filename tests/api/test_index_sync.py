"""`lakerag index sync --once` (the API pod's init container) against file:// and a real S3 API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, lakerag_with_file_size_limit, serve_with_file_size_limit
from lakerag import cli
from lakerag.index.sync import local_current, sync_once
from lakerag.pipeline import status
from lakerag.store import open_store

from .conftest import publish

V1, V2 = "20260101T000000Z-samples1", "20260102T000000Z-samples2"


def run_cli(monkeypatch, settings, dest) -> int:
    monkeypatch.setenv("LAKERAG_STORE_URI", settings.store_uri)
    if settings.aws_endpoint_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", settings.aws_endpoint_url)
        monkeypatch.setenv("AWS_REGION", settings.aws_region)
    return cli.main(["index", "sync", "--once", "--dest", str(dest)])


def test_empty_store_is_not_an_error(local_settings, tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, local_settings, tmp_path / "dest") == 0
    assert "no index published yet" in capsys.readouterr().out
    assert local_current(tmp_path / "dest") is None


@pytest.mark.parametrize("store", ["file", "s3"])
def test_sync_downloads_verifies_and_swaps_atomically(store, request, tmp_path, sample_index, sample_index_v2,
                                                      monkeypatch, capsys):
    settings = request.getfixturevalue("local_settings" if store == "file" else "s3_settings")
    dest = tmp_path / "dest"
    publish(settings, sample_index)
    assert run_cli(monkeypatch, settings, dest) == 0
    assert f"index {V1} synced" in capsys.readouterr().out
    assert os.readlink(dest / "current") == f"versions/{V1}"
    assert (dest / "current" / "manifest.json").is_file()
    assert run_cli(monkeypatch, settings, dest) == 0
    assert "is current" in capsys.readouterr().out

    publish(settings, sample_index_v2)
    assert run_cli(monkeypatch, settings, dest) == 0
    assert local_current(dest)[0] == V2
    assert sorted(p.name for p in (dest / "versions").iterdir()) == [V1, V2]  # the previous one is kept
    assert not [p for p in dest.rglob("*") if "download" in p.name]  # no temp leftovers


def test_unreachable_store_keeps_a_valid_local_copy(local_settings, sample_index, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "dest"
    publish(local_settings, sample_index)
    assert sync_once(local_settings, dest) == 0
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    down = local_settings.replace(store_uri="s3://bucket/root", aws_region="us-east-1",
                               aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    capsys.readouterr()
    assert sync_once(down, dest) == 0
    out = capsys.readouterr().out
    assert "store unreachable" in out and f"keeping the local copy {V1}" in out

    assert sync_once(down, tmp_path / "empty-dest") == 1
    err = capsys.readouterr().err
    assert "store unreachable" in err and "no local copy" in err and "LAKERAG_STORE_URI" in err


def test_a_destination_it_cannot_write_is_named_not_blamed_on_the_store(local_settings, sample_index, tmp_path,
                                                                        capsys):
    """It said "the published version is unusable … Check LAKERAG_STORE_URI and the store's
    credentials": the wrong thing to check when the init container's volume is the problem."""
    publish(local_settings, sample_index)
    (tmp_path / "a-file").write_text("not a directory")
    dest = tmp_path / "a-file" / "index"
    assert sync_once(local_settings, dest) == 1
    err = capsys.readouterr().err
    assert f"the local directory {dest} cannot be used" in err and "LAKERAG_INDEX_DIR" in err, err
    assert "published version is unusable" not in err and "LAKERAG_STORE_URI" not in err


def test_tampered_version_is_refused(local_settings, sample_index, sample_index_v2, tmp_path, capsys):
    dest = tmp_path / "dest"
    publish(local_settings, sample_index)
    assert sync_once(local_settings, dest) == 0
    publish(local_settings, sample_index_v2)
    store = open_store(local_settings.store_uri)
    store.put(f"index/{V2}/chunks.sqlite", store.get(f"index/{V2}/chunks.sqlite")[:-100])
    assert sync_once(local_settings, dest) == 0
    out = capsys.readouterr().out
    assert f"names {V2}, which does not verify" in out and local_current(dest)[0] == V1
    # A new pod falls back to the newest version that verifies instead of staying empty.
    assert sync_once(local_settings, tmp_path / "fresh") == 0
    out = capsys.readouterr().out
    assert "checksum" in out and f"serving {V1}" in out
    assert local_current(tmp_path / "fresh")[0] == V1
    assert not (tmp_path / "fresh" / "versions" / V2).exists()


def test_garbage_in_current_falls_back_too(local_settings, sample_index, tmp_path, capsys):
    publish(local_settings, sample_index)
    open_store(local_settings.store_uri).put("index/CURRENT", b"\xff\xfe../../etc\x00")
    assert sync_once(local_settings, tmp_path / "fresh") == 0
    assert "not a version name" in capsys.readouterr().out and local_current(tmp_path / "fresh")[0] == V1


def test_a_local_copy_of_another_model_is_not_installed(local_settings, sample_index, tmp_path, capsys):
    publish(local_settings, sample_index)
    other = local_settings.replace(embedding_model="BAAI/bge-large-en-v1.5")
    assert sync_once(other, tmp_path / "dest") == 1
    assert "BAAI/bge-large-en-v1.5" in capsys.readouterr().err
    assert local_current(tmp_path / "dest") is None


def test_watch_loop_follows_current_until_sigterm(local_settings, sample_index, sample_index_v2, tmp_path):
    import signal

    dest = tmp_path / "dest"
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri, "LAKERAG_INDEX_POLL_SECONDS": "0.2"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("lakerag")), "index", "sync", "--dest", str(dest)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for version, index_dir in ((V1, sample_index), (V2, sample_index_v2)):
            publish(local_settings, index_dir)
            deadline = time.monotonic() + 60
            while (local_current(dest) or ("",))[0] != version:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"index {V1} synced" in out and f"index {V2} synced" in out
    lines = out.splitlines()  # a loop that looks like a hang says what it does, and that it stopped
    assert lines[0].startswith(f"index sync: watching {local_settings.store_uri} every 0.2 s"), lines[0]
    assert "--once" in lines[0] and lines[-1] == "index sync: stopped"


def test_stop_while_the_poller_is_starting_stops_it(local_settings, monkeypatch):
    """A pod told to stop as it turns ready: the lifespan's ``stop()`` ran while the warm-up thread
    was still inside ``start()``, joined the unstarted poller and raised ("cannot join thread before
    it is started"); uvicorn then reported "Application shutdown failed" and skipped the rest of the
    shutdown (the access log's last lines). Seen on a bench server stopped right after /ready."""
    import threading
    import time

    from lakerag.index import sync as sync_module

    plain_thread = threading.Thread
    starting, release = threading.Event(), threading.Event()

    class SlowToStart(plain_thread):
        def start(self):
            if self.name == "index-watcher":  # hold the poller inside start(), as a busy machine does
                starting.set()
                release.wait(10)
            super().start()

    monkeypatch.setattr(sync_module.threading, "Thread", SlowToStart)
    watcher = sync_module.IndexWatcher(local_settings, expected_model="m", expected_dimension=None,
                                       sync_from_store=False)
    starter = plain_thread(target=watcher.start)
    starter.start()
    assert starting.wait(10)
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            watcher.stop()
        except BaseException as exc:  # noqa: BLE001 - the failure under test
            errors.append(exc)

    stopper = plain_thread(target=stop)
    stopper.start()
    time.sleep(0.3)  # stop() reaches the poller while start() is still holding it
    release.set()
    starter.join(10)
    stopper.join(10)
    assert errors == []
    assert not stopper.is_alive()
    assert not any(thread.name == "index-watcher" and thread.is_alive() for thread in threading.enumerate())
    watcher.start()  # after stop(), start() starts nothing
    assert not any(thread.name == "index-watcher" for thread in threading.enumerate())


def test_an_index_volume_too_small_for_the_version_is_said_as_such(local_settings, sample_index, tmp_path):
    """The store was fine and the pod's index volume could not hold the version (full, or over
    its size limit), yet the init container said "the published version is unusable … Check
    LAKERAG_STORE_URI", and the API "no index yet — run the pipeline", sync state store_unreachable."""
    publish(local_settings, sample_index)
    limit = max(p.stat().st_size for p in sample_index.iterdir()) // 2
    dest = tmp_path / "idx"
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri, "LAKERAG_INDEX_DIR": str(dest)}
    init = subprocess.run([*lakerag_with_file_size_limit(limit), "index", "sync", "--once"], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert init.returncode == 1, init
    assert f"the local directory {dest} cannot hold index {V1}" in init.stderr and "LAKERAG_INDEX_DIR" in init.stderr
    assert "unusable" not in init.stderr and "LAKERAG_STORE_URI" not in init.stderr, init.stderr
    assert local_current(dest) is None and not [p for p in (dest / "versions").iterdir()]  # nothing half-copied

    with serve_with_file_size_limit(local_settings.replace(index_dir=str(dest)), tmp_path, limit) as base:
        status = httpx.get(f"{base}/index", timeout=5).json()
        assert status["sync_state"] == "index_dir_unusable", status
        assert f"cannot hold index {V1}" in status["last_error"] and "LAKERAG_INDEX_DIR" in status["last_error"]
        search = httpx.post(f"{base}/search", json={"query": "travel"}, timeout=30)
        assert search.status_code == 503 and "run the pipeline" not in search.json()["detail"], search.text
        assert search.json()["detail"] == status["message"] and "cannot hold" in status["message"]


def test_a_stage_that_cannot_write_a_local_file_says_so_in_one_line(local_settings, sample_index, tmp_path):
    """`lakerag pipeline index` on a machine whose temporary space was full printed a 40-line traceback."""
    publish(local_settings, sample_index)  # run_index verifies the published version in a temporary directory
    limit = max(p.stat().st_size for p in sample_index.iterdir()) // 2
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri, "TMPDIR": str(tmp_path)}
    run = subprocess.run([*lakerag_with_file_size_limit(limit), "pipeline", "index"], env=env, capture_output=True,
                         text=True, check=False, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"lakerag: File too large (a local file could not be written; check the free space and permissions of "
        f"{tmp_path}, TMPDIR); -v shows where"), run.stderr
    assert any(p.startswith("index failed: OSError") for p in status(local_settings)["problems"])
