"""chunks.hits: a version's chunk rows as ready JSON, spliced into search responses (index/hit_rows.py)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest
from lakerag.index.artifacts import IndexRejected, load_index_dir, write_index_dir
from lakerag.index.hit_rows import HITS_FILE, HitRows
from lakerag.search.engine import SearchOutcome

from .test_index import MODEL, random_chunks

AWKWARD = 'a "quote", a back\\slash, a\nnewline, a\ttab, \x00 nul, \x7f, ü, 中文, 😀, \u2028 line separator'


def written(tmp_path, count: int = 9):
    vectors, chunks = random_chunks(count)
    chunks.loc[0, "text"] = AWKWARD
    chunks.loc[0, "title"] = ""  # served as null
    chunks["page"] = pd.array([7] + [None] * (count - 1), dtype="Int32")
    chunks["content_hash"] = [f"h{i}" for i in range(count)]
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    return load_index_dir(tmp_path)


def test_each_row_reads_back_as_the_row_chunks_sqlite_holds(tmp_path):
    loaded = written(tmp_path)
    ids = [8, 0, 3, 0]
    members = loaded.row_members(ids)
    assert [json.loads(b"{" + m + b"}") for m in members] == loaded.rows(ids)
    assert json.loads(b"{" + members[1] + b"}")["text"] == AWKWARD
    assert HITS_FILE in loaded.manifest["files"]


def test_hits_json_splices_the_rows_byte_for_byte_as_the_dicts_would_be_written(tmp_path):
    from pydantic_core import to_json

    loaded = written(tmp_path)
    scores = [{"rank": r, "score": s, "dense_rank": r, "dense_score": s, "lexical_rank": None, "lexical_score": None}
              for r, s in enumerate([0.9123, -0.25, 0.0], start=1)]
    spliced = SearchOutcome("q", loaded.version, MODEL, 0.0, searched=loaded, hit_ids=[0, 5, 2], hit_scores=scores)
    read = SearchOutcome("q", loaded.version, MODEL, 0.0, searched=loaded, hit_ids=[0, 5, 2], hit_scores=scores)
    assert read.hits[0]["text"] == AWKWARD  # rows read from chunks.sqlite: hits_json now writes these dicts
    assert spliced.hits_json() == read.hits_json() == to_json(read.hits)
    assert json.loads(spliced.hits_json())[1] == {**scores[1], **loaded.rows([5])[0]}


def test_an_empty_version_has_an_empty_rows_file(tmp_path):
    vectors, chunks = random_chunks(0)
    write_index_dir(tmp_path, vectors.reshape(0, 16), chunks, MODEL, 1)
    assert load_index_dir(tmp_path).hit_rows.count == 0


def test_a_row_outside_the_version_is_an_index_error(tmp_path):
    loaded = written(tmp_path)
    for outside in (9, -1):
        with pytest.raises(IndexError, match=f"no chunk row {outside} .the version holds 9"):
            loaded.row_members([0, outside])


def test_rows_stay_readable_after_the_version_is_pruned(tmp_path):
    loaded = written(tmp_path / "v1")
    shutil.rmtree(tmp_path / "v1")
    assert json.loads(b"{" + loaded.row_members([4])[0] + b"}")["chunk_id"] == "c0004"


def test_a_file_that_is_not_a_rows_file_is_refused_with_what_to_do(tmp_path):
    written(tmp_path)
    data = (tmp_path / HITS_FILE).read_bytes()
    offsets = len(data) - 8 * (9 + 2)  # 9 rows: 10 offsets and the count
    for broken in (data[:5],  # no count
                   data[:-8] + (10**6).to_bytes(8, "little"),  # more rows than bytes
                   data[:offsets] + (1).to_bytes(8, "little") + data[offsets + 8:],  # the first row not at 0
                   data[:offsets] + b"more" + data[offsets:]):  # rows past the last offset
        (tmp_path / "broken").write_bytes(broken)
        with pytest.raises(ValueError, match="chunks.hits|offsets"):
            HitRows(tmp_path / "broken")
    # A manifest that vouches for a wrong file (its checksum recomputed) is refused at load.
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / HITS_FILE).write_bytes(data[:5])
    manifest["files"][HITS_FILE] = hashlib.sha256(data[:5]).hexdigest()
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / ".verified.json").unlink(missing_ok=True)
    with pytest.raises(IndexRejected, match="republish the index"):
        load_index_dir(tmp_path)


def test_a_version_written_before_chunks_hits_is_served_from_chunks_sqlite(tmp_path):
    loaded = written(tmp_path)
    (tmp_path / HITS_FILE).unlink()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["files"][HITS_FILE]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    older = load_index_dir(tmp_path)
    assert older.hit_rows is None and older.row_members([0]) is None
    assert older.rows([0, 8]) == loaded.rows([0, 8])
