"""The API pod: index-sync init container, shared index volume, model-cache PVC, probes,
Service, HPA/PDB, ServiceMonitor vs scrape annotations, config checksum."""

from __future__ import annotations

import pytest

from .helm import KIND_VALUES, PRODUCTION_VALUES, SERVICE_MONITOR_API, env_of, find, pod_spec, render, render_profile

INDEX_DIR = "/var/lib/lakerag/index"
MODEL_CACHE = "/var/cache/lakerag/models"


def api_pod(objects):
    return pod_spec(find(objects, "Deployment", "lakerag-api"))


def mounts(container):
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"]}


def test_init_container_syncs_the_index_into_the_shared_volume():
    spec = api_pod(render_profile("default"))
    (init,) = spec["initContainers"]
    api = spec["containers"][0]
    assert init["command"] + init["args"] == ["lakerag", "index", "sync", "--once", "--dest", INDEX_DIR]
    assert init["image"] == api["image"] == "lakerag/api:0.1.0"
    # Same volume in both: what the init container writes is what the API serves.
    assert mounts(init)[INDEX_DIR] == mounts(api)[INDEX_DIR] == "index"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["index"]
    assert env_of(api)["LAKERAG_INDEX_DIR"]["value"] == INDEX_DIR
    # The init container reaches the store with the same settings and credentials as the API.
    assert init["envFrom"] == api["envFrom"]


