"""`lakerag serve` as a real process: fail-fast configuration errors, start-up log, health before
readiness, the first start with an empty store, the announced curl commands, a model that cannot load."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from lakerag.cli import servable_index
from lakerag.lake import Lake

from .conftest import publish

LAKERAG = str(Path(sys.executable).with_name("lakerag"))


def env_for(settings, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKERAG_", "GEMINI_"))}
    env.update({"LAKERAG_STORE_URI": settings.store_uri, "LAKERAG_INDEX_DIR": settings.index_dir,
                "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def test_bad_configuration_fails_fast_naming_the_variable(local_settings):
    for extra, expected in (({"LAKERAG_INDEX_POLL_SECONDS": "0"}, "LAKERAG_INDEX_POLL_SECONDS"),
                            ({"LAKERAG_PORT": "http"}, "LAKERAG_PORT='http' is not a valid int"),
                            ({"LAKERAG_GEMINI_BASE_URL": "localhost:9", "GEMINI_API_KEY": "k"},
                             "LAKERAG_GEMINI_BASE_URL"),
                            ({"LAKERAG_STORE_URI": "s3://bucket/x"}, "AWS_REGION")):
        started = time.monotonic()
        result = subprocess.run([LAKERAG, "serve"], env=env_for(local_settings, **extra), capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 2, (extra, result.stderr)
        assert expected in result.stderr, (extra, result.stderr)
        assert time.monotonic() - started < 30  # before any model load


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else f"exited {proc.returncode}"
        try:
            response = httpx.get(url + "/ready", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("not ready in time")


def test_first_start_with_an_empty_store(local_settings):
    port = free_port()
    proc = subprocess.Popen([LAKERAG, "serve"], env=env_for(local_settings, LAKERAG_PORT=str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(url, proc)
        assert ready["ready"] is True and ready["index_loaded"] is False
        assert ready["message"].startswith("no index yet — run the pipeline")
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        response = httpx.post(url + "/search", json={"query": "anything"})
        assert response.status_code == 503 and "run the pipeline" in response.json()["detail"]
        assert httpx.get(url + "/index").json()["loaded"] is False
        assert httpx.get(url + "/docs").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert re.search(r"Python 3\.11\.\d+, CPU quota \d+ \(of \d+\), memory limit ", err)
    assert "model sentence-transformers/all-MiniLM-L6-v2 ready (dimension 384" in err
    assert "no index published yet" in err


def test_a_port_in_use_is_said_first_with_the_setting_that_moves_it(local_settings):
    """`lakerag run` says so before its pipeline run, `lakerag serve` before loading anything, and
    neither announces a server it never started (`make run` printed "serving on" after uvicorn's
    bind error)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (["run", "--samples"], ["serve"]):
            result = subprocess.run([LAKERAG, *command], env=env_for(local_settings, LAKERAG_PORT=str(port)),
                                    capture_output=True, text=True, timeout=120, check=False)
            assert result.returncode == 2, result.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "LAKERAG_PORT" in result.stderr
            assert f"PORT={port + 1})" in result.stderr  # another port, not the one in use (it said 8123 for any)
            assert "serving on" not in result.stdout
    # Nothing ran: no samples copied, no pipeline output.
    assert not list(Path(local_settings.store_uri.removeprefix("file://")).glob("*"))


@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.1"])  # no such address; an address not on this machine
def test_a_host_it_cannot_listen_on_names_lakerag_host_not_the_port(local_settings, host):
    from lakerag.api.main import PortUnavailable, listen_socket

    with pytest.raises(PortUnavailable) as raised:
        listen_socket(local_settings.model_copy(update={"host": host, "port": free_port()}))
    message = str(raised.value)
    assert f"cannot listen on {host}:" in message and "LAKERAG_HOST" in message, message
    assert "holds the port" not in message


