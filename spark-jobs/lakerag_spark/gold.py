"""Gold: chunks of the documents whose silver content changed. Chunks that already exist with
the same id and metadata are left alone (no change-feed noise); the rest are inserted or
updated, and a document's old chunks that are gone are deleted. Executors write the new
chunks to a staging area; one MERGE on chunk_id streams them into gold, so the change data
feed stays row-level and the driver never holds the run's chunks."""

from __future__ import annotations

from lakerag.lake import Lake
from pyspark.sql import functions as F

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import chunk_documents, plan_documents
from lakerag_spark.writes import merge_staged


def run_gold(spark, lake: Lake, full_rebuild: bool = False) -> dict:
    settings = lake.settings
    gold = read_table(spark, lake, "gold", ["chunk_id", "doc_id", "content_hash", "title"])
    plan = plan_documents(read_table(spark, lake, "silver", ["doc_id", "content_hash"]), gold,
                          full_rebuild).toArrow()
    affected = plan.column("doc_id").to_pylist()
    upsert_ids = [d for d, a in zip(affected, plan.column("action").to_pylist()) if a == "upsert"]
    existing = None
    if affected:
        ids = spark.createDataFrame([(d,) for d in affected], "doc_id string").hint("broadcast")
        existing = gold.join(ids, "doc_id").select("chunk_id", "content_hash", "title").cache()
    fresh, stale_ids, chunks = None, [], None
    if upsert_ids:
        ids = spark.createDataFrame([(d,) for d in upsert_ids], "doc_id string").hint("broadcast")
        silver = read_table(spark, lake, "silver").join(ids, "doc_id")
        # Read twice below (stale ids, then the staged write): cached, so each document is chunked once.
        chunks = chunk_documents(silver, settings.chunk_tokens, settings.chunk_overlap_tokens).cache()
        # Chunks already present with the same id and metadata stay as they are (no change-feed noise).
        same = [F.col(f"new.{c}").eqNullSafe(F.col(f"old.{c}")) for c in ("chunk_id", "content_hash", "title")]
        fresh = chunks.alias("new").join(existing.alias("old"), same, "left_anti").select("new.*")
        stale_ids = existing.join(chunks.select("chunk_id"), "chunk_id", "left_anti").select("chunk_id") \
            .toArrow().column("chunk_id").to_pylist()
    elif existing is not None:
        stale_ids = existing.select("chunk_id").toArrow().column("chunk_id").to_pylist()
    # gold keeps a change data feed: one streamed MERGE of the executor-staged chunks.
    committed, upserted = merge_staged(lake, "gold", fresh, stale_ids)
    for cached in (existing, chunks):
        if cached is not None:
            cached.unpersist()
    return {"changes": {"gold_upserted": upserted, "gold_deleted": len(stale_ids)},
            "committed": {"gold": committed}}
