"""Executor-side file writes and rewrites (lakerag.lake.files) and the one-transaction commit
(lakerag.lake.tables.commit_files) on a real Delta table, without Spark."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
from lakerag.config import Settings
from lakerag.lake import Lake, tables
from lakerag.lake.files import FILE_ACTIONS, METRICS_KEY, drop_keys, row_metrics, write_files


def silver_rows(ids: list[str], title: str = "t") -> pa.Table:
    schema = tables.SCHEMAS["silver"]
    rows = [{"doc_id": i, "key": f"raw/{i}.txt", "title": title, "file_type": "txt", "content_hash": "h",
             "page_count": None, "pages": [f"text of {i}"], "char_count": 9, "updated_at": None} for i in ids]
    return pa.Table.from_pylist(rows, schema=schema)


def lake_at(tmp_path) -> Lake:
    return Lake.open(Settings().replace(store_uri=f"file://{tmp_path}"))


def actions(batches) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=FILE_ACTIONS)


def test_written_files_commit_as_one_version_and_replacing_rows_rewrites_only_their_files(tmp_path):
    lake = lake_at(tmp_path)
    target = tables.table_files(lake, "silver")
    first = actions(write_files(target, silver_rows(["a", "b", "c"]).to_batches(max_chunksize=1), rows_per_file=2))
    assert first.column("num_records").to_pylist() == [2, 1]  # a file closes once it holds rows_per_file rows
    assert tables.commit_files(lake, "silver", first)
    assert tables.read_arrow(lake, "silver", ["doc_id"]).column("doc_id").to_pylist() == ["a", "b", "c"]
    version = tables.version(lake, "silver")

    # Upsert "a" with a new title and delete "c": the file holding only "c" is removed, the
    # file holding "a" and "b" is rewritten with "b"; one commit.
    paths = tables.file_paths(lake, "silver")
    new = actions(write_files(target, silver_rows(["a"], title="new").to_batches()))
    dropped = actions(drop_keys(target, paths, ["doc_id"], replaced={"a"}, deleted={"c"}))
    assert sorted(dropped.column("op").to_pylist()) == ["add", "remove", "remove"]
    assert row_metrics(pa.concat_tables([new, dropped])) == {"inserted": 0, "updated": 1, "deleted": 1}
    assert tables.commit_files(lake, "silver", pa.concat_tables([new, dropped]))
    assert tables.version(lake, "silver") == version + 1
    rows = {r["doc_id"]: r["title"] for r in tables.read_arrow(lake, "silver", ["doc_id", "title"]).to_pylist()}
    assert rows == {"a": "new", "b": "t"}
    assert tables.snapshot(lake, "silver").history(1)[0][METRICS_KEY] == {"inserted": 0, "updated": 1, "deleted": 1}
    assert tables.row_count(lake, "silver") == 2  # the log's statistics count the rows


def test_files_without_a_dropped_key_are_left_alone_and_nothing_commits_without_actions(tmp_path):
    lake = lake_at(tmp_path)
    target = tables.table_files(lake, "silver")
    tables.commit_files(lake, "silver", actions(write_files(target, silver_rows(["a", "b"]).to_batches())))
    version = tables.version(lake, "silver")
    assert actions(drop_keys(target, tables.file_paths(lake, "silver"), ["doc_id"], {"x"}, {"y"})).num_rows == 0
    assert not tables.commit_files(lake, "silver", FILE_ACTIONS.empty_table())
    assert tables.version(lake, "silver") == version


def test_deleting_every_row_of_a_file_writes_no_empty_file(tmp_path):
    lake = lake_at(tmp_path)
    target = tables.table_files(lake, "silver")
    tables.commit_files(lake, "silver", actions(write_files(target, silver_rows(["a"]).to_batches())))
    dropped = actions(drop_keys(target, tables.file_paths(lake, "silver"), ["doc_id"], set(), {"a"}))
    assert dropped.column("op").to_pylist() == ["remove"]
    tables.commit_files(lake, "silver", dropped)
    assert tables.row_count(lake, "silver") == 0
    assert pc.sum(dropped.column("rows_deleted")).as_py() == 1


def test_a_process_that_exits_right_after_reading_a_table_exits_with_its_own_code(tmp_path):
    """delta-rs reads through a Python file system that pyarrow's I/O threads call back into: a
    process exiting just after a read aborted ("terminate called without an active exception",
    exit 134) in 23 of 30 runs here, e.g. `lakerag export-jsonl` refusing an OUT it cannot write."""
    lake = lake_at(tmp_path)
    target = tables.table_files(lake, "silver")
    assert tables.commit_files(lake, "silver", actions(write_files(target, silver_rows(["a", "b"]).to_batches())))
    read_and_exit = (
        "import sys; from lakerag.config import Settings; from lakerag.lake import Lake, tables; "
        f"lake = Lake.open(Settings().replace(store_uri='file://{tmp_path}')); "
        "current = tables.snapshot(lake, 'silver'); "
        "assert current.arrow(['doc_id']).num_rows == 2; "
        "sys.exit(3)")
    codes = [subprocess.run([sys.executable, "-c", read_and_exit], env=os.environ, capture_output=True,
                            check=False).returncode for _ in range(8)]
    assert codes == [3] * 8
