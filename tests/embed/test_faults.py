"""Faults on the batch side: a corrupt CURRENT is republished, a killed stage shows in
`pipeline status` until a later run completes, and status exits the same with and without --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from lakerag import cli
from lakerag.embed_job import run_embed
from lakerag.index.publish import read_current, run_index
from lakerag.lake import Lake
from lakerag.pipeline import status

from .gold import synthetic_docs, write_gold


def _pipeline(settings, docs) -> dict:
    write_gold(Lake.open(settings), docs)
    assert run_embed(settings)["ok"]
    return run_index(settings)


def test_publisher_republishes_when_current_does_not_verify(settings, embedder):
    store = Lake.open(settings).store
    first = _pipeline(settings, synthetic_docs(4))
    version = first["version"]
    data = bytearray(store.get(f"index/{version}/index.faiss"))
    data[-5] ^= 0xFF
    store.put(f"index/{version}/index.faiss", bytes(data))

    again = run_index(settings)  # same gold and embeddings: used to say "already reflects gold version N"
    assert again["published"] and again["version"] != version, again
    assert "does not verify" in again["republish_reason"]
    assert read_current(store) == again["version"]
    assert run_index(settings)["published"] is False  # healed: the next run has nothing to do


def _marker_of_an_ended_process(settings, stage: str) -> None:
    """A started-marker written by a process that then ended without a summary (as a killed one does)."""
    command = f"from lakerag.lake import Lake; from lakerag.config import from_env; " \
              f"Lake.open(from_env({{}}, store_uri={settings.store_uri!r})).mark_run_started({stage!r})"
    subprocess.run([sys.executable, "-c", command], check=True, timeout=120)


def _status_cli(monkeypatch, settings, *flags) -> int:
    monkeypatch.setenv("LAKERAG_STORE_URI", settings.store_uri)
    return cli.main(["pipeline", "status", *flags])


def test_a_started_never_finished_stage_is_unhealthy_until_a_run_completes(local_settings, embedder,
                                                                            monkeypatch, capsys):
    _pipeline(local_settings, synthetic_docs(2))
    assert status(local_settings)["healthy"]
    assert _status_cli(monkeypatch, local_settings) == 0 and _status_cli(monkeypatch, local_settings, "--json") == 0

    _marker_of_an_ended_process(local_settings, "embed")  # what a kill -9 mid-embed leaves behind
    report = status(local_settings)
    assert not report["healthy"] and report["unfinished"] == ["embed"] and report["running"] == []
    assert any("embed started" in p and "no longer runs" in p for p in report["problems"])
    assert _status_cli(monkeypatch, local_settings) == 1  # text and JSON agree
    capsys.readouterr()
    assert _status_cli(monkeypatch, local_settings, "--json") == 1
    assert json.loads(capsys.readouterr().out)["unfinished"] == ["embed"]

    assert run_embed(local_settings)["ok"]  # a later complete run clears it
    assert status(local_settings)["healthy"]


def test_a_stage_in_flight_on_this_host_is_running_not_unhealthy(local_settings, embedder, monkeypatch, capsys):
    """While a second `make run` ran its pipeline behind the API, status said UNHEALTHY ("etl
    started ... has not finished") and the console "unfinished: etl": a marker could not tell a
    run in flight from a killed one. On the host that wrote it, its process tells."""
    _pipeline(local_settings, synthetic_docs(2))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lake = Lake.open(local_settings)
        lake.mark_run_started("etl")
        marker = lake.read_run_started("etl")
        lake.store.put("lake/_runs/etl.started.json", json.dumps(
            {**marker, "pid": sleeper.pid, "process_started": _ticks(sleeper.pid)}).encode())
        report = status(local_settings)
        assert report["healthy"] and report["running"] == ["etl"] and report["unfinished"] == [], report
        assert _status_cli(monkeypatch, local_settings) == 0
        assert "running (1):" in capsys.readouterr().out

        lake.store.put("lake/_runs/etl.started.json", json.dumps({**marker, "host": "another-pod"}).encode())
        report = status(local_settings)  # written elsewhere: cannot be checked, still a problem
        assert not report["healthy"] and report["unfinished"] == ["etl"]
        assert any("still running, or killed" in p for p in report["problems"])
    finally:
        sleeper.kill()
        sleeper.wait()
    lake.store.put("lake/_runs/etl.started.json", json.dumps(
        {**marker, "pid": sleeper.pid, "process_started": _ticks(os.getpid())}).encode())
    report = status(local_settings)  # the pid ended (or is reused by another process): gone
    assert not report["healthy"] and report["unfinished"] == ["etl"] and report["running"] == []


def _ticks(pid: int) -> int:
    from lakerag.lake.run_marker import _start_ticks

    ticks = _start_ticks(pid)
    assert ticks is not None
    return ticks


def test_a_stage_that_raises_records_a_failed_summary(local_settings, embedder, monkeypatch):
    """An exception escaping a stage left its marker behind; in a process that goes on (the
    watcher, `lakerag run`) that marker would read as a run still in flight."""
    _pipeline(local_settings, synthetic_docs(2))
    from lakerag.index import publish

    def unreachable(store):
        raise OSError("store unreachable")

    monkeypatch.setattr(publish, "read_current", unreachable)
    with pytest.raises(OSError):
        run_index(local_settings, force=True)
    report = status(local_settings)
    assert report["running"] == [] and report["unfinished"] == [], report
    assert "index failed: OSError: store unreachable" in report["problems"]
    assert Lake.open(local_settings).read_run_summary("index")["last_success_at"]  # carried over


def test_status_exit_codes_agree_when_a_stage_failed(local_settings, monkeypatch, capsys):
    lake = Lake.open(local_settings)
    lake.write_run_summary("etl", {"ok": True, "files": {"quarantined": 0}})
    lake.write_run_summary("index", {"ok": False, "reason": "3 of 9 gold chunks have no vector"})
    assert _status_cli(monkeypatch, local_settings) == 1
    assert "pipeline status: UNHEALTHY" in capsys.readouterr().out
    assert _status_cli(monkeypatch, local_settings, "--json") == 1
    assert "3 of 9 gold chunks" in capsys.readouterr().out


def test_status_of_a_store_where_nothing_ran_says_so(local_settings, monkeypatch, capsys):
    """It used to print a bare "healthy" over three empty stages, as for a mistyped store URI."""
    assert _status_cli(monkeypatch, local_settings) == 0
    out = capsys.readouterr().out
    assert "pipeline status: healthy" in out
    assert f"no stage has finished a run in {local_settings.store_uri} yet" in out and "LAKERAG_STORE_URI" in out
    lake = Lake.open(local_settings)
    lake.write_run_summary("etl", {"ok": True, "files": {"quarantined": 0}})
    assert "note" not in status(local_settings)


def test_kill_9_mid_embed_then_rerun_converges(local_settings, embedder):
    """A real SIGKILL while `lakerag pipeline embed` runs: status says unfinished, a rerun converges."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    write_gold(Lake.open(local_settings), synthetic_docs(40))
    marker = Path(local_settings.store_uri.removeprefix("file://")) / "lake/_runs/embed.started.json"
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri}
    command = "from lakerag.cli import main; raise SystemExit(main(['pipeline', 'embed']))"
    proc = subprocess.Popen([sys.executable, "-c", command], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "embed never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    report = status(local_settings)
    assert not report["healthy"] and "embed" in report["unfinished"]

    assert run_embed(local_settings)["ok"]
    index = run_index(local_settings)
    assert index["published"] and index["vector_count"] == 120
    assert status(local_settings)["healthy"]


def test_a_stage_that_fails_says_what_failed_in_one_line(local_settings, embedder):
    """A Delta write that failed in `lakerag pipeline embed` (a full volume; here the kernel's
    file-size limit) printed a 40-line traceback ending in the DeltaError; its summary has it too."""
    from conftest import lakerag_with_file_size_limit

    write_gold(Lake.open(local_settings), synthetic_docs(40))
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri}
    run = subprocess.run([*lakerag_with_file_size_limit(4096), "pipeline", "embed"], env=env, capture_output=True,
                         text=True, check=False, timeout=600)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lakerag pipeline embed: FAILED: DeltaError: ") and "File too large" in last, last
    assert last.endswith("(lakerag -v pipeline embed shows the traceback)"), last
    assert any(p.startswith("embed failed: DeltaError: ") for p in status(local_settings)["problems"])
