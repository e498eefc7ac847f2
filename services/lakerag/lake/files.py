"""Executors write a table's data files, the driver commits them: one Delta transaction of
add/remove actions, so no document text passes through the driver.

Two executor-side steps, both plain pyarrow (they run inside Spark's Python workers):

* ``write_files``: new rows -> new Parquet files under the table's path; yields one ``add``
  record per file.
* ``drop_keys``: the current files that hold any of the given ids are rewritten without
  those rows (copy-on-write, as a MERGE does); yields ``remove`` for the old file and ``add``
  for the rewritten one (none when no row is left).

``tables.commit_files`` turns the records (paths, sizes, row counts: bytes per file, not per
row) into one ``create_write_transaction``; tables without a change data feed (bronze, silver) are
written this way. delta-rs cannot commit change-data files from Python, so a table with a
feed (gold) stages its rows the same way and ``staged_reader`` streams them into one MERGE
(``tables.merge_stream``). Upserting = dropping the rows whose ids are re-written,
plus adding the new files, in the same commit, so readers see either the old rows or the new.
Files written by a run whose commit fails are in no snapshot: readers never see them, and
a rerun writes its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import LocalFileSystem

from ..store import S3Access

# What an executor hands back to the driver for each file it wrote or replaced.
# Removes also count the rows they drop: replaced (an upsert's old row) or deleted.
FILE_ACTIONS = pa.schema([("op", pa.string()), ("path", pa.string()), ("bytes", pa.int64()),
                          ("num_records", pa.int64()), ("rows_replaced", pa.int64()), ("rows_deleted", pa.int64())])
ROWS_PER_FILE = 100_000
METRICS_KEY = "lakerag.rows"  # commit metadata: {"inserted", "updated", "deleted"}, as MERGE reports them


@dataclass(frozen=True)
class TableFiles:
    """Where one table's files live, picklable for executors: the table URI (a local path,
    ``file://`` URI or ``s3://bucket/prefix``), delta-rs storage options and the schema."""

    uri: str
    schema: pa.Schema
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def filesystem(self):
        """(pyarrow filesystem, root path inside it): no Hadoop connector needed on S3."""
        if not self.is_s3:
            return LocalFileSystem(), self.uri.removeprefix("file://").rstrip("/")
        filesystem = S3Access.from_delta_options(self.storage_options).arrow_filesystem()
        return filesystem, self.uri.removeprefix("s3://").rstrip("/")


def conform(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """``batch`` with exactly the columns and types of ``schema``: Spark hands back its own types,
    and files delta-rs' MERGE wrote may hold string_view / list_view columns."""
    return pa.Table.from_arrays([batch.column(f.name).cast(f.type) for f in schema], schema=schema)


def _record(op: str, path: str, size: int, rows: int, replaced: int = 0, deleted: int = 0) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"op": op, "path": path, "bytes": size, "num_records": rows,
                                        "rows_replaced": replaced, "rows_deleted": deleted}], schema=FILE_ACTIONS)


def _write(target: TableFiles, filesystem, root: str, data: pa.Table) -> pa.RecordBatch:
    path = f"part-{uuid.uuid4().hex}.parquet"  # unique: concurrent tasks and retries never collide
    with filesystem.open_output_stream(f"{root}/{path}") as sink:
        pq.write_table(data, sink, compression="snappy")
    return _record("add", path, filesystem.get_file_info(f"{root}/{path}").size, data.num_rows)


