"""``lakerag pipeline etl``: bronze -> silver -> gold in one Spark session, then one summary."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

from lakerag import config
from lakerag.config import Settings
from lakerag.lake import Lake, summarises_a_crash, tables
from lakerag.summary import format_summary
from pyspark.sql import SparkSession

from lakerag_spark.bronze import run_bronze
from lakerag_spark.gold import run_gold
from lakerag_spark.session import error_text, interrupted, spark_session
from lakerag_spark.silver import run_silver

STAGES = ("bronze", "silver", "gold")
LAKE_TABLES = ("bronze", "quarantine", "silver", "gold")
log = logging.getLogger(__name__)


@summarises_a_crash("etl", title="etl")
def run_etl(settings: Settings, stages=STAGES, full_rebuild: bool = False, spark=None) -> dict:
    """Run the given stages (in pipeline order) and return the run summary, also written to
    lake/_runs/etl.json. Incremental unless ``full_rebuild``; a run over an unchanged store
    commits nothing. ``spark``: a session the caller keeps, or a function returning one (the
    watcher's long-lived session, started by its first run and timed in it as ``spark_start``)."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown ETL stage(s) {sorted(unknown)}: choose from {', '.join(STAGES)}")
    started = time.perf_counter()
    lake = Lake.open(settings)
    summary: dict = {
        "title": "etl" if tuple(stages) == STAGES else f"etl ({', '.join(s for s in STAGES if s in stages)})",
        "ok": True,
        "store": settings.store_uri,
        "full_rebuild": full_rebuild,
        # read: objects whose bytes were fetched and extracted this run (new + changed + touched).
        "files": {"seen": 0, "new": 0, "changed": 0, "unchanged": 0, "deleted": 0, "read": 0, "quarantined": 0,
                  "duplicates": 0},
        "quarantined": [],
        "rows": {},
        "versions": {},
        "seconds": {},
    }
    lake.mark_run_started("etl")  # its summary clears this; status reports a killed run
    # A session this run starts is stopped at the end (`lakerag run` goes on to serve the API
    # in the same process); one that already existed (tests, notebooks) is left running.
    owned = spark is None and SparkSession.getActiveSession() is None
    spark = spark() if callable(spark) else spark or spark_session(settings)
    summary["seconds"]["spark_start"] = round(time.perf_counter() - started, 2)
    run_at = datetime.now(UTC)
    try:
        for stage in STAGES:
            if stage not in stages:
                continue
            stage_started = time.perf_counter()
            if stage == "bronze":
                result = run_bronze(spark, lake, full_rebuild)
            elif stage == "silver":
                result = run_silver(spark, lake, run_at, full_rebuild)
            else:
                result = run_gold(spark, lake, full_rebuild)
            summary["seconds"][stage] = round(time.perf_counter() - stage_started, 2)
            for key, value in result.get("files", {}).items():
                if key in summary["files"]:
                    summary["files"][key] = value
            summary.setdefault("changes", {}).update(result.get("changes", {}))
            summary.setdefault("committed", {}).update(result.get("committed", {}))
            if "rechunked" in result:
                summary["rechunked"] = result["rechunked"]
            if "retexted" in result:  # the first stage that found it says from which version
                summary.setdefault("retexted", result["retexted"])
    except Exception as exc:
        if interrupt := interrupted(exc):  # Ctrl-C or SIGTERM cancelled the Spark job that raised this
            raise interrupt from exc
        log.exception("ETL failed")
        summary["ok"] = False
        summary["error"] = error_text(exc)
    quarantine = tables.read_arrow(lake, "quarantine", ["key", "reason"]).sort_by("key")
    summary["quarantined"] = quarantine.to_pylist()
    summary["files"]["quarantined"] = quarantine.num_rows
    for name in LAKE_TABLES:
        summary["rows"][name] = tables.row_count(lake, name)
        summary["versions"][name] = tables.version(lake, name)
    tables.write_document_status(lake)  # GET /documents reads it (the API reads no Delta)
    summary["seconds"]["total"] = round(time.perf_counter() - started, 2)
    lake.write_run_summary("etl", summary)
    if owned:
        spark.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point for spark-submit / ``python -m lakerag_spark.pipeline [STAGE...] [--full-rebuild]``
    (all stages by default); settings from the environment."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stages = tuple(a for a in args if not a.startswith("--")) or STAGES
    summary = run_etl(config.from_env(), stages=stages, full_rebuild="--full-rebuild" in args)
    print(format_summary(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
