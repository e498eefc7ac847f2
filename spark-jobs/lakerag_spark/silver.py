"""Silver: one clean document per distinct content. Rebuilds only the documents whose bronze
content changed, deletes the ones that left bronze or became duplicates. Executors write the
rebuilt documents; the driver commits one transaction keyed on doc_id."""

from __future__ import annotations

from datetime import datetime

from lakerag.lake import Lake
from pyspark.sql import functions as F

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import clean_documents, dedup_by_content, plan_documents
from lakerag_spark.writes import FILE_ACTIONS, added_rows, commit_files, conform_actions, table_files, write_frame


def run_silver(spark, lake: Lake, updated_at: datetime, full_rebuild: bool = False) -> dict:
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
    return {"files": {"duplicates": duplicates},
            "changes": {"silver_upserted": added_rows(written), "silver_deleted": len(delete_ids)},
            "committed": {"silver": committed}}
