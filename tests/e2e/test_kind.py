"""The chart on a real cluster: kind from kind-config.yaml, the four images loaded, the kind
profile installed, every workload ready, the sample documents uploaded through the API, the
pipeline DAG triggered in Airflow, and a question answered with the right source over a
port-forward; then one more upload starts a DAG run by itself (the API's Airflow asset event)
and becomes searchable. The cluster is deleted afterwards.

Needs Docker, `kind` and the repository's .tools/helm and .tools/kubectl (`make tools`). Where
no kind binary exists (these build machines: no cluster can run here) it is skipped with that
reason. By hand: `make kind-up deploy`, then `make port-forward` and a query (docs/kubernetes.md).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "lakerag"
SAMPLES = REPO / "services" / "lakerag" / "samples"
HELM = REPO / ".tools" / "helm"
KUBECTL = REPO / ".tools" / "kubectl"
NAMESPACE = "lakerag"
RELEASE = "lakerag"
CLUSTER = f"lakerag-e2e-{os.getpid()}"
DAG_ID = "lakerag_pipeline"
READY_TIMEOUT = 25 * 60  # first pulls of postgres/minio/prometheus, Airflow's migration
PIPELINE_TIMEOUT = 30 * 60


def _why_not_runnable() -> str | None:
    if shutil.which("kind") is None:
        return "no kind binary: a kind cluster cannot run on this machine (run `make kind-up deploy` where it can)"
    if shutil.which("docker") is None:
        return "no docker client: kind needs Docker"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "Docker is not running: kind needs a Docker engine"
    if not (HELM.exists() and KUBECTL.exists()):
        return "no .tools/helm or .tools/kubectl: run `make tools`"
    return None


REASON = _why_not_runnable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def run(*args, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False,
                            **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    """A throwaway kind cluster from kind-config.yaml, deleted afterwards."""
    import yaml

    work = tmp_path_factory.mktemp("kind")
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    (REPO / "local_data").mkdir(exist_ok=True)
    for node in config["nodes"]:
        # The host ports are for a developer's cluster; this one may run beside it.
        node.pop("extraPortMappings", None)
        for mount in node.get("extraMounts", []):
            mount["hostPath"] = str((REPO / mount["hostPath"]).resolve())
    config["name"] = CLUSTER
    config_file = work / "kind-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    path = work / "kubeconfig"
    run("kind", "create", "cluster", "--name", CLUSTER, "--config", config_file, "--kubeconfig", path,
        "--wait", "180s", timeout=600)
    try:
        yield path
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], capture_output=True, timeout=300,
                       check=False)


@pytest.fixture(scope="module")
def loaded_images(kubeconfig, images):
    """The images e2e's session builds them (BAKE_MODEL=packaged: the kind profile is offline)."""
    for tag in images.values():
        run("kind", "load", "docker-image", "--name", CLUSTER, tag, timeout=900)
    return images


@pytest.fixture(scope="module")
def release(kubeconfig, loaded_images, build_env, kube):
    """Installed as `make deploy` does, with --wait: an install that never gets ready fails here."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    try:
        run(HELM, "install", RELEASE, CHART, "--namespace", NAMESPACE, "--create-namespace",
            "-f", CHART / "values-kind.yaml", "--set", f"global.imageTag={build_env['IMAGE_TAG']}",
            "--set", f"global.imageRegistry={build_env['REGISTRY']}", "--wait", "--timeout", f"{READY_TIMEOUT}s",
            env=env, timeout=READY_TIMEOUT + 120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(kube[1], NAMESPACE)}") from None
    return env


@pytest.fixture(scope="module")
def kube(kubeconfig):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    return client.AppsV1Api(api_client), client.CoreV1Api(api_client), client.BatchV1Api(api_client)


def _diagnose(core, namespace: str) -> str:
    lines = []
    for pod in core.list_namespaced_pod(namespace).items:
        statuses = [(c.name, c.ready, c.restart_count, c.state.waiting.reason if c.state.waiting else "")
                    for c in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])]
        lines.append(f"{pod.metadata.name} {pod.status.phase} {statuses}")
    events = core.list_namespaced_event(namespace).items[-25:]
    lines += [f"event {e.involved_object.name}: {e.reason} {e.message}" for e in events]
    return "\n".join(lines)


def wait_for_workloads(apps, core, batch, timeout: float = READY_TIMEOUT) -> dict:
    """Every Deployment and StatefulSet fully ready, every Job succeeded; returns what it saw."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        workloads = apps.list_namespaced_deployment(NAMESPACE).items + \
            apps.list_namespaced_stateful_set(NAMESPACE).items
        for workload in workloads:
            want = workload.spec.replicas or 0
            if (workload.status.ready_replicas or 0) < want:
                pending.append(f"{workload.kind or type(workload).__name__} {workload.metadata.name}")
        for job in batch.list_namespaced_job(NAMESPACE).items:
            if not job.status.succeeded:
                pending.append(f"Job {job.metadata.name}")
        if workloads and not pending:
            return {w.metadata.name: w.status.ready_replicas for w in workloads}
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout}s: {pending}\n{_diagnose(core, NAMESPACE)}")
        time.sleep(10)


