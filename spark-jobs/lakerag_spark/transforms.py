"""The ETL's DataFrame -> DataFrame steps. Planning steps are plain joins; the per-document
work (extract, clean, chunk) runs the pure-Python functions of lakerag.extract/lakerag.text
in executors through mapInArrow, one Arrow batch at a time."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pyarrow as pa
from lakerag.config import Settings
from lakerag.extract import extract, file_type_for, size_problem
from lakerag.lake import chunk_id_for, doc_id_for, sha256_hex
from lakerag.lake.tables import SCHEMAS
from lakerag.store import StoreError, check_key, store_for
from lakerag.text import chunk_pages, distinct, guess_title, normalise_pages
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from lakerag_spark.session import for_executors

# What extraction yields per raw object: a bronze row plus the quarantine reason (null when readable).
EXTRACTED = pa.schema(list(SCHEMAS["bronze"]) + [pa.field("reason", pa.string())])


def _spark_schema(schema: pa.Schema):
    return from_arrow_schema(schema)


# --- bronze -------------------------------------------------------------------------------

def plan_raw(listed: DataFrame, bronze: DataFrame, quarantine: DataFrame, full_rebuild: bool = False) -> DataFrame:
    """Compare the raw listing (key, size, source_version) with what bronze and quarantine know
    about each key (key, source_version, content_hash; at most one row per key in each).

    Returns key, size, source_version, status (new | changed | unchanged | deleted), process
    (read the object: new or changed, or everything listed on a full rebuild), and what the
    lake holds for the key: known_version, bronze_hash and quarantine_hash (null where none).
    """
    bronze = bronze.select("key", F.col("source_version").alias("b_version"), F.col("content_hash").alias("bronze_hash"))
    quarantine = quarantine.select("key", F.col("source_version").alias("q_version"),
                                   F.col("content_hash").alias("quarantine_hash"))
    # One shuffle (union + group) rather than two full outer joins.
    stacked = listed.select("key", "size", "source_version").unionByName(bronze, allowMissingColumns=True) \
        .unionByName(quarantine, allowMissingColumns=True)
    columns = ["size", "source_version", "b_version", "bronze_hash", "q_version", "quarantine_hash"]
    joined = stacked.groupBy("key").agg(*(F.max(c).alias(c) for c in columns))
    known_version = F.coalesce("b_version", "q_version")
    status = (F.when(known_version.isNull(), "new")
              .when(F.col("source_version").isNull(), "deleted")
              .when(F.col("source_version") != known_version, "changed")
              .otherwise("unchanged"))
    read_failed = F.coalesce(F.col("quarantine_hash").startswith(UNREAD), F.lit(False))  # a store or network error
    process = status.isin("new", "changed") | ((F.lit(full_rebuild) | read_failed) & (status == "unchanged"))
    return joined.select("key", "size", "source_version", status.alias("status"), process.alias("process"),
                         known_version.alias("known_version"), "bronze_hash", "quarantine_hash")


def extract_objects(work: DataFrame, settings: Settings, env: dict[str, str] | None = None) -> DataFrame:
    """(key, size, source_version) -> one EXTRACTED row per object, read through the store in
    executors. ``env``: AWS credentials to set in executors that lack them."""
    return work.select("key", "size", "source_version").mapInArrow(extractor(settings, env), _spark_schema(EXTRACTED))


def extractor(settings: Settings, env: dict[str, str] | None = None):
    """The executor function of ``extract_objects``: Arrow batches of (key, size, source_version)
    in, EXTRACTED batches out; each object's bytes are fetched once."""
    env = dict(env or {})
    settings = for_executors(settings)

    def run(batches):
        os.environ.update(env)
        store = store_for(settings)
        for batch in batches:
            rows = [extract_object(store, row["key"], row["size"], row["source_version"], settings)
                    for row in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=EXTRACTED)

    return run


# content_hash of an object not read: too large, or a key the store refuses (read again once its
# version changes), or a read that failed (UNREAD: plan_raw reads it again on the next run).
NOT_READ, UNREAD = "not-read:", "unread:"


def extract_object(store, key: str, size: int, source_version: str, settings: Settings) -> dict:
    """Read and extract one raw object; every failure becomes a reason, never an exception."""
    max_bytes = settings.max_file_bytes
    started = time.perf_counter()
    row = {"key": key, "doc_id": doc_id_for(key), "size": size, "source_version": source_version,
           "file_type": file_type_for(key), "page_count": None, "pages": None, "reason": None,
           # Not read (too large, a key the store refuses, a failed read): the version stands in for the hash.
           "content_hash": NOT_READ + source_version}
    row["reason"] = size_problem(size, max_bytes) or _key_problem(key)
    if size == 0:
        row["content_hash"] = sha256_hex(b"")
    if row["reason"] is None:
        try:
            data = store.get(key)
        except Exception as exc:  # noqa: BLE001 - one unreadable object must not stop the batch
            row["reason"] = f"could not read the object from the store: {exc}; the next pipeline run reads it again"
            row["content_hash"] = UNREAD + source_version
        else:
            row["size"] = len(data)
            row["content_hash"] = sha256_hex(data)
            result = extract(key, data, max_bytes)
            row["reason"], row["file_type"] = result.reason, result.file_type
            if result.ok:
                row["reason"] = too_many_chunks(result.pages, result.file_type, settings)
            if row["reason"] is None:
                row["pages"], row["page_count"] = result.pages, result.page_count
    row["extracted_at"] = datetime.now(UTC)
    row["extract_seconds"] = time.perf_counter() - started
    return row


