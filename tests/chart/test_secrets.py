"""Secrets are generated or taken from existing Secrets, referenced by name, never inlined."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from .cluster_state import render_upgrade
from .helm import (
    CHART,
    KIND_VALUES,
    PRODUCTION_VALUES,
    PROFILES,
    SMALL_VALUES,
    all_containers,
    find,
    helm,
    pod_specs,
    render,
    render_profile,
    template_text,
)

SENSITIVE = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|SQL_ALCHEMY_CONN|CREDENTIAL", re.IGNORECASE)
# Names that match SENSITIVE but hold the *name* of a Secret, for the DAG's pods.
SECRET_NAMES = {"AIRFLOW_VAR_LAKERAG_SECRET"}


def secret_values(objects) -> dict[tuple[str, str], str]:
    return {(o["metadata"]["name"], key): base64.b64decode(value).decode()
            for o in objects if o["kind"] == "Secret" for key, value in o.get("data", {}).items()}


def test_default_install_generates_every_secret():
    objects = render_profile("default")
    values = secret_values(objects)
    api_key = values[("lakerag-secrets", "LAKERAG_API_KEY")]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", api_key)
    # Not given, no MinIO: the AWS chain (IRSA) and extractive answers; nothing empty is written.
    assert ("lakerag-secrets", "AWS_ACCESS_KEY_ID") not in values
    assert ("lakerag-secrets", "GEMINI_API_KEY") not in values
    assert re.fullmatch(r"[A-Za-z0-9]{32}", values[("lakerag-postgres", "password")])
    for key in ("api-secret-key", "jwt-secret", "admin-password"):
        assert len(values[("lakerag-airflow", key)]) >= 16
    # A different install gets different secrets: they are generated, not defaults in a file.
    again = secret_values(render(sets=("tests.query=another render",)))
    assert again[("lakerag-secrets", "LAKERAG_API_KEY")] != api_key


def test_fernet_key_is_valid():
    from cryptography.fernet import Fernet

    key = secret_values(render_profile("default"))[("lakerag-airflow", "fernet-key")]
    token = Fernet(key.encode()).encrypt(b"connection password")
    assert Fernet(key.encode()).decrypt(token) == b"connection password"


def test_kind_profile_generates_minio_credentials_used_by_every_s3_client():
    objects = render_profile("kind")
    values = secret_values(objects)
    assert re.fullmatch(r"[A-Za-z0-9]{20}", values[("lakerag-secrets", "AWS_ACCESS_KEY_ID")])
    assert re.fullmatch(r"[A-Za-z0-9]{40}", values[("lakerag-secrets", "AWS_SECRET_ACCESS_KEY")])
    minio = find(objects, "Deployment", "lakerag-minio")["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in minio["env"] if "valueFrom" in e}
    assert refs["MINIO_ROOT_USER"] == {"name": "lakerag-secrets", "key": "AWS_ACCESS_KEY_ID"}
    assert refs["MINIO_ROOT_PASSWORD"] == {"name": "lakerag-secrets", "key": "AWS_SECRET_ACCESS_KEY"}


@pytest.mark.parametrize("profile", PROFILES)
def test_sensitive_env_comes_from_secrets(profile):
    for obj, spec in pod_specs(render_profile(profile)):
        for container in all_containers(spec):
            for item in container.get("env", []):
                if not SENSITIVE.search(item["name"]) or item["name"].endswith("_FILE") \
                        or item["name"] in SECRET_NAMES:
                    continue  # *_FILE names a path, e.g. where Airflow keeps its password file
                where = f"{obj['metadata']['name']}/{container['name']}: {item['name']}"
                if "valueFrom" in item:
                    assert "secretKeyRef" in item["valueFrom"], where
                else:
                    # Only a URL assembled from a referenced secret, e.g. $(POSTGRES_PASSWORD).
                    assert re.search(r"\$\([A-Z_]+\)", item["value"]), where
                    referenced = re.findall(r"\$\(([A-Z_]+)\)", item["value"])
                    earlier = {e["name"]: e for e in container["env"]}
                    for name in referenced:
                        assert "secretKeyRef" in earlier[name]["valueFrom"], where


@pytest.mark.parametrize("profile", ["default", "kind"])  # production creates no Secret (below)
def test_no_secret_value_appears_outside_its_secret(profile):
    sets = ("secrets.geminiApiKey=gm-test-4d9f2c", "secrets.apiKey=api-test-7a1b3e")
    objects = render(PROFILES[profile], sets=sets)
    values = secret_values(objects)
    assert values[("lakerag-secrets", "GEMINI_API_KEY")] == "gm-test-4d9f2c"
    assert values[("lakerag-secrets", "LAKERAG_API_KEY")] == "api-test-7a1b3e"
    others = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])
    for (name, key), value in values.items():
        assert value not in others, f"{name}/{key} is inlined"


def test_no_configmap_holds_a_secret():
    for profile in PROFILES:
        for obj in render_profile(profile):
            if obj["kind"] == "ConfigMap":
                assert not [k for k in obj.get("data", {}) if SENSITIVE.search(k)], obj["metadata"]["name"]


def test_values_files_hold_no_secrets():
    for path in (CHART / "values.yaml", KIND_VALUES, SMALL_VALUES, PRODUCTION_VALUES):
        values = yaml.safe_load(path.read_text())
        assert not any((values.get("secrets") or {}).values()), path.name


def test_existing_secrets_replace_the_generated_ones():
    objects = render_profile("production")
    assert not [o for o in objects if o["kind"] == "Secret"], "production creates no Secret"
    for obj, spec in pod_specs(objects):
        for container in all_containers(spec):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] == "lakerag-app-secrets"
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in {"lakerag-app-secrets", "lakerag-airflow-secrets", "lakerag-airflow-db"}, \
                        item["name"]
    scheduler = find(objects, "Deployment", "lakerag-airflow-scheduler")["spec"]["template"]["spec"]["containers"][0]
    conn = {e["name"]: e for e in scheduler["env"]}["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn["valueFrom"]["secretKeyRef"] == {"name": "lakerag-airflow-db", "key": "connection"}


def test_existing_postgres_secret_is_shared_with_airflow():
    objects = render(sets=("global.postgres.existingSecret=my-pg",))
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "lakerag-postgres"]
    postgres = find(objects, "StatefulSet", "lakerag-postgres")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e for e in postgres["env"]}["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-pg"
    scheduler = find(objects, "Deployment", "lakerag-airflow-scheduler")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in scheduler["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-pg", "key": "password"}
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]["value"] == \
        "postgresql+psycopg2://airflow:$(POSTGRES_PASSWORD)@lakerag-postgres:5432/airflow"


def test_half_a_key_pair_is_refused():
    result = template_text(sets=("secrets.awsAccessKeyId=AKIAEXAMPLE",), check=False)
    assert result.returncode != 0
    assert "set both secrets.awsAccessKeyId and secrets.awsSecretAccessKey" in result.stderr


@pytest.mark.parametrize("key", ["clé-secrète", "tab\there"])
def test_an_api_key_no_header_can_carry_is_refused_without_echoing_it(key):
    """The API refuses such a key at start (an HTTP header cannot carry it): the pod crash-looped
    after `helm install --wait` had already waited for it."""
    result = template_text(sets=(f"secrets.apiKey={key}",), check=False)
    assert result.returncode != 0
    assert "secrets.apiKey has a character that is not printable ASCII" in result.stderr
    assert key not in result.stderr


def test_an_api_key_from_a_file_with_its_newline_is_taken(tmp_path):
    (tmp_path / "key").write_text("s3cret-key\n")
    result = helm("template", "lakerag", str(CHART), "--set-file", f"secrets.apiKey={tmp_path / 'key'}", check=False)
    assert result.returncode == 0, result.stderr


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("profile", ["default", "kind"])
def test_an_upgrade_keeps_the_keys_given_at_install(profile):
    """`helm upgrade` without the --set secrets.* of the install (make deploy, any -f) keeps them:
    the Secret it applies still holds every key the installed one had."""
    installed = {"GEMINI_API_KEY": b64("gm-install-5e1a"), "AWS_ACCESS_KEY_ID": b64("AKIAINSTALL"),
                 "AWS_SECRET_ACCESS_KEY": b64("install-secret-key"), "LAKERAG_API_KEY": b64("api-install-9c2d")}
    values = secret_values(render_upgrade({"lakerag-secrets": installed}, PROFILES[profile]))
    assert {key: values[("lakerag-secrets", key)] for key in installed} == {
        "GEMINI_API_KEY": "gm-install-5e1a", "AWS_ACCESS_KEY_ID": "AKIAINSTALL",
        "AWS_SECRET_ACCESS_KEY": "install-secret-key", "LAKERAG_API_KEY": "api-install-9c2d"}


def test_an_upgrade_with_new_keys_replaces_the_installed_ones():
    installed = {"GEMINI_API_KEY": b64("gm-old"), "LAKERAG_API_KEY": b64("api-old")}
    values = secret_values(render_upgrade({"lakerag-secrets": installed},
                                          sets=("secrets.geminiApiKey=gm-new", "secrets.apiKey=api-new")))
    assert values[("lakerag-secrets", "GEMINI_API_KEY")] == "gm-new"
    assert values[("lakerag-secrets", "LAKERAG_API_KEY")] == "api-new"
    # Nothing installed, nothing given: nothing empty is written (the AWS chain, extractive answers).
    values = secret_values(render_upgrade({"lakerag-secrets": {"LAKERAG_API_KEY": b64("api-old")}}))
    assert ("lakerag-secrets", "GEMINI_API_KEY") not in values
    assert ("lakerag-secrets", "AWS_ACCESS_KEY_ID") not in values
