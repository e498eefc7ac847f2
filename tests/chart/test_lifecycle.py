"""A release's whole life on a cluster: what `helm uninstall` leaves for a reinstall, and
what an upgrade restarts."""

from __future__ import annotations

import pytest

from .helm import KIND_VALUES, PROFILES, find, pod_spec, render, render_profile

KEEP = "helm.sh/resource-policy"
# Generated Secrets whose values belong to data that outlives the release.
GENERATED_SECRETS = {
    "lakerag-secrets": "the MinIO root user (its PVC) and the API key (its clients)",
    "lakerag-postgres": "the password initdb wrote into the Postgres PVC",
    "lakerag-airflow": "the Fernet key of connections encrypted in that database",
}


def kept(obj: dict) -> bool:
    return (obj["metadata"].get("annotations") or {}).get(KEEP) == "keep"


@pytest.mark.parametrize("profile", PROFILES)
def test_uninstall_keeps_every_volume_the_chart_creates(profile):
    objects = render_profile(profile)
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert claims or profile == "production"
    for claim in claims:
        assert kept(claim), f"helm uninstall would delete PVC {claim['metadata']['name']}"
    # StatefulSet claims are never deleted by helm, unless a retention policy asks for it.
    for obj in objects:
        if obj["kind"] == "StatefulSet":
            policy = obj["spec"].get("persistentVolumeClaimRetentionPolicy", {})
            assert policy.get("whenDeleted", "Retain") == "Retain", obj["metadata"]["name"]


def test_the_minio_volume_survives_uninstall_under_a_stable_name():
    """A reinstall under the same release name binds the same claim: the Deployment mounts it by name."""
    objects = render((KIND_VALUES,))
    claim = find(objects, "PersistentVolumeClaim", "lakerag-minio")
    assert kept(claim)
    volumes = pod_spec(find(objects, "Deployment", "lakerag-minio"))["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "lakerag-minio"}} in volumes


@pytest.mark.parametrize("profile", ["default", "kind"])
def test_generated_secrets_survive_uninstall(profile):
    secrets = {o["metadata"]["name"]: o for o in render_profile(profile) if o["kind"] == "Secret"}
    assert set(GENERATED_SECRETS) <= set(secrets)
    for name, why in GENERATED_SECRETS.items():
        assert kept(secrets[name]), f"{name} must outlive uninstall: it holds {why}"


def test_secrets_given_at_install_are_not_kept_by_the_chart():
    """existingSecret paths create nothing, so there is nothing to keep or to leave behind."""
    objects = render_profile("production")
    assert not [o for o in objects if o["kind"] == "Secret"]


def prometheus_checksum(*sets: str) -> str:
    objects = render((KIND_VALUES,), sets=sets)
    return find(objects, "Deployment", "lakerag-prometheus")["spec"]["template"]["metadata"]["annotations"][
        "checksum/prometheus-config"]


def test_prometheus_restarts_only_when_its_own_config_changes():
    before = prometheus_checksum()
    # What every `make deploy` passes, and settings only other components read.
    for change in ("global.imageTag=0.2.0", "global.config.LAKERAG_LOG_LEVEL=INFO", "api.replicaCount=2"):
        assert prometheus_checksum(change) == before, change
    assert prometheus_checksum("prometheus.scrapeInterval=5s") != before


# Endpoint removal reaches kube-proxy on every node and cloud load balancers within a few
# seconds; the preStop wait must outlast it.
ENDPOINT_PROPAGATION_SECONDS = 5


@pytest.mark.parametrize("profile", PROFILES)
def test_api_rolls_without_dropping_requests(profile):
    from lakerag.api.main import GRACEFUL_SHUTDOWN_SECONDS

    deployment = find(render_profile(profile), "Deployment", "lakerag-api")
    strategy = deployment["spec"]["strategy"]
    # A new pod first; an old one goes only once a new one passes readiness (model loaded).
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spec = pod_spec(deployment)
    api = spec["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    command = api["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert pre_stop > ENDPOINT_PROPAGATION_SECONDS
    # SIGTERM comes after preStop; uvicorn then finishes requests in flight before the kill.
    assert spec["terminationGracePeriodSeconds"] > pre_stop + GRACEFUL_SHUTDOWN_SECONDS


def test_a_grace_period_too_short_for_in_flight_requests_is_refused():
    from .helm import template_text

    result = template_text(sets=("api.shutdown.preStopSeconds=10", "api.shutdown.terminationGracePeriodSeconds=20"),
                           check=False)
    assert result.returncode != 0
    assert "api.shutdown.terminationGracePeriodSeconds=20 must exceed preStopSeconds (10)" in result.stderr
