"""The lake's Delta tables: schemas (docs/architecture.md), snapshots, reads, MERGE commits.

The only module that opens a Delta table: jobs, the index builder, export and the API
read and write tables through it. delta-rs owns the transaction log; Spark jobs read
the files of one snapshot (``Snapshot.file_uris``). Writes are one MERGE per table and
run, keyed by the table's ids, and nothing is committed when nothing changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, WriterProperties
from deltalake.transaction import AddAction, RemoveAction
from pyarrow.fs import SubTreeFileSystem

from ..extract import TEXT_VERSION
from . import DOCUMENTS_KEY, Lake
from .files import METRICS_KEY, TableFiles, conform, row_metrics

_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "bronze": pa.schema([
        ("key", pa.string()), ("doc_id", pa.string()), ("size", pa.int64()), ("source_version", pa.string()),
        ("content_hash", pa.string()), ("file_type", pa.string()), ("page_count", pa.int32()),
        ("pages", pa.list_(pa.string())), ("extracted_at", _TS), ("extract_seconds", pa.float64()),
    ]),
    "quarantine": pa.schema([
        ("key", pa.string()), ("doc_id", pa.string()), ("size", pa.int64()), ("source_version", pa.string()),
        ("content_hash", pa.string()), ("reason", pa.string()), ("quarantined_at", _TS),
    ]),
    "silver": pa.schema([
        ("doc_id", pa.string()), ("key", pa.string()), ("title", pa.string()), ("file_type", pa.string()),
        ("content_hash", pa.string()), ("page_count", pa.int32()), ("pages", pa.list_(pa.string())),
        ("char_count", pa.int64()), ("updated_at", _TS),
    ]),
    "gold": pa.schema([
        ("chunk_id", pa.string()), ("doc_id", pa.string()), ("chunk_index", pa.int32()), ("text", pa.string()),
        ("title", pa.string()), ("source", pa.string()), ("page", pa.int32()), ("content_hash", pa.string()),
        ("token_count", pa.int32()),
    ]),
    "embeddings": pa.schema([
        ("chunk_id", pa.string()), ("model", pa.string()), ("dimension", pa.int32()),
        ("vector", pa.list_(pa.float32())), ("gold_version", pa.int64()), ("embedded_at", _TS),
    ]),
}
MERGE_KEYS = {"bronze": ["key"], "quarantine": ["key", "content_hash"], "silver": ["doc_id"], "gold": ["chunk_id"],
              "embeddings": ["model", "chunk_id"]}
# delta-rs builds each data file in memory before it uploads it, so a MERGE's memory grows
# with its largest file: gold's 32 MiB files (and row groups of 8k rows) keep the driver's
# peak flat however many chunks a run writes (bench/etl.py --scale).
MERGE_FILE_BYTES = 32 << 20
MERGE_WRITER = WriterProperties(max_row_group_size=8192, write_batch_size=1024)
# Keyword arguments of DeltaTable.create beyond the schema.
CREATE_OPTIONS: dict[str, dict] = {
    "gold": {"configuration": {"delta.enableChangeDataFeed": "true", "delta.targetFileSize": str(MERGE_FILE_BYTES)}},
    "embeddings": {"name": "embeddings", "description": "chunk vectors keyed by (model, chunk_id)"},
}
# The tables holding text made from the raw files, each recording the text version it was built from.
TEXT_TABLES = ("bronze", "silver", "gold")
TEXT_VERSION_PROPERTY = "lakerag.textVersion"


@dataclass(frozen=True)
class Snapshot:
    """One version of a table: everything read from it is consistent with ``version``."""

    name: str
    delta: DeltaTable
    files: TableFiles

    @property
    def version(self) -> int:
        return self.delta.version()

    def arrow(self, columns: list[str] | None = None) -> pa.Table:
        """The rows, with exactly the schema's types for ``columns`` (all when None)."""
        columns = columns or SCHEMAS[self.name].names
        return conform(self._dataset().to_table(columns=columns), _columns(self.name, columns))

    def pandas(self, columns: list[str] | None = None):
        return self.arrow(columns).to_pandas()

    def batches(self, columns: list[str]) -> Iterator[pa.Table]:
        """The rows batch by batch (bounded memory), as plain-typed Arrow tables."""
        schema = _columns(self.name, columns)
        for batch in self._dataset().to_batches(columns=columns):
            yield conform(pa.Table.from_batches([batch]), schema)

    def _dataset(self):
        """The snapshot's files read through pyarrow's own file system. delta-rs' default is a
        Python one that pyarrow's I/O threads call back into: a process exiting just after a
        read aborted ("terminate called without an active exception", exit 134)."""
        filesystem, root = self.files.filesystem()
        return self.delta.to_pyarrow_dataset(filesystem=SubTreeFileSystem(root, filesystem))

    def file_uris(self) -> list[str]:
        """The Parquet files of this snapshot, for readers that bring their own engine (Spark)."""
        # delta-rs percent-encodes them ("my%20lake"); Spark and pyarrow take paths as they are.
        return [unquote(uri) for uri in self.delta.file_uris()]

    def row_count(self) -> int:
        """Rows, from the log's per-file statistics (no data read)."""
        actions = pa.table(self.delta.get_add_actions(flatten=True))
        return int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0

    def history(self, limit: int | None = None) -> list[dict]:
        """Commits, newest first (operation, metrics, custom metadata)."""
        return self.delta.history(limit)

    def configuration(self) -> dict[str, str]:
        return self.delta.metadata().configuration

    def changes(self, since: int) -> pa.Table:
        """The change data feed from version ``since`` (gold)."""
        return pa.table(self.delta.load_cdf(starting_version=since).read_all())


