"""The chart's own API pod, run the way the kubelet would run it, under Docker: the rendered
init container and API container with their exact command, args, env (envFrom the rendered
ConfigMap and Secret, $(VAR) expansion, resourceFieldRef), user, read-only root, dropped
capabilities and volumes (emptyDirs shared between the two, the model-cache PVC). Against a
first install's empty bucket (moto S3), the init container must succeed, the readiness probe's
path must answer 200 and /search must say that no index exists yet.

Where no cluster can run, this is what proves the pod spec works with the real image;
tests/e2e/test_kind.py does the same on kind.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chart.helm import find, pod_spec, render

pytestmark = pytest.mark.e2e


def resolve_env(container: dict, objects: list[dict], pod_ip: str | None = None) -> dict[str, str]:
    """The environment the kubelet would give ``container`` (envFrom first, then env in order)."""
    def config_map(name):
        return find(objects, "ConfigMap", name)["data"]

    def secret(name):
        return {k: base64.b64decode(v).decode() for k, v in find(objects, "Secret", name)["data"].items()}

    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map(source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(secret(source["secretRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            env[item["name"]] = secret(source["secretKeyRef"]["name"])[source["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in source:
            env[item["name"]] = config_map(source["configMapKeyRef"]["name"])[source["configMapKeyRef"]["key"]]
        elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP" and pod_ip:
            env[item["name"]] = pod_ip
        elif "resourceFieldRef" in source:
            assert source["resourceFieldRef"]["resource"] == "limits.cpu"
            limit = str(container["resources"]["limits"]["cpu"])
            cores = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
            env[item["name"]] = str(math.ceil(cores))
        else:
            raise AssertionError(f"unsupported valueFrom {source}")
    return env


def docker_options(container: dict, spec: dict, volumes: dict[str, str]) -> tuple[str, ...]:
    """Security context and mounts as `docker run` options."""
    pod_sc = spec.get("securityContext", {})
    sc = container.get("securityContext", {})
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup", user))
    options = ["--user", f"{user}:{group}", "--cap-drop", "ALL"]
    if "fsGroup" in pod_sc:
        options += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    if sc.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for mount in container.get("volumeMounts", []):
        options += ["-v", f"{volumes[mount['name']]}:{mount['mountPath']}" + (":ro" if mount.get("readOnly") else "")]
    command = container.get("command", [])
    if command:
        options += ["--entrypoint", command[0]]
    return tuple(options)


def container_argv(container: dict) -> list[str]:
    return list(container.get("command", [])[1:]) + list(container.get("args", []))


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _status(url: str) -> int | None:
    """What the kubelet's HTTP probe looks at: the status code (any body)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def run_api_pod(docker, objects: list[dict], port: int, timeout: float = 300) -> dict:
    """Init containers to completion, then the API container; returns what the probes saw."""
    spec = pod_spec(find(objects, "Deployment", "lakerag-api"))
    fs_group = spec["securityContext"]["fsGroup"]
    image = spec["containers"][0]["image"]
    volumes = {}
    for volume in spec["volumes"]:
        name = docker.volume(f"pod-{volume['name']}-{uuid.uuid4().hex[:6]}")
        # The kubelet gives emptyDirs and PVCs to fsGroup; a fresh docker volume is root's.
        docker("run", "--rm", "--user", "0", "--entrypoint", "chown", "-v", f"{name}:/volume", image,
               f"0:{fs_group}", "/volume")
        docker("run", "--rm", "--user", "0", "--entrypoint", "chmod", "-v", f"{name}:/volume", image,
               "2775", "/volume")
        volumes[volume["name"]] = name
    init_logs = []
    for init in spec["initContainers"]:
        result = docker.run(init["image"], *container_argv(init), env=resolve_env(init, objects),
                            options=docker_options(init, spec, volumes))
        assert result.returncode == 0, f"init container {init['name']} failed:\n{result.stdout}\n{result.stderr}"
        init_logs.append(result.stdout + result.stderr)
    api = spec["containers"][0]
    env = resolve_env(api, objects)
    assert env["LAKERAG_PORT"] == str(port)
    name = docker.start(api["image"], *container_argv(api), env=env, options=docker_options(api, spec, volumes))
    base = f"http://127.0.0.1:{port}"
    ready_path = api["readinessProbe"]["httpGet"]["path"]
    deadline = time.monotonic() + timeout
    while True:
        if docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            logs = docker("logs", name, check=False)
            raise AssertionError(f"the api container stopped:\n{logs.stdout[-3000:]}\n{logs.stderr[-5000:]}")
        try:
            status, ready = _get(base + ready_path)
            if status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{ready_path} not 200 after {timeout}s"
        time.sleep(2)
    return {"base": base, "name": name, "ready": ready, "init_logs": init_logs, "api": api, "env": env}


