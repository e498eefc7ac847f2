"""Every task's container command, run locally in DAG order, as the pods would run it (same argv,
same env keys; ConfigMap and Secret emulated, volumes as temp dirs, Spark in local mode as the
chart's ConfigMap sets it without a Spark master), against a file:// lake over the sample
documents; then the published index answers known questions over HTTP. So the DAG cannot
drift from the CLI.

The commands run with the main venv's `lakerag` (.venv, `make install`): Airflow's own venv
has neither Spark nor torch, just as the Airflow image has none; the pods bring them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from airflow_helpers import REPO, TASK_ORDER, free_port, render_pod
from lakerag import config
from lakerag.lake import Lake, tables

MAIN_BIN = REPO / ".venv" / "bin"
LAKERAG = MAIN_BIN / "lakerag"
SAMPLES = REPO / "services" / "lakerag" / "samples"
QUESTIONS = json.loads((SAMPLES / "questions.json").read_text(encoding="utf-8"))
TABLES = ("bronze", "silver", "gold", "embeddings")
STAGE_TASKS = [t for t in TASK_ORDER if t != "health"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LAKERAG.exists(), reason=f"{LAKERAG} missing: run `make install` for the main venv"),
]


class LocalCluster:
    """What Kubernetes gives a pod, minus Kubernetes: the ConfigMap and Secret as envFrom,
    the downward API, volumes as directories, and the image's PATH (the main venv)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.store = tmp / "store"
        self.serving = tmp / "serving"
        # lakerag-config / lakerag-secrets as the chart would fill them for a file:// lake.
        # Spark in local mode, as the chart renders it without a Spark master (spark.enabled=false).
        self.configmap = {"LAKERAG_STORE_URI": f"file://{self.store}", "LAKERAG_OFFLINE": "true",
                          "LAKERAG_SPARK_MASTER": "local[1]",
                          "LAKERAG_INDEX_DIR": str(self.serving), "LAKERAG_LOG_LEVEL": "INFO"}
        self.secret = {"LAKERAG_API_KEY": "local-run-api-key"}
        # The image's own environment: its venv first on PATH, Python for Spark executors.
        self.image_env = {
            "PATH": f"{MAIN_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(tmp / "home"),
            "LANG": "C.UTF-8",
            "PYSPARK_PYTHON": str(MAIN_BIN / "python"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        if os.environ.get("JAVA_HOME"):
            self.image_env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        (tmp / "home").mkdir()

    def command_for(self, pod) -> tuple[list[str], dict[str, str]]:
        (container,) = pod.spec.containers
        env = dict(self.image_env)
        for source in container.env_from:  # envFrom first; explicit env wins, as in Kubernetes
            env.update(self.configmap if source.config_map_ref else self.secret)
        volume_dirs = {m.mount_path: self.tmp / "volumes" / m.name for m in container.volume_mounts
                       if m.mount_path != "/tmp"}
        for var in container.env or []:
            if var.value_from is not None:
                assert var.value_from.field_ref.field_path == "status.podIP", var
                env[var.name] = "127.0.0.1"
                continue
            value = var.value
            for mount, local in volume_dirs.items():
                if value == mount or value.startswith(mount + "/"):
                    local.mkdir(parents=True, exist_ok=True)
                    value = str(local) + value[len(mount):]
            env[var.name] = value
        assert container.command[0] == "lakerag", container.command
        return [str(LAKERAG), *container.command[1:], *container.args], env

    def run_task(self, dag, task_id: str, conf: dict | None = None) -> subprocess.CompletedProcess:
        _, pod = render_pod(dag, task_id, conf)
        argv, env = self.command_for(pod)
        proc = subprocess.run(argv, check=False, env=env, cwd=self.tmp, capture_output=True, text=True, timeout=900)
        log = self.tmp / "logs" / f"{task_id}.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run_stages(self, dag) -> None:
        for task_id in STAGE_TASKS:
            proc = self.run_task(dag, task_id)
            assert proc.returncode == 0, f"{task_id} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                         f"{proc.stderr[-5000:]}"

    def health(self, dag) -> tuple[int, dict]:
        proc = self.run_task(dag, "health")
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"health printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
        return proc.returncode, report

    def table_versions(self) -> dict[str, int]:
        lake = Lake.open(config.from_env({}, store_uri=f"file://{self.store}"))
        return {name: tables.version(lake, name) for name in TABLES}

    def current_index(self) -> str:
        return (self.store / "index" / "CURRENT").read_text().strip()


def serve_and_search(cluster: LocalCluster, questions: list[dict]) -> list[dict]:
    """The chart's API pod: init container `lakerag index sync --once`, then `lakerag serve`."""
    env = {**cluster.image_env, **cluster.configmap, **cluster.secret}
    sync = subprocess.run([str(LAKERAG), "index", "sync", "--once", "--dest", str(cluster.serving)],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    port = free_port()
    env.update(LAKERAG_HOST="127.0.0.1", LAKERAG_PORT=str(port))
    log = (cluster.tmp / "logs" / "serve.log").open("w")
    server = subprocess.Popen([str(LAKERAG), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (cluster.tmp / "logs" / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as resp:
                    if json.load(resp)["index_loaded"]:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "API not ready with an index after 240 s"
            time.sleep(1)
        answers = []
        for question in questions:
            request = urllib.request.Request(f"{base}/search", method="POST",
                                             data=json.dumps({"query": question["question"], "k": 5}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as resp:
                answers.append(json.load(resp))
        return answers
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_dag_commands_build_a_searchable_index_and_report_health(dag, tmp_path):
    cluster = LocalCluster(tmp_path)
    raw = cluster.store / "raw"
    shutil.copytree(SAMPLES / "docs", raw)

    # Run 1: the whole DAG over the samples.
    cluster.run_stages(dag)
    code, report = cluster.health(dag)
    assert code == 0 and report["healthy"] is True and report["quarantined"] == 0, report
    assert all(report["stages"][stage] for stage in ("etl", "embed", "index")), report
    first_versions, first_index = cluster.table_versions(), cluster.current_index()

    results = serve_and_search(cluster, QUESTIONS[:3])
    for question, result in zip(QUESTIONS[:3], results, strict=True):
        assert result["matched"] is True, result
        assert result["index_version"] == first_index
        assert question["expected_source"] in [hit["source"] for hit in result["hits"]], (question, result)

    # Run 2, nothing changed (what an hourly schedule mostly sees): no Delta commit, no new index.
    cluster.run_stages(dag)
    assert cluster.table_versions() == first_versions
    assert cluster.current_index() == first_index
    assert cluster.health(dag)[0] == 0

    # Run 3, a file that cannot be read lands in raw/: the stages still succeed, the health
    # task fails (a red run in Airflow) and its report names the quarantine.
    (raw / "broken-scan.pdf").write_bytes(b"%PDF-1.7\nthis is not a PDF body\n")
    cluster.run_stages(dag)
    code, report = cluster.health(dag)
    assert code == 1, report
    assert report["healthy"] is False and report["quarantined"] >= 1, report
