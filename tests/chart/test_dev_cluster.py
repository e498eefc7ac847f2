"""kind-config.yaml, skaffold.yaml and the Makefile's Kubernetes targets agree with the chart."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .helm import KIND_VALUES, PRODUCTION_VALUES, REPO, find, helm_binary, pod_spec, render
from .kind_nodes import stand_in_kubectl

SKAFFOLD_SCHEMA = REPO.parent / "shared" / "schemas" / "skaffold-v4beta13.json"
KIND_CONFIG = yaml.safe_load((REPO / "kind-config.yaml").read_text())
SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())


def node_ports(service) -> list[int]:
    return [p["nodePort"] for p in service["spec"]["ports"] if "nodePort" in p]


def test_kind_config_is_a_control_plane_and_a_worker():
    assert KIND_CONFIG["kind"] == "Cluster"
    assert KIND_CONFIG["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in KIND_CONFIG["nodes"]] == ["control-plane", "worker"]
    allowed = {"role", "image", "labels", "extraPortMappings", "extraMounts", "kubeadmConfigPatches"}
    for node in KIND_CONFIG["nodes"]:
        assert set(node) <= allowed, set(node) - allowed  # kind decodes strictly: a typo fails `kind create`


def test_kind_port_mappings_reach_the_api_and_airflow_node_ports():
    control_plane = KIND_CONFIG["nodes"][0]
    mappings = {m["containerPort"]: m for m in control_plane["extraPortMappings"]}
    objects = render((KIND_VALUES,))
    api_port = node_ports(find(objects, "Service", "lakerag-api"))
    airflow_port = node_ports(find(objects, "Service", "lakerag-airflow-api-server"))
    assert api_port and airflow_port
    for port in api_port + airflow_port:
        assert port in mappings, f"node port {port} is not mapped to the host"
        assert mappings[port]["hostPort"] == port
        assert mappings[port]["listenAddress"] == "127.0.0.1"  # not exposed beyond the developer's machine
        assert mappings[port]["protocol"] == "TCP"
    # The port-forward ports stay free for `make port-forward` and skaffold.
    assert not {8000, 8080, 9090} & {m["hostPort"] for m in mappings.values()}


def test_kind_mounts_the_local_data_path():
    mounts = [m for node in KIND_CONFIG["nodes"] for m in node.get("extraMounts", [])]
    assert {"hostPath": "./local_data", "containerPath": "/local_data"} in mounts
    # `make kind-up` rewrites the relative path to an absolute one for docker.
    makefile = (REPO / "Makefile").read_text()
    assert "sed 's#hostPath: ./local_data#hostPath: $(CURDIR)/local_data#' kind-config.yaml" in makefile


def test_skaffold_yaml_validates_against_the_official_schema():
    if not SKAFFOLD_SCHEMA.exists():
        pytest.skip(f"skaffold schema not found at {SKAFFOLD_SCHEMA} (CI provides ../shared/schemas)")
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--schemafile",
                             str(SKAFFOLD_SCHEMA), str(REPO / "skaffold.yaml")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_skaffold_validation_is_strict(tmp_path):
    """Guard: the schema rejects a misspelt field, so the validation above means something."""
    if not SKAFFOLD_SCHEMA.exists():
        pytest.skip(f"skaffold schema not found at {SKAFFOLD_SCHEMA} (CI provides ../shared/schemas)")
    broken = tmp_path / "skaffold.yaml"
    broken.write_text((REPO / "skaffold.yaml").read_text().replace("chartPath:", "chartPth:"))
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--schemafile",
                             str(SKAFFOLD_SCHEMA), str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "chartPth" in result.stdout


def test_skaffold_builds_the_four_images_from_their_dockerfiles():
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {"lakerag/api", "lakerag/embeddings", "lakerag/spark", "lakerag/airflow"}
    for image, artifact in artifacts.items():
        name = image.split("/")[1]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == f"images/{name}/Dockerfile"
        assert (REPO / artifact["docker"]["dockerfile"]).exists()
    assert SKAFFOLD["build"]["local"]["push"] is False  # kind loads them
    # The kind profile is offline (LAKERAG_OFFLINE): the model must be in the images that embed.
    assert yaml.safe_load(KIND_VALUES.read_text())["global"]["config"]["LAKERAG_OFFLINE"] is True
    for image in ("lakerag/api", "lakerag/embeddings"):
        assert artifacts[image]["docker"]["buildArgs"] == {"BAKE_MODEL": "packaged"}
    assert "$(MAKE) images BAKE_MODEL=packaged" in (REPO / "Makefile").read_text()


def test_skaffold_deploys_the_chart_with_the_kind_profile_and_its_images():
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/lakerag"
    assert release["valuesFiles"] == ["charts/lakerag/values-kind.yaml"]
    templates = release["setValueTemplates"]
    for key, image in (("api.image", "lakerag_api"), ("spark.image", "lakerag_spark"),
                       ("airflow.image", "lakerag_airflow"), ("minio.bucketJobImage", "lakerag_api")):
        assert templates[f"{key}.repository"] == f"{{{{.IMAGE_REPO_{image}}}}}"
        assert templates[f"{key}.tag"] == f"{{{{.IMAGE_TAG_{image}}}}}"
    assert templates["airflow.pipeline.images.embeddings"] == "{{.IMAGE_FULLY_QUALIFIED_lakerag_embeddings}}"
    assert templates["airflow.pipeline.images.spark"] == "{{.IMAGE_FULLY_QUALIFIED_lakerag_spark}}"
    # Every key skaffold sets exists in the chart (the schema would reject it otherwise).
    sets = tuple(f"{key}=x" for key in templates if key != "global.imageRegistry")
    render((KIND_VALUES,), sets=sets + ("global.imageRegistry=",))


def test_skaffold_forwards_the_api_airflow_and_prometheus():
    forwards = {(f["resourceName"], f["port"], f["localPort"]) for f in SKAFFOLD["portForward"]}
    assert forwards == {("lakerag-api", 8000, 8000), ("lakerag-airflow-api-server", 8080, 8080),
                        ("lakerag-prometheus", 9090, 9090)}
    names = {o["metadata"]["name"] for o in render((KIND_VALUES,)) if o["kind"] == "Service"}
    assert {name for name, _, _ in forwards} <= names


def test_skaffold_production_profile_uses_the_production_values():
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "production"]
    assert {"op": "replace", "path": "/deploy/helm/releases/0/valuesFiles/0",
            "value": "charts/lakerag/values-production.yaml"} in profile["patches"]
    assert profile["build"]["local"]["push"] is True
    artifacts = {a["image"]: a for a in profile["build"]["artifacts"]}
    assert set(artifacts) == {a["image"] for a in SKAFFOLD["build"]["artifacts"]} | {"lakerag/api-torch"}


def test_skaffold_production_builds_and_deploys_the_torch_variant_the_model_export_runs():
    """values-production.yaml exports bge-large in the API pods' init container with the torch
    variant: skaffold builds it as images/build.sh api-torch does and points the chart at it
    (without it the chart's default, <api tag>-torch, names an image skaffold never pushed)."""
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "production"]
    variant = {a["image"]: a for a in profile["build"]["artifacts"]}["lakerag/api-torch"]
    assert variant["docker"] == {"dockerfile": "images/api/Dockerfile", "buildArgs": {"DEPS": "deps-torch"}}
    dockerfile = (REPO / "images" / "api" / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+ AS deps-torch$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM \$\{DEPS\} AS builder$", dockerfile, re.MULTILINE)
    assert 'variant=(--build-arg DEPS=deps-torch)' in (REPO / "images" / "build.sh").read_text()
    patches = {p["path"]: p["value"] for p in profile["patches"] if p["op"] == "add"}
    prefix = "/deploy/helm/releases/0/setValueTemplates/"
    # skaffold's template names: the artifact's image with "/" and "-" as "_"
    assert patches == {prefix + "api.modelExport.image.repository": "{{.IMAGE_REPO_lakerag_api_torch}}",
                       prefix + "api.modelExport.image.tag": "{{.IMAGE_TAG_lakerag_api_torch}}"}
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    sets = tuple(f"{key}=x" for key in release["setValueTemplates"] if key != "global.imageRegistry")
    objects = render((PRODUCTION_VALUES,), sets=(*sets, "global.imageRegistry=",
                                                 "api.modelExport.image.repository=ghcr.io/acme/lakerag/api-torch",
                                                 "api.modelExport.image.tag=abc123"))
    spec = pod_spec(find(objects, "Deployment", "lakerag-api"))
    export = {c["name"]: c for c in spec["initContainers"]}["model-export"]
    assert export["image"] == "ghcr.io/acme/lakerag/api-torch:abc123"


def test_makefile_kubernetes_targets_exist_and_use_the_chart():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    for target in ("kind-up", "deploy", "dev", "port-forward", "undeploy"):
        result = subprocess.run([make, "-n", "-C", str(REPO), target],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    dry = subprocess.run([make, "-n", "-C", str(REPO), "--always-make", "deploy"], capture_output=True,
                         text=True, check=True).stdout
    assert "helm upgrade --install lakerag charts/lakerag --kube-context kind-lakerag" in dry
    assert "-f charts/lakerag/values-kind.yaml" in dry
    assert "kind load docker-image --name lakerag" in dry
    forward = subprocess.run([make, "-n", "-C", str(REPO), "port-forward"], capture_output=True, text=True, check=False).stdout
    for service, port in (("lakerag-api", 8000), ("lakerag-airflow-api-server", 8080),
                          ("lakerag-prometheus", 9090)):
        assert f"port-forward svc/{service} {port}:{port}" in forward


@pytest.mark.parametrize("override", [None, "prod"])
def test_every_cluster_call_names_the_kube_context(override):
    """Never whichever context is current (a production cluster, say): kind's, or KUBE_CONTEXT."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    context = override or "kind-lakerag"
    calls = []
    for target in ("deploy", "undeploy", "port-forward", "dev"):
        dry = subprocess.run([make, "-n", "-s", "-C", str(REPO), "-o", "tools", target,
                              *([f"KUBE_CONTEXT={override}"] if override else [])],
                             capture_output=True, text=True, check=True).stdout
        lines = [line for line in dry.splitlines() if not line.lstrip().startswith("#")]
        calls += re.findall(r"(?<![-\w])(?:helm (?:upgrade|test|uninstall)|kubectl|skaffold dev|charts/preflight\.py)\b[^;&\n]*",
                            "\n".join(lines))
    assert len(calls) == 8, calls  # preflight, upgrade, test, uninstall, three forwards, skaffold dev
    for call in calls:
        flag = "--kube-context" if call.startswith(("helm", "skaffold")) else "--context"
        assert f"{flag} {context} " in call + " ", call


FAKE_KUBECTL = """#!/bin/sh
# Stands in for kubectl port-forward: the first forward of each Service loses its pod at
# once (an upgrade replaced it); later ones keep forwarding until stopped.
for arg in "$@"; do case "$arg" in svc/*) service="$arg" ;; esac; done
marker="$LOG.$(echo "$service" | tr / _)"
echo "$$ $*" >> "$LOG"
if [ ! -e "$marker" ]; then touch "$marker"; exit 1; fi
exec sleep 300
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_port_forward_reconnects_when_its_pod_is_replaced_and_stops_cleanly(tmp_path):
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    log = tmp_path / "forwards.log"
    # -o tools: use the tools that are there, never (re)install anything from a test.
    process = subprocess.Popen([make, "-s", "-C", str(REPO), "-o", "tools", "port-forward", f"KUBECTL={kubectl}"],
                               env={**os.environ, "LOG": str(log)}, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    services = ("svc/lakerag-api", "svc/lakerag-airflow-api-server", "svc/lakerag-prometheus")
    try:
        deadline = time.monotonic() + 30
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            starts = {s: [int(line.split()[0]) for line in lines if f" {s} " in line] for s in services}
            if all(len(pids) >= 2 for pids in starts.values()):
                break
            assert process.poll() is None, f"make port-forward ended: {process.communicate()}"
            assert time.monotonic() < deadline, f"no reconnect after a lost pod: {lines}"
            time.sleep(0.2)
        time.sleep(0.5)
        assert process.poll() is None, "make port-forward ended while forwarding"
        forwarding = [pids[-1] for pids in starts.values()]
        assert all(_alive(pid) for pid in forwarding), "the reconnected forwards are not running"
        assert all(" --context kind-lakerag " in line for line in lines), lines
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert "ended (pod replaced?): reconnecting" in stderr
    time.sleep(0.5)
    assert not [pid for pid in forwarding if _alive(pid)], "Ctrl-C left port-forwards running"


FAKE_TOOL = """#!/bin/sh
# Stands in for docker, kind and helm: logs its arguments; docker image inspect prints the IDs in $IDS;
# helm template (the preflight's render) is the real helm's.
echo "$(basename "$0") $*" >> "$LOG"
if [ "$(basename "$0")" = docker ] && [ "$1 $2" = "image inspect" ]; then cat "$IDS"; fi
if [ "$(basename "$0")" = helm ] && [ "$1" = template ]; then exec "$REAL_HELM" "$@"; fi
exit 0
"""


def make_deploy(tmp_path: Path, node: tuple[str, str] = ("8", "12Gi"), *args: str) -> tuple[subprocess.CompletedProcess,
                                                                                              list[str]]:
    """`make deploy` with stand-ins for docker, kind, helm and kubectl (a kind cluster of `node`
    CPU / memory); returns the run and the tools' calls."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    for tool in ("docker", "kind", "helm"):
        (tmp_path / tool).write_text(FAKE_TOOL)
        (tmp_path / tool).chmod(0o755)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "LOG": str(log), "IDS": str(tmp_path / "ids"), "DOCKER": str(tmp_path / "docker"),
           "HELM": str(tmp_path / "helm"), "REAL_HELM": str(helm_binary()),
           "KUBECTL": str(stand_in_kubectl(tmp_path, *node)), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run([make, "-s", "-C", str(REPO), "-o", "tools", "deploy", *args], env=env,
                            capture_output=True, text=True, check=False)
    return result, log.read_text().splitlines() if log.exists() else []


def test_deploy_rolls_the_pods_exactly_when_an_image_changed(tmp_path):
    """Rebuilt images deploy under a new tag (so Kubernetes rolls the pods onto them); an
    unchanged build deploys under the same tag (nothing rolls)."""
    ids = tmp_path / "ids"

    def deploy(image_ids: list[str]) -> str:
        ids.write_text("\n".join(image_ids) + "\n")
        result, calls = make_deploy(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "kubectl --context kind-lakerag get nodes -o json" in calls  # the preflight ran, on kind
        [upgrade] = [c for c in calls if c.startswith("helm upgrade --install")]
        assert "--kube-context kind-lakerag " in upgrade
        assert "helm test lakerag --kube-context kind-lakerag --namespace lakerag --logs" in calls
        tag = upgrade.split("global.imageTag=")[1].split()[0]
        for image in ("api", "embeddings", "spark", "airflow"):
            assert f"docker tag lakerag/{image}:0.1.0 lakerag/{image}:{tag}" in calls
            assert f"kind load docker-image --name lakerag lakerag/{image}:{tag}" in calls
        return tag

    built = [f"sha256:{c * 64}" for c in "abcd"]
    first = deploy(built)
    assert first.startswith("0.1.0-") and first != "0.1.0-"
    assert deploy(built) == first
    assert deploy([*built[:3], f"sha256:{'e' * 64}"]) not in {first}


def test_deploy_stops_before_building_when_the_profile_cannot_fit_the_node(tmp_path):
    """The kind profile on a 2-CPU Docker: pods would stay Pending for helm --wait's 20 minutes."""
    result, calls = make_deploy(tmp_path, ("2", "8Gi"))
    assert result.returncode != 0
    assert "requests 2.80 CPU / 9.00 GiB" in result.stderr and "have 1.80 CPU / 7.88 GiB free" in result.stderr
    assert 'make deploy HELM_VALUES="charts/lakerag/values-kind.yaml charts/lakerag/values-small.yaml"' \
        in result.stderr
    assert not [c for c in calls if not c.startswith(("kubectl", "helm template"))], "it built or deployed"
    # The small profile fits that node; PREFLIGHT=0 skips the check for those who know better.
    small = "HELM_VALUES=charts/lakerag/values-kind.yaml charts/lakerag/values-small.yaml"
    (tmp_path / "ids").write_text("sha256:a\n")
    for args in ((small,), ("PREFLIGHT=0",)):
        result, calls = make_deploy(tmp_path, ("2", "8Gi"), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert any(c.startswith("helm upgrade --install") for c in calls)
        assert any(c.startswith("kubectl") for c in calls) == (args != ("PREFLIGHT=0",))


FAKE_SKAFFOLD = """#!/bin/sh
# Stands in for skaffold: `version` prints $VERSION, anything else is logged.
if [ "$1" = version ]; then echo "$VERSION"; exit 0; fi
echo "skaffold $*" >> "$LOG"
"""


@pytest.mark.parametrize(("version", "runs"), [("v2.16.1", False), ("v2.9.0", False), ("v2.19.0", True),
                                               ("v2.20.3", True)])
def test_dev_needs_a_skaffold_that_works_with_helm_4(tmp_path, version, runs):
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    (tmp_path / "skaffold").write_text(FAKE_SKAFFOLD)
    (tmp_path / "skaffold").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "LOG": str(log), "VERSION": version, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run([make, "-s", "-C", str(REPO), "-o", "tools", "dev"], env=env,
                            capture_output=True, text=True, check=False)
    assert (result.returncode == 0) == runs, result.stdout + result.stderr
    if runs:
        assert log.read_text().split() == ["skaffold", "dev", "--namespace", "lakerag", "--port-forward=user",
                                           "--kube-context", "kind-lakerag"]
    else:
        assert f"skaffold {version} is too old: make dev needs skaffold v2.19.0 or newer" in result.stdout
        assert not log.exists()