class PodNetwork:
    """Pods of the chart on one Docker network, each main container reachable by the names of
    the Services that select it (as cluster DNS would resolve them)."""

    def __init__(self, docker, objects: list[dict], tmp_path: Path):
        self.docker, self.objects, self.tmp = docker, objects, tmp_path
        self.network = f"{harness_prefix()}-net-{uuid.uuid4().hex[:6]}"
        # A subnet of our own, so each pod gets its IP before its containers start (--ip), as a
        # kubelet gives one (status.podIP); a random /24 that no other Docker network holds.
        for _ in range(20):
            third = uuid.uuid4().int % 250
            if docker("network", "create", "--subnet", f"172.31.{third}.0/24", self.network,
                      check=False).returncode == 0:
                break
        else:
            raise AssertionError("no free 172.31.x.0/24 subnet for the pod network")
        self.pod_ips = iter(f"172.31.{third}.{host}" for host in range(10, 250))
        self.containers: list[str] = []
        self.extra_hosts: list[str] = []

    def close(self):
        for name in self.containers:
            self.docker("rm", "-f", name, check=False)
        self.docker("network", "rm", self.network, check=False)

    def aliases(self, workload: dict) -> list[str]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        return [o["metadata"]["name"] for o in self.objects if o["kind"] == "Service"
                and o["spec"]["selector"].items() <= labels.items()]

    def volumes(self, spec: dict, image: str) -> dict[str, str]:
        fs_group = spec.get("securityContext", {}).get("fsGroup", 0)
        mounts = {}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                folder = self.tmp / f"{volume['name']}-{uuid.uuid4().hex[:6]}"
                folder.mkdir()
                for key, text in find(self.objects, "ConfigMap", volume["configMap"]["name"])["data"].items():
                    (folder / key).write_text(text)
                mounts[volume["name"]] = str(folder)
                continue
            name = self.docker.volume(f"pod-{volume['name']}-{uuid.uuid4().hex[:6]}")
            self.docker("run", "--rm", "--user", "0", "--entrypoint", "chown", "-v", f"{name}:/volume", image,
                        f"0:{fs_group}", "/volume")
            self.docker("run", "--rm", "--user", "0", "--entrypoint", "chmod", "-v", f"{name}:/volume", image,
                        "2775", "/volume")
            mounts[volume["name"]] = name
        return mounts

    def _args(self, container, spec, volumes, extra_env, pod_ip) -> list[str]:
        env = {**resolve_env(container, self.objects, pod_ip), **extra_env}
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        hosts = [a for host in self.extra_hosts for a in ("--add-host", host)]
        return [*env_args, *hosts, *docker_options(container, spec, volumes)]

    def run_pod(self, kind: str, name: str, extra_env: dict | None = None, timeout: float = 600) -> dict:
        """Init containers in order, then the main containers (detached); returns their names."""
        workload = find(self.objects, kind, name)
        spec = pod_spec(workload)
        volumes = self.volumes(spec, spec["containers"][0]["image"])
        pod_ip = next(self.pod_ips)  # init containers run one at a time, then the (first) main container
        for init in spec.get("initContainers", []):
            result = self.docker("run", "--rm", "--network", self.network, "--ip", pod_ip,
                                 *self._args(init, spec, volumes, extra_env or {}, pod_ip), init["image"],
                                 *container_argv(init), check=False, timeout=timeout)
            assert result.returncode == 0, \
                f"{name}/{init['name']} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        started = {}
        for container in spec["containers"]:
            cname = f"{self.network}-{name}-{container['name']}"
            aliases = [a for alias in self.aliases(workload) for a in ("--network-alias", alias)] \
                if kind != "Job" else []
            ip = ("--ip", pod_ip) if not started else ()  # Docker gives each container its own address
            self.docker("run", "-d", "--name", cname, "--network", self.network, *ip, *aliases,
                        *self._args(container, spec, volumes, extra_env or {}, pod_ip), container["image"],
                        *container_argv(container))
            self.containers.append(cname)
            started[container["name"]] = cname
        return started

    def wait_exit(self, container: str, timeout: float = 900) -> None:
        code = self.docker("wait", container, timeout=timeout).stdout.strip()
        logs = self.docker("logs", container, check=False)
        assert code == "0", f"{container} exited {code}:\n{logs.stdout[-3000:]}\n{logs.stderr[-5000:]}"

    def ip(self, container: str) -> str:
        return self.docker("inspect", "--format",
                           "{{(index .NetworkSettings.Networks \"" + self.network + "\").IPAddress}}",
                           container).stdout.strip()

    def wait_ready(self, container: str, probe: dict, timeout: float = 600) -> None:
        """The container's readiness probe, as the kubelet runs it, until it passes."""
        deadline = time.monotonic() + timeout
        while True:
            if self.docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip() != "true":
                logs = self.docker("logs", container, check=False)
                raise AssertionError(f"{container} stopped:\n{logs.stdout[-3000:]}\n{logs.stderr[-5000:]}")
            if "exec" in probe:
                ok = self.docker("exec", container, *probe["exec"]["command"], check=False,
                                 timeout=120).returncode == 0
            else:
                port = probe["httpGet"]["port"]
                if isinstance(port, str):
                    port = self.port_number(container, port)
                ok = _status(f"http://{self.ip(container)}:{port}{probe['httpGet']['path']}") == 200
            if ok:
                return
            assert time.monotonic() < deadline, f"{container} not ready after {timeout}s"
            time.sleep(3)

    def port_number(self, container: str, port_name: str) -> int:
        for workload in self.objects:
            spec = pod_spec(workload)
            for c in (spec or {}).get("containers", []):
                if container.endswith(f"-{c['name']}"):
                    for port in c.get("ports", []):
                        if port["name"] == port_name:
                            return port["containerPort"]
        raise AssertionError(f"no port {port_name} in {container}")


