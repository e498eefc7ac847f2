"""A stand-in kubectl for charts/preflight.py: `get nodes` / `get pods` of a kind cluster from
kind-config.yaml (a tainted control plane and one worker of the given size)."""

from __future__ import annotations

import json
from pathlib import Path

SCRIPT = """#!/bin/sh
[ -n "$LOG" ] && echo "kubectl $*" >> "$LOG"
case "$*" in
  *"get nodes"*) cat {dir}/nodes.json ;;
  *"get pods"*) cat {dir}/pods.json ;;
  *) exit 1 ;;
esac
"""


def _pod(name: str, namespace: str, node: str, cpu: str, memory: str, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu,
                                                                                              "memory": memory}}}]},
            "status": {"phase": phase}}


def stand_in_kubectl(directory: Path, cpu: str, memory: str) -> Path:
    """kubectl in `directory` answering for a kind cluster whose nodes have `cpu` / `memory`
    allocatable (kind nodes share the Docker VM: each reports all of it)."""
    nodes = [
        {"metadata": {"name": "lakerag-control-plane"},
         "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
         "status": {"allocatable": {"cpu": cpu, "memory": memory}}},
        {"metadata": {"name": "lakerag-worker"}, "spec": {}, "status": {"allocatable": {"cpu": cpu, "memory": memory}}},
    ]
    pods = [
        _pod("kube-apiserver", "kube-system", "lakerag-control-plane", "250m", "0"),  # not on the worker
        _pod("kindnet-abcde", "kube-system", "lakerag-worker", "100m", "50Mi"),
        _pod("coredns-1", "kube-system", "lakerag-worker", "100m", "70Mi"),
        _pod("done", "default", "lakerag-worker", "4", "8Gi", phase="Succeeded"),  # finished: holds nothing
        _pod("lakerag-api-1", "lakerag", "lakerag-worker", "4", "8Gi"),  # the release's own: replaced
    ]
    (directory / "nodes.json").write_text(json.dumps({"items": nodes}))
    (directory / "pods.json").write_text(json.dumps({"items": pods}))
    kubectl = directory / "kubectl"
    kubectl.write_text(SCRIPT.format(dir=directory))
    kubectl.chmod(0o755)
    return kubectl
