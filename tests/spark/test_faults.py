"""kill -9 at each stage boundary, then a rerun converges.

Each kill is a real SIGKILL of a real `lakerag pipeline etl|index` process (its own Spark
driver and JVM), sent by the process to itself at a deterministic point: a wrapper around the
function that would commit next (bronze's and silver's commit of the files their executors
just wrote, gold's MERGE of its staged chunks, the upload of the index's manifest). After
each kill `pipeline status` says unhealthy (the stage is unfinished); the rerun (this test's
shared Spark session) makes status healthy again. At the end the four lake tables equal those
of one uninterrupted run over the same raw files, every gold chunk has one vector, CURRENT
verifies and the API answers from it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docmaker import good_documents, make_pdf
from lakerag import config
from lakerag.embed_job import run_embed
from lakerag.embedding import load_embedder
from lakerag.index.publish import load_current, published_versions, read_current, run_index
from lakerag.lake import Lake, tables
from lakerag.pipeline import status
from lakerag_spark.pipeline import LAKE_TABLES, run_etl
from lakerag_spark.writes import STALE_STAGING_SECONDS, remove_stale_staging

pytestmark = pytest.mark.slow

# Run `lakerag ARGS...` with TARGET.ATTR (module[:Class]) wrapped: SIGKILL the process the
# first time it is called with a string argument matching PATTERN (fnmatch).
KILLER = """
import fnmatch, importlib, os, signal, sys
target, attr, pattern = sys.argv[1:4]
module, _, cls = target.partition(":")
owner = importlib.import_module(module)
owner = getattr(owner, cls) if cls else owner
original = getattr(owner, attr)
def killed_here(*args, **kwargs):
    if any(isinstance(a, str) and fnmatch.fnmatch(a, pattern) for a in args):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(owner, attr, killed_here)