def secret_value(core, name: str, key: str) -> str:
    return base64.b64decode(core.read_namespaced_secret(name, NAMESPACE).data[key]).decode()


@contextmanager
def port_forward(env: dict, service: str, port: int):
    local = free_port()
    process = subprocess.Popen([str(KUBECTL), "-n", NAMESPACE, "port-forward", f"svc/{service}", f"{local}:{port}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", local)) == 0:
                    break
            if process.poll() is not None:
                raise AssertionError(f"kubectl port-forward {service} exited: {process.stdout.read()}")
            time.sleep(0.5)
        else:
            raise AssertionError(f"port-forward to {service}:{port} never opened")
        yield f"http://127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def airflow_client(airflow_url: str, password: str):
    """An httpx client logged in to Airflow's REST API (SimpleAuthManager token)."""
    import httpx

    with httpx.Client(base_url=airflow_url, timeout=60) as http:
        token = http.post("/auth/token", json={"username": "admin", "password": password})
        assert token.status_code == 201, token.text
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield http


def start_pipeline(http, parse_timeout: float = 600, run_timeout: float = 300) -> str:
    """Unpause the DAG once the dag-processor has parsed it, and nothing else (docs/airflow.md,
    "The first run"): the schedule's run starts at once. Returns that run's id."""
    deadline = time.monotonic() + parse_timeout
    while http.get(f"/api/v2/dags/{DAG_ID}").status_code != 200:
        assert time.monotonic() < deadline, f"DAG {DAG_ID} never appeared in Airflow"
        time.sleep(10)
    unpaused = http.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert unpaused.status_code == 200 and unpaused.json()["is_paused"] is False, unpaused.text
    deadline = time.monotonic() + run_timeout
    while True:
        runs = http.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]
        # An asset event the API retried after the DAG was parsed may add an asset_triggered run;
        # unpausing itself must give one scheduled run and no manual one.
        scheduled = [run for run in runs if run["run_type"] == "scheduled"]
        if scheduled:
            assert len(scheduled) == 1 and not [r for r in runs if r["run_type"] == "manual"], runs
            return scheduled[0]["dag_run_id"]
        assert time.monotonic() < deadline, f"unpausing {DAG_ID} started no run in {run_timeout}s"
        time.sleep(5)


def run_state(http, run_id: str) -> tuple[str, dict[str, str]]:
    """The run's state and each task's state."""
    state = http.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
    tasks = http.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return state, {t["task_id"]: t["state"] for t in tasks}


def wait_for_run(http, run_id: str) -> None:
    deadline = time.monotonic() + PIPELINE_TIMEOUT
    while True:
        state, tasks = run_state(http, run_id)
        if state in {"success", "failed"}:
            break
        assert time.monotonic() < deadline, f"DAG run {run_id} still {state} after {PIPELINE_TIMEOUT}s: {tasks}"
        time.sleep(15)
    assert state == "success", f"DAG run {run_id} failed: {tasks}"


def trigger_pipeline(airflow_url: str, password: str) -> str:
    """Run the DAG once through Airflow's REST API, as the docs say (unpause), and wait for it to succeed."""
    with airflow_client(airflow_url, password) as http:
        run_id = start_pipeline(http)
        wait_for_run(http, run_id)
        return run_id


