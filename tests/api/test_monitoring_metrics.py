"""Every lakerag_* metric the Grafana dashboard and the alert rules query exists in a real
/metrics scrape of the API (a renamed metric would leave a panel blank and an alert silent)."""

from __future__ import annotations

import re

from conftest import REPO
from lakerag.lake import Lake

API_CHART = REPO / "charts" / "lakerag" / "charts" / "api"
SOURCES = [API_CHART / "dashboards" / "lakerag-api.json", API_CHART / "templates" / "prometheusrule.yaml"]
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def queried_metrics() -> set[str]:
    return {name for path in SOURCES for name in re.findall(r"\blakerag_[a-z0-9_]+", path.read_text())}


def exposed_families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def test_every_metric_in_the_dashboard_and_alerts_is_exposed(served):
    lake = Lake.open(served.settings)  # the pipeline gauges need the stages' summaries in the store
    lake.write_run_summary("etl", {"title": "etl", "ok": True, "files": {"quarantined": 1}})
    lake.write_run_summary("index", {"title": "pipeline index", "ok": True})
    served.client.post("/search", json={"query": "incident bridge phone number"})
    text = served.client.get("/metrics").text
    families = exposed_families(text)
    names = queried_metrics()
    assert len(names) >= 18, names
    missing = []
    for name in sorted(names):
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if name in families or (base and families.get(base) == "histogram"):
            continue
        missing.append(name)
    assert missing == [], f"queried but not exposed: {missing}"
    # And the pipeline gauges carry data, not just a TYPE line.
    assert re.search(r'^lakerag_pipeline_stage_healthy\{stage="index"\} 1\.0$', text, re.MULTILINE)
