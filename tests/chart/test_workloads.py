"""Probes, resources, security contexts and start-up order of every workload, per profile."""

from __future__ import annotations

import json
import re

import pytest

from .helm import (
    PROFILES,
    REPO,
    WORKLOAD_KINDS,
    all_containers,
    cpu,
    find,
    memory,
    pod_requests,
    pod_spec,
    pod_specs,
    render_profile,
    replicas,
)

GiB = 2**30
# The original compose limits, the chart's defaults: (cpu, memory), requests = limits.
COMPOSE_LIMITS = {
    ("StatefulSet", "lakerag-postgres", "postgres"): (1, 1 * GiB),
    ("Deployment", "lakerag-spark-master", "spark-master"): (2, 2 * GiB),
    ("Deployment", "lakerag-spark-worker", "spark-worker"): (4, 4 * GiB),
    ("Deployment", "lakerag-airflow-api-server", "api-server"): (2, 3 * GiB),
    ("Deployment", "lakerag-airflow-scheduler", "scheduler"): (2, 3 * GiB),
    ("Deployment", "lakerag-airflow-dag-processor", "dag-processor"): (2, 3 * GiB),
    ("Deployment", "lakerag-api", "api"): (2, 3 * GiB),
}
# The original's minimum dev machine, less what kind's own control plane requests
# (apiserver, etcd, controller-manager, scheduler, coredns, kube-proxy, kindnet: ~1 CPU, ~0.5 GiB).
DEV_MACHINE = (8.0, 12 * GiB)
KIND_SYSTEM_RESERVE = (1.0, 1 * GiB)
# values-small.yaml: one node that also runs the control plane.
SMALL_NODE = (2.0, 8 * GiB)


def long_running(objects):
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            for container in obj["spec"]["template"]["spec"]["containers"]:
                yield obj, container


@pytest.mark.parametrize("profile", PROFILES)
def test_every_long_running_container_has_a_readiness_probe(profile):
    seen = 0
    for obj, container in long_running(render_profile(profile)):
        probe = container.get("readinessProbe")
        assert probe, f"{obj['metadata']['name']}/{container['name']} has no readiness probe"
        assert probe.get("httpGet") or probe.get("exec") or probe.get("tcpSocket")
        assert container.get("livenessProbe"), f"{container['name']} has no liveness probe"
        seen += 1
    assert seen >= 6  # production has no postgres


def _probe(objects, kind, name, container_name):
    spec = pod_spec(find(objects, kind, name))
    return next(c for c in spec["containers"] if c["name"] == container_name)["readinessProbe"]


def test_readiness_probes_check_what_each_component_serves():
    objects = render_profile("kind")
    assert "pg_isready" in " ".join(_probe(objects, "StatefulSet", "lakerag-postgres", "postgres")["exec"]["command"])
    assert _probe(objects, "Deployment", "lakerag-spark-master", "spark-master")["httpGet"]["port"] == "ui"
    assert _probe(objects, "Deployment", "lakerag-spark-worker", "spark-worker")["httpGet"]["port"] == "ui"
    assert _probe(objects, "Deployment", "lakerag-airflow-api-server", "api-server")["httpGet"]["path"] == \
        "/api/v2/monitor/health"
    assert _probe(objects, "Deployment", "lakerag-airflow-scheduler", "scheduler")["exec"]["command"] == \
        ["airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"]
    assert _probe(objects, "Deployment", "lakerag-airflow-dag-processor", "dag-processor")["exec"]["command"] == \
        ["airflow", "jobs", "check", "--job-type", "DagProcessorJob", "--local"]
    assert _probe(objects, "Deployment", "lakerag-api", "api")["httpGet"]["path"] == "/ready"
    assert _probe(objects, "Deployment", "lakerag-minio", "minio")["httpGet"]["path"] == "/minio/health/ready"
    assert _probe(objects, "Deployment", "lakerag-prometheus", "prometheus")["httpGet"]["path"] == "/-/ready"


def test_default_resources_are_the_compose_limits():
    objects = render_profile("default")
    for (kind, name, container_name), (want_cpu, want_memory) in COMPOSE_LIMITS.items():
        container = next(c for c in pod_spec(find(objects, kind, name))["containers"] if c["name"] == container_name)
        resources = container["resources"]
        for side in ("requests", "limits"):
            assert cpu(resources[side]["cpu"]) == want_cpu, (name, side)
            assert memory(resources[side]["memory"]) == want_memory, (name, side)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_has_requests_and_limits(profile):
    for obj, spec in pod_specs(render_profile(profile)):
        for container in all_containers(spec):
            resources = container.get("resources", {})
            for side in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(side, {})), \
                    f"{obj['metadata']['name']}/{container['name']} lacks {side}"
            assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"])
            assert memory(resources["requests"]["memory"]) <= memory(resources["limits"]["memory"])