def harness_prefix() -> str:
    import harness

    return harness.PREFIX


def main_container(objects, kind, name) -> dict:
    return pod_spec(find(objects, kind, name))["containers"][0]


def chart_objects(store_uri: str, endpoint: str, port: int, image_tag: str, registry: str = "") -> list[dict]:
    return render(sets=(f"global.config.LAKERAG_STORE_URI={store_uri}", f"global.config.AWS_ENDPOINT_URL={endpoint}",
                        "global.config.LAKERAG_OFFLINE=true", f"api.port={port}",
                        "secrets.awsAccessKeyId=testing", "secrets.awsSecretAccessKey=testing",
                        f"global.imageTag={image_tag}", f"global.imageRegistry={registry}"))


def test_rendered_api_pod_runs_on_a_first_install(docker, images, build_env, empty_store, moto_endpoint):
    import harness

    port = harness.free_port()
    objects = chart_objects(empty_store, moto_endpoint, port, build_env["IMAGE_TAG"], build_env["REGISTRY"])
    pod = run_api_pod(docker, objects, port)
    assert "no index published yet" in pod["init_logs"][0]
    assert pod["ready"]["ready"] is True and pod["ready"]["index_loaded"] is False
    health_path = pod["api"]["livenessProbe"]["httpGet"]["path"]
    assert _get(pod["base"] + health_path)[0] == 200
    status, body = _post(pod["base"] + "/search", {"query": "what is lakerag", "k": 3})
    assert status == 503 and "no index yet" in body["detail"], body
    # The kubelet's view of the container: the chart's user, a read-only root.
    assert docker("exec", pod["name"], "id", "-u").stdout.strip() == "10001"
    assert docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", pod["name"]).stdout.strip() == "true"
    # The model cache went where the chart points sentence-transformers (the PVC), writable.
    assert pod["env"]["HF_HOME"] == "/var/cache/lakerag/models"
    probe = docker("exec", pod["name"], "python", "-c",
                   "import os; p='/var/cache/lakerag/models/.probe'; open(p,'w').write('x'); os.remove(p)",
                   check=False)
    assert probe.returncode == 0, probe.stderr
    # `helm test`: the chart's test pod against this API (the Service name resolves to it).
    test_pod = find(objects, "Pod", "lakerag-api-test")
    container = test_pod["spec"]["containers"][0]
    result = docker.run(container["image"], *container_argv(container),
                        options=("--add-host", "lakerag-api:127.0.0.1",
                                 *docker_options(container, test_pod["spec"], {})))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GET /ready 200" in result.stdout and "no index published yet" in result.stdout


