"""api.modelExport: the API pod's init container that exports LAKERAG_EMBEDDING_MODEL to ONNX
into the model-cache PVC with the torch variant of the api image (the api image has no torch).
Off by default (the kind profile's images bake the packaged model's export); on in production
for bge-large."""

from __future__ import annotations

import kubernetes_validate
import pytest
from lakerag import cli, config

from .helm import (
    PRODUCTION_VALUES,
    PROFILES,
    env_of,
    find,
    memory,
    pod_requests,
    pod_spec,
    render,
    render_profile,
    template_text,
)

MODEL_CACHE = "/var/cache/lakerag/models"
BGE = "BAAI/bge-large-en-v1.5"
# What enabling it takes on the default values: the pipeline's embed pods read the same export.
ENABLED = ("api.modelExport.enabled=true", "airflow.pipeline.modelCacheClaim=lakerag-api-model-cache")


def api_spec(objects) -> dict:
    return pod_spec(find(objects, "Deployment", "lakerag-api"))


def init_containers(objects) -> dict[str, dict]:
    return {c["name"]: c for c in api_spec(objects).get("initContainers", [])}


def mounts(container) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"]}


@pytest.mark.parametrize("profile", ["default", "kind", "small"])
def test_no_export_unless_asked(profile):
    objects = render_profile(profile)
    assert list(init_containers(objects)) == ["index-sync"]
    assert "progressDeadlineSeconds" not in find(objects, "Deployment", "lakerag-api")["spec"]


def test_enabled_exports_the_configured_model_before_the_api_starts():
    objects = render(sets=ENABLED)
    spec = api_spec(objects)
    assert [c["name"] for c in spec["initContainers"]] == ["model-export", "index-sync"]
    export = spec["initContainers"][0]
    api = spec["containers"][0]
    # The torch variant of the API's own image, the entry point every image has.
    assert export["image"] == "lakerag/api:0.1.0-torch" and api["image"] == "lakerag/api:0.1.0"
    assert export["imagePullPolicy"] == "IfNotPresent"
    assert export["command"] + export["args"] == ["lakerag", "model", "export", config.PACKAGED_MODEL]
    assert cli.parse(export["args"]).command == ("model", "export")
    config_map = find(objects, "ConfigMap", "lakerag-config")["data"]
    assert export["args"][-1] == config_map["LAKERAG_EMBEDDING_MODEL"]  # the model the API loads
    # The API's claim, where the API looks for exports: same volume, same path, same variables.
    assert mounts(export)[MODEL_CACHE] == mounts(api)[MODEL_CACHE] == "model-cache"
    assert mounts(export)["/tmp"] == "tmp"
    claim = {v["name"]: v for v in spec["volumes"]}["model-cache"]["persistentVolumeClaim"]["claimName"]
    assert claim == "lakerag-api-model-cache"
    export_env, api_env = env_of(export), env_of(api)
    for var in ("LAKERAG_MODEL_CACHE_DIR", "HF_HOME", "SENTENCE_TRANSFORMERS_HOME"):
        assert export_env[var]["value"] == api_env[var]["value"] == MODEL_CACHE
    assert export_env["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"] == {"containerName": "model-export",
                                                                              "resource": "limits.cpu"}
    # The settings the API reads; no Secret (the export needs no credentials).
    assert export["envFrom"] == [{"configMapRef": {"name": "lakerag-config"}}]
    assert export["resources"] == {"requests": {"cpu": "1", "memory": "3Gi"}, "limits": {"cpu": "2", "memory": "6Gi"}}
    assert export["securityContext"] == api["securityContext"]
    assert export["securityContext"]["readOnlyRootFilesystem"] is True
    assert export["securityContext"]["runAsUser"] == 10001
    # Minutes in an init container are no rollout progress: the deadline must allow them.
    assert find(objects, "Deployment", "lakerag-api")["spec"]["progressDeadlineSeconds"] == 3600


def test_enabled_does_not_raise_what_an_api_pod_reserves():
    plain = pod_requests(api_spec(render_profile("default")))
    exporting = pod_requests(api_spec(render(sets=ENABLED)))
    assert exporting == plain and memory("3Gi") == plain[1]


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_enabled_renders_valid_kubernetes(version):
    objects = render(sets=(*ENABLED, "api.modelExport.extraEnv[0].name=HF_ENDPOINT",
                           "api.modelExport.extraEnv[0].value=https://hf-mirror.example"))
    kubernetes_validate.validate(find(objects, "Deployment", "lakerag-api"), version, strict=True)
    (export, _) = api_spec(objects)["initContainers"]
    assert env_of(export)["HF_ENDPOINT"]["value"] == "https://hf-mirror.example"
    assert "HF_ENDPOINT" not in env_of(api_spec(objects)["containers"][0])


