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


def test_a_status_shows_each_stage_on_one_readable_line():
    """`lakerag pipeline status` printed a stage's nested summary as Python reprs on one line
    ("files=seen=23, read=3, ... quarantined=[{'key': ...}]") under the headline FAILED, though no
    stage had failed."""
    status = {"title": "pipeline status", "ok": False, "healthy": False,
              "problems": ["2 file(s) in quarantine"], "stages": {"etl": ETL, "embed": None}}
    text = format_summary(status, verdicts=("healthy", "UNHEALTHY"))
    assert text.splitlines()[1] == "LakeRAG pipeline status: UNHEALTHY"
    etl_line = next(line for line in text.splitlines() if line.strip().startswith("etl "))
    assert etl_line.split(None, 1)[1] == ("ok=True, files=(seen=23, read=3, quarantined=2), quarantined=[2 entries], "
                                         "seconds=(total=5.91)")
    assert "{" not in text and "    embed                  None" in text


def test_documents_listing_says_one_chunk_and_why_a_file_waits():
    from lakerag.client import format_documents

    listing = format_documents({"documents": [
        {"doc_id": "a1", "state": "indexed", "key": "raw/ok.md", "chunks": 1},
        {"doc_id": "b2", "state": "indexed", "key": "raw/long.pdf", "chunks": 12},
        {"doc_id": "c3", "state": "quarantined", "key": "raw/bad.json", "reason": "invalid JSON at line 1"}],
        "counts": {"indexed": 2, "quarantined": 1}, "index_version": "v1"})
    assert "raw/ok.md  (1 chunk)" in listing and "raw/long.pdf  (12 chunks)" in listing
    assert "raw/bad.json  (invalid JSON at line 1)" in listing and listing.endswith("2 indexed, 1 quarantined; index v1")
