"""export-jsonl: one JSON record per gold chunk, in document order; a clear error without gold."""

from __future__ import annotations

import json

import pytest
from embed.gold import append_copies, synthetic_docs, write_gold
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


def test_a_chunk_gold_holds_twice_is_exported_once(local_settings, tmp_path):
    """Runs that overlapped (before the run lock) left chunks twice in gold: the dataset had
    those records twice, weighting them double in fine-tuning."""
    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(3, chunks_per_doc=2))
    append_copies(lake, "gold", 2)
    out = tmp_path / "chunks.jsonl"
    assert export_jsonl(local_settings, out) == 6
    assert len({json.loads(line)["chunk_id"] for line in out.read_text().splitlines()}) == 6


def test_export_without_gold_says_what_to_run(local_settings, tmp_path):
    with pytest.raises(ExportError, match="lakerag pipeline etl"):
        export_jsonl(local_settings, tmp_path / "x.jsonl")


def test_export_to_stdout_writes_only_the_dataset_there(local_settings, monkeypatch):
    from lakerag.cli import app
    from typer.testing import CliRunner

    write_gold(Lake.open(local_settings), synthetic_docs(2, chunks_per_doc=2))
    monkeypatch.setenv("LAKERAG_STORE_URI", local_settings.store_uri)
    result = CliRunner().invoke(app, ["export-jsonl", "-"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["chunk_index"] for line in result.stdout.splitlines()] == [0, 1, 0, 1]
    assert "wrote 4 records to -" in result.stderr


def test_export_command_without_gold_exits_1_with_the_reason(local_settings, monkeypatch, tmp_path):
    from lakerag.cli import app
    from typer.testing import CliRunner

    monkeypatch.setenv("LAKERAG_STORE_URI", local_settings.store_uri)
    result = CliRunner().invoke(app, ["export-jsonl", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "lakerag pipeline etl" in result.stderr


def test_an_out_it_cannot_write_says_so_and_leaves_nothing_behind(local_settings, tmp_path):
    """Was a PermissionError/IsADirectoryError traceback from `lakerag export-jsonl`."""
    write_gold(Lake.open(local_settings), synthetic_docs(1))
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "a-dir").mkdir()
    for out in (tmp_path / "a-file" / "chunks.jsonl", tmp_path / "a-dir"):
        with pytest.raises(ExportError, match=r"cannot write .*; choose an OUT this user can write \(or - for stdout\)"):
            export_jsonl(local_settings, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "a-file", "store"]
    assert list((tmp_path / "a-dir").iterdir()) == []


def test_a_gold_table_larger_than_one_slice_is_written_whole_and_in_order(local_settings, tmp_path):
    """The export writes 2048 records at a time (bounded memory): every slice, in document order."""
    lake = Lake.open(local_settings)
    docs = synthetic_docs(800, chunks_per_doc=3)
    write_gold(lake, docs)
    append_copies(lake, "gold", 700)
    out = tmp_path / "chunks.jsonl"
    assert export_jsonl(local_settings, out) == 2400
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["source"], r["chunk_index"]) for r in records] == [(k, i) for k in sorted(docs) for i in range(3)]
