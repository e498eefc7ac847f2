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


def resolve_env(container: dict, objects: list[dict]) -> dict[str, str]:
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


@pytest.fixture
def empty_store(moto_endpoint):
    import boto3

    bucket = f"lakerag-chart-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lakerag"


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
