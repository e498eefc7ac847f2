"""Each task's pod as the operator builds it: image, argv, env (secret references, never values),
resources, service account, security context, volumes."""

from __future__ import annotations

import json

import pytest
from airflow_helpers import TASK_ORDER, cron_of, load_dagbag, render_pod
from kubernetes.client import ApiClient
from lakerag.cli import parse
from lakerag.config import parse_bool

EXPECTED = {
    # task: (image, args)
    "bronze": ("lakerag/spark:0.1.0", ["pipeline", "bronze", "--full-rebuild=false"]),
    "silver": ("lakerag/spark:0.1.0", ["pipeline", "silver", "--full-rebuild=false"]),
    "gold": ("lakerag/spark:0.1.0", ["pipeline", "gold", "--full-rebuild=false"]),
    "embed": ("lakerag/embeddings:0.1.0", ["pipeline", "embed", "--full-rebuild=false"]),
    "publish_index": ("lakerag/embeddings:0.1.0", ["pipeline", "index", "--full-rebuild=false"]),
    "health": ("lakerag/embeddings:0.1.0", ["pipeline", "status", "--json"]),
}
DEFAULT_RESOURCES = {
    "bronze": ("500m", "2", "2Gi"),
    "embed": ("1", "4", "4Gi"),
    "publish_index": ("500m", "2", "2Gi"),
    "health": ("100m", "500m", "512Mi"),
}
SECRET_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GEMINI_API_KEY", "LAKERAG_API_KEY"}


def container(pod):
    (only,) = pod.spec.containers  # no xcom sidecar, no extra containers
    return only


@pytest.mark.parametrize("task_id", TASK_ORDER)
def test_image_command_and_arguments(dag, task_id):
    _, pod = render_pod(dag, task_id)
    c = container(pod)
    image, args = EXPECTED[task_id]
    assert c.image == image
    assert c.command == ["lakerag"]
    assert c.args == args
    assert c.image_pull_policy == "IfNotPresent"
    # The argv is one the CLI accepts, with the stage and flag the DAG means.
    parsed = parse(c.args)
    assert parsed.command == ("pipeline",) and parsed.params["stage"].value == args[1]
    assert parse_bool(parsed.params["full_rebuild"]) is False


@pytest.mark.parametrize("task_id", ["bronze", "embed", "publish_index"])
def test_full_rebuild_param_reaches_the_cli(dag, task_id):
    _, pod = render_pod(dag, task_id, conf={"full_rebuild": True})
    args = container(pod).args
    assert args[-1] == "--full-rebuild=true"
    assert parse_bool(parse(args).params["full_rebuild"]) is True


def test_full_rebuild_param_is_validated(dag):
    with pytest.raises(Exception, match="full_rebuild"):
        render_pod(dag, "bronze", conf={"full_rebuild": "yes please"})


@pytest.mark.parametrize("task_id", TASK_ORDER)
def test_env_comes_from_configmap_and_secret_by_reference(dag, task_id, monkeypatch):
    # Secret values present in the scheduler's own environment must not leak into a pod spec.
    leaked = {name: f"do-not-copy-{name.lower()}" for name in SECRET_NAMES}
    for name, value in leaked.items():
        monkeypatch.setenv(name, value)
    _, pod = render_pod(dag, task_id)
    c = container(pod)
    assert [(s.config_map_ref.name if s.config_map_ref else None, s.secret_ref.name if s.secret_ref else None)
            for s in c.env_from] == [("lakerag-config", None), (None, "lakerag-secrets")]
    env_names = {e.name for e in c.env or []}
    assert not env_names & SECRET_NAMES
    serialized = json.dumps(ApiClient().sanitize_for_serialization(pod))
    for value in leaked.values():
        assert value not in serialized


def test_spark_tasks_advertise_the_pod_ip_and_take_the_master_from_the_configmap(dag, monkeypatch):
    for task_id in ("bronze", "silver", "gold"):
        env = {e.name: e for e in container(render_pod(dag, task_id)[1]).env}
        # The chart's ConfigMap names the master (its Spark master, or local[*] without one).
        assert "LAKERAG_SPARK_MASTER" not in env
        # Client mode: executors connect back to the driver pod by IP (pod hostnames don't resolve).
        for var in ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME"):
            assert env[var].value_from.field_ref.field_path == "status.podIP"
    # A per-DAG override, from the Airflow environment at parse time.
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_SPARK_MASTER", "local[4]")
    dag = load_dagbag().dags["lakerag_pipeline"]
    for task_id in ("bronze", "silver", "gold"):
        env = {e.name: e.value for e in container(render_pod(dag, task_id)[1]).env}
        assert env["LAKERAG_SPARK_MASTER"] == "local[4]"
    assert "LAKERAG_SPARK_MASTER" not in {e.name for e in container(render_pod(dag, "embed")[1]).env}


@pytest.mark.parametrize("registry", ["ghcr.io/acme", "ghcr.io/acme/"])
def test_image_registry_variable_with_or_without_trailing_slash(dag, monkeypatch, registry):
    """A Variable set by hand as `ghcr.io/acme` must not become `ghcr.io/acmelakerag/spark`."""
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_IMAGE_REGISTRY", registry)
    assert container(render_pod(dag, "gold")[1]).image == "ghcr.io/acme/lakerag/spark:0.1.0"


