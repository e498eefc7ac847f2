"""The rendered manifests use commands, images, ports, paths and environment variables that
really exist: the `lakerag` CLI parser, Airflow's own CLI parser, Spark's jars, config.py's
settings, the images' Dockerfiles and the DAG's Variables."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from lakerag import cli, config

from .helm import KIND_VALUES, PROFILES, REPO, all_containers, env_of, find, pod_spec, pod_specs, render, render_profile

AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
LAKERAG_IMAGES = {"api", "embeddings", "spark", "airflow"}
# Standard variables the tools themselves read (not LakeRAG settings).
KNOWN_FOREIGN_ENV = re.compile(
    r"^(AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|REGION|ENDPOINT_URL)|HF_HOME|SENTENCE_TRANSFORMERS_HOME|OMP_NUM_THREADS"
    r"|AIRFLOW_HOME|AIRFLOW_CONFIG|AIRFLOW__[A-Z_]+__[A-Z_]+|AIRFLOW_VAR_LAKERAG_[A-Z_]+"
    r"|POSTGRES_(USER|DB|PASSWORD)|PGDATA|MINIO_ROOT_(USER|PASSWORD)|HOME|BUCKET|(ADMIN|TRIGGER)_(USERNAME|PASSWORD)"
    r"|SPARK_(LOG_DIR|WORKER_DIR|LOCAL_DIRS|NO_DAEMONIZE|LOCAL_IP|LOCAL_HOSTNAME))$")


def containers_everywhere():
    for profile in PROFILES:
        for obj, spec in pod_specs(render_profile(profile)):
            for container in all_containers(spec):
                yield profile, obj, container


def image_name(container) -> str | None:
    match = re.match(r"^(?:.*/)?lakerag/([a-z]+):", container["image"])
    return match.group(1) if match else None


def argv(container) -> list[str]:
    return list(container.get("command", [])) + list(container.get("args", []))


def probe_commands(container):
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        command = container.get(probe, {}).get("exec", {}).get("command")
        if command:
            yield command


def test_lakerag_commands_parse_with_the_real_cli():
    seen = set()
    for profile, obj, container in containers_everywhere():
        if argv(container)[:1] == ["lakerag"]:
            parsed = cli.parse(argv(container)[1:])  # typer's usage error (a test error) on a bad command
            seen.add(" ".join(parsed.command))
    assert {"index sync", "serve"} <= seen


def test_python_snippets_compile():
    compiled = 0
    for profile, obj, container in containers_everywhere():
        command = argv(container)
        if command[:2] == ["python", "-c"]:
            compile(command[2], f"{obj['metadata']['name']}/{container['name']}", "exec")
            compiled += 1
    assert compiled, "no `python -c` snippet found in the rendered chart: the test would check nothing"


@pytest.mark.skipif(not AIRFLOW_PYTHON.exists(), reason="needs .venv-airflow (make airflow-env)")
def test_airflow_commands_options_and_db_driver_are_airflows_own():
    commands, urls, options = [], set(), set()
    for profile, obj, container in containers_everywhere():
        if image_name(container) != "airflow":
            continue
        options |= {name for name in env_of(container) if name.startswith("AIRFLOW__")}
        for command in [argv(container), *probe_commands(container)]:
            if command[:1] == ["airflow"]:
                commands.append(command[1:])
        for item in container.get("env", []):
            if item["name"] == "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" and "value" in item:
                urls.add(item["value"].replace("$(POSTGRES_PASSWORD)", "secret"))
    assert len(commands) > 10 and urls and len(options) > 10
    script = """
import json, sys
from airflow.cli.cli_parser import get_parser
from sqlalchemy.engine import make_url
data = json.load(sys.stdin)
bad = []
for command in data["commands"]:
    try:
        get_parser().parse_args(command)
    except SystemExit as exc:
        bad.append([command, str(exc)])
from airflow.settings import _get_async_conn_uri_from_sync
for url in data["urls"]:
    # ImportError if the image would lack a driver: the sync one, and the async one Airflow derives.
    make_url(url).get_dialect().import_dbapi()
    make_url(_get_async_conn_uri_from_sync(url)).get_dialect().import_dbapi()
from airflow.configuration import conf
for name in data["options"]:
    section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
    if key not in conf.configuration_description.get(section, {}).get("options", {}):
        bad.append([name, "not an Airflow option"])
