"""The pipeline's last run per stage (lake/_runs/<stage>.json) as Prometheus gauges and as
GET /pipeline for the console: success time, quarantined files, healthy.

The batch stages run elsewhere (pods, the DAG); their summaries in the store are the only
trace the API can see, so it reads them at scrape time, at most once per CACHE_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from fastapi import APIRouter, Request
from prometheus_client.core import GaugeMetricFamily

from ..lake import Lake
from ..pipeline import STAGES, health

log = logging.getLogger(__name__)
CACHE_SECONDS = 15.0


def _unix(text) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except (TypeError, ValueError):
        return None


def stage_view(name: str, summary: dict | None) -> dict:
    """What one stage's summary says, in the units the gauges and the console use."""
    if summary is None:
        return {"stage": name, "ran": False}
    files = summary.get("files") or {}
    return {"stage": name, "ran": True, "ok": bool(summary.get("ok", True)), "error": summary.get("error"),
            "finished_at": summary.get("finished_at"), "last_success_at": summary.get("last_success_at"),
            "quarantined": int(files.get("quarantined", 0)) if name == "etl" else None,
            "seconds": summary.get("seconds")}


class PipelineStatus:
    """Reads the stage summaries (cached) and collects them as gauges for a registry."""

    def __init__(self, lake_of):
        self._lake_of = lake_of  # a callable: the Lake is opened lazily by AppState
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._cached: dict = {}

    def read(self) -> dict:
        with self._lock:
            if time.monotonic() - self._read_at < CACHE_SECONDS:
                return self._cached
            try:
                lake: Lake = self._lake_of()
                summaries = {name: lake.read_run_summary(name) for name in STAGES}
                # healthy, problems, quarantined, unfinished, running: as `lakerag pipeline status` says them
                view = {"readable": True, **health(lake, summaries),
                        "stages": [stage_view(name, summary) for name, summary in summaries.items()]}
            except Exception as exc:  # noqa: BLE001 - an unreachable store must not break /metrics
                log.warning("cannot read the pipeline summaries: %s", exc)
                view = {"readable": False, "error": f"{type(exc).__name__}: {exc}", "stages": [], "healthy": False,
                        "problems": [f"cannot read the pipeline summaries: {exc}"], "quarantined": 0,
                        "unfinished": [], "running": []}
            self._cached, self._read_at = view, time.monotonic()
            return view

    def describe(self):
        return []  # collected lazily: no store read when the collector is registered

    def collect(self):
        view = self.read()
        readable = GaugeMetricFamily("lakerag_pipeline_status_readable",
                                     "1 when the API could read the pipeline's run summaries from the store")
        readable.add_metric([], 1.0 if view["readable"] else 0.0)
        yield readable
        healthy = GaugeMetricFamily("lakerag_pipeline_stage_healthy",
                                    "1 when the stage's last run succeeded, 0 when it failed", labels=["stage"])
        last_run = GaugeMetricFamily("lakerag_pipeline_last_run_timestamp_seconds",
                                     "When the stage's last run finished (unix seconds)", labels=["stage"])
        last_success = GaugeMetricFamily("lakerag_pipeline_last_success_timestamp_seconds",
                                         "When the stage last finished successfully (unix seconds)",
                                         labels=["stage"])
        quarantined = GaugeMetricFamily("lakerag_pipeline_quarantined_files",
                                        "Files in quarantine after the stage's last run", labels=["stage"])
        for stage in view["stages"]:
            if not stage["ran"]:
                continue
            healthy.add_metric([stage["stage"]], 1.0 if stage["ok"] else 0.0)
            for family, field in ((last_run, "finished_at"), (last_success, "last_success_at")):
                if (value := _unix(stage[field])) is not None:
                    family.add_metric([stage["stage"]], value)
            if stage["quarantined"] is not None:
                quarantined.add_metric([stage["stage"]], float(stage["quarantined"]))
        yield from (healthy, last_run, last_success, quarantined)


router = APIRouter(tags=["operations"])


@router.get("/pipeline")
def pipeline(request: Request) -> dict:
    """The batch pipeline's last run per stage, as the stages recorded it in the store."""
    return request.app.state.pipeline_status.read()