def snapshot(lake: Lake, name: str, version: int | None = None) -> Snapshot | None:
    """The current snapshot of ``lake/<name>`` (or an older ``version`` of it: time travel),
    or None while the table does not exist."""
    uri, options = lake.table_uri(name), lake.storage_options()
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return Snapshot(name, DeltaTable(uri, version=version, storage_options=options), table_files(lake, name))


def read_arrow(lake: Lake, name: str, columns: list[str] | None = None) -> pa.Table:
    """``columns`` of the current snapshot (all when None); empty when the table does not exist."""
    current = snapshot(lake, name)
    if current is None:
        return _columns(name, columns or SCHEMAS[name].names).empty_table()
    return current.arrow(columns)


def read_pandas(lake: Lake, name: str, columns: list[str] | None = None):
    """Like ``read_arrow``, as pandas; None while the table does not exist."""
    current = snapshot(lake, name)
    return current.pandas(columns) if current is not None else None


def version(lake: Lake, name: str) -> int | None:
    current = snapshot(lake, name)
    return current.version if current is not None else None


def row_count(lake: Lake, name: str) -> int:
    current = snapshot(lake, name)
    return current.row_count() if current is not None else 0


def properties(lake: Lake, name: str) -> dict[str, str]:
    """The table's properties (Delta configuration); empty while the table does not exist."""
    current = snapshot(lake, name)
    return dict(current.configuration()) if current is not None else {}


def text_version(lake: Lake, name: str) -> str | None:
    """The text version (``extract.TEXT_VERSION``) an ETL table was built from; None before it was recorded."""
    return properties(lake, name).get(TEXT_VERSION_PROPERTY)


def text_change(recorded: str | None, wanted: str | None) -> str | None:
    """"text version 1 -> 2" when a table was built from another text version than its input's
    (a table made before versions were recorded: None, no surprise rebuild)."""
    if recorded is None or wanted is None or recorded == wanted:
        return None
    return f"text version {recorded} -> {wanted}"


def record_text_version(lake: Lake, name: str, version: str | None) -> None:
    """After a successful stage: the text version its table now holds (one commit, only when it changed)."""
    if version is not None and snapshot(lake, name) is not None:
        set_properties(lake, name, {TEXT_VERSION_PROPERTY: version})


def set_properties(lake: Lake, name: str, values: dict[str, str]) -> None:
    """Record ``values`` as table properties: in the table's creation when it does not exist yet,
    else one commit, unless it has them already."""
    current = snapshot(lake, name)
    if current is None:
        _ensure(lake, name, values)
    elif any(current.configuration().get(k) != v for k, v in values.items()):
        current.delta.alter.set_table_properties(values, raise_if_not_exists=False)  # ours, not Delta's


