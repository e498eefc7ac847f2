"""Silver: one clean document per distinct content. Rebuilds only the documents whose bronze
content changed, deletes the ones that left bronze or became duplicates; one MERGE on doc_id."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from lakerag.lake import Lake
from lakerag.lake.tables import SCHEMAS, conform, merge
from pyspark.sql import functions as F

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import clean_documents, dedup_by_content, plan_documents


def run_silver(spark, lake: Lake, updated_at: datetime, full_rebuild: bool = False) -> dict:
    bronze = read_table(spark, lake, "bronze")
    flagged = dedup_by_content(bronze.select("doc_id", "key", "content_hash")).cache()
    try:
        duplicates = flagged.filter(F.col("duplicate_of").isNotNull()).count()
        kept = flagged.filter(F.col("duplicate_of").isNull())
        plan = plan_documents(kept, read_table(spark, lake, "silver", ["doc_id", "content_hash"]),
                              full_rebuild).toArrow()
    finally:
        flagged.unpersist()
    upsert_ids = [d for d, a in zip(plan.column("doc_id").to_pylist(), plan.column("action").to_pylist())
                  if a == "upsert"]
    delete_ids = [d for d, a in zip(plan.column("doc_id").to_pylist(), plan.column("action").to_pylist())
                  if a == "delete"]
    rows = SCHEMAS["silver"].empty_table()
    if upsert_ids:
        chosen = bronze.join(spark.createDataFrame([(d,) for d in upsert_ids], "doc_id string").hint("broadcast"),
                             "doc_id")
        rows = conform(clean_documents(chosen, updated_at).toArrow(), SCHEMAS["silver"])
    committed = merge(lake, "silver", rows, pa.table({"doc_id": pa.array(delete_ids, pa.string())}))
    return {"files": {"duplicates": duplicates},
            "changes": {"silver_upserted": rows.num_rows, "silver_deleted": len(delete_ids)},
            "committed": {"silver": committed}}


def main() -> int:
    from lakerag_spark.pipeline import main as pipeline_main

    return pipeline_main(("silver",))


if __name__ == "__main__":
    raise SystemExit(main())