def _key_problem(key: str) -> str | None:
    """Why the store refuses ``key`` (S3 allows keys no file system can hold), or None."""
    try:
        check_key(key)
    except StoreError as exc:
        return str(exc)
    return None


def too_many_chunks(pages: list[str], file_type: str, settings: Settings) -> str | None:
    """Reason to quarantine a document whose distinct chunks exceed LAKERAG_MAX_CHUNKS_PER_DOCUMENT:
    counted as gold will chunk it (silver's normalisation, identical windows once), so a
    repetitive file passes at the cost of its distinct content and a document too big to embed
    in reasonable time is held back whole rather than indexed in part."""
    count = len(distinct(chunk_pages(normalise_pages(pages, file_type), settings.chunk_tokens,
                                     settings.chunk_overlap_tokens)))
    if count <= settings.max_chunks_per_document:
        return None
    return (f"document has {count} distinct chunks, over the limit of {settings.max_chunks_per_document}: "
            "split it, or raise LAKERAG_MAX_CHUNKS_PER_DOCUMENT and run the ETL with --full-rebuild")


# --- silver -------------------------------------------------------------------------------

def dedup_by_content(bronze: DataFrame, kept_before: DataFrame | None = None) -> DataFrame:
    """Adds ``duplicate_of``: null for the kept row of each content hash, else the key that is kept.

    The kept row is the one ``kept_before`` (doc_id: silver's documents) already holds, so a copy
    uploaded under another name never takes the original's place (its doc_id, summaries and
    citations); among new rows, the smallest key."""
    if kept_before is None:
        flagged = bronze.withColumn("_before", F.lit(False))
    else:
        before = kept_before.select("doc_id").distinct().withColumn("_before", F.lit(True))
        flagged = bronze.join(before, "doc_id", "left").fillna(False, ["_before"])
    by_hash = Window.partitionBy("content_hash").orderBy(F.col("_before").desc(), "key")
    return flagged.withColumn("_kept", F.first("key").over(by_hash)).withColumn(
        "duplicate_of", F.when(F.col("_kept") != F.col("key"), F.col("_kept"))).drop("_kept", "_before")


def plan_documents(wanted: DataFrame, current: DataFrame, full_rebuild: bool = False) -> DataFrame:
    """Which documents to (re)build and which to delete downstream.

    ``wanted``: (doc_id, content_hash) that should exist; ``current``: (doc_id, content_hash) that
    do (several rows per doc are fine). Returns (doc_id, action) with action ``upsert`` for a
    wanted document missing from ``current`` with that hash (or every wanted one on a full
    rebuild) and ``delete`` for a current document that is no longer wanted.
    """
    current = current.select("doc_id", "content_hash").distinct()
    if full_rebuild:
        upserts = wanted.select("doc_id")
    else:
        upserts = wanted.select("doc_id", "content_hash").join(current, ["doc_id", "content_hash"], "left_anti")
    deletes = current.select("doc_id").distinct().join(wanted.select("doc_id"), "doc_id", "left_anti")
    return (upserts.select("doc_id", F.lit("upsert").alias("action"))
            .unionByName(deletes.select("doc_id", F.lit("delete").alias("action"))).distinct())


def clean_documents(bronze: DataFrame, updated_at: datetime) -> DataFrame:
    """Bronze rows -> silver rows: normalised pages (case and punctuation kept), a title, counts."""

    def run(batches):
        for batch in batches:
            rows = []
            for row in batch.to_pylist():
                pages = normalise_pages(row["pages"] or [], row["file_type"])
                rows.append({"doc_id": row["doc_id"], "key": row["key"],
                             "title": guess_title(pages, row["key"], row["file_type"]),
                             "file_type": row["file_type"], "content_hash": row["content_hash"],
                             "page_count": row["page_count"], "pages": pages,
                             "char_count": sum(len(page) for page in pages), "updated_at": updated_at})
            yield pa.RecordBatch.from_pylist(rows, schema=SCHEMAS["silver"])

    return bronze.select(*SCHEMAS["bronze"].names).mapInArrow(run, _spark_schema(SCHEMAS["silver"]))


# --- gold ---------------------------------------------------------------------------------

def chunk_documents(silver: DataFrame, chunk_tokens: int, overlap_tokens: int) -> DataFrame:
    """Silver rows -> gold rows: overlapping sentence windows with stable chunk ids."""

    def run(batches):
        for batch in batches:
            rows = []
            for doc in batch.to_pylist():
                paged = doc["page_count"] is not None
                for chunk in distinct(chunk_pages(doc["pages"] or [], chunk_tokens, overlap_tokens, paged=paged)):
                    rows.append({"chunk_id": chunk_id_for(doc["doc_id"], chunk.index, chunk.text),
                                 "doc_id": doc["doc_id"], "chunk_index": chunk.index, "text": chunk.text,
                                 "title": doc["title"], "source": doc["key"], "page": chunk.page,
                                 "content_hash": doc["content_hash"], "token_count": chunk.token_count})
            yield pa.RecordBatch.from_pylist(rows, schema=SCHEMAS["gold"])

    return silver.select(*SCHEMAS["silver"].names).mapInArrow(run, _spark_schema(SCHEMAS["gold"]))