def _pipeline_task_requests(objects) -> dict[str, tuple[float, int]]:
    """Requests of the DAG's task pods: its defaults, overridden by the AIRFLOW_VAR_LAKERAG_<KIND>_*
    environment the chart gives Airflow (the Variables the DAG reads)."""
    dag = REPO / "airflow-dags" / "lakerag_pipeline.py"
    if not dag.exists():
        return {}
    defaults = re.findall(r'resources\("(\w+)", "([^"]+)", "([^"]+)", "([^"]+)"\)', dag.read_text())
    assert defaults, "the DAG no longer sizes its pods with resources(kind, cpu_request, cpu_limit, memory)"
    scheduler = pod_spec(find(objects, "Deployment", "lakerag-airflow-scheduler"))["containers"][0]
    env = {e["name"]: e.get("value") for e in scheduler["env"]}
    tasks = {}
    for kind, cpu_request, _cpu_limit, mem in defaults:
        prefix = f"AIRFLOW_VAR_LAKERAG_{kind.upper()}_"
        tasks[kind] = (cpu(env.get(prefix + "CPU_REQUEST") or cpu_request), memory(env.get(prefix + "MEMORY") or mem))
    return tasks


def peak_requests(profile: str) -> tuple[float, int, dict]:
    """What the scheduler must find room for at the busiest moment: every long-running pod,
    plus the biggest of what comes and goes: the install-time Jobs together (the Airflow
    migration, the bucket Job), the helm test pod, one pipeline task pod (one runs at a time),
    or the API's extra pod during a rolling update (maxSurge 1, maxUnavailable 0)."""
    objects = render_profile(profile)
    steady_cpu, steady_memory, breakdown = 0.0, 0, {}
    transient, install_jobs = {}, [0.0, 0]
    for obj, spec in pod_specs(objects):
        pod_cpu, pod_memory = pod_requests(spec)
        if obj["kind"] in WORKLOAD_KINDS:
            steady_cpu += pod_cpu * replicas(obj)
            steady_memory += pod_memory * replicas(obj)
            breakdown[obj["metadata"]["name"]] = (pod_cpu * replicas(obj), round(pod_memory * replicas(obj) / GiB, 2))
        elif obj["kind"] == "Job":
            install_jobs[0] += pod_cpu
            install_jobs[1] += pod_memory
        else:
            transient[obj["metadata"]["name"]] = (pod_cpu, pod_memory)
    transient["install-time Jobs"] = tuple(install_jobs)
    transient["API rolling-update pod"] = pod_requests(pod_spec(find(objects, "Deployment", "lakerag-api")))
    tasks = _pipeline_task_requests(objects)
    transient.update({f"pipeline task {kind}": value for kind, value in tasks.items()})
    peak_cpu = max(c for c, _ in transient.values())
    peak_memory = max(m for _, m in transient.values())
    print(f"{profile} profile: steady {steady_cpu:.2f} CPU / {steady_memory / GiB:.2f} GiB, biggest transient "
          f"{peak_cpu:.2f} CPU / {peak_memory / GiB:.2f} GiB\n" + json.dumps(breakdown, indent=1))
    # The whole platform is in there, not a subset that trivially fits.
    assert {"lakerag-api", "lakerag-spark-worker", "lakerag-airflow-scheduler", "lakerag-postgres",
            "lakerag-minio", "lakerag-prometheus"} <= set(breakdown)
    if tasks:
        assert {"spark", "embed", "index"} <= set(tasks)
    assert install_jobs[0] > 0, "no install-time Job counted"
    return steady_cpu + peak_cpu, steady_memory + peak_memory, breakdown


@pytest.mark.parametrize(("profile", "node"), [("kind", DEV_MACHINE), ("small", SMALL_NODE)])
def test_profile_fits_its_stated_machine(profile, node):
    """kind: the 8 CPUs / 12 GiB dev machine; small: one 2 CPU / 8 GiB node. Both leave
    KIND_SYSTEM_RESERVE for the control plane and system pods."""
    total_cpu, total_memory, breakdown = peak_requests(profile)
    total_cpu += KIND_SYSTEM_RESERVE[0]
    total_memory += KIND_SYSTEM_RESERVE[1]
    print(f"with the reserve: {total_cpu:.2f} CPU / {total_memory / GiB:.2f} GiB of {node[0]:.0f} CPU / "
          f"{node[1] / GiB:.0f} GiB")
    assert total_cpu <= node[0], breakdown
    assert total_memory <= node[1], breakdown