def test_serve_announces_curl_commands_that_work(local_settings, sample_index):
    publish(local_settings, sample_index)
    port = free_port()
    code = "import sys; from lakerag import config; from lakerag.api.main import serve; " \
           "sys.exit(serve(config.from_env(), announce=True))"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env_for(local_settings, LAKERAG_PORT=str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        lines = []
        while not any(line.strip().startswith("Stop with") for line in lines):
            lines.append(proc.stdout.readline())
        commands = [line.strip() for line in lines if line.strip().startswith("curl ")]
        assert f"console: http://127.0.0.1:{port}/" in "".join(lines)
        assert len(commands) == 2 and "/search" in commands[0] and "/answer" in commands[1]
        for command in commands:
            result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                                    check=False)
            assert result.returncode == 0, result.stderr
            body = json.loads(result.stdout)
            assert body["matched"] is True, body
        search, answer = (json.loads(subprocess.run(["bash", "-c", c], capture_output=True, text=True,
                                                    check=True).stdout) for c in commands)
        assert search["hits"][0]["source"] == "raw/incident-postmortem-inc-2291.pdf"
        assert "E-7731-QX" in answer["answer"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def start_run(settings, log: Path) -> tuple[subprocess.Popen, str]:
    """`lakerag run` on a free port, its output in ``log``: the process and its URL."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([LAKERAG, "run"], env=env_for(settings, LAKERAG_PORT=str(port)), stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


@contextmanager
def announced_run(settings, tmp_path, ready_timeout: float = 120):
    """`lakerag run`, once it has announced itself: yields its URL and log; SIGTERM after."""
    log = tmp_path / "run.log"
    proc, base = start_run(settings, log)
    try:
        wait_ready(base, proc, timeout=ready_timeout)
        deadline = time.monotonic() + 60
        while "Stop with Ctrl-C" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_run_on_an_empty_store_says_how_to_add_documents_not_questions_it_cannot_answer(local_settings, tmp_path):
    """`lakerag run` on a new store announced curl commands about the sample incident, each
    answered 503 "no index yet — run the pipeline" while the pipeline had just run."""
    with announced_run(local_settings, tmp_path) as (base, log):
        text = log.read_text()
    assert "curl " not in text and "lakerag ask" not in text
    assert "Nothing to search yet: add documents" in text
    assert f"drop files on the console at {base}/" in text
    assert f"lakerag upload DIR --url {base}" in text
    assert f"{local_settings.store_uri}/raw/" in text


def test_run_on_a_store_of_other_documents_announces_a_question_they_answer(local_settings, tmp_path):
    """The announcement always asked the samples' INC-2291 question: on a store of one's own
    documents its curl commands answered "No relevant match"."""
    Lake.open(local_settings).store.put("raw/lighthouse.md", b"# Lighthouse keeping\n\nThe keeper winds the "
                                        b"clockwork of the lamp at dusk and logs the fog horn hours every night.")
    with announced_run(local_settings, tmp_path, ready_timeout=300) as (_, log):
        commands = [line.strip() for line in log.read_text().splitlines() if line.strip().startswith("curl ")]
        assert len(commands) == 2 and "INC-2291" not in commands[0]
        for command in commands:
            body = json.loads(subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                                             check=True).stdout)
            assert body["matched"] is True, body
            assert (body.get("hits") or body.get("chunks"))[0]["source"] == "raw/lighthouse.md"


def test_run_serves_the_published_index_while_the_pipeline_catches_up(local_settings, sample_index, tmp_path):
    """A second `make run` served nothing until a pipeline run that found nothing new had finished
    (~25 s of Spark start): a store with an index is served at once, the run going on behind it."""
    version = publish(local_settings, sample_index)
    log = tmp_path / "run.log"
    proc, base = start_run(local_settings, log)
    try:
        wait_ready(base, proc)
        body = httpx.post(f"{base}/search", json={"query": "incident commander", "k": 2}, timeout=30).json()
        assert body["index_version"] == version and body["matched"] is True
        started = log.read_text()
        assert f"serving index {version} now" in started and "serving on" in started
        assert "pipeline run 1" not in started  # the first run is still going (Spark alone takes seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert proc.returncode == 0, log.read_text()[-3000:]
    # Another model's index is not served first (the API would refuse it): the pipeline runs first and says why.
    store = Lake.open(local_settings).store
    assert servable_index(local_settings, store) == version
    assert servable_index(local_settings.replace(embedding_model="BAAI/bge-large-en-v1.5"), store) is None

def test_a_model_that_cannot_load_stops_the_process(local_settings, tmp_path):
    port = free_port()
    env = env_for(local_settings, LAKERAG_PORT=str(port), LAKERAG_EMBEDDING_MODEL="acme/not-a-model",
                  LAKERAG_OFFLINE="true", LAKERAG_MODEL_CACHE_DIR=str(tmp_path / "empty-cache"))
    result = subprocess.run([LAKERAG, "serve"], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "acme/not-a-model" in result.stderr
    assert "LAKERAG_MODEL_CACHE_DIR" in result.stderr
