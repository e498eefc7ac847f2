"""Lake tables as Spark DataFrames. The tables themselves (schemas, snapshots, MERGE
commits) belong to ``lakerag.lake.tables``; Spark only reads the files of one snapshot."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
from lakerag.lake import Lake
from lakerag.lake.tables import SCHEMAS, conform, snapshot
from pyarrow.fs import S3FileSystem
from pyspark.sql.pandas.types import from_arrow_schema


def spark_schema(name: str, columns: list[str] | None = None):
    schema = SCHEMAS[name]
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    return from_arrow_schema(schema)


def read_table(spark, lake: Lake, name: str, columns: list[str] | None = None):
    """The current snapshot of table ``name`` as a Spark DataFrame (empty when the table does not exist)."""
    columns = columns or SCHEMAS[name].names
    schema = spark_schema(name)
    current = snapshot(lake, name)
    uris = current.file_uris() if current is not None else []
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


def executor_environment() -> dict[str, str]:
    """AWS credentials the driver was given as environment variables, to hand to executors
    (local-mode Python workers may have been started before they were set)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return {name: os.environ[name] for name in names if os.environ.get(name)}