from lakerag.cli import main
raise SystemExit(main(sys.argv[4:]))
"""
# Columns that record when a row was written, not what it says.
RUN_TIME_COLUMNS = {"extracted_at", "extract_seconds", "quarantined_at", "updated_at"}


def kill_9(env: dict, log: Path, target: str, attr: str, pattern: str, *command: str) -> None:
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", KILLER, target, attr, pattern, *command], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=600)
        finally:
            try:  # its JVM and Python workers (same process group) go too, as with a killed pod
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed at {attr}({pattern}): rc {proc.returncode}\n" \
                                               f"{log.read_text()[-3000:]}"


def content(lake: Lake, name: str) -> list[dict]:
    keys = tables.MERGE_KEYS[name]
    rows = [{k: v for k, v in row.items() if k not in RUN_TIME_COLUMNS} for row in tables.read_arrow(lake, name).to_pylist()]
    return sorted(rows, key=lambda row: [row[k] for k in keys])


def assert_killed(settings, stage: str) -> None:
    report = status(settings)
    assert not report["healthy"] and stage in report["unfinished"], report["problems"]


def assert_healthy(settings) -> None:
    report = status(settings)
    assert report["healthy"], report["problems"]


def test_kill_9_at_each_stage_boundary_then_rerun_converges(spark, tmp_path):
    root = tmp_path / "store"
    env_settings = {"LAKERAG_STORE_URI": f"file://{root}", "LAKERAG_INDEX_DIR": str(tmp_path / "serving"),
                    "LAKERAG_SPARK_MASTER": "local[2]", "LAKERAG_CHUNK_TOKENS": "40",
                    "LAKERAG_CHUNK_OVERLAP_TOKENS": "8"}
    settings = config.from_env(env_settings)
    env = {**os.environ, **env_settings}
    lake = Lake.open(settings)
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    docs = good_documents()

    def land(*chosen: str) -> None:
        for name in chosen:
            (raw / name).write_bytes(docs[name])

    # 1. Killed in bronze: its executors wrote the bronze files, the driver had not committed.
    land("guide.pdf", "notes.txt", "catalog.json")
    kill_9(env, tmp_path / "killed.log", "lakerag_spark.bronze", "commit_files", "bronze", "pipeline", "etl")
    assert_killed(settings, "etl")
    assert tables.row_count(lake, "bronze") == 0
    assert run_etl(settings, spark=spark)["ok"]
    assert_healthy(settings)

    # 2. Killed in silver (bronze committed): one new document, one changed.
    land("readme.md")
    (raw / "notes.txt").write_bytes(docs["notes.txt"] + b" Changed after the first run.")
    bronze_version = tables.version(lake, "bronze")
    silver_version = tables.version(lake, "silver")
    kill_9(env, tmp_path / "killed.log", "lakerag_spark.silver", "commit_files", "silver", "pipeline", "etl")
    assert tables.version(lake, "bronze") > bronze_version and tables.version(lake, "silver") == silver_version
    assert_killed(settings, "etl")
    assert run_etl(settings, spark=spark)["ok"]
    assert_healthy(settings)

    # 3. Killed in gold (silver committed, chunks staged, MERGE not begun): more documents, one deleted.
    land("page.html", "caf\u00e9 menu.txt", "notes..v2.txt")
    (raw / "catalog.json").unlink()
    (raw / "guide-2.pdf").write_bytes(make_pdf(["A second guide. Retention keeps old versions. " * 4]))
    gold_version = tables.version(lake, "gold")
    kill_9(env, tmp_path / "killed.log", "lakerag.lake.tables", "merge_stream", "gold", "pipeline", "etl")
    assert tables.version(lake, "gold") == gold_version
    assert_killed(settings, "etl")
    left = sorted(p.name for p in (root / "lake/_staging/gold").iterdir())
    assert len(left) == 1  # the killed run's staged chunks
    assert run_etl(settings, spark=spark)["ok"]
    assert_healthy(settings)
    # Young, it could be a running run's: it stays until it is an hour old, then a run removes it.
    assert sorted(p.name for p in (root / "lake/_staging/gold").iterdir()) == left
    assert remove_stale_staging(lake, "gold", now=time.time() + STALE_STAGING_SECONDS) == left
    assert not any((root / "lake/_staging/gold").iterdir())

    # The lake equals one uninterrupted run's over the same raw files (same keys and versions).
    fresh_root = tmp_path / "fresh"
    shutil.copytree(raw, fresh_root / "raw")  # copy2: same size and mtime, so the same source_version
    fresh = config.from_env({**env_settings, "LAKERAG_STORE_URI": f"file://{fresh_root}"})
    assert run_etl(fresh, spark=spark)["ok"]
    fresh_lake = Lake.open(fresh)
    for name in LAKE_TABLES:
        assert content(lake, name) == content(fresh_lake, name), name
    assert tables.row_count(lake, "silver") == len(list(raw.iterdir()))  # every document made it

    # 4. Killed mid-publish: the index files are uploaded, its manifest and CURRENT are not.
    embedder = load_embedder(settings)
    assert run_embed(settings)["ok"]
    kill_9(env, tmp_path / "killed.log", "lakerag.store:LocalStore", "put", "index/*/manifest.json", "pipeline", "index")
    assert read_current(lake.store) is None
    assert_killed(settings, "index")
    published = run_index(settings)
    assert published["published"], published
    # The killed upload is a version without a manifest: never listed, never served (pruned in time).
    assert published_versions(lake.store) == [published["version"]]
    assert_healthy(settings)

    gold_ids = {row["chunk_id"] for row in content(lake, "gold")}
    assert [row["chunk_id"] for row in content(lake, "embeddings")] == sorted(gold_ids)
    loaded = load_current(lake.store, tmp_path / "verify", expected_model=settings.embedding_model)
    assert loaded is not None and loaded.version == read_current(lake.store) == published["version"]
    assert set(loaded.chunks["chunk_id"]) == gold_ids

    from api.conftest import RunningApi

    with RunningApi(settings, embedder=embedder) as api:
        body = api.client.post("/search", json={"query": "Gold cuts it into overlapping chunks"}).json()
        assert body["matched"] and body["hits"][0]["source"] == "raw/guide.pdf", body
        assert api.client.get("/index").json()["version"] == published["version"]


def test_a_java_error_is_one_line_in_the_run_summary(spark, local_settings, monkeypatch):
    """A Py4JJavaError's text is the whole Java stack trace: it made the etl error, and with it
    `pipeline status`, the DAG's health task and the console, 60 lines and more."""
    from lakerag_spark import pipeline as etl

    def failing_silver(*_args):
        spark._jvm.java.lang.Class.forName("no.such.Klass")  # a Py4JJavaError (PySpark converts some others)

    monkeypatch.setattr(etl, "run_silver", failing_silver)
    summary = run_etl(local_settings, stages=("silver",), spark=spark)
    assert not summary["ok"]
    error = summary["error"]
    assert "\n" not in error and "ClassNotFoundException: no.such.Klass" in error, error
    assert f"etl failed: {error}" in status(local_settings)["problems"]


