"""LakeRAG batch pipeline as Kubernetes pods: bronze -> silver -> gold -> embed -> index -> health.

Every task runs the `lakerag` CLI in one of the project's images, exactly as `make run`
does locally (`lakerag pipeline <stage>`); this file only wires pods together.

Settings (see docs/airflow.md):
- read when a task runs, from Airflow Variables (DB, or the env form AIRFLOW_VAR_<NAME>):
  images, namespace, resources;
- read when the file is parsed, from the environment only (AIRFLOW_VAR_<NAME>; parsing
  never queries the metadata DB): schedule, service account, ConfigMap/Secret names,
  image pull policy, model cache claim, a Spark master override.
S3, Spark master and model settings come from the chart's ConfigMap `lakerag-config`, the
same one the API reads, so the index is always built with the model the API serves;
secrets come from the Secret `lakerag-secrets` by reference (envFrom), never through Airflow.

When it runs: on the cron schedule (`lakerag_schedule`, @hourly) or as soon as the asset
`lakerag_asset_uri` gets an event, whichever comes first (AssetOrTimeSchedule). The API
records such an event after each upload or delete, and for objects written straight to the
bucket when its raw/ poll is on (docs/freshness.md); the schedule is the safety net. One run
at a time: events that arrive during a run queue one more run, never one per event.

No reload task: every API replica polls index/CURRENT (LAKERAG_INDEX_POLL_SECONDS) and
hot-swaps; a POST /admin/reload through the Service would reach only one replica.
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, chain
from kubernetes.client import models as k8s

DAG_ID = "lakerag_pipeline"

# Container paths shared with the images and the chart (docs/k8s naming contract).
TMP_DIR = "/tmp"
MODEL_CACHE_DIR = "/var/cache/lakerag/models"


def parse_time_setting(name: str, default: str) -> str:
    """A setting the DAG's shape depends on: the env form of Variable `name` (empty: the
    default), never the DB."""
    return os.environ.get(f"AIRFLOW_VAR_{name.upper()}") or default


def runtime_setting(name: str, default: str) -> str:
    """Jinja for Variable `name`, rendered when the task runs (DB or env), with a default."""
    return "{{ var.value.get(" + repr(name) + ", " + repr(default) + ") }}"


def image(component: str) -> str:
    """`lakerag_<component>_image`, else `<lakerag_image_registry>lakerag/<component>:<lakerag_image_tag>`."""
    # The registry with or without its trailing slash: "ghcr.io/acme" must not give "ghcr.io/acmelakerag/…".
    built = (f"[var.value.get('lakerag_image_registry', '') | trim('/'), 'lakerag/{component}:' ~ "
             f"var.value.get('lakerag_image_tag', '0.1.0')] | select | join('/')")
    return "{{ var.value.get('lakerag_" + component + "_image', " + built + ") }}"


def resources(kind: str, cpu_request: str, cpu_limit: str, memory: str) -> k8s.V1ResourceRequirements:
    """Requests/limits from Variables lakerag_<kind>_cpu_request|cpu_limit|memory (memory request = limit)."""
    mem = runtime_setting(f"lakerag_{kind}_memory", memory)
    return k8s.V1ResourceRequirements(
        requests={"cpu": runtime_setting(f"lakerag_{kind}_cpu_request", cpu_request), "memory": mem},
        limits={"cpu": runtime_setting(f"lakerag_{kind}_cpu_limit", cpu_limit), "memory": mem},
    )


SCHEDULE = parse_time_setting("lakerag_schedule", "@hourly")
# The API's LAKERAG_AIRFLOW_ASSET_URI (same default): an event on it means raw/ changed. An
# x- scheme is Airflow's mark for a URI it does not normalise.
RAW_CHANGED = Asset(uri=parse_time_setting("lakerag_asset_uri", "x-lakerag://raw"), name="lakerag_raw")
SERVICE_ACCOUNT = parse_time_setting("lakerag_service_account", "lakerag-pipeline")
CONFIGMAP = parse_time_setting("lakerag_configmap", "lakerag-config")
SECRET = parse_time_setting("lakerag_secret", "lakerag-secrets")
# An existing PVC for the model cache (e.g. ReadWriteMany); empty: a per-pod emptyDir.
MODEL_CACHE_CLAIM = parse_time_setting("lakerag_model_cache_claim", "")
IMAGE_PULL_POLICY = parse_time_setting("lakerag_image_pull_policy", "IfNotPresent")
# The ConfigMap's LAKERAG_SPARK_MASTER (the chart's master, or local[*] without one) unless
# this overrides it for the DAG's pods.
SPARK_MASTER = parse_time_setting("lakerag_spark_master", "")


def schedule():
    """The cron schedule or an event on RAW_CHANGED, whichever comes first; events only when the
    schedule is `none`."""
    if SCHEDULE.lower() in {"", "none"}:
        return [RAW_CHANGED]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(SCHEDULE, timezone="UTC"), assets=[RAW_CHANGED])


FULL_REBUILD = "--full-rebuild={{ 'true' if params.full_rebuild else 'false' }}"

ENV_FROM = [
    k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=CONFIGMAP)),
    k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=SECRET)),
]
TMP_VOLUME = k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())
TMP_MOUNT = k8s.V1VolumeMount(name="tmp", mount_path=TMP_DIR)
MODEL_CACHE_VOLUME = k8s.V1Volume(
    name="model-cache",
    persistent_volume_claim=(k8s.V1PersistentVolumeClaimVolumeSource(claim_name=MODEL_CACHE_CLAIM)
                             if MODEL_CACHE_CLAIM else None),
    empty_dir=None if MODEL_CACHE_CLAIM else k8s.V1EmptyDirVolumeSource(),
)
MODEL_CACHE_MOUNT = k8s.V1VolumeMount(name="model-cache", mount_path=MODEL_CACHE_DIR)
MODEL_CACHE_ENV = {"LAKERAG_MODEL_CACHE_DIR": MODEL_CACHE_DIR, "HF_HOME": MODEL_CACHE_DIR,
                   "SENTENCE_TRANSFORMERS_HOME": MODEL_CACHE_DIR}
# Spark client mode: executors on the Spark workers connect back to this driver pod,
# which has no resolvable hostname, so the driver advertises its pod IP.
POD_IP_ENV = [
    k8s.V1EnvVar(name=var, value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="status.podIP")))
    for var in ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME")
]

# Same user and hardening as the chart's pods; the images run as lakerag (10001).
POD_SECURITY = k8s.V1PodSecurityContext(
    run_as_non_root=True, run_as_user=10001, run_as_group=10001, fs_group=10001,
    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
)
CONTAINER_SECURITY = k8s.V1SecurityContext(
    allow_privilege_escalation=False, read_only_root_filesystem=True,
    capabilities=k8s.V1Capabilities(drop=["ALL"]),
)

default_args = {
    "owner": "lakerag",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(hours=3),
}


def lakerag_pod(task_id: str, component: str, args: list[str], *, env: dict | None = None,
                env_list: list | None = None, volumes=(), mounts=(), resources_spec=None,
                **kwargs) -> KubernetesPodOperator:
    """One `lakerag <args>` container in the `component` image, configured from ConfigMap + Secret."""
    env_vars = [k8s.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()] + list(env_list or [])
    # Templates render the k8s objects in place: each task gets its own copies.
    env_vars, volumes, mounts, resources_spec = copy.deepcopy((env_vars, volumes, mounts, resources_spec))
    return KubernetesPodOperator(
        task_id=task_id,
        name=f"lakerag-{task_id.replace('_', '-')}",
        namespace=runtime_setting("lakerag_namespace", ""),  # empty: Airflow's own namespace
        image=image(component),
        image_pull_policy=IMAGE_PULL_POLICY,
        cmds=["lakerag"],
        arguments=args,
        env_vars=env_vars,
        env_from=copy.deepcopy(ENV_FROM),
        volumes=[copy.deepcopy(TMP_VOLUME), *volumes],
        volume_mounts=[copy.deepcopy(TMP_MOUNT), *mounts],
        container_resources=resources_spec,
        service_account_name=SERVICE_ACCOUNT,
        security_context=POD_SECURITY,
        container_security_context=CONTAINER_SECURITY,
        labels={"app.kubernetes.io/name": "lakerag", "app.kubernetes.io/component": "pipeline",
                "app.kubernetes.io/part-of": "lakerag", "lakerag.io/stage": task_id.replace("_", "-")},
        on_finish_action="delete_succeeded_pod",
        get_logs=True,
        log_events_on_failure=True,
        startup_timeout_seconds=600,  # first pull of an image with torch takes minutes
        **kwargs,
    )


with DAG(
    dag_id=DAG_ID,
    description="raw/ -> bronze -> silver -> gold -> embeddings -> published FAISS index",
    doc_md=__doc__,
    schedule=schedule(),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=8),
    default_args=default_args,
    params={"full_rebuild": Param(False, type="boolean",
                                  description="Reprocess every document and re-embed every chunk")},
    tags=["lakerag"],
) as dag:
    spark_resources = resources("spark", "500m", "2", "2Gi")
    etl = [
        lakerag_pod(stage, "spark", ["pipeline", stage, FULL_REBUILD],
                    env={"LAKERAG_SPARK_MASTER": SPARK_MASTER} if SPARK_MASTER else None, env_list=POD_IP_ENV,
                    resources_spec=spark_resources)
        for stage in ("bronze", "silver", "gold")
    ]
    embed = lakerag_pod("embed", "embeddings", ["pipeline", "embed", FULL_REBUILD], env=MODEL_CACHE_ENV,
                        volumes=[MODEL_CACHE_VOLUME], mounts=[MODEL_CACHE_MOUNT],
                        resources_spec=resources("embed", "1", "4", "4Gi"))
    # The index records the encoder's identity (the ONNX export's sha256): it reads the export
    # embed used, from the same model cache (the API's export with api.modelExport).
    publish_index = lakerag_pod("publish_index", "embeddings", ["pipeline", "index", FULL_REBUILD],
                                env=MODEL_CACHE_ENV, volumes=[MODEL_CACHE_VOLUME], mounts=[MODEL_CACHE_MOUNT],
                                resources_spec=resources("index", "500m", "2", "2Gi"))
    # Exit 1 when a stage summary says it failed or the last ETL quarantined files:
    # the run turns red with the counts in this task's log. Retrying would not change it.
    health = lakerag_pod("health", "embeddings", ["pipeline", "status", "--json"],
                         resources_spec=resources("health", "100m", "500m", "512Mi"), retries=0)
    chain(*etl, embed, publish_index, health)
