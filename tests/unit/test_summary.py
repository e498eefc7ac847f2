"""The one-screen summaries the CLI prints (``lakerag.summary``, ``lakerag.client``'s listings)."""

from __future__ import annotations

from lakerag.summary import format_summary

ETL = {"title": "etl", "ok": True, "files": {"seen": 23, "read": 3, "quarantined": 2},
       "quarantined": [{"key": "raw/bad.json", "reason": "invalid JSON"}, {"key": "raw/bin.txt", "reason": "ELF"}],
       "seconds": {"total": 5.912}}


def test_a_run_summary_lists_its_sections_and_records():
    text = format_summary(ETL)
    assert text.splitlines()[1] == "LakeRAG etl: OK"
    assert "    seen                   23" in text and "    total                  5.91" in text
    assert "  quarantined (2):" in text and "    - key=raw/bad.json, reason=invalid JSON" in text


def test_a_status_shows_each_stage_in_one_short_line():
    """`lakerag pipeline status` printed each stage's whole summary on one line: 700 characters for
    the ETL (every counter, table version and timing), the verdict lost in the middle. Now a line
    says the verdict, when, how long and what the stage did; --json keeps every field."""
    etl = {**ETL, "files": {"seen": 23, "new": 2, "changed": 1, "deleted": 0, "read": 3, "quarantined": 2},
           "rows": {"bronze": 23, "gold": 310}, "versions": {"gold": 7}, "seconds": {"spark_start": 4.1, "total": 5.912},
           "finished_at": "2026-12-05T01:12:06+00:00"}
    embed = {"title": "pipeline embed", "ok": False, "error": "RuntimeError: out of memory", "seconds": 12.0,
             "finished_at": "2026-12-05T01:12:20+00:00", "model_source": "the ONNX export in /root/.cache/x" * 5}
    index = {"title": "pipeline index", "ok": True, "published": True, "version": "20261205T011206Z-577437dc",
             "vector_count": 310, "seconds": 0.03, "finished_at": "2026-12-05T01:12:06+00:00"}
    status = {"title": "pipeline status", "ok": False, "healthy": False,
              "problems": ["2 file(s) in quarantine"], "stages": {"etl": etl, "embed": embed, "index": index}}
    text = format_summary(status, verdicts=("healthy", "UNHEALTHY"))
    assert text.splitlines()[1] == "LakeRAG pipeline status: UNHEALTHY"
    lines = {line.split()[0]: line.split(None, 1)[1] for line in text.splitlines()[2:] if line.startswith("    ")}
    assert lines["etl"] == ("ok, finished 2026-12-05T01:12:06+00:00 in 5.9 s: 23 files seen, 2 new, 1 changed, "
                            "0 deleted, 2 quarantined; 310 gold chunks")
    assert lines["embed"] == "FAILED: RuntimeError: out of memory (finished 2026-12-05T01:12:20+00:00 in 12.0 s)"
    assert lines["index"] == ("ok, finished 2026-12-05T01:12:06+00:00 in 0.0 s: published "
                              "20261205T011206Z-577437dc (310 vectors)")
    assert max(len(line) for line in text.splitlines()) <= 140 and "{" not in text
    assert "lakerag pipeline status --json" in text
    one = format_summary({**status, "stages": {"etl": {**etl, "rows": {"gold": 1}}, "index": {**index, "vector_count": 1}}})
    assert "; 1 gold chunk\n" in one and "(1 vector)" in one
    unpublished = {**index, "published": False, "reason": "gold unchanged since 20261205T011206Z-577437dc"}
    text = format_summary({**status, "stages": {"etl": None, "index": unpublished}}, verdicts=("healthy", "UNHEALTHY"))
    assert "    etl    not run yet" in text
    assert "nothing published: gold unchanged since 20261205T011206Z-577437dc" in text
    # A run that re-chunked every document for new chunk settings says so.
    rechunked = {**etl, "rechunked": "LAKERAG_CHUNK_TOKENS 512 -> 256"}
    [line] = [line for line in format_summary({**status, "stages": {"etl": rechunked}}).splitlines()
              if line.startswith("    etl ")]
    assert line.endswith("; 310 gold chunks, all re-chunked (LAKERAG_CHUNK_TOKENS 512 -> 256)"), line
    # So does one that re-extracted every document for a release that extracts other text.
    retexted = {**etl, "retexted": "text version 1 -> 2"}
    [line] = [line for line in format_summary({**status, "stages": {"etl": retexted}}).splitlines()
              if line.startswith("    etl ")]
    assert line.endswith("; 310 gold chunks, all re-extracted (text version 1 -> 2)"), line


def test_documents_listing_says_one_chunk_and_why_a_file_waits():
    from lakerag.client import format_documents

    listing = format_documents({"documents": [
        {"doc_id": "a1", "state": "indexed", "key": "raw/ok.md", "chunks": 1},
        {"doc_id": "b2", "state": "indexed", "key": "raw/long.pdf", "chunks": 12},
        {"doc_id": "c3", "state": "quarantined", "key": "raw/bad.json", "reason": "invalid JSON at line 1"}],
        "counts": {"indexed": 2, "quarantined": 1}, "index_version": "v1"})
    assert "raw/ok.md  (1 chunk)" in listing and "raw/long.pdf  (12 chunks)" in listing
    assert "raw/bad.json  (invalid JSON at line 1)" in listing and listing.endswith("2 indexed, 1 quarantined; index v1")