def merge(lake: Lake, name: str, upserts: pa.Table, deletes: pa.Table, metadata: dict[str, str] | None = None) -> bool:
    """One MERGE commit on the table's ids (``MERGE_KEYS``): insert or update ``upserts``, delete
    the rows whose ids are in ``deletes``; the table is created on first use. ``metadata`` goes
    into the commit. Returns False, committing nothing, when both are empty."""
    if upserts.num_rows == 0 and deletes.num_rows == 0:
        return False
    schema, keys = SCHEMAS[name], MERGE_KEYS[name]
    table = _ensure(lake, name)
    upserts = conform(upserts, schema)
    tombstones = pa.Table.from_arrays(
        [deletes.column(f.name).cast(f.type) if f.name in keys else pa.nulls(deletes.num_rows, f.type)
         for f in schema], schema=schema)
    source = pa.concat_tables([upserts, tombstones]).append_column(
        "_delete", pa.array([False] * upserts.num_rows + [True] * deletes.num_rows))
    columns = {c: f"s.{c}" for c in schema.names}
    commit = CommitProperties(custom_metadata=metadata) if metadata else None
    (table.merge(source, " AND ".join(f"t.{k} = s.{k}" for k in keys), source_alias="s", target_alias="t",
                 commit_properties=commit, writer_properties=MERGE_WRITER)
     .when_matched_delete(predicate="s._delete")
     .when_matched_update(updates=columns, predicate="NOT s._delete")
     .when_not_matched_insert(updates=columns, predicate="NOT s._delete")
     .execute())
    return True


def delete_keys(lake: Lake, name: str, keys: pa.Table) -> bool:
    """One MERGE commit deleting every row whose ids (``MERGE_KEYS``) are a row of ``keys``."""
    return merge(lake, name, SCHEMAS[name].empty_table(), keys)


# --- executor-written files (lakerag.lake.files): the driver commits, never holding rows ------------------

def table_files(lake: Lake, name: str, under: str | None = None) -> TableFiles:
    """Where executors write ``name``'s files: the table itself, or a staging area ``under``
    ``lake/_staging/`` for rows a MERGE will stream in."""
    uri = lake.table_uri(name if under is None else f"_staging/{name}/{under}")
    return TableFiles(uri, SCHEMAS[name], lake.storage_options())


def file_paths(lake: Lake, name: str) -> list[str]:
    """Data files of the current snapshot, relative to the table (for executors' rewrites)."""
    current = snapshot(lake, name)
    if current is None:
        return []
    return pa.table(current.delta.get_add_actions(flatten=True)).column("path").to_pylist()


def commit_files(lake: Lake, name: str, actions: pa.Table, metadata: dict | None = None) -> bool:
    """One transaction from executors' ``FILE_ACTIONS`` records (files written and replaced);
    its commit info carries the row metrics under ``METRICS_KEY``. False, committing nothing,
    when there are none."""
    if actions.num_rows == 0:
        return False
    now = int(time.time() * 1000)
    file_actions: list = []
    for row in actions.to_pylist():
        if row["op"] == "add":
            file_actions.append(AddAction(row["path"], row["bytes"], {}, now, True,
                                          json.dumps({"numRecords": row["num_records"]})))
        else:
            file_actions.append(RemoveAction(row["path"], True, now, row["bytes"], {}))
    metadata = {**(metadata or {}), METRICS_KEY: row_metrics(actions)}
    _ensure(lake, name).create_write_transaction(file_actions, mode="append", schema=SCHEMAS[name],
                                                 commit_properties=CommitProperties(custom_metadata=metadata))
    return True


def merge_stream(lake: Lake, name: str, source: pa.RecordBatchReader, deletes: list[str]) -> None:
    """One MERGE on the table's (single) id from a stream: rows of ``source`` are upserted,
    except tombstones whose id is in ``deletes``, which delete. delta-rs reads the stream batch
    by batch (``streamed_exec``) and writes the change data feed as a MERGE does."""
    schema, keys = SCHEMAS[name], MERGE_KEYS[name]
    delete_set = pa.array(sorted(deletes), pa.string())
    marked_schema = schema.append(pa.field("_delete", pa.bool_()))

    def marked():
        for batch in source:
            flag = pc.is_in(batch.column(keys[0]), value_set=delete_set)
            yield pa.RecordBatch.from_arrays([*batch.columns, flag], schema=marked_schema)

    columns = {c: f"s.{c}" for c in schema.names}
    table = _ensure(lake, name)
    if "delta.targetFileSize" not in table.metadata().configuration:  # a table made before the setting
        table.alter.set_table_properties({"delta.targetFileSize": str(MERGE_FILE_BYTES)})
    (table.merge(pa.RecordBatchReader.from_batches(marked_schema, marked()),
                 " AND ".join(f"t.{k} = s.{k}" for k in keys), source_alias="s", target_alias="t",
                 streamed_exec=True, writer_properties=MERGE_WRITER)
     .when_matched_delete(predicate="s._delete")
     .when_matched_update(updates=columns, predicate="NOT s._delete")
     .when_not_matched_insert(updates=columns, predicate="NOT s._delete")
     .execute())


