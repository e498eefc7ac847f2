"""values.schema.json is the chart's public contract: unknown keys and wrong types fail the
install; combinations it cannot express fail fast in templates with the fix in the message."""

from __future__ import annotations

import json
import re

import pytest
from lakerag import config

from .helm import CHART, render, template_text

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
# Set by the api subchart itself (paths tied to its volumes, the listen address).
POD_LOCAL = {"LAKERAG_HOST", "LAKERAG_PORT", "LAKERAG_INDEX_DIR", "LAKERAG_MODEL_CACHE_DIR",
             # from global.pipelineTrigger, for the API pod only (tests/chart/test_pipeline_trigger.py)
             "LAKERAG_AIRFLOW_API_URL", "LAKERAG_AIRFLOW_ASSET_URI", "LAKERAG_AIRFLOW_USERNAME",
             "LAKERAG_AIRFLOW_POLL_SECONDS"}


def rejected(*sets: str) -> str:
    result = template_text(sets=sets, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    return result.stderr


@pytest.mark.parametrize("misspelt, key, where", [
    ("api.replicaCont=2", "replicaCont", "/api"),
    ("global.imageRegistery=ghcr.io/acme/", "imageRegistery", "/global"),
    ("global.config.LAKERAG_STORE_UIR=s3://x", "LAKERAG_STORE_UIR", "/global/config"),
    ("airflow.scheduler.resource.requests.cpu=1", "resource", "/airflow/scheduler"),
    ("postgres.persistence.sise=1Gi", "sise", "/postgres/persistence"),
    ("minoi.enabled=true", "minoi", ""),
])
def test_misspelt_keys_are_rejected(misspelt, key, where):
    error = rejected(misspelt)
    assert f"at '{where}': additional properties '{key}' not allowed" in error, error


@pytest.mark.parametrize("wrong, message", [
    ("api.port=http", "want integer"),
    ("api.autoscaling.enabled=yes", "want boolean"),
    ("spark.worker.memory=3GB", "does not match pattern"),
    ("api.resources.limits.memory=lots", "does not match pattern"),
    ("global.config.LAKERAG_OFFLINE=maybe", "want"),
    ("global.config.LAKERAG_INDEX_POLL_SECONDS=soon", "want"),
    ("api.service.nodePort=8000", "want 30,000"),
    ("global.imagePullPolicy=Sometimes", "value must be one of"),
    ("global.config.LAKERAG_LOG_LEVEL=LOUD", "value must be one of"),  # else the API pod crash-loops
    ("global.config.LAKERAG_EMBED_BATCH_SIZE=0", "minimum"),
    ("global.config.AWS_ENDPOINT_URL=minio:9000", "does not match pattern"),
    ("global.config.LAKERAG_SPARK_MASTER=spark-master:7077", "does not match pattern"),
])
def test_wrong_types_and_values_are_rejected(wrong, message):
    error = rejected(wrong)
    assert "don't meet the specifications of the schema" in error, error
    assert message in error, error


def test_every_object_in_the_schema_is_closed():
    """additionalProperties: false everywhere, except Kubernetes' own types and free-form maps."""
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}/{i}")

    walk(SCHEMA, "")
    assert open_objects == [], open_objects
    assert SCHEMA["additionalProperties"] is False


def test_config_keys_are_the_settings_of_config_py_with_their_types():
    properties = SCHEMA["properties"]["global"]["properties"]["config"]["properties"]
    allowed = set(config.ENV_VARS) - config.SECRET_VARS - POD_LOCAL
    assert set(properties) == allowed
    json_type = {str: "string", int: "integer", float: "number", bool: "boolean"}
    for var, (_, kind) in config.ENV_VARS.items():
        if var in properties:
            types = properties[var]["type"]
            types = [types] if isinstance(types, str) else types
            assert json_type[kind] in types, var
    # Secrets can never be put in the ConfigMap through values.
    assert not config.SECRET_VARS & set(properties)


@pytest.mark.parametrize("sets, message", [
    (("global.config.LAKERAG_STORE_URI=file://./local_data",), "pods share no disk"),
    (("postgres.enabled=false",), "airflow needs a database"),
    (("minio.enabled=true",), "point the store at it with global.config.AWS_ENDPOINT_URL=http://lakerag-minio:9000"),
    (("minio.enabled=true", "global.config.AWS_ENDPOINT_URL=http://lakerag-minio:9000", "minio.bucket=other"),
     "is not the bucket of"),
    # A bucket whose name merely starts with minio.bucket is another bucket: the bucket Job would not make it.
    (("minio.enabled=true", "global.config.AWS_ENDPOINT_URL=http://lakerag-minio:9000",
      "global.config.LAKERAG_STORE_URI=s3://lakerag-dev/x"), "is not the bucket of"),
    (("spark.enabled=false",), "set it to local[*]"),
    (("airflow.pipeline.namespace=pipe",), "leave it empty"),
    # The api image serves ONNX exports without torch: only the packaged model's is in it.
    (("global.config.LAKERAG_EMBEDDING_MODEL=BAAI/bge-large-en-v1.5",), "Set api.modelExport.enabled=true"),
    (("global.config.LAKERAG_ENCODER=torch",), "the api image (tag \"0.1.0\") has no torch"),
    (("api.autoscaling.enabled=true", "api.autoscaling.minReplicas=5", "api.autoscaling.maxReplicas=2"),
     "maxReplicas must be >= "),
    # A certificate is for a host name: TLS for "any host" cannot be served.
    (("api.ingress.enabled=true", "api.ingress.tls.secretName=lakerag-tls"), "set api.ingress.host"),
])
def test_bad_combinations_fail_fast_with_the_fix(sets, message):
    error = rejected(*sets)
    assert message in error, error


