"""Gold: chunks of the documents whose silver content changed. Chunks that already exist with
the same id and metadata are left alone (no change-feed noise); the rest are inserted or
updated, and a document's old chunks that are gone are deleted; one MERGE on chunk_id."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from lakerag.lake import Lake
from lakerag.lake.tables import SCHEMAS, conform, merge

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import chunk_documents, plan_documents


def run_gold(spark, lake: Lake, full_rebuild: bool = False) -> dict:
    settings = lake.settings
    gold = read_table(spark, lake, "gold", ["chunk_id", "doc_id", "content_hash", "title"])
    plan = plan_documents(read_table(spark, lake, "silver", ["doc_id", "content_hash"]), gold,
                          full_rebuild).toArrow()
    affected = plan.column("doc_id").to_pylist()
    upsert_ids = [d for d, a in zip(affected, plan.column("action").to_pylist()) if a == "upsert"]
    chunks = SCHEMAS["gold"].empty_table()
    existing = pa.table({"chunk_id": pa.array([], pa.string()), "content_hash": pa.array([], pa.string()),
                         "title": pa.array([], pa.string())})
    if affected:
        ids = spark.createDataFrame([(d,) for d in affected], "doc_id string").hint("broadcast")
        existing = gold.join(ids, "doc_id").select("chunk_id", "content_hash", "title").toArrow()
    if upsert_ids:
        ids = spark.createDataFrame([(d,) for d in upsert_ids], "doc_id string").hint("broadcast")
        silver = read_table(spark, lake, "silver").join(ids, "doc_id")
        chunks = conform(chunk_documents(silver, settings.chunk_tokens, settings.chunk_overlap_tokens).toArrow(),
                         SCHEMAS["gold"])
    current = set(zip(*(existing.column(c).to_pylist() for c in ("chunk_id", "content_hash", "title"))))
    fresh = [(c, h, t) not in current for c, h, t in zip(*(chunks.column(c).to_pylist()
                                                            for c in ("chunk_id", "content_hash", "title")))]
    upserts = chunks.filter(pa.array(fresh, pa.bool_()))
    stale = existing.filter(pc.invert(pc.is_in(existing.column("chunk_id"), value_set=chunks.column("chunk_id"))))
    committed = merge(lake, "gold", upserts, stale.select(["chunk_id"]))
    return {"changes": {"gold_upserted": upserts.num_rows, "gold_deleted": stale.num_rows},
            "committed": {"gold": committed}}


def main() -> int:
    from lakerag_spark.pipeline import main as pipeline_main

    return pipeline_main(("gold",))


if __name__ == "__main__":
    raise SystemExit(main())
