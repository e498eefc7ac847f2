"""Lake tables as Spark DataFrames. The tables themselves (schemas, snapshots, MERGE
commits) belong to ``lakerag.lake.tables``; Spark only reads the files of one snapshot."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
from lakerag.lake import Lake
from lakerag.lake.tables import SCHEMAS, conform, snapshot
from lakerag.store import S3Access
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
        frame = listing.mapInArrow(_parquet_reader(S3Access.from_settings(lake.settings), SCHEMAS[name]), schema)
    else:
        frame = spark.read.schema(schema).parquet(*map(literal_path, uris))
    return frame.select(*columns)


def literal_path(path: str) -> str:
    """``path`` escaped for Hadoop, which reads [ ] { } * ? as a glob: a store under "lake[1]" found no file."""
    return re.sub(r"([\\\[\]{}*?^])", r"\\\1", path)


def _parquet_reader(access: S3Access, schema: pa.Schema):
    def read(batches):
        filesystem = access.arrow_filesystem()
        for batch in batches:
            for uri in batch.column("uri").to_pylist():
                data = pq.read_table(uri.removeprefix("s3://"), filesystem=filesystem)
                yield from conform(data, schema).to_batches()

    return read