def test_kind_profile_would_not_fit_the_small_node():
    """Why values-small.yaml exists: on 2 CPUs the kind profile's requests leave pods Pending."""
    total_cpu, _, _ = peak_requests("kind")
    assert total_cpu + KIND_SYSTEM_RESERVE[0] > SMALL_NODE[0]


def test_default_profile_would_not_fit_the_dev_machine():
    """Why values-kind.yaml exists: the compose limits as requests exceed 8 CPUs."""
    total_cpu = sum(pod_requests(spec)[0] * replicas(obj) for obj, spec in pod_specs(render_profile("default")))
    assert total_cpu > DEV_MACHINE[0]


@pytest.mark.parametrize("profile", PROFILES)
def test_pods_run_hardened(profile):
    for obj, spec in pod_specs(render_profile(profile)):
        pod_sc = spec.get("securityContext", {})
        for container in all_containers(spec):
            where = f"{obj['metadata']['name']}/{container['name']}"
            sc = container.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert sc.get("readOnlyRootFilesystem") is True, where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            assert sc.get("privileged") is not True and not sc.get("capabilities", {}).get("add")


def test_lakerag_images_run_as_the_image_user():
    """UID 10001 is the `lakerag` user of every LakeRAG image (the naming contract)."""
    for obj, spec in pod_specs(render_profile("kind")):
        for container in all_containers(spec):
            if "lakerag/" in container["image"]:
                user = container["securityContext"].get("runAsUser", spec["securityContext"].get("runAsUser"))
                assert user == 10001, container["name"]


def test_start_up_order_uses_init_containers_and_a_migration_job():
    objects = render_profile("kind")
    for name in ("lakerag-airflow-api-server", "lakerag-airflow-scheduler", "lakerag-airflow-dag-processor"):
        init = pod_spec(find(objects, "Deployment", name))["initContainers"]
        commands = [c["command"] + c.get("args", []) for c in init]
        db = commands.index(["airflow", "db", "check", "--retry", "60", "--retry-delay", "5"])
        migrations = next(i for i, cmd in enumerate(commands) if cmd[:3] == ["airflow", "db", "check-migrations"])
        assert db < migrations, name
    jobs = [o for o in objects if o["kind"] == "Job"]
    migrate = next(j for j in jobs if j["metadata"]["labels"]["app.kubernetes.io/component"] == "airflow-migrate")
    container = migrate["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] + container["args"] == ["airflow", "db", "migrate"]
    # A plain Job (not a hook): `helm install --wait` waits for pods that wait for it.
    assert "helm.sh/hook" not in migrate["metadata"].get("annotations", {})
    assert migrate["metadata"]["name"].endswith("-1")  # one per release revision (Jobs are immutable)
    worker_init = pod_spec(find(objects, "Deployment", "lakerag-spark-worker"))["initContainers"]
    assert [c["name"] for c in worker_init] == ["wait-for-master"]
    assert '("lakerag-spark-master", 7077)' in worker_init[0]["command"][-1]
    api_init = pod_spec(find(objects, "Deployment", "lakerag-api"))["initContainers"]
    assert [c["name"] for c in api_init] == ["index-sync"]


@pytest.mark.parametrize("profile", PROFILES)
def test_no_fixed_sleeps(profile):
    for obj, spec in pod_specs(render_profile(profile)):
        for container in all_containers(spec):
            text = " ".join(container.get("command", []) + container.get("args", []))
            assert not re.search(r"(^|[;&|\s])sleep\s+\d", text), f"{obj['metadata']['name']}: {text}"


def test_scheduler_is_single_and_the_only_airflow_pod_with_an_api_token():
    objects = render_profile("default")
    scheduler = find(objects, "Deployment", "lakerag-airflow-scheduler")
    assert scheduler["spec"]["replicas"] == 1 and scheduler["spec"]["strategy"]["type"] == "Recreate"
    assert pod_spec(scheduler)["automountServiceAccountToken"] is True
    for name in ("lakerag-airflow-api-server", "lakerag-airflow-dag-processor", "lakerag-api"):
        assert pod_spec(find(objects, "Deployment", name))["automountServiceAccountToken"] is False


def test_spark_pods_bind_and_advertise_their_pod_ip():
    objects = render_profile("default")
    for name in ("lakerag-spark-master", "lakerag-spark-worker"):
        container = pod_spec(find(objects, "Deployment", name))["containers"][0]
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
        assert env.get("SPARK_LOCAL_IP") == "status.podIP", (name, env)
        assert env.get("SPARK_LOCAL_HOSTNAME") == "status.podIP", (name, env)
