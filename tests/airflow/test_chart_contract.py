"""The DAG's pods against the chart that deploys it: render the chart (helm template), give the
DAG the AIRFLOW_VAR_* environment the chart gives Airflow, build every pod, and check that what
the pods reference exists in the rendered release and agrees with it."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from airflow_helpers import REPO, TASK_ORDER, load_dagbag, render_pod

HELM = REPO / ".tools" / "helm"
CHART = REPO / "charts" / "lakerag"
RELEASE, NAMESPACE = "acme", "data-platform"  # not the defaults: names must flow through the variables

pytestmark = pytest.mark.skipif(not HELM.exists() or not CHART.exists(),
                                reason=f"needs {HELM} (make tools) and {CHART}")


@pytest.fixture(scope="module")
def release() -> dict[tuple[str, str], dict]:
    out = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--set", "global.imageRegistry=registry.example.com/acme/", "--set", "global.imageTag=1.2.3"],
        check=True, capture_output=True, text=True, timeout=120).stdout
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(out) if doc}


def workload(release, component: str) -> dict:
    matches = [doc for (kind, name), doc in release.items()
               if kind in {"Deployment", "StatefulSet"} and name.endswith(f"-{component}")]
    assert len(matches) == 1, f"no single workload named *-{component}: {sorted(release)}"
    return matches[0]


def airflow_vars(release, component: str) -> dict[str, str]:
    (container,) = workload(release, component)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if e["name"].startswith("AIRFLOW_VAR_")}


@pytest.fixture
def chart_dag(release, monkeypatch):
    """The DAG as the chart's dag-processor parses it and its scheduler renders it."""
    parse_env = airflow_vars(release, "airflow-dag-processor")
    assert parse_env == airflow_vars(release, "airflow-scheduler"), "parse-time and run-time settings differ"
    for name, value in parse_env.items():
        monkeypatch.setenv(name, value)
    return load_dagbag().dags["lakerag_pipeline"]


@pytest.mark.parametrize("task_id", TASK_ORDER)
def test_pod_references_exist_in_the_release(release, chart_dag, task_id):
    _, pod = render_pod(chart_dag, task_id)
    (container,) = pod.spec.containers
    assert pod.metadata.namespace == NAMESPACE
    assert ("ServiceAccount", pod.spec.service_account_name) in release
    configmap, secret = (s.config_map_ref.name if s.config_map_ref else s.secret_ref.name for s in container.env_from)
    assert ("ConfigMap", configmap) in release and ("Secret", secret) in release
    assert container.image.startswith("registry.example.com/acme/lakerag/") and container.image.endswith(":1.2.3")
    assert container.image_pull_policy == "IfNotPresent"


def test_spark_pods_use_the_spark_master_image_and_service(release, chart_dag):
    master = workload(release, "spark-master")
    (master_container,) = master["spec"]["template"]["spec"]["containers"]
    for task_id in ("bronze", "silver", "gold"):
        _, pod = render_pod(chart_dag, task_id)
        # Driver and executors must run the same code and Python.
        assert pod.spec.containers[0].image == master_container["image"]
    configmap = release[("ConfigMap", render_pod(chart_dag, "bronze")[1].spec.containers[0].env_from[0]
                         .config_map_ref.name)]
    host, port = configmap["data"]["LAKERAG_SPARK_MASTER"].removeprefix("spark://").split(":")
    service = release[("Service", host)]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}


def test_airflow_may_launch_watch_and_clean_up_the_pods(release):
    scheduler_sa = workload(release, "airflow-scheduler")["spec"]["template"]["spec"]["serviceAccountName"]
    granted: dict[str, set[str]] = {}
    for (kind, _), binding in release.items():
        if kind != "RoleBinding" or not any(s["name"] == scheduler_sa for s in binding["subjects"]):
            continue
        for rule in release[("Role", binding["roleRef"]["name"])]["rules"]:
            for resource in rule["resources"]:
                granted.setdefault(resource, set()).update(rule["verbs"])
    assert {"create", "get", "list", "watch", "delete", "patch"} <= granted.get("pods", set()), granted
    assert "get" in granted.get("pods/log", set()), granted
