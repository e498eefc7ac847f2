"""`lakerag index diff` (lakerag/index/diff.py) on versions written here, no model needed."""

from __future__ import annotations

import tracemalloc

import numpy as np
from conftest import as_legacy_version
from lakerag.index.artifacts import write_index_dir
from lakerag.index.diff import diff_versions
from lakerag.index.publish import publish_dir
from lakerag.store import LocalStore

from .test_index import MODEL, random_chunks


def _publish(store, tmp_path, chunks, vectors, version: str) -> str:
    write_index_dir(tmp_path / version, vectors, chunks, MODEL, gold_version=1, version=version, lexical=False)
    return publish_dir(store, tmp_path / version)


def test_diff_of_two_large_versions_holds_their_ids_not_their_texts(tmp_path):
    """The diff read each version's rows file whole into memory, then every row with its text into a
    DataFrame: a few times the index's text for two versions. It needs the ids: its peak memory must
    stay far below one version's text (20 MB here)."""
    store = LocalStore(tmp_path / "store")
    vectors, chunks = random_chunks(2000)
    chunks["text"] = [f"{i} " + "x" * 10_000 for i in range(len(chunks))]
    old = _publish(store, tmp_path, chunks, vectors, "20260101T000000Z-aaaaaaaa")
    chunks.loc[chunks["doc_id"] == "d5", "chunk_id"] = ["e1", "e2", "e3"]  # d5's text changed
    chunks = chunks[chunks["doc_id"] != "d7"]  # d7 deleted
    new = _publish(store, tmp_path, chunks, vectors[chunks.index], "20260102T000000Z-bbbbbbbb")

    tracemalloc.start()
    try:
        diff = diff_versions(store, old, new)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert diff["documents"] == {"added": [], "removed": ["raw/d7.txt"], "changed": ["raw/d5.txt"], "unchanged": 665}
    assert diff["chunks"] == {"added": 0, "removed": 3, "changed": 3, "unchanged": 1994}
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MB of Python memory to diff two 20 MB versions"


def test_diff_reads_a_version_published_as_chunks_parquet(tmp_path):
    """Versions from before chunks.sqlite hold their rows as chunks.parquet, without content hashes."""
    store = LocalStore(tmp_path / "store")
    vectors, chunks = random_chunks(12)
    write_index_dir(tmp_path / "old", vectors, chunks, MODEL, gold_version=1, version="20260101T000000Z-aaaaaaaa",
                    lexical=False)
    old = publish_dir(store, as_legacy_version(tmp_path / "old"))
    chunks.loc[len(chunks)] = ["c9999", "d9", 0, "new text", "raw/d9.txt", "t", None]
    new = _publish(store, tmp_path, chunks, np.vstack([vectors, vectors[:1]]), "20260102T000000Z-bbbbbbbb")
    assert (tmp_path / "store" / "index" / old / "chunks.parquet").exists()

    diff = diff_versions(store, old, new)
    assert diff["documents"] == {"added": ["raw/d9.txt"], "removed": [], "changed": [], "unchanged": 4}
    assert diff["chunks"] == {"added": 1, "removed": 0, "changed": 0, "unchanged": 12}