def test_model_cache_pvc_is_where_sentence_transformers_looks():
    objects = render_profile("default")
    spec = api_pod(objects)
    api = spec["containers"][0]
    assert mounts(api)[MODEL_CACHE] == "model-cache"
    env = env_of(api)
    for var in ("LAKERAG_MODEL_CACHE_DIR", "HF_HOME", "SENTENCE_TRANSFORMERS_HOME"):
        assert env[var]["value"] == MODEL_CACHE
    claim = {v["name"]: v for v in spec["volumes"]}["model-cache"]["persistentVolumeClaim"]["claimName"]
    pvc = find(objects, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in pvc["spec"]  # the cluster default
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_model_cache_is_configurable():
    objects = render(sets=("api.modelCache.size=25Gi", "api.modelCache.storageClass=fast",
                           "api.modelCache.accessModes={ReadWriteMany}"))
    pvc = find(objects, "PersistentVolumeClaim", "lakerag-api-model-cache")
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "25Gi"
    existing = render(sets=("api.modelCache.existingClaim=shared-models",))
    assert not [o for o in existing if o["kind"] == "PersistentVolumeClaim" and "model-cache" in o["metadata"]["name"]]
    volumes = {v["name"]: v for v in api_pod(existing)["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "shared-models"


def test_probes_allow_a_large_model_to_load():
    api = api_pod(render_profile("production"))["containers"][0]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    startup = api["startupProbe"]
    # /health answers before the model loads: the window must wait for /ready to mean anything.
    assert startup["httpGet"] == {"path": "/ready", "port": "http"}
    # bge-large's load must not get the pod killed (>= 10 minutes).
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_recreate_strategy_as_documented_renders_without_rolling_update():
    """values.yaml says {type: Recreate} for a ReadWriteOnce cache on several nodes; merged over the
    default it kept rollingUpdate, which the API server refuses for Recreate."""
    for sets in (("api.strategy.type=Recreate",), ("api.strategy.type=Recreate", "api.strategy.rollingUpdate=null")):
        deployment = find(render((KIND_VALUES,), sets=sets), "Deployment", "lakerag-api")
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    default = find(render_profile("default"), "Deployment", "lakerag-api")["spec"]["strategy"]
    assert default == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_api_security_context():
    spec = api_pod(render_profile("default"))
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                       "fsGroup": 10001, "fsGroupChangePolicy": "OnRootMismatch",
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    for container in spec["initContainers"] + spec["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsUser"] == 10001
        assert mounts(container)["/tmp"] == "tmp"  # the only writable scratch space
    assert spec["automountServiceAccountToken"] is False


def test_service_targets_the_api_port():
    objects = render_profile("default")
    service = find(objects, "Service", "lakerag-api")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8000 and port["targetPort"] == "http"
    api = api_pod(objects)["containers"][0]
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert service["spec"]["selector"] == find(objects, "Deployment", "lakerag-api")["spec"]["selector"]["matchLabels"]


def test_kind_profile_exposes_node_ports_of_kind_config():
    objects = render((KIND_VALUES,))
    assert find(objects, "Service", "lakerag-api")["spec"]["ports"][0]["nodePort"] == 30800
    assert find(objects, "Service", "lakerag-airflow-api-server")["spec"]["ports"][0]["nodePort"] == 30880


def test_hpa_and_pdb_are_optional():
    default = render_profile("default")
    assert not [o for o in default if o["kind"] in {"HorizontalPodAutoscaler", "PodDisruptionBudget"}]
    assert find(default, "Deployment", "lakerag-api")["spec"]["replicas"] == 1
    production = render((PRODUCTION_VALUES,))
    hpa = find(production, "HorizontalPodAutoscaler", "lakerag-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lakerag-api"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    # The HPA owns the replica count.
    assert "replicas" not in find(production, "Deployment", "lakerag-api")["spec"]
    pdb = find(production, "PodDisruptionBudget", "lakerag-api")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


@pytest.mark.parametrize("profile_values", [(), (PRODUCTION_VALUES,)])
def test_service_monitor_only_when_the_crd_exists(profile_values):
    without_crd = render(profile_values)
    assert not [o for o in without_crd if o["kind"] == "ServiceMonitor"]
    annotations = find(without_crd, "Deployment", "lakerag-api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"

    with_crd = render(profile_values, api_versions=(SERVICE_MONITOR_API,))
    monitor = find(with_crd, "ServiceMonitor", "lakerag-api")
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    # It selects the API Service (by that Service's labels) and nothing else.
    service_labels = find(with_crd, "Service", "lakerag-api")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    annotations = find(with_crd, "Deployment", "lakerag-api")["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations


def test_production_service_monitor_carries_the_operator_selector_label():
    monitor = find(render((PRODUCTION_VALUES,), api_versions=(SERVICE_MONITOR_API,)), "ServiceMonitor", "lakerag-api")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_can_be_turned_off_even_with_the_crd():
    objects = render(sets=("api.metrics.serviceMonitor.enabled=false",), api_versions=(SERVICE_MONITOR_API,))
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]
    annotations = find(objects, "Deployment", "lakerag-api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_config_change_rolls_the_pods():
    def checksum(objects, name):
        return find(objects, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    before = render_profile("default")
    after = render(sets=("global.config.LAKERAG_INDEX_POLL_SECONDS=5",))
    for name in ("lakerag-api", "lakerag-spark-worker", "lakerag-airflow-scheduler"):
        assert checksum(before, name) != checksum(after, name), name
    assert checksum(before, "lakerag-api") == checksum(render_profile("default"), "lakerag-api")
    # The checksum is of exactly what the ConfigMap holds.
    assert find(after, "ConfigMap", "lakerag-config")["data"]["LAKERAG_INDEX_POLL_SECONDS"] == "5"


def test_shared_config_is_rendered_for_the_release():
    data = find(render_profile("kind"), "ConfigMap", "lakerag-config")["data"]
    assert data == {
        "AWS_ENDPOINT_URL": "http://lakerag-minio:9000",
        "AWS_REGION": "us-east-1",
        "LAKERAG_ENCODER": "onnx",
        "LAKERAG_EMBEDDING_MODEL": "sentence-transformers/all-MiniLM-L6-v2",
        "LAKERAG_GEMINI_MODEL": "gemini-2.5-flash",
        "LAKERAG_INDEX_POLL_SECONDS": "10",
        "LAKERAG_LLM_FALLBACK": "true",
        "LAKERAG_LOG_LEVEL": "DEBUG",
        "LAKERAG_MAX_CHUNKS_PER_DOCUMENT": "10000",
        "LAKERAG_OFFLINE": "true",
        "LAKERAG_SPARK_MASTER": "spark://lakerag-spark-master:7077",
        "LAKERAG_STORE_URI": "s3://lakerag/lakerag",
    }


def test_helm_test_pod_queries_ready_and_search():
    objects = render_profile("default")
    pod = find(objects, "Pod", "lakerag-api-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert 'base = "http://lakerag-api:8000"' in script
    assert 'call("/ready")' in script and 'call("/search"' in script
    compile(script, "helm-test", "exec")  # the embedded program is valid Python


def test_no_ingress_unless_asked():
    assert not [o for o in render_profile("default") if o["kind"] == "Ingress"]


def test_ingress_reaches_the_api_service_and_lets_uploads_through():
    """Past port-forward (a real cluster, a host name) the API and its console need an Ingress,
    and ingress-nginx's 1 MiB default body size would refuse most uploads with its own 413 page."""
    import kubernetes_validate

    objects = render(sets=("api.ingress.enabled=true", "api.ingress.className=nginx",
                           "api.ingress.host=lakerag.example.com", "api.ingress.tls.secretName=lakerag-tls",
                           "api.ingress.annotations.cert-manager\\.io/cluster-issuer=letsencrypt"))
    ingress = find(objects, "Ingress", "lakerag-api")
    kubernetes_validate.validate(ingress, "1.29.0", strict=True)
    service = find(objects, "Service", "lakerag-api")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "lakerag.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": service["metadata"]["name"],
                                          "port": {"name": service["spec"]["ports"][0]["name"]}}
    assert ingress["spec"]["tls"] == [{"hosts": ["lakerag.example.com"], "secretName": "lakerag-tls"}]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    # The API's upload limit (50 MiB) plus room for the multipart envelope; it follows the setting.
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == str(50 * 2**20 + 2**20)
    bigger = render(sets=("api.ingress.enabled=true", "global.config.LAKERAG_MAX_UPLOAD_BYTES=209715200"))
    assert find(bigger, "Ingress", "lakerag-api")["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-body-size"] == str(200 * 2**20 + 2**20)
    # One's own value wins; without a host it answers any host, with the cluster's default class.
    own = find(render(sets=("api.ingress.enabled=true",
                            "api.ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-body-size=500m")),
               "Ingress", "lakerag-api")
    assert own["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "500m"
    assert "host" not in own["spec"]["rules"][0] and "ingressClassName" not in own["spec"]
    assert "tls" not in own["spec"]
