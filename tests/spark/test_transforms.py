"""The pure DataFrame -> DataFrame steps of the ETL, on small inline DataFrames."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from docmaker import make_pdf
from lakerag import config
from lakerag.lake import chunk_id_for, doc_id_for
from lakerag.store import LocalStore
from lakerag_spark.transforms import (
    chunk_documents,
    clean_documents,
    dedup_by_content,
    extract_object,
    extract_objects,
    plan_documents,
    plan_raw,
)
from pyspark.testing import assertDataFrameEqual

pytestmark = pytest.mark.slow

META = "key string, source_version string, content_hash string"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def test_plan_raw_classifies_every_key(spark):
    listed = spark.createDataFrame([("raw/new.txt", 5, "v1"), ("raw/same.txt", 6, "v1"), ("raw/edit.txt", 7, "v2"),
                                    ("raw/bad.txt", 0, "v1")], "key string, size long, source_version string")
    bronze = spark.createDataFrame([("raw/same.txt", "v1", "h1"), ("raw/edit.txt", "v1", "h2"),
                                    ("raw/gone.txt", "v1", "h3")], META)
    quarantine = spark.createDataFrame([("raw/bad.txt", "v1", "h4"), ("raw/gone.pdf", "v1", "h5")], META)
    expected = spark.createDataFrame([
        ("raw/new.txt", 5, "v1", "new", True, None, None, None),
        ("raw/same.txt", 6, "v1", "unchanged", False, "v1", "h1", None),
        ("raw/edit.txt", 7, "v2", "changed", True, "v1", "h2", None),
        ("raw/bad.txt", 0, "v1", "unchanged", False, "v1", None, "h4"),
        ("raw/gone.txt", None, None, "deleted", False, "v1", "h3", None),
        ("raw/gone.pdf", None, None, "deleted", False, "v1", None, "h5"),
    ], "key string, size long, source_version string, status string, process boolean, known_version string, "
       "bronze_hash string, quarantine_hash string")
    assertDataFrameEqual(plan_raw(listed, bronze, quarantine), expected)
    rebuilt = plan_raw(listed, bronze, quarantine, full_rebuild=True)
    assertDataFrameEqual(rebuilt.filter("process").select("key"),
                         spark.createDataFrame([(k,) for k in ("raw/new.txt", "raw/same.txt", "raw/edit.txt",
                                                               "raw/bad.txt")], "key string"))


def test_plan_raw_reads_again_an_object_a_run_could_not_read(spark):
    """A store or network error while reading quarantined the object for good (its version never
    changes): the next run now reads it again. A key the store refuses, or a file too large, is
    not read again until it changes."""
    listed = spark.createDataFrame([("raw/blip.txt", 5, "v1"), ("raw/big.txt", 9, "v1"), ("raw/../x.txt", 1, "v1")],
                                   "key string, size long, source_version string")
    bronze = spark.createDataFrame([], META)
    quarantine = spark.createDataFrame([("raw/blip.txt", "v1", "unread:v1"), ("raw/big.txt", "v1", "not-read:v1"),
                                        ("raw/../x.txt", "v1", "not-read:v1")], META)
    plan = {r.key: r for r in plan_raw(listed, bronze, quarantine).collect()}
    assert (plan["raw/blip.txt"].status, plan["raw/blip.txt"].process) == ("unchanged", True)
    assert not plan["raw/big.txt"].process and not plan["raw/../x.txt"].process


def test_dedup_keeps_the_smallest_key(spark):
    bronze = spark.createDataFrame([("d1", "raw/b.txt", "h"), ("d2", "raw/a.txt", "h"), ("d3", "raw/c.txt", "x")],
                                   "doc_id string, key string, content_hash string")
    expected = spark.createDataFrame([("d1", "raw/b.txt", "h", "raw/a.txt"), ("d2", "raw/a.txt", "h", None),
                                      ("d3", "raw/c.txt", "x", None)],
                                     "doc_id string, key string, content_hash string, duplicate_of string")
    assertDataFrameEqual(dedup_by_content(bronze), expected)


def test_dedup_keeps_the_copy_already_in_silver_over_a_smaller_new_key(spark):
    # quokka.txt is indexed; the same bytes uploaded as NOTES.TXT took its place (smaller key).
    bronze = spark.createDataFrame([("q", "raw/quokka.txt", "h"), ("n", "raw/NOTES.TXT", "h"),
                                    ("z", "raw/zebra.txt", "z"), ("a", "raw/a.txt", "z")],
                                   "doc_id string, key string, content_hash string")
    silver = spark.createDataFrame([("q", "h")], "doc_id string, content_hash string")
    expected = spark.createDataFrame([("q", "raw/quokka.txt", "h", None), ("n", "raw/NOTES.TXT", "h", "raw/quokka.txt"),
                                      ("z", "raw/zebra.txt", "z", "raw/a.txt"), ("a", "raw/a.txt", "z", None)],
                                     "doc_id string, key string, content_hash string, duplicate_of string")
    assertDataFrameEqual(dedup_by_content(bronze, silver), expected)


def test_plan_documents_upserts_changed_and_deletes_gone(spark):
    wanted = spark.createDataFrame([("a", "h1"), ("b", "h2"), ("c", "h3")], "doc_id string, content_hash string")
    # b changed (old hash), d is gone; a appears twice (one row per chunk downstream).
    current = spark.createDataFrame([("a", "h1"), ("a", "h1"), ("b", "old"), ("d", "h4")],
                                    "doc_id string, content_hash string")
    expected = spark.createDataFrame([("b", "upsert"), ("c", "upsert"), ("d", "delete")],
                                     "doc_id string, action string")
    assertDataFrameEqual(plan_documents(wanted, current), expected)
    everything = spark.createDataFrame([("a", "upsert"), ("b", "upsert"), ("c", "upsert"), ("d", "delete")],
                                       "doc_id string, action string")
    assertDataFrameEqual(plan_documents(wanted, current, full_rebuild=True), everything)


BRONZE_DDL = ("key string, doc_id string, size long, source_version string, content_hash string, file_type string, "
              "page_count int, pages array<string>, extracted_at timestamp, extract_seconds double")


def test_clean_documents_normalises_and_titles(spark):
    bronze = spark.createDataFrame([
        ("raw/a.md", "da", 10, "v", "ha", "md", None, ["  Title\u00a0Line \n\n\n\nBody\x00 <b>text</b>. "], NOW, 0.1),
        ("raw/c.json", "dc", 10, "v", "hc", "json", None, ["id: 1\ntitle: Catalog"], NOW, 0.1),
        ("raw/p.pdf", "dp", 10, "v", "hp", "pdf", 2, ["Cafe\u0301 page one.", "Page two."], NOW, 0.1),
    ], BRONZE_DDL)
    expected = spark.createDataFrame([
        ("da", "raw/a.md", "Title Line", "md", "ha", None, ["Title Line\n\nBody text."], 22, NOW),
        ("dc", "raw/c.json", "Catalog", "json", "hc", None, ["id: 1\ntitle: Catalog"], 20, NOW),
        ("dp", "raw/p.pdf", "Café page one.", "pdf", "hp", 2, ["Café page one.", "Page two."], 23, NOW),
    ], "doc_id string, key string, title string, file_type string, content_hash string, page_count int, "
       "pages array<string>, char_count long, updated_at timestamp")
    assertDataFrameEqual(clean_documents(bronze, NOW), expected)


def test_chunk_documents_has_stable_ids_and_pages(spark):
    silver = spark.createDataFrame([
        ("dp", "raw/p.pdf", "P", "pdf", "hp", 2, ["One. Two.", "Three."], 15, NOW),
        ("dt", "raw/t.txt", "T", "txt", "ht", None, ["Only sentence here."], 19, NOW),
    ], "doc_id string, key string, title string, file_type string, content_hash string, page_count int, "
       "pages array<string>, char_count long, updated_at timestamp")
    chunks = chunk_documents(silver, chunk_tokens=16, overlap_tokens=2)
    expected = spark.createDataFrame([
        (chunk_id_for("dp", 0, "One. Two.\n\nThree."), "dp", 0, "One. Two.\n\nThree.", "P", "raw/p.pdf", 1, "hp", 6),
        (chunk_id_for("dt", 0, "Only sentence here."), "dt", 0, "Only sentence here.", "T", "raw/t.txt", None,
         "ht", 4),
    ], "chunk_id string, doc_id string, chunk_index int, text string, title string, source string, page int, "
       "content_hash string, token_count int")
    assertDataFrameEqual(chunks, expected)
    # Windows split across pages keep the page each chunk starts on.
    small = chunk_documents(silver.filter("doc_id = 'dp'"), chunk_tokens=4, overlap_tokens=0)
    assert [(r.chunk_index, r.text, r.page) for r in small.orderBy("chunk_index").collect()] == [
        (0, "One. Two.", 1), (1, "Three.", 2)]


def test_extract_objects_reads_through_the_store(spark, tmp_path):
    store = LocalStore(tmp_path)
    files = {"raw/ok.pdf": make_pdf(["Page one.", "Page two."]), "raw/latin.txt": "Grüße".encode("latin-1"),
             "raw/bad.json": b"{", "raw/big.txt": b"x" * 6000}
    for key, data in files.items():
        store.put(key, data)
    work = spark.createDataFrame([(key, len(data), "v1") for key, data in files.items()] + [("raw/missing.txt", 3, "v1")],
                                 "key string, size long, source_version string")
    settings = config.from_env({}, store_uri=f"file://{tmp_path}", max_file_bytes=5000)
    rows = {r.key: r for r in extract_objects(work, settings).collect()}
    assert rows["raw/ok.pdf"].reason is None and rows["raw/ok.pdf"].pages == ["Page one.", "Page two."]
    assert rows["raw/ok.pdf"].page_count == 2 and rows["raw/ok.pdf"].doc_id == doc_id_for("raw/ok.pdf")
    assert rows["raw/latin.txt"].pages == ["Grüße"] and rows["raw/latin.txt"].page_count is None
    assert "invalid JSON" in rows["raw/bad.json"].reason and rows["raw/bad.json"].pages is None
    assert "LAKERAG_MAX_FILE_BYTES" in rows["raw/big.txt"].reason
    assert rows["raw/big.txt"].content_hash == "not-read:v1"
    assert "could not read" in rows["raw/missing.txt"].reason and "the next pipeline run reads it again" in \
        rows["raw/missing.txt"].reason
    assert rows["raw/missing.txt"].content_hash == "unread:v1"  # plan_raw reads it again
    refused = extract_object(store, "raw/../x.txt", 1, "v1", settings)
    assert "'..' path segments" in refused["reason"] and refused["content_hash"] == "not-read:v1"
    assert len(rows["raw/ok.pdf"].content_hash) == 64 and rows["raw/ok.pdf"].extract_seconds >= 0


def test_a_document_over_the_chunk_cap_is_quarantined_whole_with_its_count(tmp_path):
    store = LocalStore(tmp_path)
    distinct_text = " ".join(f"Sentence number {i} says something else entirely." for i in range(60))
    store.put("raw/long.txt", distinct_text.encode())
    store.put("raw/repetitive.txt", ("the pump restarts when the pressure drops. " * 2000).encode())
    settings = config.from_env({}, store_uri=f"file://{tmp_path}", chunk_tokens=40, chunk_overlap_tokens=8,
                               max_chunks_per_document=10)

    long = extract_object(store, "raw/long.txt", len(distinct_text), "v1", settings)
    assert "LAKERAG_MAX_CHUNKS_PER_DOCUMENT" in long["reason"] and "over the limit of 10" in long["reason"]
    assert long["pages"] is None and len(long["content_hash"]) == 64  # quarantined whole, not truncated
    # Hundreds of windows, a handful distinct: the cap counts what gold would keep.
    repetitive = extract_object(store, "raw/repetitive.txt", 86_000, "v1", settings)
    assert repetitive["reason"] is None and repetitive["pages"]
    assert extract_object(store, "raw/long.txt", len(distinct_text), "v1",
                          settings.replace(max_chunks_per_document=100))["reason"] is None


def test_local_mode_binds_the_driver_to_loopback(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.driver.host") == "127.0.0.1"


def test_what_executors_close_over_holds_no_secret():
    """Spark ships a closure's settings to every executor (pods of their own on a cluster): the
    Airflow password went with them, though no executor calls Airflow."""
    from lakerag_spark.session import for_executors

    secrets = {var: f"secret-{var.lower()}" for var in config.SECRET_VARS}
    settings = config.from_env({**secrets, "LAKERAG_AIRFLOW_USERNAME": "lakerag", "LAKERAG_STORE_URI": "s3://lake",
                                "LAKERAG_GEMINI_BASE_URL": "http://llm:9000"})
    shipped = for_executors(settings)
    assert not any(value in repr(shipped.model_dump()) for value in secrets.values()), shipped.model_dump()
    assert (shipped.store_uri, shipped.gemini_base_url) == ("s3://lake", "")
