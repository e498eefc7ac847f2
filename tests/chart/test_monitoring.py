"""Alerts and dashboard in the chart: the PrometheusRule only with the Operator's CRD; promtool
checks the rendered rules and unit-tests every alert on synthetic series (fires when it should,
stays quiet when it should not); the Grafana dashboard ConfigMap carries the sidecar label and
a dashboard Grafana can load, whose every expression is valid PromQL."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .helm import CHART, PRODUCTION_VALUES, SERVICE_MONITOR_API, find, render

RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
DASHBOARD = CHART / "charts" / "api" / "dashboards" / "lakerag-api.json"
WITH_DASHBOARD = ("api.metrics.grafanaDashboard.enabled=true",)
POD = {"job": "lakerag-api", "namespace": "lakerag", "instance": "10.0.0.5:8000", "pod": "lakerag-api-0"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool missing: `make prometheus` (apt-get install prometheus) installs it")
    return path


def rendered_rules(values=(), sets=()) -> dict:
    return find(render(values, sets=sets, api_versions=(SERVICE_MONITOR_API, RULE_API)), "PrometheusRule",
                "lakerag-api")


def test_prometheus_rule_only_with_the_crd_and_when_enabled():
    assert not [o for o in render(api_versions=(SERVICE_MONITOR_API,)) if o["kind"] == "PrometheusRule"]
    off = render(sets=("api.metrics.prometheusRule.enabled=false",), api_versions=(RULE_API,))
    assert not [o for o in off if o["kind"] == "PrometheusRule"]
    rule = rendered_rules()
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"LakeRAGApiDown", "LakeRAGHighErrorRatio", "LakeRAGSearchLatencyHigh", "LakeRAGIndexStale",
                      "LakeRAGIndexReloadFailing", "LakeRAGPipelineStageFailed", "LakeRAGPipelineStatusUnreadable",
                      "LakeRAGQuarantineGrowing", "LakeRAGPipelineTriggerFailing", "LakeRAGLLMFailing"}
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            assert item["labels"]["severity"] in {"critical", "warning", "info"}
            assert item["annotations"]["summary"] and item["annotations"]["description"]
    labelled = rendered_rules((PRODUCTION_VALUES,), sets=("api.metrics.prometheusRule.labels.release=kps",))
    assert labelled["metadata"]["labels"]["release"] == "kps"


def test_thresholds_come_from_values(tmp_path):
    values = tmp_path / "thresholds.yaml"  # a file: --set would pass 0.2 as a string
    values.write_text(yaml.safe_dump({"api": {"metrics": {"prometheusRule": {
        "indexMaxAgeHours": 2, "errorRatio": 0.2, "llmErrorRatio": 0.25, "pipelineFailedFor": "1h"}}}}))
    rule = rendered_rules((values,))
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "> 7200" in rules["LakeRAGIndexStale"]["expr"] and "< 7200" in rules["LakeRAGIndexStale"]["expr"]
    assert rules["LakeRAGHighErrorRatio"]["expr"].rstrip().endswith("> 0.2")
    assert rules["LakeRAGLLMFailing"]["expr"].rstrip().endswith("> 0.25")
    assert rules["LakeRAGPipelineStageFailed"]["for"] == "1h"


def write_rules(tmp_path: Path, with_annotations: bool = True) -> Path:
    groups = rendered_rules()["spec"]["groups"]
    if not with_annotations:  # promtool tests compare annotations too; their templates are checked below
        groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
                  for g in groups]
    path = tmp_path / ("rules.yaml" if with_annotations else "rules-bare.yaml")
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_promtool_check_rules_accepts_the_rendered_rules(tmp_path):
    result = subprocess.run([promtool(), "check", "rules", str(write_rules(tmp_path))], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 rules found" in result.stdout


def series(name: str, values: str, **labels) -> dict:
    text = ", ".join(f'{k}="{v}"' for k, v in {**POD, **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def case(alert: str, at: str, input_series: list[dict], fires: dict | None) -> dict:
    expected = [{"exp_labels": {"severity": fires.pop("severity"), **fires}}] if fires is not None else []
    return {"interval": "1m", "input_series": input_series,
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}


def bucket_series(le_counts: dict[str, int]) -> list[dict]:
    return [series("lakerag_http_request_duration_seconds_bucket", f"0+{count}x40", route="/search", method="POST",
                   le=le) for le, count in le_counts.items()]


NS = {"namespace": "lakerag"}
ALERT_CASES = {
    "api down: fires with no target up": case("LakeRAGApiDown", "10m", [series("up", "0x20")],
                                              {"severity": "critical", "job": "lakerag-api", **NS}),
    "api down: quiet while a pod is up": case("LakeRAGApiDown", "10m",
                                              [series("up", "1x20"), series("up", "0x20", pod="lakerag-api-1")], None),
    "5xx ratio: fires at 9%": case("LakeRAGHighErrorRatio", "25m", [
        series("lakerag_http_requests_total", "0+60x40", route="/search", method="POST", status="200"),
        series("lakerag_http_requests_total", "0+6x40", route="/search", method="POST", status="500")],
        {"severity": "warning", **NS}),
    "5xx ratio: quiet at 1.6%": case("LakeRAGHighErrorRatio", "25m", [
        series("lakerag_http_requests_total", "0+60x40", route="/search", method="POST", status="200"),
        series("lakerag_http_requests_total", "0+1x40", route="/search", method="POST", status="503")], None),
    "p99 latency: fires with most searches over 1 s": case(
        "LakeRAGSearchLatencyHigh", "25m", bucket_series({"0.5": 10, "1.0": 10, "2.5": 100, "+Inf": 100}),
        {"severity": "warning", **NS}),
    "p99 latency: quiet when searches take under 0.5 s": case(
        "LakeRAGSearchLatencyHigh", "25m", bucket_series({"0.5": 100, "1.0": 100, "2.5": 100, "+Inf": 100}), None),
    "stale index: fires when old and no index run succeeded since": case(
        "LakeRAGIndexStale", "20m", [series("lakerag_index_age_seconds", "100000+60x30")],
        {"severity": "warning", **NS}),
    "stale index: quiet when the index run succeeded recently (nothing changed)": case(
        "LakeRAGIndexStale", "20m", [series("lakerag_index_age_seconds", "100000+60x30"),
                                     series("lakerag_pipeline_last_success_timestamp_seconds", "0+60x30",
                                            stage="index")], None),
    "stale index: quiet when young": case("LakeRAGIndexStale", "20m",
                                          [series("lakerag_index_age_seconds", "3600+60x30")], None),
    "reload failures: fire on a failed reload": case(
        "LakeRAGIndexReloadFailing", "10m", [series("lakerag_index_reload_failures_total", "0 0 0 1x20")],
        {"severity": "warning", **NS}),
    "reload failures: quiet without one": case(
        "LakeRAGIndexReloadFailing", "10m", [series("lakerag_index_reload_failures_total", "0x20")], None),
    "pipeline trigger: fires when every event failed for 15m": case(
        "LakeRAGPipelineTriggerFailing", "40m", [series("lakerag_airflow_triggers_total", "0+1x60", outcome="failed"),
                                                 series("lakerag_airflow_triggers_total", "0x60", outcome="sent")],
        {"severity": "warning", **NS}),
    "pipeline trigger: quiet while events also get through": case(
        "LakeRAGPipelineTriggerFailing", "40m", [series("lakerag_airflow_triggers_total", "0+1x60", outcome="failed"),
                                                 series("lakerag_airflow_triggers_total", "0+1x60", outcome="sent")],
        None),
    # With the extractive fallback, a Gemini outage no longer shows as 5xx: this is what says so.
    "llm failing: fires when most calls fail": case("LakeRAGLLMFailing", "30m", [
        series("lakerag_llm_request_duration_seconds_count", "0+10x40"),
        series("lakerag_llm_errors_total", "0+8x40", reason="timeout")], {"severity": "warning", **NS}),
    "llm failing: quiet when a few calls fail": case("LakeRAGLLMFailing", "30m", [
        series("lakerag_llm_request_duration_seconds_count", "0+10x40"),
        series("lakerag_llm_errors_total", "0+1x40", reason="upstream")], None),
    "pipeline stage failed: fires for the failed stage": case(
        "LakeRAGPipelineStageFailed", "40m", [series("lakerag_pipeline_stage_healthy", "1x60", stage="etl"),
                                              series("lakerag_pipeline_stage_healthy", "0x60", stage="embed")],
        {"severity": "warning", "stage": "embed", **NS}),
    "pipeline stage failed: quiet while healthy": case(
        "LakeRAGPipelineStageFailed", "40m", [series("lakerag_pipeline_stage_healthy", "1x60", stage="etl")], None),
    "pipeline stage failed: quiet before it lasted 30m": case(
        "LakeRAGPipelineStageFailed", "20m", [series("lakerag_pipeline_stage_healthy", "0x60", stage="etl")], None),
    "summaries unreadable: fires": case("LakeRAGPipelineStatusUnreadable", "40m",
                                        [series("lakerag_pipeline_status_readable", "0x60")],
                                        {"severity": "warning", **NS}),
    "summaries unreadable: quiet when readable": case("LakeRAGPipelineStatusUnreadable", "40m",
                                                      [series("lakerag_pipeline_status_readable", "1x60")], None),
    "quarantine: fires when it grew": case("LakeRAGQuarantineGrowing", "45m", [
        series("lakerag_pipeline_quarantined_files", "2x30 3x30", stage="etl")], {"severity": "info", **NS}),
    "quarantine: quiet when it did not grow": case("LakeRAGQuarantineGrowing", "45m", [
        series("lakerag_pipeline_quarantined_files", "3x60", stage="etl")], None),
}


def test_promtool_unit_tests_every_alert(tmp_path):
    rules = write_rules(tmp_path, with_annotations=False)
    tested = {c["alert_rule_test"][0]["alertname"] for c in ALERT_CASES.values()}
    all_alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert tested == all_alerts
    for name in all_alerts:  # every alert has a case where it fires and one where it stays quiet
        kinds = {bool(c["alert_rule_test"][0]["exp_alerts"]) for c in ALERT_CASES.values()
                 if c["alert_rule_test"][0]["alertname"] == name}
        assert kinds == {True, False}, name
    tests = tmp_path / "alerts-test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                     "tests": list(ALERT_CASES.values())}, sort_keys=False))
    result = subprocess.run([promtool(), "test", "rules", str(tests)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path):
    """Guard for the test above: a wrong expectation is reported as a failure."""
    rules = write_rules(tmp_path, with_annotations=False)
    wrong = dict(ALERT_CASES["reload failures: quiet without one"])
    wrong["input_series"] = ALERT_CASES["reload failures: fire on a failed reload"]["input_series"]
    tests = tmp_path / "wrong-test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "tests": [wrong]}))
    result = subprocess.run([promtool(), "test", "rules", str(tests)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


# ---- dashboard ------------------------------------------------------------------------------

def dashboard_panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_configmap_only_when_enabled_with_the_sidecar_label():
    assert not [o for o in render() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "lakerag-api-dashboard"]
    configmap = find(render(sets=WITH_DASHBOARD + ("api.metrics.grafanaDashboard.annotations.grafana_folder=LakeRAG",)),
                     "ConfigMap", "lakerag-api-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "LakeRAG"}
    assert json.loads(configmap["data"]["lakerag-api.json"]) == json.loads(DASHBOARD.read_text())
    for version in ("1.29.0", "1.37.0"):
        kubernetes_validate.validate(configmap, version, strict=True)


def test_dashboard_has_what_grafana_needs():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "lakerag-api" and len(dashboard["uid"]) <= 40 and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels(dashboard):
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "table"}, panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["refId"], panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard_panels(dashboard))
    for topic in ("request rate", "error ratio", "latency", "encode", "index search", "index version", "index age",
                  "vectors", "reload", "llm latency", "llm errors", "upload", "stage healthy", "quarantined"):
        assert topic in titles, topic


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    """promtool parses each expression (as a recording rule), with Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in dashboard_panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$namespace", ".*")
            assert "$" not in expr, expr
            rules.append({"record": f"dashboard:panel{panel['id']}_{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

