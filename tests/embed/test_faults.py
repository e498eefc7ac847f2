"""Faults on the batch side: a corrupt CURRENT is republished, a killed stage shows in
`pipeline status` until a later run completes, and status exits the same with and without --json."""

from __future__ import annotations

import json

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


def _status_cli(monkeypatch, settings, *flags) -> int:
    monkeypatch.setenv("LAKERAG_STORE_URI", settings.store_uri)
    return cli.main(["pipeline", "status", *flags])


def test_a_started_never_finished_stage_is_unhealthy_until_a_run_completes(local_settings, embedder,
                                                                            monkeypatch, capsys):
    _pipeline(local_settings, synthetic_docs(2))
    assert status(local_settings)["healthy"]
    assert _status_cli(monkeypatch, local_settings) == 0 and _status_cli(monkeypatch, local_settings, "--json") == 0

    Lake.open(local_settings).mark_run_started("embed")  # what a kill -9 mid-embed leaves behind
    report = status(local_settings)
    assert not report["healthy"] and report["unfinished"] == ["embed"]
    assert any("embed started" in p and "not finished" in p for p in report["problems"])
    assert _status_cli(monkeypatch, local_settings) == 1  # text and JSON agree
    capsys.readouterr()
    assert _status_cli(monkeypatch, local_settings, "--json") == 1
    assert json.loads(capsys.readouterr().out)["unfinished"] == ["embed"]

    assert run_embed(local_settings)["ok"]  # a later complete run clears it
    assert status(local_settings)["healthy"]


def test_status_exit_codes_agree_when_a_stage_failed(local_settings, monkeypatch, capsys):
    lake = Lake.open(local_settings)
    lake.write_run_summary("etl", {"ok": True, "files": {"quarantined": 0}})
    lake.write_run_summary("index", {"ok": False, "reason": "3 of 9 gold chunks have no vector"})
    assert _status_cli(monkeypatch, local_settings) == 1
    assert "pipeline status: UNHEALTHY" in capsys.readouterr().out
    assert _status_cli(monkeypatch, local_settings, "--json") == 1
    assert "3 of 9 gold chunks" in capsys.readouterr().out


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