def wait_for_asset_triggered_run(airflow_url: str, password: str, before: set[str]) -> str:
    """A run the API's asset event started (no trigger, no schedule), not among ``before``; waits for it to succeed."""
    with airflow_client(airflow_url, password) as http:
        deadline = time.monotonic() + PIPELINE_TIMEOUT
        while True:
            runs = http.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]
            new = [r["dag_run_id"] for r in runs if r["run_type"] == "asset_triggered" and r["dag_run_id"] not in before]
            if new:
                wait_for_run(http, new[-1])
                return new[-1]
            assert time.monotonic() < deadline, f"the upload started no asset_triggered run: {runs}"
            time.sleep(10)


def run_ids(airflow_url: str, password: str) -> set[str]:
    with airflow_client(airflow_url, password) as http:
        return {r["dag_run_id"] for r in http.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]}


def test_chart_on_kind_answers_a_question(release, kube):
    import httpx

    apps, core, batch = kube
    ready = wait_for_workloads(apps, core, batch)
    assert {"lakerag-api", "lakerag-airflow-scheduler", "lakerag-spark-worker", "lakerag-postgres",
            "lakerag-minio", "lakerag-prometheus"} <= set(ready)

    # `helm test`: /ready and /search from inside the cluster (no index yet is accepted there).
    run(HELM, "test", RELEASE, "--namespace", NAMESPACE, "--logs", env=release, timeout=300)

    api_key = secret_value(core, "lakerag-secrets", "LAKERAG_API_KEY")
    with port_forward(release, "lakerag-api", 8000) as api_url, httpx.Client(base_url=api_url, timeout=120) as api:
        assert api.get("/ready").status_code == 200
        for path in sorted((SAMPLES / "docs").iterdir()):
            response = api.post("/documents", files={"file": (path.name, path.read_bytes())},
                                headers={"X-API-Key": api_key})
            assert response.status_code == 201, response.text

        with port_forward(release, "lakerag-airflow-api-server", 8080) as airflow_url:
            trigger_pipeline(airflow_url, secret_value(core, "lakerag-airflow", "admin-password"))

        # The API's watcher polls index/CURRENT (every 10 s in the kind profile) and hot-swaps.
        deadline = time.monotonic() + 180
        while not api.get("/ready").json()["index_loaded"]:
            assert time.monotonic() < deadline, "the API never loaded the published index"
            time.sleep(5)

        questions = json.loads((SAMPLES / "questions.json").read_text())
        for question in questions[:3]:
            result = api.post("/search", json={"query": question["question"], "k": 5})
            assert result.status_code == 200, result.text
            body = result.json()
            assert body["matched"], body
            sources = [hit["source"] for hit in body["hits"]]
            assert question["expected_source"] in sources, (question["question"], sources)

        # Event-driven sync: one more upload through the API starts a DAG run by itself (the API records
        # an Airflow asset event; nobody triggers, no schedule is due) and the document becomes searchable.
        airflow_password = secret_value(core, "lakerag-airflow", "admin-password")
        with port_forward(release, "lakerag-airflow-api-server", 8080) as airflow_url:
            before = run_ids(airflow_url, airflow_password)
            fresh = b"Aurora watch rota: the night shift photographs the northern lights from the east ridge."
            response = api.post("/documents", files={"file": ("aurora-watch.txt", fresh)},
                                headers={"X-API-Key": api_key})
            assert response.status_code == 201 and "requested from Airflow" in response.json()["note"], response.text
            wait_for_asset_triggered_run(airflow_url, airflow_password, before)
        deadline = time.monotonic() + 180
        while True:
            hits = api.post("/search", json={"query": "who photographs the northern lights", "k": 3}).json()["hits"]
            if "raw/aurora-watch.txt" in [hit["source"] for hit in hits]:
                break
            assert time.monotonic() < deadline, f"the uploaded document never became searchable: {hits}"
            time.sleep(5)
        metrics = api.get("/metrics").text
        sent = re.search(r'^lakerag_airflow_triggers_total\{outcome="sent"\} (\S+)$', metrics, re.MULTILINE)
        assert sent and float(sent.group(1)) >= 1, "the API counted no asset event sent"

    # Prometheus scrapes the API through its pod annotations.
    with port_forward(release, "lakerag-prometheus", 9090) as prometheus_url:
        deadline = time.monotonic() + 120
        while True:
            up = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": 'up{component="api"}'}).json()
            if [r for r in up["data"]["result"] if r["value"][1] == "1"]:
                break
            assert time.monotonic() < deadline, f"Prometheus does not scrape the API: {up}"
            time.sleep(5)
