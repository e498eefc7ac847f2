"""Silver: one clean document per distinct content. Rebuilds only the documents whose bronze
content changed, deletes the ones that left bronze or became duplicates. Executors write the
rebuilt documents; the driver commits one transaction keyed on doc_id."""

from __future__ import annotations

import logging
from datetime import datetime

from lakerag.lake import Lake, tables
from pyspark.sql import functions as F

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import clean_documents, dedup_by_content, plan_documents
from lakerag_spark.writes import FILE_ACTIONS, added_rows, commit_files, conform_actions, table_files, write_frame

log = logging.getLogger(__name__)


def run_silver(spark, lake: Lake, updated_at: datetime, full_rebuild: bool = False) -> dict:
    source_text = tables.text_version(lake, "bronze")
    retexted = tables.text_change(tables.text_version(lake, "silver"), source_text)
    if retexted:  # bronze was re-extracted: its content hashes (of the raw bytes) did not change
        log.warning("bronze holds other text than silver was built from (%s): rebuilding every document", retexted)
        full_rebuild = True
    bronze = read_table(spark, lake, "bronze")
    current = read_table(spark, lake, "silver", ["doc_id", "content_hash"])
    flagged = dedup_by_content(bronze.select("doc_id", "key", "content_hash"), current).cache()
    try:
        duplicates = flagged.filter(F.col("duplicate_of").isNotNull()).count()
        kept = flagged.filter(F.col("duplicate_of").isNull())
        plan = plan_documents(kept, current, full_rebuild).toArrow()
    finally:
        flagged.unpersist()
    upsert_ids = [d for d, a in zip(plan.column("doc_id").to_pylist(), plan.column("action").to_pylist())
                  if a == "upsert"]
    delete_ids = [d for d, a in zip(plan.column("doc_id").to_pylist(), plan.column("action").to_pylist())
                  if a == "delete"]
    written = FILE_ACTIONS.empty_table()
    if upsert_ids:
        chosen = bronze.join(spark.createDataFrame([(d,) for d in upsert_ids], "doc_id string").hint("broadcast"),
                             "doc_id")
        written = conform_actions(write_frame(clean_documents(chosen, updated_at), table_files(lake, "silver"))
                                  .toArrow())
    committed = commit_files(spark, lake, "silver", written, set(upsert_ids), set(delete_ids))
    tables.record_text_version(lake, "silver", source_text)
    result = {"files": {"duplicates": duplicates},
              "changes": {"silver_upserted": added_rows(written), "silver_deleted": len(delete_ids)},
              "committed": {"silver": committed}}
    return {**result, "retexted": retexted} if retexted else result
