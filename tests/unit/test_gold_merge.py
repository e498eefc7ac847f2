"""Gold's streamed MERGE (lakerag.lake.tables.merge_stream) on a real Delta table, without
Spark: its data files respect the table's target size, which is what bounds the driver's
memory (delta-rs builds each file in memory before uploading it)."""

from __future__ import annotations

import random

import pyarrow as pa
from deltalake import DeltaTable
from lakerag.config import Settings
from lakerag.lake import Lake, tables


def lake_at(tmp_path) -> Lake:
    return Lake.open(Settings().replace(store_uri=f"file://{tmp_path}"))


def chunks(count: int, start: int = 0, deletes: tuple[str, ...] = ()) -> pa.RecordBatchReader:
    rng = random.Random(start)
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows = [{"chunk_id": f"c{i:06d}", "doc_id": f"d{i // 10:05d}", "chunk_index": i % 10,
             # incompressible text, so file sizes track row counts
             "text": "".join(rng.choice(letters) for _ in range(2000)), "title": "t", "source": "raw/x.txt",
             "page": None, "content_hash": "h", "token_count": 300} for i in range(start, start + count)]
    rows += [{"chunk_id": chunk_id} for chunk_id in deletes]  # key-only tombstones, as gold stages them
    table = pa.Table.from_pylist(rows, schema=tables.SCHEMAS["gold"])
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=256))


def data_file_sizes(lake: Lake) -> list[int]:
    return pa.table(tables.snapshot(lake, "gold").delta.get_add_actions(flatten=True)).column("size_bytes").to_pylist()


def test_a_large_merge_is_split_into_files_of_the_target_size(tmp_path, monkeypatch):
    target = 1 << 20
    monkeypatch.setitem(tables.CREATE_OPTIONS, "gold", {"configuration": {
        "delta.enableChangeDataFeed": "true", "delta.targetFileSize": str(target)}})
    lake = lake_at(tmp_path)
    tables.merge_stream(lake, "gold", chunks(3000), [])  # ~6 MB of text
    sizes = data_file_sizes(lake)
    assert tables.row_count(lake, "gold") == 3000
    # delta-rs closes a file once it passes the target, so a file holds at most ~2x of it
    assert len(sizes) >= 3, sizes
    assert max(sizes) < 3 * target, sizes


def test_a_gold_table_made_before_the_target_size_gets_it_on_its_next_merge(tmp_path):
    lake = lake_at(tmp_path)
    DeltaTable.create(lake.table_uri("gold"), tables.SCHEMAS["gold"],
                      configuration={"delta.enableChangeDataFeed": "true"})
    tables.merge_stream(lake, "gold", chunks(20), [])
    tables.merge_stream(lake, "gold", chunks(5, start=20, deletes=("c000003",)), ["c000003"])
    current = tables.snapshot(lake, "gold")
    assert current.configuration()["delta.targetFileSize"] == str(tables.MERGE_FILE_BYTES)
    assert tables.row_count(lake, "gold") == 24
    # the change feed stays row-level: the second MERGE inserted 5 rows and deleted 1
    changes = current.changes(since=current.version).to_pylist()
    assert sorted(r["_change_type"] for r in changes) == ["delete"] + ["insert"] * 5
