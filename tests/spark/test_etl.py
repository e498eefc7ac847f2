"""The three Spark jobs run for real, on file:// and on s3:// (moto server).

Every claim of the ETL contract is checked by counting rows and table versions: a run with
no change commits nothing, one new document is the only one read, a changed document's
chunks are replaced, deleting a raw object removes its rows everywhere, bad input lands in
quarantine once, and the jobs run alone as well as together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from docmaker import BAD_REASON_WORDS, bad_documents, good_documents
from lakerag.lake import Lake, chunk_id_for, doc_id_for, tables
from lakerag.lake.files import METRICS_KEY
from lakerag.summary import format_summary
from lakerag_spark.pipeline import run_etl

pytestmark = pytest.mark.slow

LAKE_TABLES = ("bronze", "quarantine", "silver", "gold")
MAX_BYTES = 20_000
MAX_CHUNKS = 20
SAMPLES = Path(__file__).resolve().parents[2] / "services" / "lakerag" / "samples"


def small_chunks(settings):
    return settings.replace(chunk_tokens=40, chunk_overlap_tokens=8, max_file_bytes=MAX_BYTES,
                            max_chunks_per_document=MAX_CHUNKS)


def put(lake: Lake, name: str, data: bytes) -> None:
    lake.store.put(f"raw/{name}", data)


def snapshot(lake: Lake, name: str) -> list[dict]:
    key = tables.MERGE_KEYS[name]
    return sorted(tables.read_arrow(lake, name).to_pylist(), key=lambda r: [r[k] for k in key])


def versions(lake: Lake) -> dict:
    return {name: tables.version(lake, name) for name in LAKE_TABLES}


def last_merge(lake: Lake, name: str) -> dict:
    """Row metrics of the table's latest commit: a MERGE's, or those an executor-written
    commit records (lakerag.lake.files)."""
    entry = tables.snapshot(lake, name).history(1)[0]
    if METRICS_KEY in entry:
        return entry[METRICS_KEY]
    metrics = entry["operationMetrics"]
    return {k: metrics[f"num_target_rows_{k}"] for k in ("inserted", "updated", "deleted")}


def gold_changes(lake: Lake, since: int) -> list[dict]:
    return tables.snapshot(lake, "gold").changes(since).to_pylist()


def initial_corpus() -> dict[str, bytes]:
    docs = {**good_documents(), **bad_documents()}
    docs["zz-notes-copy.txt"] = docs["notes.txt"]  # same bytes: a duplicate of notes.txt
    docs["huge.txt"] = b"big text " * (MAX_BYTES // 9 + 1)  # over LAKERAG_MAX_FILE_BYTES
    # About 30 distinct chunks of 40 tokens: over LAKERAG_MAX_CHUNKS_PER_DOCUMENT.
    docs["long.txt"] = " ".join(f"Sentence {i} of the long file says another thing." for i in range(120)).encode()
    return docs


EXPECTED_QUARANTINE = {**{f"raw/{k}": v for k, v in BAD_REASON_WORDS.items()},
                       "raw/huge.txt": "LAKERAG_MAX_FILE_BYTES", "raw/long.txt": "LAKERAG_MAX_CHUNKS_PER_DOCUMENT"}


def check_first_run(lake: Lake, summary: dict, corpus: dict[str, bytes]) -> None:
    good = len(good_documents()) + 1
    assert summary["ok"], summary.get("error")
    assert summary["files"] == {"seen": len(corpus), "new": len(corpus), "changed": 0, "unchanged": 0, "deleted": 0,
                                "read": len(corpus), "quarantined": len(EXPECTED_QUARANTINE), "duplicates": 1}
    reasons = {q["key"]: q["reason"] for q in summary["quarantined"]}
    assert set(reasons) == set(EXPECTED_QUARANTINE)
    for key, word in EXPECTED_QUARANTINE.items():
        assert word in reasons[key], (key, reasons[key])
    assert summary["rows"]["bronze"] == good and summary["rows"]["quarantine"] == len(EXPECTED_QUARANTINE)
    assert summary["rows"]["silver"] == good - 1  # the duplicate is not kept
    assert summary["rows"]["gold"] > summary["rows"]["silver"]  # the PDF spans several chunks
    assert summary["versions"] == versions(lake) == {name: 1 for name in LAKE_TABLES}  # create + one MERGE
    assert set(summary["seconds"]) >= {"bronze", "silver", "gold"}
    assert json.loads(lake.store.get("lake/_runs/etl.json")) == json.loads(json.dumps(summary, default=str))
    assert len(format_summary(summary).splitlines()) <= 60

    bronze = {row["key"]: row for row in snapshot(lake, "bronze")}
    assert bronze["raw/guide.pdf"]["page_count"] == 2 and len(bronze["raw/guide.pdf"]["pages"]) == 2
    assert bronze["raw/café menu.txt"]["pages"] == ["Café crème brûlée, served daily."]  # Latin-1, read
    assert bronze["raw/notes..v2.txt"]["file_type"] == "txt"
    assert all(row["doc_id"] == doc_id_for(key) and len(row["content_hash"]) == 64 for key, row in bronze.items())

    silver = {row["key"]: row for row in snapshot(lake, "silver")}
    assert "raw/zz-notes-copy.txt" not in silver and "raw/notes.txt" in silver
    assert silver["raw/readme.md"]["title"] == "Read Me"
    assert silver["raw/page.html"]["pages"] == ["Page\n\nHello & welcome."]
    assert silver["raw/catalog.json"]["title"] == "Catalog"

    gold = snapshot(lake, "gold")
    for row in gold:
        assert row["chunk_id"] == chunk_id_for(row["doc_id"], row["chunk_index"], row["text"])
        assert row["token_count"] <= 40
    pdf_pages = {row["page"] for row in gold if row["source"] == "raw/guide.pdf"}
    assert pdf_pages == {1, 2}
    assert {row["page"] for row in gold if not row["source"].endswith(".pdf")} == {None}
    assert {row["page"] for row in gold if row["source"] == "raw/restricted.pdf"} == {1}  # AES, no password
    config = tables.snapshot(lake, "gold").configuration()
    assert config.get("delta.enableChangeDataFeed") == "true"


def check_rerun_commits_nothing(lake: Lake, settings) -> None:
    before = versions(lake), {name: snapshot(lake, name) for name in LAKE_TABLES}
    summary = run_etl(settings)
    assert summary["ok"]
    assert summary["files"]["new"] == summary["files"]["changed"] == summary["files"]["read"] == 0
    assert summary["files"]["unchanged"] == summary["files"]["seen"]
    assert (versions(lake), {name: snapshot(lake, name) for name in LAKE_TABLES}) == before


def test_lifecycle_on_a_local_store(spark, local_settings):
    settings = small_chunks(local_settings)
    lake = Lake.open(settings)
    corpus = initial_corpus()
    for name, data in corpus.items():
        put(lake, name, data)

    check_first_run(lake, run_etl(settings), corpus)
    check_rerun_commits_nothing(lake, settings)

    # One new document: only it is read, and each table gains exactly its rows.
    extracted_before = {r["key"]: r["extracted_at"] for r in snapshot(lake, "bronze")}
    gold_before = snapshot(lake, "gold")
    quarantine_version = tables.version(lake, "quarantine")
    put(lake, "added.md", b"# Added\n\nA new document arrives. It is the only one read.")
    summary = run_etl(settings)
    assert summary["files"]["new"] == 1 and summary["files"]["read"] == 1
    assert summary["changes"] == {"bronze_upserted": 1, "bronze_deleted": 0, "quarantine_upserted": 0,
                                  "quarantine_deleted": 0, "silver_upserted": 1, "silver_deleted": 0,
                                  "gold_upserted": 1, "gold_deleted": 0}
    assert last_merge(lake, "bronze") == {"inserted": 1, "updated": 0, "deleted": 0}
    assert last_merge(lake, "silver") == {"inserted": 1, "updated": 0, "deleted": 0}
    assert last_merge(lake, "gold") == {"inserted": 1, "updated": 0, "deleted": 0}
    assert tables.version(lake, "quarantine") == quarantine_version
    assert {r["key"]: r["extracted_at"] for r in snapshot(lake, "bronze") if r["key"] != "raw/added.md"} \
        == extracted_before
    assert [r for r in snapshot(lake, "gold") if r["source"] != "raw/added.md"] == gold_before

    # A copy of an indexed document under a smaller name: the original keeps its place (its doc_id,
    # chunks and citations), the copy is set aside and GET /documents' status names the original.
    gold_before, silver_version = snapshot(lake, "gold"), tables.version(lake, "silver")
    put(lake, "0-added-copy.md", lake.store.get("raw/added.md"))
    summary = run_etl(settings)
    assert summary["files"]["duplicates"] == 2 and summary["changes"]["silver_upserted"] == 0  # + zz-notes-copy
    assert "raw/0-added-copy.md" not in {r["key"] for r in snapshot(lake, "silver")}
    assert snapshot(lake, "gold") == gold_before and tables.version(lake, "silver") == silver_version
    assert lake.read_document_status()["duplicates"] == {"raw/0-added-copy.md": "raw/added.md",
                                                         "raw/zz-notes-copy.txt": "raw/notes.txt"}
    lake.store.delete("raw/0-added-copy.md")
    assert run_etl(settings)["files"]["deleted"] == 1 and snapshot(lake, "gold") == gold_before
    assert lake.read_document_status()["duplicates"] == {"raw/zz-notes-copy.txt": "raw/notes.txt"}

    # A changed document: its old chunks are deleted, its new ones merged, nothing else moves.
    readme = doc_id_for("raw/readme.md")
    old_chunks = {r["chunk_id"] for r in snapshot(lake, "gold") if r["doc_id"] == readme}
    others = [r for r in snapshot(lake, "gold") if r["doc_id"] != readme]
    gold_version = tables.version(lake, "gold")
    put(lake, "readme.md", b"# Read Me Again\n\n" + b"The lake was rewritten. Every chunk is new now. " * 8)
    summary = run_etl(settings)
    assert summary["files"]["changed"] == 1 and summary["files"]["read"] == 1
    new_chunks = {r["chunk_id"] for r in snapshot(lake, "gold") if r["doc_id"] == readme}
    assert len(new_chunks) > 1 and not new_chunks & old_chunks
    assert [r for r in snapshot(lake, "gold") if r["doc_id"] != readme] == others
    changes = gold_changes(lake, gold_version + 1)
    assert {c["doc_id"] for c in changes} == {readme}
    assert {c["chunk_id"] for c in changes if c["_change_type"] == "delete"} == old_chunks
    assert {c["chunk_id"] for c in changes if c["_change_type"] == "insert"} == new_chunks

    # Mixed: a touched file (same bytes), deletions (a document, its duplicate's original,
    # a quarantined file) and a quarantined file fixed.
    silver_version, gold_version = tables.version(lake, "silver"), tables.version(lake, "gold")
    put(lake, "catalog.json", corpus["catalog.json"])
    put(lake, "empty.txt", b"")  # still bad, same bytes: its quarantine row only records the new version
    for name in ("page.html", "notes.txt", "garbage.txt"):
        lake.store.delete(f"raw/{name}")
    put(lake, "invalid.json", b'{"title": "Fixed", "body": "Now valid JSON."}')
    summary = run_etl(settings)
    assert summary["files"]["deleted"] == 3 and summary["files"]["changed"] == 1  # invalid.json
    assert summary["files"]["read"] == 3 and summary["files"]["duplicates"] == 0
    listed = {o.key: o.version for o in lake.store.list("raw/")}
    assert {r["key"]: r["source_version"] for r in snapshot(lake, "quarantine")}["raw/empty.txt"] \
        == listed["raw/empty.txt"]
    bronze_keys = {r["key"] for r in snapshot(lake, "bronze")}
    silver_keys = {r["key"] for r in snapshot(lake, "silver")}
    gold_sources = {r["source"] for r in snapshot(lake, "gold")}
    quarantine_keys = {r["key"] for r in snapshot(lake, "quarantine")}
    for gone in ("raw/page.html", "raw/notes.txt"):
        assert gone not in bronze_keys | silver_keys | gold_sources
    assert "raw/garbage.txt" not in quarantine_keys
    assert "raw/invalid.json" not in quarantine_keys and "raw/invalid.json" in silver_keys | gold_sources
    assert "raw/zz-notes-copy.txt" in silver_keys  # the copy is now the kept one
    assert summary["rows"]["quarantine"] == len(EXPECTED_QUARANTINE) - 2
    assert summary["rows"]["silver"] == len(silver_keys) == len(bronze_keys)
    touched = next(r for r in snapshot(lake, "silver") if r["key"] == "raw/catalog.json")
    assert touched["updated_at"] < max(r["updated_at"] for r in snapshot(lake, "silver"))  # not rebuilt
    assert tables.version(lake, "silver") == silver_version + 1 and tables.version(lake, "gold") == gold_version + 1

    # A full rebuild re-reads everything but leaves identical chunks and quarantine rows alone.
    gold_before, gold_version = snapshot(lake, "gold"), tables.version(lake, "gold")
    quarantine_version = tables.version(lake, "quarantine")
    summary = run_etl(settings, full_rebuild=True)
    assert summary["ok"] and summary["files"]["read"] == summary["files"]["seen"]
    assert tables.version(lake, "gold") == gold_version and snapshot(lake, "gold") == gold_before
    assert tables.version(lake, "quarantine") == quarantine_version


def test_each_stage_runs_alone(spark, local_settings):
    settings = small_chunks(local_settings)
    lake = Lake.open(settings)
    put(lake, "one.txt", b"First document. It has two sentences.")
    put(lake, "two.md", b"# Second\n\nAnother document.")
    put(lake, "bad.json", b"[1, 2")

    summary = run_etl(settings, stages=("bronze",))
    assert summary["title"] == "etl (bronze)" and summary["ok"]
    assert summary["versions"] == {"bronze": 1, "quarantine": 1, "silver": None, "gold": None}
    assert summary["rows"]["bronze"] == 2 and summary["rows"]["quarantine"] == 1

    summary = run_etl(settings, stages=("silver",))
    assert summary["versions"]["silver"] == 1 and summary["versions"]["gold"] is None
    assert summary["rows"]["silver"] == 2 and summary["files"]["read"] == 0

    summary = run_etl(settings, stages=("gold",))
    assert summary["versions"] == {"bronze": 1, "quarantine": 1, "silver": 1, "gold": 1}
    assert {r["source"] for r in snapshot(lake, "gold")} == {"raw/one.txt", "raw/two.md"}

    assert run_etl(settings)["versions"] == summary["versions"]  # all three together: nothing left to do
    with pytest.raises(ValueError, match="unknown ETL stage"):
        run_etl(settings, stages=("platinum",))


def test_lifecycle_on_s3(spark, s3_settings):
    settings = small_chunks(s3_settings)
    lake = Lake.open(settings)
    assert lake.table_uri("gold").startswith("s3://")
    corpus = initial_corpus()
    for name, data in corpus.items():
        put(lake, name, data)

    check_first_run(lake, run_etl(settings), corpus)
    check_rerun_commits_nothing(lake, settings)

    # Change one document and delete another (plus a quarantined one) on S3. S3 also allows a key
    # the store refuses to read ('..' segment): it must land in quarantine, not stop the run.
    put(lake, "readme.md", b"# Changed On S3\n\nNew words in the lake.")
    for name in ("guide.pdf", "empty.txt"):
        lake.store.delete(f"raw/{name}")
    lake.store.client.put_object(Bucket=lake.store.bucket, Key=f"{lake.store.prefix}/raw/sub/../escape.txt", Body=b"x")
    # A folder made in the S3 console is an empty object "raw/policies/": no document, not quarantined.
    lake.store.client.put_object(Bucket=lake.store.bucket, Key=f"{lake.store.prefix}/raw/policies/", Body=b"")
    put(lake, ".DS_Store", b"Bud1\x00\x00binary")  # a hidden file synced along: no document either
    summary = run_etl(settings)
    assert summary["ok"] and summary["files"]["new"] == 1
    assert summary["files"]["changed"] == 1 and summary["files"]["deleted"] == 2 and summary["files"]["read"] == 2
    assert "'..' path segments" in {q["key"]: q["reason"] for q in summary["quarantined"]}["raw/sub/../escape.txt"]
    assert all(r["source"] != "raw/guide.pdf" for r in snapshot(lake, "gold"))
    assert [r["text"] for r in snapshot(lake, "gold") if r["source"] == "raw/readme.md"] == [
        "Changed On S3\n\nNew words in the lake."]
    assert {"raw/empty.txt", "raw/policies/", "raw/.DS_Store"}.isdisjoint(r["key"] for r in snapshot(lake, "quarantine"))
    assert summary["versions"] == {"bronze": 2, "quarantine": 2, "silver": 2, "gold": 2}


def test_sample_documents_all_land_with_their_facts(spark, local_settings):
    """The bundled samples (what `make run` loads): nothing quarantined, multi-page PDFs keep their
    pages, and every smoke question's answer string survives, verbatim, in a chunk of its document."""
    samples = SAMPLES / "docs"
    lake = Lake.open(local_settings)
    for path in sorted(samples.iterdir()):
        put(lake, path.name, path.read_bytes())
    summary = run_etl(local_settings)
    count = len(list(samples.iterdir()))
    assert summary["ok"] and summary["files"]["quarantined"] == 0
    assert summary["rows"]["bronze"] == summary["rows"]["silver"] == count >= 12
    silver = snapshot(lake, "silver")
    assert {r["file_type"] for r in silver} == {"pdf", "txt", "json", "md", "html"}
    assert sum(1 for r in silver if (r["page_count"] or 0) > 1) >= 2
    assert all(r["title"] for r in silver)
    gold = snapshot(lake, "gold")
    for question in json.loads((SAMPLES / "questions.json").read_text()):
        texts = [r["text"] for r in gold if r["source"] == question["expected_source"]]
        assert any(question["answer_contains"] in text for text in texts), question