@pytest.mark.parametrize("task_id", ["bronze", "embed", "publish_index", "health"])
def test_default_resources(dag, task_id):
    cpu_request, cpu_limit, memory = DEFAULT_RESOURCES[task_id]
    resources = container(render_pod(dag, task_id)[1]).resources
    assert resources.requests == {"cpu": cpu_request, "memory": memory}
    assert resources.limits == {"cpu": cpu_limit, "memory": memory}


def test_variables_override_images_resources_and_namespace(dag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_IMAGE_REGISTRY", "ghcr.io/acme/")
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_IMAGE_TAG", "1.2.3")
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_EMBEDDINGS_IMAGE", "registry.local/custom-embed:dev")
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_EMBED_MEMORY", "8Gi")
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_EMBED_CPU_LIMIT", "6")
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_NAMESPACE", "data-prod")
    _, spark_pod = render_pod(dag, "gold")
    _, embed_pod = render_pod(dag, "embed")
    assert container(spark_pod).image == "ghcr.io/acme/lakerag/spark:1.2.3"
    assert container(embed_pod).image == "registry.local/custom-embed:dev"
    assert container(embed_pod).resources.limits == {"cpu": "6", "memory": "8Gi"}
    assert container(embed_pod).resources.requests == {"cpu": "1", "memory": "8Gi"}
    assert spark_pod.metadata.namespace == embed_pod.metadata.namespace == "data-prod"
    # Rendering one task never changes another's (templates render k8s objects in place).
    assert container(render_pod(dag, "bronze")[1]).resources.limits["memory"] == "2Gi"


@pytest.mark.parametrize("task_id", TASK_ORDER)
def test_service_account_security_and_labels(dag, task_id):
    _, pod = render_pod(dag, task_id)
    assert pod.spec.service_account_name == "lakerag-pipeline"
    assert pod.spec.restart_policy == "Never"
    sc = pod.spec.security_context
    assert (sc.run_as_non_root, sc.run_as_user, sc.run_as_group) == (True, 10001, 10001)
    assert sc.seccomp_profile.type == "RuntimeDefault"
    csc = container(pod).security_context
    assert csc.read_only_root_filesystem is True and csc.allow_privilege_escalation is False
    assert csc.capabilities.drop == ["ALL"]
    labels = pod.metadata.labels
    assert labels["app.kubernetes.io/component"] == "pipeline"
    assert labels["dag_id"] == "lakerag_pipeline" and labels["task_id"] == task_id
    assert pod.metadata.name.startswith(f"lakerag-{task_id.replace('_', '-')}-")


@pytest.mark.parametrize("task_id", TASK_ORDER)
def test_volume_mounts(dag, task_id):
    _, pod = render_pod(dag, task_id)
    mounts = {m.mount_path: m.name for m in container(pod).volume_mounts}
    volumes = {v.name: v for v in pod.spec.volumes}
    assert set(mounts.values()) == set(volumes)  # every mount has its volume and vice versa
    # read-only root filesystem: /tmp is the writable scratch space (Spark local dirs, temp files)
    assert mounts["/tmp"] == "tmp" and volumes["tmp"].empty_dir is not None
    if task_id in ("embed", "publish_index"):  # publish_index names the encoder: it reads the export
        assert mounts["/var/cache/lakerag/models"] == "model-cache"
        assert volumes["model-cache"].empty_dir is not None
        env = {e.name: e.value for e in container(pod).env}
        for var in ("LAKERAG_MODEL_CACHE_DIR", "HF_HOME", "SENTENCE_TRANSFORMERS_HOME"):
            assert env[var] == "/var/cache/lakerag/models"
    else:
        assert set(mounts) == {"/tmp"}


def test_empty_chart_values_fall_back_to_defaults(monkeypatch):
    """The chart renders every AIRFLOW_VAR_LAKERAG_* it knows, empty when unset."""
    for name in ("SCHEDULE", "SERVICE_ACCOUNT", "CONFIGMAP", "SECRET", "IMAGE_PULL_POLICY", "SPARK_MASTER"):
        monkeypatch.setenv(f"AIRFLOW_VAR_LAKERAG_{name}", "")
    dag = load_dagbag().dags["lakerag_pipeline"]
    assert cron_of(dag) == "0 * * * *"  # @hourly
    _, pod = render_pod(dag, "bronze")
    assert pod.spec.service_account_name == "lakerag-pipeline"
    assert container(pod).image_pull_policy == "IfNotPresent"
    assert container(pod).env_from[0].config_map_ref.name == "lakerag-config"
    assert "LAKERAG_SPARK_MASTER" not in {e.name for e in container(pod).env}


@pytest.mark.parametrize("task_id", ["embed", "publish_index"])
def test_model_cache_claim_mounts_that_pvc(monkeypatch, task_id):
    """Both read the ONNX export there (the API's init container made it, api.modelExport):
    embed encodes with it, publish_index records its sha256 in the manifest. Without it the
    index pod of an image without torch found no export of bge-large and failed."""
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_MODEL_CACHE_CLAIM", "lakerag-model-cache")
    dag = load_dagbag().dags["lakerag_pipeline"]
    _, pod = render_pod(dag, task_id)
    volume = {v.name: v for v in pod.spec.volumes}["model-cache"]
    assert volume.empty_dir is None
    assert volume.persistent_volume_claim.claim_name == "lakerag-model-cache"
    mount = {m.name: m.mount_path for m in container(pod).volume_mounts}["model-cache"]
    env = {e.name: e.value for e in container(pod).env}
    assert mount == env["LAKERAG_MODEL_CACHE_DIR"] == "/var/cache/lakerag/models"