def _ensure(lake: Lake, name: str, properties: dict[str, str] | None = None) -> DeltaTable:
    """The table, created empty (with its options, and ``properties``) on first use."""
    current = snapshot(lake, name)
    if current is not None:
        return current.delta
    options = dict(CREATE_OPTIONS.get(name, {}))
    if name in TEXT_TABLES:  # a new ETL table holds text of this release's version
        properties = {TEXT_VERSION_PROPERTY: TEXT_VERSION, **(properties or {})}
    if properties:  # ours, not Delta's: keys Delta does not know
        options.update(configuration={**options.get("configuration", {}), **properties}, raise_if_key_not_exists=False)
    return DeltaTable.create(lake.table_uri(name), SCHEMAS[name], mode="ignore",
                             storage_options=lake.storage_options(), **options)


def _columns(name: str, columns: list[str]) -> pa.Schema:
    return pa.schema([SCHEMAS[name].field(c) for c in columns])


# --- embeddings: rows are keyed by (model, chunk_id) -------------------------------------------------------

def model_rows(embeddings: Snapshot | None, model: str, columns: list[str]) -> pa.Table:
    """``columns`` of the embeddings of one model, filtered batch by batch in memory
    (pyarrow dataset filters cannot compare string_view columns with strings)."""
    parts = []
    if embeddings is not None:
        for part in embeddings.batches(["model", *columns]):
            parts.append(part.filter(pc.equal(part.column("model"), model)).select(columns))
    return pa.concat_tables(parts) if parts else _columns("embeddings", columns).empty_table()


def _duplicates(bronze: pa.Table, documents: dict[str, dict]) -> dict[str, str]:
    """{key: the key of the same content that silver kept}, for the raw files set aside as copies."""
    rows = bronze.select(["key", "doc_id", "content_hash"]).to_pylist()
    kept = {row["content_hash"]: row["key"] for row in rows if row["doc_id"] in documents}
    return {row["key"]: kept[row["content_hash"]] for row in rows
            if row["doc_id"] not in documents and row["content_hash"] in kept}


def write_document_status(lake: Lake) -> dict:
    """Where each raw file stands in the lake, as the JSON ``GET /documents`` reads
    (``DOCUMENTS_KEY``): the API serves it without reading Delta (no deltalake or pyarrow
    there). Written by every ETL run, from the committed bronze, quarantine and gold."""
    # One snapshot per table: the rows and the version written beside them are the same commit's.
    snapshots = {name: snapshot(lake, name) for name in ("bronze", "quarantine", "gold")}

    def rows(name: str, columns: list[str]) -> pa.Table | None:
        return snapshots[name].arrow(columns) if snapshots[name] is not None else None

    bronze = rows("bronze", ["key", "source_version", "doc_id", "content_hash"])
    quarantine = rows("quarantine", ["key", "source_version", "reason", "quarantined_at"])
    gold = rows("gold", ["doc_id", "title"])
    documents: dict[str, dict] = {}
    if gold is not None:
        for doc_id, title in zip(gold.column("doc_id").to_pylist(), gold.column("title").to_pylist()):
            entry = documents.setdefault(doc_id, {"chunks": 0, "title": title})
            entry["chunks"] += 1
    status = {
        "format": 1,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {name: s.version if s is not None else None for name, s in snapshots.items()},
        "extracted": sorted(zip(bronze.column("key").to_pylist(), bronze.column("source_version").to_pylist()))
        if bronze is not None else [],
        # Oldest first: a later quarantine of the same (key, source version) wins.
        "quarantined": [[row["key"], row["source_version"], row["reason"]]
                        for row in quarantine.sort_by("quarantined_at").to_pylist()] if quarantine is not None else [],
        "documents": documents,
        "duplicates": _duplicates(bronze, documents) if bronze is not None else {},
    }
    lake.store.put(DOCUMENTS_KEY, json.dumps(status, default=str).encode())
    return status
