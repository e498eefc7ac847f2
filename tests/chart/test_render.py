"""The chart renders for every profile, passes `helm lint --strict`, and every object is valid
Kubernetes by the strict OpenAPI schemas (misspelt fields fail)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from .helm import (
    CHART,
    KIND_VALUES,
    PRODUCTION_VALUES,
    PROFILES,
    REPO,
    SERVICE_MONITOR_API,
    find,
    helm,
    notes,
    render,
    render_profile,
    template_text,
)

# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships offline.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
# Custom resources have no built-in schema; their shape is asserted in test_api.py.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_strict(profile):
    args = ["lint", "--strict", str(CHART), "--namespace", "lakerag"]
    for path in PROFILES[profile]:
        args += ["-f", str(path)]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_is_valid_kubernetes(profile, version):
    objects = render_profile(profile, api_versions=(SERVICE_MONITOR_API,))
    checked = 0
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 15, f"only {checked} objects rendered for {profile}"


def test_strict_validation_catches_a_misspelt_field():
    """Guard for the test above: strict mode really rejects an unknown field."""
    deployment = copy.deepcopy(find(render_profile("default"), "Deployment", "lakerag-api"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_renders_from_a_clean_clone_without_dependency_build():
    """Subcharts are committed directories; no .tgz and no `helm dependency build` is needed."""
    # A local `helm dependency build` would add .tgz copies beside the directories: git ignores them.
    assert "charts/lakerag/charts/*.tgz" in (CHART.parents[1] / ".gitignore").read_text().splitlines()
    subcharts = {p.name for p in (CHART / "charts").iterdir() if p.is_dir()}
    assert subcharts == {"common", "api", "spark", "airflow", "postgres", "minio", "prometheus"}
    sources = {o["metadata"]["name"] for o in render_profile("kind")}
    assert {"lakerag-api", "lakerag-spark-master", "lakerag-airflow-api-server", "lakerag-postgres",
            "lakerag-minio", "lakerag-prometheus"} <= sources


@pytest.mark.parametrize("profile", PROFILES)
def test_object_names_are_unique_and_labelled(profile):
    objects = render_profile(profile, api_versions=(SERVICE_MONITOR_API,))
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "lakerag", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/name") == "lakerag"
        assert labels.get("app.kubernetes.io/part-of") == "lakerag"
        assert obj["metadata"]["name"].startswith("lakerag-")


def test_names_follow_the_release():
    """Another release name prefixes every object, so two installs never collide."""
    names = {o["metadata"]["name"] for o in render(release="dev")}
    assert names and all(name.startswith("dev-lakerag-") for name in names)
    # ...and the cross-references follow: the API reads dev-lakerag-config.
    api = find(render(release="dev"), "Deployment", "dev-lakerag-api")
    env_from = api["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"configMapRef": {"name": "dev-lakerag-config"}} in env_from


@pytest.mark.parametrize("registry", ["ghcr.io/acme", "ghcr.io/acme/"])
def test_image_registry_is_taken_with_or_without_its_trailing_slash(registry):
    """bitnami-style `ghcr.io/acme` and `ghcr.io/acme/` name the same images, in the chart's pods
    and in the pipeline pods the DAG starts (AIRFLOW_VAR_LAKERAG_IMAGE_REGISTRY)."""
    objects = render(sets=(f"global.imageRegistry={registry}", "global.imageTag=1.2"))
    api = find(objects, "Deployment", "lakerag-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["image"] == "ghcr.io/acme/lakerag/api:1.2"
    scheduler = find(objects, "Deployment", "lakerag-airflow-scheduler")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in scheduler["containers"][0]["env"]}
    assert env["AIRFLOW_VAR_LAKERAG_IMAGE_REGISTRY"] == "ghcr.io/acme/"


def test_subcharts_are_switched_by_their_conditions():
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(sets=("spark.enabled=false",
                                                                      "global.config.LAKERAG_SPARK_MASTER=local[*]"))}
    assert ("Deployment", "lakerag-spark-master") not in kinds
    assert ("Deployment", "lakerag-api") in kinds
    default_names = {o["metadata"]["name"] for o in render_profile("default")}
    assert "lakerag-minio" not in default_names and "lakerag-prometheus" not in default_names
    kind_names = {o["metadata"]["name"] for o in render_profile("kind")}
    assert "lakerag-minio" in kind_names and "lakerag-prometheus" in kind_names


def test_kind_and_production_profiles_render_differently_where_it_matters():
    kind_config = find(render((KIND_VALUES,)), "ConfigMap", "lakerag-config")["data"]
    prod_config = find(render((PRODUCTION_VALUES,)), "ConfigMap", "lakerag-config")["data"]
    assert kind_config["AWS_ENDPOINT_URL"] == "http://lakerag-minio:9000"
    assert "AWS_ENDPOINT_URL" not in prod_config  # real S3
    assert prod_config["LAKERAG_EMBEDDING_MODEL"] == "BAAI/bge-large-en-v1.5"
    assert template_text((PRODUCTION_VALUES,)).returncode == 0


def test_notes_upload_command_copies_the_samples_from_where_they_are():
    text = notes((KIND_VALUES,))
    [copy_line] = [line for line in text.splitlines() if " s3 cp " in line]
    source = copy_line.split(" s3 cp ")[1].split()[0]
    assert (REPO / source).is_dir() and any((REPO / source).iterdir()), source
    assert "needs the aws CLI" in text


@pytest.mark.parametrize("profile", ["default", "production"])
def test_notes_say_a_store_without_minio_must_be_reachable(profile):
    """Otherwise the API pods sit in their index-sync init container with no hint why."""
    text = " ".join(notes(PROFILES[profile]).split())
    assert "must be reachable from the pods, with credentials" in text and "IRSA" in text
    assert "index-sync init container" in text
    assert "must be reachable" not in notes((KIND_VALUES,))  # MinIO is in the release


def test_notes_lead_to_the_console_and_to_uploads_through_the_api():
    """NOTES pointed at /docs only, and at uploads through MinIO with the aws CLI; the console
    (search, ask, drag-and-drop upload) and `lakerag upload`, which need neither, went unsaid."""
    from lakerag import cli

    text = notes((KIND_VALUES,))
    assert "open http://localhost:8000/  (the console: search, ask, upload; OpenAPI at /docs)" in text
    [upload] = [line.strip() for line in text.splitlines() if "lakerag upload" in line]
    argv = upload.removeprefix(".venv/bin/lakerag ").replace('"$LAKERAG_API_KEY"', "key").split()
    cli.parse(argv)  # the real CLI takes it
    source = argv[1]
    assert (REPO / source).is_dir() and any((REPO / source).iterdir()), source
    assert "export LAKERAG_API_KEY=$(kubectl" in text


def test_notes_give_the_ingress_address_when_there_is_one():
    assert "Ingress" not in notes()
    assert "Through the Ingress: https://lakerag.example.com/ (the console)" in notes(
        sets=("api.ingress.enabled=true", "api.ingress.host=lakerag.example.com", "api.ingress.tls.secretName=tls"))
    assert "Through the Ingress: http://lakerag.example.com/ (the console)" in notes(
        sets=("api.ingress.enabled=true", "api.ingress.host=lakerag.example.com"))
    anyhost = notes(sets=("api.ingress.enabled=true",))
    assert "Through the Ingress: http://<the ingress controller's address>/ (the console)" in anyhost
