"""The whole batch side in one call: etl -> embed -> index (what `make run` and
`lakerag pipeline run` do, and what the DAG does task by task)."""

from __future__ import annotations

import time

from .config import Settings
from .lake import Lake
from .lake.run_lock import live_lease
from .lake.run_marker import marker_state

STAGES = ("etl", "embed", "index")


def run_all(settings: Settings, full_rebuild: bool = False, spark=None) -> dict:
    """``spark``: a session kept by the caller, or a function returning one (the watcher's), else one is
    started and stopped."""
    # Here, not at the top: `lakerag pipeline status` and the API (its /pipeline route) need
    # none of them, and the API image has no Spark, Delta or pyarrow (docs/architecture.md).
    from lakerag_spark.pipeline import run_etl

    from .embed_job import run_embed
    from .index.publish import run_index

    started = time.perf_counter()
    etl = run_etl(settings, full_rebuild=full_rebuild, spark=spark)
    embed = run_embed(settings, full_rebuild=full_rebuild)
    index = run_index(settings, force=full_rebuild)
    return {
        "title": "pipeline run",
        "ok": all(s.get("ok", True) for s in (etl, embed, index)),
        "seconds": round(time.perf_counter() - started, 2),
        "etl": _flat(etl),
        "embed": _flat(embed),
        "index": _flat(index),
    }


def _flat(summary: dict) -> dict:
    """Scalars of a stage summary, nested sections summed up as `section.key`."""
    flat = {}
    for key, value in summary.items():
        if key in {"title"}:
            continue
        if isinstance(value, dict):
            for inner, item in value.items():
                if not isinstance(item, (dict, list)):
                    flat[f"{key}.{inner}"] = item
        elif isinstance(value, list):
            flat[key] = len(value)
        else:
            flat[key] = value
    return flat


def status(settings: Settings) -> dict:
    """``lakerag pipeline status``: the last summary of each stage and whether it is healthy
    (``health``). ``ok`` equals ``healthy``: the exit status says the same with and without --json."""
    lake = Lake.open(settings)
    stages = {name: lake.read_run_summary(name) for name in STAGES}
    verdict = health(lake, stages)
    report = {"title": "pipeline status", "ok": verdict["healthy"], **verdict}
    if not any(stages.values()) and not verdict["running"] and not verdict["unfinished"]:
        # Nothing wrong, and nothing to show: say so rather than a bare "healthy" over empty stages
        # (a mistyped LAKERAG_STORE_URI reads exactly like this).
        report["note"] = (f"no stage has finished a run in {settings.store_uri} yet: `lakerag pipeline run` runs "
                          "them (`make run` too); check LAKERAG_STORE_URI if runs were expected here")
    return {**report, "stages": stages}


def health(lake: Lake, stages: dict[str, dict | None]) -> dict:
    """The one rule the CLI, the DAG's health task and the API's /pipeline share: unhealthy when
    a stage failed, a stage started and never finished (killed, or still running where that cannot
    be told from here: another host), or files are in quarantine (as of the last ETL). A stage whose
    run is in flight is ``running``, not a problem: on this host its process runs; on another, the
    process holds the store's live lease (S3)."""
    problems = [f"{name} failed: {s.get('error') or s.get('reason') or 'see its summary'}"
                for name, s in stages.items() if s is not None and not s.get("ok", True)]
    markers = {name: marker for name in STAGES if (marker := lake.read_run_started(name))}
    states = {name: marker_state(marker) for name, marker in markers.items()}
    if "elsewhere" in states.values() and (lease := live_lease(lake.store)):  # S3: the lease says who runs
        for name, marker in markers.items():
            if states[name] == "elsewhere" and (lease.get("host"), lease.get("pid")) == (marker.get("host"),
                                                                                      marker.get("pid")):
                states[name] = "running"
    for name, m in markers.items():
        started = f"{name} started at {m.get('started_at')} (pid {m.get('pid')} on {m.get('host')})"
        if states[name] == "gone":
            problems.append(f"{started} and did not finish: that process no longer runs (killed, or out of "
                            "memory); the next complete run clears this")
        elif states[name] == "elsewhere":
            problems.append(f"{started} and has not finished: still running, or killed; the next complete "
                            "run clears this")
    etl = stages.get("etl") or {}
    quarantined = (etl.get("files") or {}).get("quarantined", 0)
    if quarantined:
        problems.append(f"{quarantined} file(s) in quarantine: GET /documents or the etl summary says why; "
                        "fix or delete them in raw/ and the next run clears them")
    return {"healthy": not problems, "problems": problems, "quarantined": quarantined,
            "unfinished": sorted(name for name, state in states.items() if state != "running"),
            "running": sorted(name for name, state in states.items() if state == "running")}
