"""`make deploy`'s preflight: do the chart's requests, as the chosen values render them, fit
the cluster's schedulable nodes? A profile too big for the node leaves pods Pending
("Insufficient cpu") while `helm upgrade --wait` waits out its 20-minute timeout; this says so
in seconds, before any image is built.

The arithmetic is the scheduler's, on requests: every long-running pod (x replicas), plus the
biggest pod that comes and goes (the install-time Jobs together, the helm test pod, a CronJob,
one pipeline task pod as the DAG sizes it from the Airflow Variables the chart sets, or the
extra pod of a rolling update), against the nodes' allocatable less what other namespaces'
pods already request there. Nodes are summed, not bin-packed: on a multi-node cluster a pass
is not a guarantee (PREFLIGHT=0 skips the check).

usage: preflight.py --context CTX --namespace NS [--release R] [--helm H] [--kubectl K] VALUES...
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent / "lakerag"
DAG = Path(__file__).resolve().parents[1] / "airflow-dags" / "lakerag_pipeline.py"
SMALL = "charts/lakerag/values-small.yaml"
GiB = 2**30
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def cpu(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity) -> float:
    text = str(quantity)
    unit = next((u for u in sorted(UNITS, key=len, reverse=True) if text.endswith(u)), "")
    return float(text[: len(text) - len(unit)]) * UNITS.get(unit, 1)


def pod_requests(spec: dict) -> tuple[float, float]:
    """What the scheduler reserves for a pod: the larger of its biggest init container and the
    sum of its containers, CPU and memory each."""
    def total(containers):
        requests = [c.get("resources", {}).get("requests", {}) for c in containers]
        return sum(cpu(r.get("cpu", 0)) for r in requests), sum(memory(r.get("memory", 0)) for r in requests)

    sizes = [total(spec["containers"])] + [total([c]) for c in spec.get("initContainers", [])]
    return max(c for c, _ in sizes), max(m for _, m in sizes)


def task_pods(objects: list[dict]) -> list[tuple[float, float]]:
    """The DAG's task pods: its defaults, overridden by the AIRFLOW_VAR_LAKERAG_<KIND>_* env the
    chart gives the Airflow scheduler (the Variables the DAG reads)."""
    if not DAG.exists():
        return []
    env = {}
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"].get("labels", {}).get(
                "app.kubernetes.io/component") == "airflow-scheduler":
            env = {e["name"]: e.get("value") for c in obj["spec"]["template"]["spec"]["containers"]
                   for e in c.get("env", [])}
    pods = []
    for kind, cpu_request, _limit, mem in re.findall(r'resources\("(\w+)", "([^"]+)", "([^"]+)", "([^"]+)"\)',
                                                     DAG.read_text()):
        prefix = f"AIRFLOW_VAR_LAKERAG_{kind.upper()}_"
        pods.append((cpu(env.get(prefix + "CPU_REQUEST") or cpu_request), memory(env.get(prefix + "MEMORY") or mem)))
    return pods


def needed(objects: list[dict]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(long-running pods, biggest transient pod) requests, each (CPU, bytes)."""
    steady, jobs, transient = [0.0, 0.0], [0.0, 0.0], task_pods(objects)
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind in {"Deployment", "StatefulSet", "DaemonSet"}:
            pod = pod_requests(spec["template"]["spec"])
            steady[0] += pod[0] * spec.get("replicas", 1)
            steady[1] += pod[1] * spec.get("replicas", 1)
            if kind == "Deployment" and spec.get("strategy", {}).get("type") != "Recreate":
                transient.append(pod)  # the extra pod of a rolling update, one Deployment at a time
        elif kind == "Job":
            pod = pod_requests(spec["template"]["spec"])
            jobs = [jobs[0] + pod[0], jobs[1] + pod[1]]  # install-time Jobs run together
        elif kind == "CronJob":
            transient.append(pod_requests(spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif kind == "Pod":
            transient.append(pod_requests(spec))
    transient.append(tuple(jobs))
    return tuple(steady), (max(c for c, _ in transient), max(m for _, m in transient))


def free(nodes: dict, pods: dict, namespace: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(allocatable, already requested by other namespaces' pods) of the nodes our pods may land
    on: schedulable, without a NoSchedule/NoExecute taint (kind's control plane has one)."""
    usable = {n["metadata"]["name"]: n["status"]["allocatable"] for n in nodes["items"]
              if not n["spec"].get("unschedulable")
              and not any(t.get("effect") in {"NoSchedule", "NoExecute"} for t in n["spec"].get("taints", []))}
    allocatable = (sum(cpu(a["cpu"]) for a in usable.values()), sum(memory(a["memory"]) for a in usable.values()))
    used = [0.0, 0.0]
    for pod in pods["items"]:
        # Our own namespace's pods are the ones this install replaces.
        if pod["spec"].get("nodeName") in usable and pod["metadata"]["namespace"] != namespace \
                and pod["status"].get("phase") not in {"Succeeded", "Failed"}:
            c, m = pod_requests(pod["spec"])
            used = [used[0] + c, used[1] + m]
    return allocatable, tuple(used)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--release", default="lakerag")
    parser.add_argument("--helm", default="helm")
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("values", nargs="*")
    args = parser.parse_args(argv)

    def run(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"preflight: `{' '.join(command)}` failed:\n{result.stderr.strip()}\n"
                     f"(no cluster? `make kind-up` creates it; PREFLIGHT=0 skips this check)")
        return result.stdout

    rendered = run(args.helm, "template", args.release, str(CHART), "--namespace", args.namespace,
                   *(f"--values={v}" for v in args.values))
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    if not any(o["kind"] in {"Deployment", "StatefulSet"} for o in objects):
        sys.exit(f"preflight: `{args.helm} template` rendered no workloads")
    steady, peak = needed(objects)
    kubectl = (args.kubectl, "--context", args.context)
    allocatable, used = free(json.loads(run(*kubectl, "get", "nodes", "-o", "json")),
                             json.loads(run(*kubectl, "get", "pods", "--all-namespaces", "-o", "json")),
                             args.namespace)
    need = (steady[0] + peak[0], steady[1] + peak[1])
    room = (allocatable[0] - used[0], allocatable[1] - used[1])

    def fmt(pair):
        return f"{pair[0]:.2f} CPU / {pair[1] / GiB:.2f} GiB"

    summary = (f"the chart with {' '.join(args.values) or 'its defaults'} requests {fmt(need)} at the busiest moment "
               f"(long-running pods {fmt(steady)} + the biggest pod that comes and goes {fmt(peak)}); the schedulable "
               f"nodes of {args.context} have {fmt(room)} free (allocatable {fmt(allocatable)}, other pods {fmt(used)})")
    if need[0] <= room[0] and need[1] <= room[1]:
        print(f"preflight: {summary}: fits")
        return 0
    fixes = [] if any(v.endswith(SMALL) for v in args.values) else \
        [f'the small-node profile: make deploy HELM_VALUES="charts/lakerag/values-kind.yaml {SMALL}"']
    fixes.append("or give Docker more CPUs / memory (Docker Desktop: Settings > Resources), then `make deploy` again")
    print(f"preflight: {summary}: does not fit. Pods would stay Pending (Insufficient cpu/memory) and helm --wait "
          "would wait until its timeout. Use\n  " + "\n  ".join(fixes) +
          "\n(PREFLIGHT=0 skips this check.)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
