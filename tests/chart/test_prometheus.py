"""The kind profile's Prometheus: its config passes promtool, and its relabelling keeps exactly
the annotated API pods, at the annotated port and path."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .helm import KIND_VALUES, find, render


def prometheus_config() -> dict:
    objects = render((KIND_VALUES,))
    return yaml.safe_load(find(objects, "ConfigMap", "lakerag-prometheus")["data"]["prometheus.yml"])


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus' keep/replace relabelling (anchored RE2 regexes, ';'-joined source labels)."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                groups = (match.group(0), *match.groups())
                replacement = rule.get("replacement", "$1")
                labels[rule["target_label"]] = re.sub(
                    r"\$(\d+)", lambda m, groups=groups: groups[int(m.group(1))] or "", replacement)
        else:
            raise AssertionError(f"unexpected action {action}")
    return labels


def test_promtool_accepts_the_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    config = prometheus_config()
    # Debian's Prometheus is built without Kubernetes discovery: check everything else with a
    # static target in its place (discovery itself is covered by the relabelling test below).
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["10.0.0.5:8000"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pod_discovery_is_limited_to_the_release_namespace():
    (pods,) = [job for job in prometheus_config()["scrape_configs"] if job["job_name"] == "pods"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["lakerag"]}}]
    role = find(render((KIND_VALUES,)), "Role", "lakerag-prometheus")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def test_relabelling_scrapes_the_api_where_its_annotations_say():
    (pods,) = [job for job in prometheus_config()["scrape_configs"] if job["job_name"] == "pods"]
    api = find(render((KIND_VALUES,)), "Deployment", "lakerag-api")["spec"]["template"]["metadata"]
    meta = {f"__meta_kubernetes_pod_annotation_{re.sub(r'[^a-zA-Z0-9]', '_', k)}": v
            for k, v in api["annotations"].items()}
    meta |= {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9]', '_', k)}": v for k, v in api["labels"].items()}
    target = relabel({"__address__": "10.0.0.5", "__metrics_path__": "/metrics",
                      "__meta_kubernetes_pod_name": "lakerag-api-abc", **meta}, pods["relabel_configs"])
    assert target is not None
    assert target["__address__"] == "10.0.0.5:8000"
    assert target["__metrics_path__"] == "/metrics"
    assert (target["component"], target["pod"]) == ("api", "lakerag-api-abc")
    # A container port already in the address is replaced by the annotated one.
    assert relabel({"__address__": "10.0.0.5:9999", **meta}, pods["relabel_configs"])["__address__"] == \
        "10.0.0.5:8000"
    # Pods without the annotation are not scraped.
    assert relabel({"__address__": "10.0.0.6:5432"}, pods["relabel_configs"]) is None
