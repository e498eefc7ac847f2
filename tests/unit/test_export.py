"""export-jsonl: one JSON record per gold chunk, in document order; a clear error without gold."""

from __future__ import annotations

import json

import pytest
from embed.gold import synthetic_docs, write_gold
from lakerag.export import ExportError, export_jsonl
from lakerag.lake import Lake


def test_export_writes_one_record_per_gold_chunk(local_settings, tmp_path):
    docs = synthetic_docs(3, chunks_per_doc=2)
    write_gold(Lake.open(local_settings), docs)
    out = tmp_path / "out" / "chunks.jsonl"
    assert export_jsonl(local_settings, out) == 6
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["source"], r["chunk_index"]) for r in records] == [(k, i) for k in sorted(docs) for i in range(2)]
    assert [r["text"] for r in records] == [t for k in sorted(docs) for t in docs[k]]
    assert set(records[0]) == {"chunk_id", "doc_id", "chunk_index", "text", "title", "source", "page", "token_count"}
    assert not list(out.parent.glob("*.tmp"))


def test_export_without_gold_says_what_to_run(local_settings, tmp_path):
    with pytest.raises(ExportError, match="lakerag pipeline etl"):
        export_jsonl(local_settings, tmp_path / "x.jsonl")
