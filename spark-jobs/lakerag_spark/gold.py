"""Gold: chunks of the documents whose silver content changed. Chunks that already exist with
the same id and metadata are left alone (no change-feed noise); the rest are inserted or
updated, and a document's old chunks that are gone are deleted. Executors write the new
chunks to a staging area; one MERGE on chunk_id streams them into gold, so the change data
feed stays row-level and the driver never holds the run's chunks."""

from __future__ import annotations

import logging

from lakerag.lake import Lake, tables
from pyspark.sql import functions as F

from lakerag_spark.frames import read_table
from lakerag_spark.transforms import chunk_documents, plan_documents
from lakerag_spark.writes import merge_staged

log = logging.getLogger(__name__)


def chunking_properties(settings) -> dict[str, str]:
    """The settings gold's chunks were cut with, recorded as the table's properties."""
    return {"lakerag.chunkTokens": str(settings.chunk_tokens),
            "lakerag.chunkOverlapTokens": str(settings.chunk_overlap_tokens)}


def chunking_change(recorded: dict[str, str], wanted: dict[str, str]) -> str | None:
    """"LAKERAG_CHUNK_TOKENS 512 -> 256" when gold was cut with other settings (a table made before
    they were recorded: None, no surprise rebuild)."""
    names = {"lakerag.chunkTokens": "LAKERAG_CHUNK_TOKENS", "lakerag.chunkOverlapTokens": "LAKERAG_CHUNK_OVERLAP_TOKENS"}
    changed = [f"{names[key]} {recorded[key]} -> {value}" for key, value in wanted.items()
               if key in recorded and recorded[key] != value]
    return ", ".join(changed) or None


def drop_repeated_chunks(spark, lake: Lake) -> None:
    """Delete every row of a chunk id gold holds more than once (left by runs that overlapped,
    before the run lock): a rebuild leaves chunks with unchanged text alone, so it would keep
    them, and then writes each of them once."""
    repeated = (read_table(spark, lake, "gold", ["chunk_id"]).groupBy("chunk_id").count().where("count > 1")
                .select("chunk_id").toArrow())
    if repeated.num_rows:
        log.warning("gold holds more than one row for %d chunk id(s) (pipeline runs that overlapped): "
                    "writing each once", repeated.num_rows)
        tables.delete_keys(lake, "gold", repeated)


def run_gold(spark, lake: Lake, full_rebuild: bool = False) -> dict:
    settings = lake.settings
    chunking = chunking_properties(settings)
    rechunked = chunking_change(tables.properties(lake, "gold"), chunking)
    if rechunked:  # every document's chunks, not only those of new or changed files
        log.warning("chunk settings changed since gold was built (%s): re-chunking every document", rechunked)
        full_rebuild = True
    elif tables.version(lake, "gold") is None:
        tables.set_properties(lake, "gold", chunking)  # a new table: recorded as it is created
    source_text = tables.text_version(lake, "silver")
    retexted = tables.text_change(tables.text_version(lake, "gold"), source_text)
    if retexted:
        log.warning("silver holds other text than gold was cut from (%s): re-chunking every document", retexted)
        full_rebuild = True
    if full_rebuild:
        drop_repeated_chunks(spark, lake)
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
    # After the chunks: a run that dies before this one re-chunks again, never leaves a mix.
    tables.set_properties(lake, "gold", chunking)
    tables.record_text_version(lake, "gold", source_text)
    result = {"changes": {"gold_upserted": upserted, "gold_deleted": len(stale_ids)}, "committed": {"gold": committed}}
    result = {**result, "retexted": retexted} if retexted else result
    return {**result, "rechunked": rechunked} if rechunked else result