@pytest.mark.parametrize("name, value", [
    ("LAKERAG_CHUNK_TOKENS", "8"), ("LAKERAG_CHUNK_OVERLAP_TOKENS", "-1"), ("LAKERAG_MAX_FILE_BYTES", "0"),
    ("LAKERAG_MAX_UPLOAD_BYTES", "0"), ("LAKERAG_INDEX_KEEP_VERSIONS", "0"), ("LAKERAG_WATCH_POLL_SECONDS", "0"),
    ("LAKERAG_WATCH_DEBOUNCE_SECONDS", "-1"), ("LAKERAG_VACUUM_MIN_HOURS", "-1"),
    ("LAKERAG_REPLAY_CACHE_VERSIONS", "0"), ("LAKERAG_FUSION_RRF_K", "-1"), ("LAKERAG_FUSION_DENSE_WEIGHT", "-1"),
    ("LAKERAG_FUSION_LEXICAL_WEIGHT", "-1"), ("LAKERAG_RERANK_CANDIDATES", "0"), ("LAKERAG_INDEX_POLL_SECONDS", "0"),
    ("LAKERAG_LLM_TIMEOUT_SECONDS", "0"),
    ("LAKERAG_GEMINI_BASE_URL", "generativelanguage.googleapis.com"),
    ("LAKERAG_MIN_SCORE", "2"), ("LAKERAG_RELATIVE_SCORE", "2"), ("LAKERAG_SEARCH_MODE", "semantic"),
])
def test_a_value_the_pods_refuse_at_start_the_chart_refuses_before_installing(name, value):
    """Accepted by the chart, each made the API and pipeline pods exit at start ("invalid configuration"),
    and `helm install --wait` waited out its timeout on a crash loop."""
    with pytest.raises(config.ConfigError):
        config.from_env({name: value})
    error = rejected(f"global.config.{name}={value}")
    assert name in error, error


@pytest.mark.parametrize("sets", [
    ("minio.enabled=true", "global.config.AWS_ENDPOINT_URL=http://lakerag-minio:9000",
     "global.config.LAKERAG_STORE_URI=s3://lakerag/corpus"),
    ("airflow.pipeline.namespace=lakerag",),  # the release namespace, spelled out
    # Another model is fine where its export can come from: the export init container, a PVC the
    # operator filled, a directory, or the torch variant of the image.
    ("global.config.LAKERAG_EMBEDDING_MODEL=BAAI/bge-large-en-v1.5", "api.modelCache.existingClaim=models"),
    ("global.config.LAKERAG_EMBEDDING_MODEL=/models/bge", ),
    ("global.config.LAKERAG_EMBEDDING_MODEL=BAAI/bge-large-en-v1.5", "api.image.tag=0.1.0-torch",
     "global.config.LAKERAG_ENCODER=torch"),
])
def test_the_working_neighbours_of_those_combinations_render(sets):
    assert render(sets=sets)


def test_values_yaml_is_documented_key_by_key():
    """Every top-level key and every key of each section has a comment right above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if re.match(r"^ {0,2}[A-Za-z_][\w.-]*:", line) and not lines[i - 1].strip().startswith("#"):
            undocumented.append(f"{i + 1}: {line.strip()}")
    assert undocumented == []


def test_values_yaml_matches_the_schema_defaults_it_documents():
    """Every key in values.yaml is in the schema (the schema would reject it otherwise) and the
    schema has no section values.yaml lacks, so the documented file is the whole contract."""
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def keys(node, prefix=""):
        for key, child in node.items():
            yield prefix + key
            if isinstance(child, dict) and child:
                yield from keys(child, prefix + key + ".")

    def schema_keys(node, prefix=""):
        node = resolve(node)
        for key, child in node.get("properties", {}).items():
            if key in {"global", "common"} and prefix:
                continue
            yield prefix + key
            yield from schema_keys(child, prefix + key + ".")

    def resolve(node):
        while "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].split("/")[-1]]
        return node

    documented = set(keys(values))
    contract = set(schema_keys(SCHEMA)) - {"common"}
    # Free-form Kubernetes objects (securityContext, resources) are documented as whole values.
    missing_in_values = {k for k in contract - documented
                         if not re.search(r"(ephemeral-storage|digest|LAKERAG_|AWS_|GEMINI_)", k)}
    assert missing_in_values == set()