def test_new_chunk_settings_rechunk_every_document_at_the_next_run(spark, local_settings):
    """LAKERAG_CHUNK_TOKENS changed and the pipeline run again: only new or changed files got chunks
    of the new size, every other document kept the old ones, and the setting seemed to do nothing."""
    from lakerag.text import count_tokens

    settings = small_chunks(local_settings)
    lake = Lake.open(settings)
    put(lake, "long.txt", " ".join(f"Sentence number {n} is about ferries and tides." for n in range(30)).encode())
    first = run_etl(settings)
    before = snapshot(lake, "gold")
    smaller = settings.replace(chunk_tokens=20, chunk_overlap_tokens=4)
    summary = run_etl(smaller)
    assert summary["ok"], summary.get("error")
    assert summary["rechunked"] == "LAKERAG_CHUNK_TOKENS 40 -> 20, LAKERAG_CHUNK_OVERLAP_TOKENS 8 -> 4"
    after = snapshot(lake, "gold")
    assert len(after) > len(before) and max(count_tokens(row["text"]) for row in after) <= 20
    assert summary["versions"]["gold"] > first["versions"]["gold"]
    # The same settings again: nothing to do.
    again = run_etl(smaller)
    assert "rechunked" not in again and again["versions"] == summary["versions"]


def test_text_an_older_release_extracted_is_re_extracted_at_the_next_run(spark, local_settings):
    """A release that extracts other text from files (extract.TEXT_VERSION bumped): documents
    processed before kept the old release's text until someone knew to run --full-rebuild."""
    import pyarrow as pa
    from deltalake import write_deltalake
    from lakerag.extract import TEXT_VERSION

    settings = small_chunks(local_settings)
    lake = Lake.open(settings)
    put(lake, "ferries.txt", b"Ferries cross the bay every hour. The first one leaves at six.")
    put(lake, "tides.md", b"# Tides\n\nThe tide turns twice a day.")
    # The lake as an older release (text version 0) left it: its extraction, then silver and gold of that.
    run_etl(settings, stages=("bronze",))
    bronze = tables.read_arrow(lake, "bronze")
    old_pages = pa.array([[f"{page} (old extraction)" for page in pages]
                          for pages in bronze.column("pages").to_pylist()], pa.list_(pa.string()))
    old_bronze = bronze.set_column(bronze.schema.get_field_index("pages"), "pages", old_pages)
    write_deltalake(lake.table_uri("bronze"), old_bronze, mode="overwrite", storage_options=lake.storage_options())
    tables.set_properties(lake, "bronze", {tables.TEXT_VERSION_PROPERTY: "0"})
    run_etl(settings, stages=("silver", "gold"))
    assert all("(old extraction)" in row["text"] for row in snapshot(lake, "gold"))
    assert {tables.text_version(lake, name) for name in tables.TEXT_TABLES} == {"0"}

    summary = run_etl(settings)  # this release, incremental: no file changed
    assert summary["ok"], summary.get("error")
    assert summary["retexted"] == f"text version 0 -> {TEXT_VERSION}"
    assert summary["files"]["read"] == summary["files"]["seen"] == 2 and summary["files"]["changed"] == 0
    texts = [row["text"] for row in snapshot(lake, "gold")]
    assert not any("(old extraction)" in text for text in texts)
    assert any(text.startswith("Ferries cross the bay every hour") for text in texts)
    assert {tables.text_version(lake, name) for name in tables.TEXT_TABLES} == {TEXT_VERSION}
    assert f"retexted                 text version 0 -> {TEXT_VERSION}" in format_summary(summary)
    again = run_etl(settings)  # then nothing to do
    assert "retexted" not in again and again["versions"] == summary["versions"] and again["files"]["read"] == 0


def test_full_rebuild_repairs_chunks_gold_holds_twice(spark, local_settings):
    """Two runs that overlapped before the run lock left gold with chunks twice; `pipeline run
    --full-rebuild` kept them (their text was unchanged), so the index served them twice."""
    from deltalake import write_deltalake

    settings = small_chunks(local_settings)
    lake = Lake.open(settings)
    put(lake, "long.txt", " ".join(f"Sentence number {n} is about ferries and tides." for n in range(30)).encode())
    run_etl(settings)
    chunks = sorted(tables.read_arrow(lake, "gold", ["chunk_id"]).column("chunk_id").to_pylist())
    write_deltalake(lake.table_uri("gold"), tables.read_arrow(lake, "gold").slice(0, 2), mode="append",
                    storage_options=lake.storage_options())
    assert tables.read_arrow(lake, "gold").num_rows == len(chunks) + 2
    summary = run_etl(settings, full_rebuild=True)
    assert summary["ok"], summary.get("error")
    assert sorted(tables.read_arrow(lake, "gold", ["chunk_id"]).column("chunk_id").to_pylist()) == chunks
