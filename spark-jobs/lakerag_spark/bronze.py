"""Bronze: list raw/, read only new or changed objects, extract their text; unreadable ones go
to quarantine with the reason. Commits: one MERGE on bronze (key) and one on quarantine
(key + content_hash), each only when something changed."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from lakerag.lake import RAW_PREFIX, Lake

from lakerag_spark.tables import SCHEMAS, conform, executor_environment, read_table, sync_table
from lakerag_spark.transforms import EXTRACTED, extract_objects, plan_raw

LISTING = pa.schema([("key", pa.string()), ("size", pa.int64()), ("source_version", pa.string())])


def run_bronze(spark, lake: Lake, full_rebuild: bool = False) -> dict:
    """Returns the run's file counts and whether bronze/quarantine were committed."""
    objects = list(lake.store.list(RAW_PREFIX))
    listing = pa.Table.from_pylist([{"key": o.key, "size": o.size, "source_version": o.version} for o in objects],
                                   schema=LISTING)
    plan = plan_raw(spark.createDataFrame(listing) if objects else spark.createDataFrame([], "key string, "
                                                                                         "size long, source_version string"),
                    read_table(spark, lake, "bronze", ["key", "source_version", "content_hash"]),
                    read_table(spark, lake, "quarantine", ["key", "source_version", "content_hash"]),
                    full_rebuild).toArrow()
    status = plan.column("status").to_pylist()
    work = plan.filter(plan.column("process")).select(["key", "size", "source_version"])
    extracted = EXTRACTED.empty_table()
    if work.num_rows:
        frame = spark.createDataFrame(work).repartition(min(work.num_rows, 4 * spark.sparkContext.defaultParallelism))
        extracted = conform(extract_objects(frame, lake.settings, executor_environment()).toArrow(), EXTRACTED)

    readable = extracted.filter(pc.is_null(extracted.column("reason")))
    unreadable = extracted.filter(pc.is_valid(extracted.column("reason")))
    before = {row["key"]: row for row in plan.select(["key", "status", "bronze_hash", "quarantine_hash"]).to_pylist()}
    gone = {key for key, row in before.items() if row["status"] == "deleted"}
    now_bad = set(unreadable.column("key").to_pylist())
    new_bad_hash = dict(zip(unreadable.column("key").to_pylist(), unreadable.column("content_hash").to_pylist()))
    processed = set(work.column("key").to_pylist())

    bronze_deletes = sorted(k for k in gone | now_bad if before[k]["bronze_hash"] is not None)
    quarantine_deletes = [{"key": k, "content_hash": before[k]["quarantine_hash"]}
                          for k in sorted(gone | processed)
                          if before[k]["quarantine_hash"] is not None
                          and before[k]["quarantine_hash"] != new_bad_hash.get(k)]
    quarantine_rows = unreadable.select(["key", "doc_id", "size", "source_version", "content_hash", "reason"]) \
        .append_column("quarantined_at", unreadable.column("extracted_at"))
    # Re-reading an unchanged bad file (full rebuild) must not rewrite its quarantine row.
    quarantine_rows = quarantine_rows.filter(pa.array(
        [before[k]["quarantine_hash"] != h for k, h in zip(quarantine_rows.column("key").to_pylist(),
                                                             quarantine_rows.column("content_hash").to_pylist())],
        pa.bool_()))

    committed = {
        "bronze": sync_table(lake, "bronze", readable.select(SCHEMAS["bronze"].names),
                             pa.table({"key": pa.array(bronze_deletes, pa.string())})),
        "quarantine": sync_table(lake, "quarantine", quarantine_rows,
                                 pa.Table.from_pylist(quarantine_deletes, schema=pa.schema(
                                     [("key", pa.string()), ("content_hash", pa.string())]))),
    }
    # "changed" means new bytes; an object that was only touched (same hash) counts as unchanged.
    new_hash = dict(zip(extracted.column("key").to_pylist(), extracted.column("content_hash").to_pylist()))
    changed = sum(1 for k in processed if before[k]["status"] == "changed"
                  and new_hash.get(k) != (before[k]["bronze_hash"] or before[k]["quarantine_hash"]))
    files = {
        "seen": len(objects),
        "new": status.count("new"),
        "changed": changed,
        "unchanged": len(objects) - status.count("new") - changed,
        "deleted": len(gone),
        "read": len(processed),
    }
    return {"files": files, "committed": committed}


def main() -> int:
    from lakerag_spark.pipeline import main as pipeline_main

    return pipeline_main(("bronze",))


if __name__ == "__main__":
    raise SystemExit(main())