print(json.dumps(bad))
"""
    payload = json.dumps({"commands": commands, "urls": sorted(urls), "options": sorted(options)})
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", script], input=payload, capture_output=True, text=True,
                            timeout=300,
                            env={"AIRFLOW_HOME": "/tmp/lakerag-chart-airflow-home", "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_spark_pods_run_classes_that_exist_in_pyspark():
    spec = importlib.util.find_spec("pyspark")
    pyspark_dir = Path(next(iter(spec.submodule_search_locations)))
    assert (pyspark_dir / "bin" / "spark-class").exists()
    (core,) = (pyspark_dir / "jars").glob("spark-core_*.jar")
    classes = set(zipfile.ZipFile(core).namelist())
    objects = render_profile("default")
    for name in ("lakerag-spark-master", "lakerag-spark-worker"):
        container = pod_spec(find(objects, "Deployment", name))["containers"][0]
        assert container["command"] == ["spark-class"]
        main_class = container["args"][0]
        assert main_class.replace(".", "/") + ".class" in classes, main_class
    worker = pod_spec(find(objects, "Deployment", "lakerag-spark-worker"))["containers"][0]
    assert worker["args"][1] == "spark://lakerag-spark-master:7077"
    config_map = find(objects, "ConfigMap", "lakerag-config")["data"]
    assert config_map["LAKERAG_SPARK_MASTER"] == worker["args"][1]


def test_environment_names_are_real_settings():
    settings_vars = set(config.ENV_VARS)
    for profile, obj, container in containers_everywhere():
        for name in env_of(container):
            if name.startswith("LAKERAG_"):
                assert name in settings_vars, f"{obj['metadata']['name']}: {name} is not in config.ENV_VARS"
            else:
                assert KNOWN_FOREIGN_ENV.match(name), f"{obj['metadata']['name']}: unexpected env {name}"
    for profile in PROFILES:
        for obj in render_profile(profile):
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "lakerag-config":
                assert set(obj["data"]) <= settings_vars
            if obj["kind"] == "Secret" and obj["metadata"]["name"] == "lakerag-secrets":
                assert set(obj["data"]) <= config.SECRET_VARS | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_api_port_and_paths_match_settings_and_the_naming_contract():
    objects = render_profile("default")
    api = pod_spec(find(objects, "Deployment", "lakerag-api"))["containers"][0]
    env = env_of(api)
    assert api["ports"][0]["containerPort"] == config.Settings().port == int(env["LAKERAG_PORT"]["value"])
    # The pod must listen beyond loopback (the Settings default is 127.0.0.1 for laptops).
    assert env["LAKERAG_HOST"]["value"] == "0.0.0.0"
    # Values from a Secret (secretKeyRef) count as set, as Kubernetes sets them in the pod.
    pod_env = {k: v.get("value", "from-a-secret") for k, v in env.items()
               if "value" in v or "secretKeyRef" in v["valueFrom"]}
    assert config.from_env(pod_env).index_dir == "/var/lib/lakerag/index"


def test_images_exist_and_match_what_the_pods_expect():
    used = set()
    for profile, obj, container in containers_everywhere():
        name = image_name(container)
        if name:
            used.add(name)
            assert (REPO / "images" / name / "Dockerfile").exists(), f"no images/{name}/Dockerfile"
    assert used == {"api", "spark", "airflow"}  # embeddings runs only in the DAG's pods
    for name in LAKERAG_IMAGES:
        dockerfile = (REPO / "images" / name / "Dockerfile").read_text()
        assert re.search(r"^USER 10001(:10001)?$", dockerfile, re.MULTILINE), f"{name}: the chart runs it as 10001"
        entrypoint = '["airflow"]' if name == "airflow" else '["lakerag"]'
        assert re.search(rf"^ENTRYPOINT {re.escape(entrypoint)}$", dockerfile, re.MULTILINE), name
    api_dockerfile = (REPO / "images" / "api" / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE 8000$", api_dockerfile, re.MULTILINE)


def test_airflow_paths_match_the_image_and_skaffold():
    values = yaml.safe_load((REPO / "charts" / "lakerag" / "values.yaml").read_text())["airflow"]
    dockerfile = (REPO / "images" / "airflow" / "Dockerfile").read_text()
    assert f"AIRFLOW_HOME={values['home']}" in dockerfile
    assert re.search(rf"^COPY airflow-dags/ {re.escape(values['dagsFolder'])}/?$", dockerfile, re.MULTILINE)
    skaffold = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    airflow = next(a for a in skaffold["build"]["artifacts"] if a["image"] == "lakerag/airflow")
    (rule,) = airflow["sync"]["manual"]
    assert rule["dest"] == values["dagsFolder"] and rule["src"] == "airflow-dags/*.py"


def test_airflow_variables_are_the_ones_the_dag_reads():
    dag_file = REPO / "airflow-dags" / "lakerag_pipeline.py"
    if not dag_file.exists():
        pytest.skip("airflow-dags/lakerag_pipeline.py not written yet")
    dag = dag_file.read_text()
    scheduler = pod_spec(find(render((KIND_VALUES,), sets=("airflow.pipeline.images.spark=x/spark:1",
                                                            "airflow.pipeline.images.embeddings=x/embed:1",
                                                            "airflow.pipeline.modelCacheClaim=models",
                                                            "airflow.pipeline.schedule=@daily")),
                              "Deployment", "lakerag-airflow-scheduler"))["containers"][0]
    variables = [name for name in env_of(scheduler) if name.startswith("AIRFLOW_VAR_")]
    assert len(variables) >= 12
    for name in variables:
        variable = name.removeprefix("AIRFLOW_VAR_").lower()
        per_component = re.fullmatch(r"lakerag_(\w+?)_(image|cpu_request|cpu_limit|memory)", variable)
        if per_component:
            # Built by the DAG from a component name: lakerag_<component>_<what>.
            component = per_component.group(1)
            assert re.search(r'"lakerag_" \+ component \+ "_image"|f"lakerag_\{kind\}_', dag), variable
            assert f'"{component}"' in dag, f"{variable}: the DAG has no component {component!r}"
        else:
            assert re.search(rf"""["']{variable}["']""", dag), f"{name}: the DAG reads no Variable {variable!r}"
    env = env_of(scheduler)
    assert env["AIRFLOW_VAR_LAKERAG_SERVICE_ACCOUNT"]["value"] == "lakerag-pipeline"
    assert env["AIRFLOW_VAR_LAKERAG_CONFIGMAP"]["value"] == "lakerag-config"
    assert env["AIRFLOW_VAR_LAKERAG_SECRET"]["value"] == "lakerag-secrets"
    assert env["AIRFLOW_VAR_LAKERAG_NAMESPACE"]["value"] == "lakerag"
    # The DAG's in-pod model cache path is the API's.
    assert 'MODEL_CACHE_DIR = "/var/cache/lakerag/models"' in dag


def test_kubernetes_objects_follow_the_naming_contract():
    objects = render_profile("kind")
    services = {o["metadata"]["name"]: [p["port"] for p in o["spec"]["ports"]] for o in objects
                if o["kind"] == "Service"}
    assert services["lakerag-api"] == [8000]
    assert services["lakerag-spark-master"] == [7077, 8080]
    assert services["lakerag-airflow-api-server"] == [8080]
    assert services["lakerag-postgres"] == [5432]
    assert services["lakerag-minio"][0] == 9000
    assert services["lakerag-prometheus"] == [9090]
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    assert {"lakerag-pipeline", "lakerag-airflow"} <= accounts
    role = find(objects, "Role", "lakerag-airflow-pod-launcher")
    rules = {(tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in role["rules"]}
    assert (("pods",), ("create", "delete", "get", "list", "patch", "watch")) in rules
    assert (("pods/log",), ("get",)) in rules
    assert not [r for r in role["rules"] if "secrets" in r["resources"] or "*" in r["verbs"]]
    binding = find(objects, "RoleBinding", "lakerag-airflow-pod-launcher")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lakerag-airflow", "namespace": "lakerag"}]
    scheduler = pod_spec(find(objects, "Deployment", "lakerag-airflow-scheduler"))
    assert scheduler["serviceAccountName"] == "lakerag-airflow"
    env = env_of(scheduler["containers"][0])
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]["value"] == \
        "http://lakerag-airflow-api-server:8080/execution/"
    assert env["AIRFLOW__CORE__EXECUTOR"]["value"] == "LocalExecutor"
