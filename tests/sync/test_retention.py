"""Delta vacuum keeps what the retained index versions point at, and no more."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from lakerag.index.artifacts import MANIFEST_FILE
from lakerag.index.publish import prune
from lakerag.lake import Lake, tables
from lakerag.retention import vacuum, vacuum_retention_hours


def gold_rows(n: int, start: int = 0) -> pa.Table:
    schema = tables.SCHEMAS["gold"]
    rows = [{"chunk_id": f"c{i}", "doc_id": "d", "chunk_index": i, "text": f"text {i}", "title": "t",
             "source": "raw/a.txt", "page": None, "content_hash": "h", "token_count": 2} for i in range(start, n)]
    return pa.Table.from_pylist(rows, schema=schema)


def ids(*chunk_ids: str) -> pa.Table:
    return pa.table({"chunk_id": pa.array(list(chunk_ids), pa.string())})


def publish_manifest(store, version: str, gold_version: int, created_at: str = "2026-01-01T00:00:00Z") -> None:
    """A retained index version as far as retention is concerned: its manifest."""
    manifest = {"format": 1, "version": version, "created_at": created_at, "gold_version": gold_version,
                "files": {}}
    store.put(f"index/{version}/{MANIFEST_FILE}", json.dumps(manifest).encode())


def test_vacuum_keeps_the_gold_version_of_a_retained_index_and_drops_it_once_pruned(local_settings):
    settings = local_settings.replace(vacuum_min_hours=0)
    lake = Lake.open(settings)
    tables.merge(lake, "gold", gold_rows(4), ids())
    old_version = tables.version(lake, "gold")
    tables.merge(lake, "gold", gold_rows(0), ids("c0", "c1", "c2", "c3"))  # every old file is removed
    tables.merge(lake, "gold", gold_rows(6, 4), ids())
    publish_manifest(lake.store, "20260101T000000Z-old", old_version)
    hours = vacuum_retention_hours(settings, lake.store, now=datetime.now(UTC))
    assert hours >= 24 * 300  # the oldest retained version is months old: its data must stay
    summary = vacuum(settings)
    assert summary["files_removed"]["gold"] == 0
    assert tables.snapshot(lake, "gold", version=old_version).arrow().num_rows == 4

    # Created a minute from now: delta-rs takes whole hours, and this test's removals are seconds old.
    soon = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    publish_manifest(lake.store, "20990101T000000Z-new", tables.version(lake, "gold"), created_at=soon)
    lake.store.put("index/CURRENT", b"20990101T000000Z-new")
    assert prune(lake.store, keep=1) == ["20260101T000000Z-old"]
    assert vacuum_retention_hours(settings, lake.store) == 0
    summary = vacuum(settings)  # nothing retained needs the old files any more
    assert summary["files_removed"]["gold"] >= 1
    with pytest.raises(Exception):  # noqa: B017 - delta-rs raises its own error types for missing files
        tables.snapshot(lake, "gold", version=old_version).arrow()
    assert tables.row_count(lake, "gold") == 2