class FileWriter:
    """Rows in, Parquet files of about ``rows_per_file`` rows out (batches are not split); ``add`` and ``close``
    return the ``add`` records of the files written so far (streaming: one file's rows held)."""

    def __init__(self, target: TableFiles, rows_per_file: int = ROWS_PER_FILE):
        self.target, self.rows_per_file = target, rows_per_file
        self.filesystem, self.root = target.filesystem()
        if not target.is_s3:
            self.filesystem.create_dir(self.root, recursive=True)  # a table's first files may precede its log
        self.pending: list[pa.Table] = []
        self.held = 0

    def add(self, batch: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
        if batch.num_rows:
            self.pending.append(conform(batch, self.target.schema))
            self.held += batch.num_rows
        return self._flush() if self.held >= self.rows_per_file else []

    def close(self) -> list[pa.RecordBatch]:
        return self._flush() if self.held else []

    def _flush(self) -> list[pa.RecordBatch]:
        data = pa.concat_tables(self.pending)
        self.pending, self.held = [], 0
        return [_write(self.target, self.filesystem, self.root, data)]


def write_files(target: TableFiles, batches: Iterable[pa.RecordBatch],
                rows_per_file: int = ROWS_PER_FILE) -> Iterator[pa.RecordBatch]:
    """Write ``batches`` (conformed to the table's schema) as Parquet files; yield an ``add``
    record per file."""
    writer = FileWriter(target, rows_per_file)
    for batch in batches:
        yield from writer.add(batch)
    yield from writer.close()


def drop_keys(target: TableFiles, paths: Iterable[str], keys: list[str], replaced: set,
              deleted: set) -> Iterator[pa.RecordBatch]:
    """For each file of ``paths`` (relative to the table) holding a row whose ``keys`` value
    (a string, or a tuple for several key columns) is in ``replaced`` or ``deleted``: ``remove``
    it and ``add`` a rewrite without those rows. Only the key columns of untouched files are read."""
    filesystem, root = target.filesystem()
    for path in paths:
        key_columns = pq.read_table(f"{root}/{path}", columns=keys, filesystem=filesystem)
        values = [key_columns.column(k).cast(pa.string()).to_pylist() for k in keys]
        ids = list(zip(*values)) if len(keys) > 1 else values[0]
        in_replaced = [i in replaced for i in ids]
        in_deleted = [i in deleted for i in ids]
        if not any(in_replaced) and not any(in_deleted):
            continue
        data = conform(pq.read_table(f"{root}/{path}", filesystem=filesystem), target.schema)
        keep = pa.array([not (r or d) for r, d in zip(in_replaced, in_deleted)], pa.bool_())
        yield _record("remove", path, filesystem.get_file_info(f"{root}/{path}").size, data.num_rows,
                      sum(in_replaced), sum(d and not r for r, d in zip(in_replaced, in_deleted)))
        kept = data.filter(keep)
        if kept.num_rows:
            yield _write(target, filesystem, root, kept)


def row_metrics(actions: pa.Table) -> dict[str, int]:
    """What a commit of ``actions`` does to rows, in MERGE's terms."""
    import pyarrow.compute as pc

    def total(column: str, op: str) -> int:
        rows = actions.filter(pc.equal(actions.column("op"), op)).column(column)
        return int(pc.sum(rows).as_py() or 0)

    replaced = total("rows_replaced", "remove")
    kept = total("num_records", "remove") - replaced - total("rows_deleted", "remove")
    return {"inserted": total("num_records", "add") - kept - replaced, "updated": replaced,
            "deleted": total("rows_deleted", "remove")}


def staged_reader(target: TableFiles, paths: list[str], extra: pa.Table | None = None) -> pa.RecordBatchReader:
    """The rows of executor-staged files (``paths`` under ``target``), then ``extra``, as one
    stream: a MERGE reads it batch by batch, so the driver never holds the rows at once."""
    filesystem, root = target.filesystem()

    def batches():
        for path in paths:
            for batch in pq.ParquetFile(filesystem.open_input_file(f"{root}/{path}")).iter_batches(4096):
                yield from conform(batch, target.schema).to_batches()
        if extra is not None and extra.num_rows:
            yield from conform(extra, target.schema).to_batches()

    return pa.RecordBatchReader.from_batches(target.schema, batches())


def remove_staging(target: TableFiles) -> None:
    filesystem, root = target.filesystem()
    try:
        filesystem.delete_dir(root)
    except FileNotFoundError:
        pass
