"""The whole batch side in one call: etl -> embed -> index (what `make run` and
`lakerag pipeline run` do, and what the DAG does task by task)."""

from __future__ import annotations

import time

from .config import Settings
from .lake import Lake

STAGES = ("etl", "embed", "index")


def run_all(settings: Settings, full_rebuild: bool = False) -> dict:
    from lakerag_spark.pipeline import run_etl

    from .embed_job import run_embed
    from .index.publish import run_index

    started = time.perf_counter()
    etl = run_etl(settings, full_rebuild=full_rebuild)
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
    """Last summary of each stage, as written by the stages themselves; unhealthy
    when a stage failed or the last ETL quarantined files."""
    lake = Lake.open(settings)
    stages = {name: lake.read_run_summary(name) for name in STAGES}
    healthy = all(s is None or s.get("ok", True) for s in stages.values())
    etl = stages.get("etl") or {}
    quarantined = (etl.get("files") or {}).get("quarantined", 0)
    return {"title": "pipeline status", "ok": True, "healthy": healthy and not quarantined,
            "quarantined": quarantined, "stages": stages}
