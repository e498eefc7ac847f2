"""Bronze: list raw/, read only new or changed objects, extract their text; unreadable ones go
to quarantine with the reason. Executors fetch each object once, extract it and write the
readable rows as bronze files; the driver gets only per-object metadata (no text) and commits
one transaction on bronze (key) and one MERGE on quarantine (key + content_hash), each only
when something changed."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
from lakerag.extract import TEXT_VERSION
from lakerag.lake import Lake, raw_documents
from lakerag.lake.tables import SCHEMAS, conform, merge, record_text_version, text_change, text_version
from lakerag.store import S3Access
from pyspark.sql.pandas.types import from_arrow_schema

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import EXTRACTED, extractor, plan_raw
from lakerag_spark.writes import FILE_ACTIONS, commit_files, table_files

# What the driver gets back per object: EXTRACTED without the text, plus the files written.
OUTCOME = pa.schema([f for f in EXTRACTED if f.name != "pages"]
                    + list(FILE_ACTIONS))

log = logging.getLogger(__name__)
LISTING = pa.schema([("key", pa.string()), ("size", pa.int64()), ("source_version", pa.string())])


def run_bronze(spark, lake: Lake, full_rebuild: bool = False) -> dict:
    """Returns the run's file counts and whether bronze/quarantine were committed."""
    retexted = text_change(text_version(lake, "bronze"), TEXT_VERSION)
    if retexted:  # this release extracts other text than the one that built bronze
        log.warning("text extraction changed since bronze was built (%s): re-extracting every document", retexted)
        full_rebuild = True
    objects = list(raw_documents(lake.store))
    listing = pa.Table.from_pylist([{"key": o.key, "size": o.size, "source_version": o.version} for o in objects],
                                   schema=LISTING)
    listed = spark.createDataFrame(listing) if objects else spark.createDataFrame([], from_arrow_schema(LISTING))
    plan = plan_raw(listed, read_table(spark, lake, "bronze", ["key", "source_version", "content_hash"]),
                    read_table(spark, lake, "quarantine", ["key", "source_version", "content_hash"]),
                    full_rebuild).toArrow()
    before = {row["key"]: row for row in plan.to_pylist()}
    work = plan.filter(plan.column("process")).select(["key", "size", "source_version"])
    outcome = OUTCOME.empty_table()
    if work.num_rows:
        frame = spark.createDataFrame(work).repartition(min(work.num_rows, 4 * spark.sparkContext.defaultParallelism))
        outcome = conform(frame.mapInArrow(extract_and_write(lake, S3Access.from_settings(lake.settings).environment()),
                                           from_arrow_schema(OUTCOME)).toArrow(), OUTCOME)
    is_file = pc.is_valid(outcome.column("op"))
    written = outcome.filter(is_file).select(FILE_ACTIONS.names)
    extracted = outcome.filter(pc.invert(is_file))

    readable = extracted.filter(pc.is_null(extracted.column("reason")))
    unreadable = extracted.filter(pc.is_valid(extracted.column("reason")))
    processed = set(work.column("key").to_pylist())
    gone = {key for key, row in before.items() if row["status"] == "deleted"}
    new_bad_hash = dict(zip(unreadable.column("key").to_pylist(), unreadable.column("content_hash").to_pylist()))

    bronze_deletes = sorted(k for k in gone | set(new_bad_hash) if before[k]["bronze_hash"] is not None)
    # A key keeps at most one quarantine row: the one for its current bytes.
    quarantine_deletes = [{"key": k, "content_hash": before[k]["quarantine_hash"]}
                          for k in sorted(gone | processed)
                          if before[k]["quarantine_hash"] not in (None, new_bad_hash.get(k))]
    quarantine_rows = [row for row in unreadable.to_pylist()
                       # A re-read of the same bad bytes at the same version (full rebuild) changes nothing.
                       if (before[row["key"]]["quarantine_hash"], before[row["key"]]["known_version"])
                       != (row["content_hash"], row["source_version"])]
    quarantine_rows = pa.Table.from_pylist([{**row, "quarantined_at": row["extracted_at"]} for row in quarantine_rows],
                                           schema=SCHEMAS["quarantine"])

    committed = {
        # Re-read keys replace their old rows; deleted keys just lose them.
        "bronze": commit_files(spark, lake, "bronze", written, set(readable.column("key").to_pylist()),
                               set(bronze_deletes)),
        "quarantine": merge(lake, "quarantine", quarantine_rows,
                                 pa.Table.from_pylist(quarantine_deletes, schema=pa.schema(
                                     [("key", pa.string()), ("content_hash", pa.string())]))),
    }
    # "changed" means new bytes; an object that was only touched (same hash) counts as unchanged.
    new_hash = dict(zip(extracted.column("key").to_pylist(), extracted.column("content_hash").to_pylist()))
    new = sum(1 for row in before.values() if row["status"] == "new")
    changed = sum(1 for k in processed if before[k]["status"] == "changed"
                  and new_hash.get(k) != (before[k]["bronze_hash"] or before[k]["quarantine_hash"]))
    files = {"seen": len(objects), "new": new, "changed": changed, "unchanged": len(objects) - new - changed,
             "deleted": len(gone), "read": len(processed)}
    changes = {"bronze_upserted": readable.num_rows, "bronze_deleted": len(bronze_deletes),
               "quarantine_upserted": quarantine_rows.num_rows, "quarantine_deleted": len(quarantine_deletes)}
    record_text_version(lake, "bronze", TEXT_VERSION)  # after the rows: a run that dies re-extracts again
    result = {"files": files, "changes": changes, "committed": committed}
    return {**result, "retexted": retexted} if retexted else result


def extract_and_write(lake: Lake, env: dict[str, str]):
    """Executor function: extract each object (one fetch), write the readable rows as bronze
    files, hand back OUTCOME rows: one per object (no text) and one per file written."""
    extract, target = extractor(lake.settings, env), table_files(lake, "bronze")

    def run(batches):
        from lakerag.lake.files import FileWriter

        writer = FileWriter(target)
        files = []
        for batch in extract(batches):
            files += writer.add(batch.filter(pc.is_null(batch.column("reason"))))
            yield _outcome(batch.drop_columns(["pages"]))
        for file in files + writer.close():
            yield _outcome(file)

    return run


def _outcome(batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [batch.column(f.name) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type) for f in OUTCOME],
        schema=OUTCOME)