def test_a_raw_file_that_cannot_be_statted_is_quarantined_not_the_whole_run(spark, local_settings):
    """A symbolic-link loop under raw/ of a file:// store (the `make run` path): listing raw/
    raised ELOOP, so the ETL failed before reading anything and no document was indexed."""
    lake = Lake.open(local_settings)
    lake.store.put("raw/notes.txt", good_documents()["notes.txt"])
    loop = Path(lake.store.url("raw/loop.txt"))
    loop.symlink_to(loop.name)
    summary = run_etl(local_settings, spark=spark)
    assert summary["ok"], summary.get("error")
    assert [row["key"] for row in tables.read_arrow(lake, "bronze").to_pylist()] == ["raw/notes.txt"]
    reasons = {q["key"]: q["reason"] for q in summary["quarantined"]}
    assert list(reasons) == ["raw/loop.txt"] and "symbolic links" in reasons["raw/loop.txt"], reasons


def _interrupt_the_terminal(proc) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group; PySpark's JVM ignores it


def _terminate_the_process(proc) -> None:
    proc.send_signal(signal.SIGTERM)  # the kubelet: the pod's PID 1 only; the JVM is stopped by it


@pytest.mark.parametrize(("stop", "code", "said"), [
    (_interrupt_the_terminal, 130, "interrupted (Ctrl-C); what it committed stays, the next run does the rest"),
    (_terminate_the_process, 143, ("stopped (SIGTERM: its pod was deleted, or `kill`); what it committed stays, "
                                   "the next run does the rest")),
], ids=["ctrl-c", "sigterm"])
def test_a_stopped_pipeline_run_says_so_in_one_line(tmp_path, stop, code, said):
    """Ctrl-C in the terminal of `lakerag pipeline run`: the ETL took the cancelled Spark job for a
    failure, logged it with screens of Java stack traces, and the run went on to embed and publish.
    SIGTERM (what a job pod's PID 1 gets when Airflow cancels the task or a node drains): with no
    handler the process died on the spot (as PID 1 it ignored the signal until SIGKILL) and
    `pipeline status` could only say the stage "did not finish"."""
    root = tmp_path / "store"
    raw = root / "raw"
    raw.mkdir(parents=True)
    for name, data in good_documents().items():
        (raw / name).write_bytes(data)
    env = {**os.environ, "LAKERAG_STORE_URI": f"file://{root}", "LAKERAG_INDEX_DIR": str(tmp_path / "serving"),
           "LAKERAG_SPARK_MASTER": "local[2]"}
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lakerag.cli", "pipeline", "run"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (root / "lake/bronze/_delta_log").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        stop(proc)
        returncode = proc.wait(timeout=300)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its JVM and Python workers follow it
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("processes of the stopped run outlived it by 30 s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = log.read_text()
    assert returncode == code, text[-3000:]
    assert "Traceback" not in text and "\tat " not in text, text[-3000:]
    assert f"lakerag pipeline run: {said}" in text, text[-3000:]
    settings = config.from_env({}, store_uri=f"file://{root}", index_dir=str(tmp_path / "serving"))
    assert read_current(Lake.open(settings).store) is None  # not published after the stop
    problems = status(settings)["problems"]
    assert any(p.endswith(f"failed: {said}") for p in problems), problems


def test_a_py4j_call_cut_off_by_a_dying_jvm_is_one_line_in_the_log(spark, caplog):
    """py4j logs a call whose connection the JVM reset (killed mid-call, or killed and then stopped
    by SIGTERM) at ERROR with its traceback, on the root logger: `lakerag pipeline watch` printed it
    between its own one-line reports. The line must stay, with its cause; the traceback must go."""
    import socket
    import struct
    import threading

    from py4j import protocol
    from py4j.java_gateway import GatewayClient, GatewayParameters

    listener = socket.create_server(("127.0.0.1", 0))

    def reset_on_the_first_command() -> None:  # what the kernel sends for a killed JVM's socket
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    server = threading.Thread(target=reset_on_the_first_command, daemon=True)
    server.start()
    client = GatewayClient(gateway_parameters=GatewayParameters(port=listener.getsockname()[1]))
    try:
        with caplog.at_level("INFO"):
            answer = client.send_command("c\nt\ngetName\ne\n")
    finally:
        client.shutdown_gateway = lambda: None
        client.close()
        listener.close()
    server.join(5)
    assert answer == protocol.ERROR  # what the caller turns into a Py4JError and reports
    said = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(said) == 1 and "ConnectionResetError" in said[0].getMessage(), caplog.text
    assert "Traceback" not in caplog.text, caplog.text
