"""Event-driven sync in the cluster (global.pipelineTrigger): the API pod reaches the chart's Airflow
api-server as a user that Airflow creates with role op, its password by secretKeyRef into a key the
Airflow Secret really holds, on the asset the DAG is scheduled on; bad combinations fail fast."""

from __future__ import annotations

import base64

import kubernetes_validate
import pytest
from lakerag import config

from .helm import find, pod_spec, render, render_profile, template_text

TRIGGER_VARS = {"LAKERAG_AIRFLOW_API_URL", "LAKERAG_AIRFLOW_ASSET_URI", "LAKERAG_AIRFLOW_USERNAME",
                "LAKERAG_AIRFLOW_PASSWORD", "LAKERAG_AIRFLOW_POLL_SECONDS"}


def container_env(obj: dict, name: str | None = None, init: bool = False) -> dict[str, dict]:
    containers = pod_spec(obj)["initContainers" if init else "containers"]
    (container,) = [c for c in containers if name is None or c["name"] == name]
    return {e["name"]: e for e in container.get("env", [])}


def api_env(objects) -> dict[str, dict]:
    return container_env(find(objects, "Deployment", "lakerag-api"), "api")


@pytest.mark.parametrize("profile", ["default", "kind"])
def test_api_reaches_the_charts_airflow_as_the_user_it_creates(profile):
    objects = render_profile(profile)
    env = api_env(objects)
    assert TRIGGER_VARS <= set(env)
    # The URL names the api-server's Service and port.
    service = find(objects, "Service", "lakerag-airflow-api-server")
    assert env["LAKERAG_AIRFLOW_API_URL"]["value"] == f"http://lakerag-airflow-api-server:{service['spec']['ports'][0]['port']}"
    # The password only by reference, to a key the generated Airflow Secret holds.
    ref = env["LAKERAG_AIRFLOW_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert "value" not in env["LAKERAG_AIRFLOW_PASSWORD"]
    secret = find(objects, "Secret", ref["name"])
    assert len(base64.b64decode(secret["data"][ref["key"]])) == 32
    # Airflow creates that user with role op, and its passwords file gets the same key.
    username = env["LAKERAG_AIRFLOW_USERNAME"]["value"]
    api_server = find(objects, "Deployment", "lakerag-airflow-api-server")
    users = container_env(api_server, "api-server")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]["value"]
    assert f"{username}:op" in users.split(",")
    init = container_env(api_server, "auth-passwords", init=True)
    assert init["TRIGGER_USERNAME"]["value"] == username
    assert init["TRIGGER_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    # The DAG is scheduled on the asset the API records events on (the scheduler and the parser read it).
    for component in ("airflow-scheduler", "airflow-dag-processor"):
        dag_env = container_env(find(objects, "Deployment", f"lakerag-{component}"))
        assert dag_env["AIRFLOW_VAR_LAKERAG_ASSET_URI"]["value"] == env["LAKERAG_AIRFLOW_ASSET_URI"]["value"]
    # The values are real settings the API accepts (the password as the Secret would supply it).
    values = {name: e["value"] for name, e in env.items() if "value" in e}
    settings = config.from_env({**values, "LAKERAG_AIRFLOW_PASSWORD": "from-the-secret"})
    assert settings.airflow_api_url and settings.airflow_poll_seconds > 0
    kubernetes_validate.validate(find(objects, "Deployment", "lakerag-api"), "1.29.0", strict=True)
    kubernetes_validate.validate(api_server, "1.29.0", strict=True)


def test_production_profile_reads_the_password_from_your_airflow_secret():
    objects = render_profile("production")
    ref = api_env(objects)["LAKERAG_AIRFLOW_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "lakerag-airflow-secrets", "key": "trigger-password"}
    init = container_env(find(objects, "Deployment", "lakerag-airflow-api-server"), "auth-passwords", init=True)
    assert init["TRIGGER_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref


def test_disabled_leaves_no_trigger_setting_and_no_extra_airflow_user():
    objects = render(sets=("global.pipelineTrigger.enabled=false",))
    assert not TRIGGER_VARS & set(api_env(objects))
    api_server = find(objects, "Deployment", "lakerag-airflow-api-server")
    assert container_env(api_server, "api-server")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]["value"] == "admin:admin"
    assert "trigger-password" not in find(objects, "Secret", "lakerag-airflow")["data"]


def test_an_external_airflow_takes_its_url_and_your_secret():
    objects = render(sets=("airflow.enabled=false", "global.pipelineTrigger.airflowUrl=https://airflow.example.com",
                           "global.pipelineTrigger.passwordSecret.name=airflow-trigger"))
    env = api_env(objects)
    assert env["LAKERAG_AIRFLOW_API_URL"]["value"] == "https://airflow.example.com"
    assert env["LAKERAG_AIRFLOW_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "airflow-trigger"


@pytest.mark.parametrize("sets, message", [
    (("airflow.enabled=false",), "global.pipelineTrigger.enabled needs an Airflow"),
    (("airflow.existingSecret=mine",), "global.pipelineTrigger.passwordSecret.name"),
    (("global.pipelineTrigger.airflowUrl=http://airflow:8080",), "global.pipelineTrigger.passwordSecret.name"),
    (("global.pipelineTrigger.username=admin",), "must differ from airflow.admin.username"),
    (("global.pipelineTrigger.airflowUrl=airflow:8080",), "does not match pattern"),
    (("global.pipelineTrigger.pollSeconds=-1",), "minimum"),
    (("global.pipelineTrigger.pollSecs=5",), "pollSecs"),
])
def test_bad_combinations_fail_fast_with_the_fix(sets, message):
    result = template_text(sets=sets, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    assert message in result.stderr, result.stderr
