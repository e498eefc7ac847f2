"""The lake's Delta tables: schemas (docs/architecture.md), reads into Spark, delta-rs commits.

Spark computes, delta-rs owns the transaction log. Reads take only the files of the
current snapshot (``DeltaTable.file_uris()``); writes are one MERGE per table and run,
keyed by the table's ids, and nothing at all is committed when nothing changed.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from lakerag.lake import Lake

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
}
MERGE_KEYS = {"bronze": ["key"], "quarantine": ["key", "content_hash"], "silver": ["doc_id"], "gold": ["chunk_id"]}
CONFIGURATION = {"gold": {"delta.enableChangeDataFeed": "true"}}


def spark_schema(name: str, columns: list[str] | None = None):
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = SCHEMAS[name]
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    return from_arrow_schema(schema)


def open_table(lake: Lake, name: str) -> DeltaTable | None:
    uri, options = lake.table_uri(name), lake.storage_options()
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options)


def ensure_table(lake: Lake, name: str) -> DeltaTable:
    """The table, created empty (with its configuration) on first use."""
    table = open_table(lake, name)
    if table is None:
        table = DeltaTable.create(lake.table_uri(name), SCHEMAS[name], mode="ignore",
                                  configuration=CONFIGURATION.get(name), storage_options=lake.storage_options())
    return table


def read_table(spark, lake: Lake, name: str, columns: list[str] | None = None):
    """The current snapshot of table ``name`` as a Spark DataFrame (empty when the table does not exist)."""
    columns = columns or SCHEMAS[name].names
    schema = spark_schema(name)
    table = open_table(lake, name)
    uris = table.file_uris() if table is not None else []
    if not uris:
        return spark.createDataFrame([], spark_schema(name, columns))
    if lake.settings.is_s3:
        # No Hadoop S3 connector here: executors read the snapshot's files with pyarrow.
        listing = spark.createDataFrame([(uri,) for uri in uris], "uri string")
        listing = listing.repartition(min(len(uris), spark.sparkContext.defaultParallelism))
        frame = listing.mapInArrow(_parquet_reader(lake.storage_options(), SCHEMAS[name]), schema)
    else:
        frame = spark.read.schema(schema).option("basePath", lake.table_uri(name)).parquet(*uris)
    return frame.select(*columns)


def _parquet_reader(storage_options: dict[str, str], schema: pa.Schema):
    def read(batches):
        import pyarrow.parquet as pq
        from pyarrow.fs import S3FileSystem

        filesystem = S3FileSystem(
            access_key=storage_options.get("AWS_ACCESS_KEY_ID"),
            secret_key=storage_options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=storage_options.get("AWS_SESSION_TOKEN"),
            region=storage_options.get("AWS_REGION"),
            endpoint_override=storage_options.get("AWS_ENDPOINT_URL"),
            scheme="http" if storage_options.get("AWS_ALLOW_HTTP") == "true" else "https",
        )
        for batch in batches:
            for uri in batch.column("uri").to_pylist():
                data = pq.read_table(uri.removeprefix("s3://"), filesystem=filesystem)
                yield from conform(data, schema).to_batches()

    return read


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with exactly the columns and types of ``schema`` (Spark hands back its own types)."""
    return pa.Table.from_arrays([data.column(f.name).cast(f.type) for f in schema], schema=schema)


def read_arrow(lake: Lake, name: str, columns: list[str]) -> pa.Table:
    """A few columns of a (small) table on the driver, for planning; empty when absent."""
    table = open_table(lake, name)
    if table is None:
        return SCHEMAS[name].empty_table().select(columns)
    return conform(table.to_pyarrow_table(columns=columns), pa.schema([SCHEMAS[name].field(c) for c in columns]))


def sync_table(lake: Lake, name: str, upserts: pa.Table, deletes: pa.Table) -> bool:
    """One MERGE commit on the table's ids: insert or update ``upserts``, delete the rows whose
    ids are in ``deletes``. Returns False, committing nothing, when both are empty."""
    if upserts.num_rows == 0 and deletes.num_rows == 0:
        return False
    schema, keys = SCHEMAS[name], MERGE_KEYS[name]
    table = ensure_table(lake, name)
    upserts = conform(upserts, schema)
    tombstones = pa.Table.from_arrays(
        [deletes.column(f.name).cast(f.type) if f.name in keys else pa.nulls(deletes.num_rows, f.type)
         for f in schema], schema=schema)
    source = pa.concat_tables([upserts, tombstones]).append_column(
        "_delete", pa.array([False] * upserts.num_rows + [True] * deletes.num_rows))
    columns = {c: f"s.{c}" for c in schema.names}
    (table.merge(source, " AND ".join(f"t.{k} = s.{k}" for k in keys), source_alias="s", target_alias="t")
     .when_matched_delete(predicate="s._delete")
     .when_matched_update(updates=columns, predicate="NOT s._delete")
     .when_not_matched_insert(updates=columns, predicate="NOT s._delete")
     .execute())
    return True


def row_count(lake: Lake, name: str) -> int:
    """Rows in the current snapshot, from the log's per-file statistics (no data read)."""
    table = open_table(lake, name)
    if table is None:
        return 0
    actions = pa.table(table.get_add_actions(flatten=True))
    return int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0


def version(lake: Lake, name: str) -> int | None:
    table = open_table(lake, name)
    return table.version() if table is not None else None


def executor_environment() -> dict[str, str]:
    """AWS credentials the driver was given as environment variables, to hand to executors
    (local-mode Python workers may have been started before they were set)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return {name: os.environ[name] for name in names if os.environ.get(name)}