@pytest.mark.parametrize("sets, image, policy", [
    (("global.imageRegistry=ghcr.io/acme/", "global.imageTag=1.2"), "ghcr.io/acme/lakerag/api:1.2-torch",
     "IfNotPresent"),
    (("api.image.tag=1.3", "api.image.pullPolicy=Always"), "lakerag/api:1.3-torch", "Always"),
    # The API itself on the variant (the reranker): the same image, not "-torch-torch".
    (("api.image.tag=1.3-torch",), "lakerag/api:1.3-torch", "IfNotPresent"),
    (("global.imageRegistry=reg.local/", "api.modelExport.image.repository=acme/exporter",
      "api.modelExport.image.tag=v7", "api.modelExport.image.pullPolicy=Never", "api.image.pullPolicy=Always"),
     "reg.local/acme/exporter:v7", "Never"),
])
def test_image_follows_the_api_image_unless_set(sets, image, policy):
    export = init_containers(render(sets=(*ENABLED, *sets)))["model-export"]
    assert (export["image"], export["imagePullPolicy"]) == (image, policy)


def test_production_exports_bge_large_where_the_pipeline_reads_it():
    objects = render_profile("production")
    export = init_containers(objects)["model-export"]
    assert export["image"] == "ghcr.io/acme/lakerag/api:0.1.0-torch"
    assert export["args"] == ["model", "export", BGE]
    assert find(objects, "ConfigMap", "lakerag-config")["data"]["LAKERAG_EMBEDDING_MODEL"] == BGE
    spec = api_spec(objects)
    claim = {v["name"]: v for v in spec["volumes"]}["model-cache"]["persistentVolumeClaim"]["claimName"]
    assert find(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    # The DAG's embed and index pods mount that very claim (AIRFLOW_VAR_LAKERAG_MODEL_CACHE_CLAIM).
    scheduler = pod_spec(find(objects, "Deployment", "lakerag-airflow-scheduler"))["containers"][0]
    assert env_of(scheduler)["AIRFLOW_VAR_LAKERAG_MODEL_CACHE_CLAIM"]["value"] == claim


def rejected(*sets: str, values=()) -> str:
    result = template_text(values, sets=sets, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    return result.stderr


@pytest.mark.parametrize("sets, message", [
    (("global.config.LAKERAG_ENCODER=torch",), "LAKERAG_ENCODER=torch never reads"),
    # Offline, a hub model must already be in the volume: a PVC the chart creates is empty.
    (("global.config.LAKERAG_OFFLINE=true", f"global.config.LAKERAG_EMBEDDING_MODEL={BGE}"),
     "name that PVC in api.modelCache.existingClaim"),
])
def test_combinations_that_cannot_work_fail_fast(sets, message):
    error = rejected(*ENABLED, *sets)
    assert message in error, error


def test_embed_pods_without_the_export_fail_fast_with_the_claim_to_set():
    error = rejected("api.modelExport.enabled=true")
    assert "set airflow.pipeline.modelCacheClaim=lakerag-api-model-cache" in error, error
    error = rejected("api.modelExport.enabled=true", "api.modelCache.existingClaim=models")
    assert "set airflow.pipeline.modelCacheClaim=models" in error, error
    # A torch variant exports for itself; without Airflow there are no embed pods.
    for sets in (("airflow.pipeline.images.embeddings=reg/lakerag/embeddings:1-torch",),
                 ("airflow.enabled=false", "global.pipelineTrigger.enabled=false")):
        assert template_text(sets=("api.modelExport.enabled=true", *sets)).returncode == 0


@pytest.mark.parametrize("sets", [
    (f"global.config.LAKERAG_EMBEDDING_MODEL={BGE}", "global.config.LAKERAG_OFFLINE=true",
     "api.modelCache.existingClaim=prefilled", "airflow.pipeline.modelCacheClaim=prefilled"),
    ("global.config.LAKERAG_OFFLINE=true",),  # the packaged model: in the variant, nothing to download
    ("global.config.LAKERAG_OFFLINE=true", "global.config.LAKERAG_EMBEDDING_MODEL=/models/mine"),
])
def test_offline_exports_that_can_find_the_model_are_accepted(sets):
    export = init_containers(render(sets=(*ENABLED, *sets)))["model-export"]
    assert export["args"][:2] == ["model", "export"]


@pytest.mark.parametrize("wrong, message", [
    ("api.modelExport.enable=true", "additional properties 'enable' not allowed"),
    ("api.modelExport.image.registry=x", "additional properties 'registry' not allowed"),
    ("api.modelExport.progressDeadlineSeconds=60", "minimum"),
    ("api.modelExport.resources.limits.memory=lots", "does not match pattern"),
    ("api.modelExport.enabled=yes", "want boolean"),
])
def test_schema_rejects_wrong_model_export_values(wrong, message):
    error = rejected(wrong)
    assert message in error, error


def test_production_profile_is_the_only_one_exporting():
    exporting = {name for name in PROFILES if "model-export" in init_containers(render_profile(name))}
    assert exporting == {"production"}
    assert template_text((PRODUCTION_VALUES,)).returncode == 0