def test_rendered_spark_pods_form_a_cluster(docker, images, build_env, tmp_path):
    """The worker's init container finds the master by its Service name, the worker registers
    with the cores and memory the chart gives it, and both UIs pass their readiness probes."""
    objects = render(sets=(f"global.imageTag={build_env['IMAGE_TAG']}", f"global.imageRegistry={build_env['REGISTRY']}",
                           "spark.worker.cores=2", "spark.worker.memory=1g"))
    pods = PodNetwork(docker, objects, tmp_path)
    try:
        master = pods.run_pod("Deployment", "lakerag-spark-master")["spark-master"]
        pods.wait_ready(master, main_container(objects, "Deployment", "lakerag-spark-master")["readinessProbe"])
        worker = pods.run_pod("Deployment", "lakerag-spark-worker")["spark-worker"]
        pods.wait_ready(worker, main_container(objects, "Deployment", "lakerag-spark-worker")["readinessProbe"])
        deadline = time.monotonic() + 120
        while True:
            state = _get(f"http://{pods.ip(master)}:8080/json/")[1]
            alive = [w for w in state.get("workers", []) if w["state"] == "ALIVE"]
            if alive:
                break
            assert time.monotonic() < deadline, f"no worker registered: {state}"
            time.sleep(3)
        assert (alive[0]["cores"], alive[0]["memory"]) == (2, 1024)
    finally:
        pods.close()


@pytest.fixture
def chart_postgres(docker, tmp_path):
    """The chart's own PostgreSQL pod on a Docker network (its image must be local or pullable)."""
    objects = render()
    image = main_container(objects, "StatefulSet", "lakerag-postgres")["image"]
    if not docker.image_exists(image) and docker("pull", image, check=False, timeout=600).returncode != 0:
        pytest.skip(f"{image} is not local and cannot be pulled here")
    return image


def test_rendered_airflow_pods_start_in_order_and_serve_the_dag(docker, images, build_env, chart_postgres,
                                                                 tmp_path):
    """PostgreSQL, the migration Job, then api-server, scheduler and dag-processor (each waiting in
    its init containers) on read-only roots; all pass their readiness probes, the admin and the
    API's trigger user log in with the generated passwords and the pipeline DAG has been parsed."""
    objects = render(sets=(f"global.imageTag={build_env['IMAGE_TAG']}", f"global.imageRegistry={build_env['REGISTRY']}"))
    pods = PodNetwork(docker, objects, tmp_path)
    try:
        check_airflow_pods(pods, objects, start_postgres=True)
    finally:
        pods.close()


def check_airflow_pods(pods: PodNetwork, objects: list[dict], start_postgres: bool) -> None:
    if start_postgres:
        postgres = pods.run_pod("StatefulSet", "lakerag-postgres")["postgres"]
        pods.wait_ready(postgres, main_container(objects, "StatefulSet", "lakerag-postgres")["readinessProbe"])
    (migrate,) = [o["metadata"]["name"] for o in objects if o["kind"] == "Job"
                  and o["metadata"]["labels"]["app.kubernetes.io/component"] == "airflow-migrate"]
    pods.wait_exit(pods.run_pod("Job", migrate)["migrate"])
    started = {}
    for name in ("lakerag-airflow-api-server", "lakerag-airflow-scheduler", "lakerag-airflow-dag-processor"):
        (container,) = pods.run_pod("Deployment", name).values()
        started[name] = container
    for name, container in started.items():
        pods.wait_ready(container, main_container(objects, "Deployment", name)["readinessProbe"])
    secret = find(objects, "Secret", "lakerag-airflow")["data"]
    base = f"http://{pods.ip(started['lakerag-airflow-api-server'])}:8080"
    # The admin, and the user the API records asset events as (global.pipelineTrigger), log in.
    for username, key in (("lakerag-trigger", "trigger-password"), ("admin", "admin-password")):
        password = base64.b64decode(secret[key]).decode()
        request = urllib.request.Request(f"{base}/auth/token", method="POST",
                                         data=json.dumps({"username": username, "password": password}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201, username
            token = json.loads(response.read())["access_token"]
    deadline = time.monotonic() + 300
    while True:
        request = urllib.request.Request(f"{base}/api/v2/dags/lakerag_pipeline",
                                          headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                assert json.loads(response.read())["dag_id"] == "lakerag_pipeline"
                break
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, exc.read()
        assert time.monotonic() < deadline, "the dag-processor never parsed lakerag_pipeline"
        time.sleep(5)
