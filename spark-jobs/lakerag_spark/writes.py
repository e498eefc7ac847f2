"""A stage's new rows, written by executors and committed by the driver in one Delta
transaction (``lakerag.lake.files`` on executors, ``lakerag.lake.tables`` commits): the driver
sees file paths, sizes, row counts and ids, never text."""

from __future__ import annotations

import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
from lakerag.lake import Lake, tables
from lakerag.lake.files import FILE_ACTIONS, TableFiles, drop_keys, remove_staging, staged_reader, write_files
from lakerag.lake.tables import MERGE_KEYS, SCHEMAS, table_files
from pyspark.sql.pandas.types import from_arrow_schema

FILE_ACTIONS_SPARK = from_arrow_schema(FILE_ACTIONS)
# A run's staging area lives minutes; an older one was left by a killed run (a younger one may
# belong to a run still going).
STALE_STAGING_SECONDS = 3600
__all__ = ["FILE_ACTIONS", "added_rows", "commit_files", "conform_actions", "merge_staged", "remove_stale_staging",
           "table_files", "write_frame"]


def write_frame(frame, target: TableFiles):
    """Executors write ``frame``'s rows as Parquet files under ``target``; a (lazy) frame of
    ``FILE_ACTIONS`` records, one per file."""
    return frame.mapInArrow(lambda batches: write_files(target, batches), FILE_ACTIONS_SPARK)


def drop_rows(spark, lake: Lake, name: str, replaced: set, deleted: set) -> pa.Table:
    """``FILE_ACTIONS`` that remove the rows whose merge key is in ``replaced`` or ``deleted``
    from the current snapshot: executors rewrite each file that holds any (``drop_keys``)."""
    paths = tables.file_paths(lake, name) if replaced or deleted else []
    if not paths:
        return FILE_ACTIONS.empty_table()
    target, keys = table_files(lake, name), MERGE_KEYS[name]
    shared = spark.sparkContext.broadcast((replaced, deleted))

    def rewrite(batches):
        for batch in batches:
            yield from drop_keys(target, batch.column("path").to_pylist(), keys, *shared.value)

    listing = spark.createDataFrame([(p,) for p in paths], "path string")
    listing = listing.repartition(min(len(paths), spark.sparkContext.defaultParallelism))
    try:
        return conform_actions(listing.mapInArrow(rewrite, FILE_ACTIONS_SPARK).toArrow())
    finally:
        shared.unpersist()


def commit_files(spark, lake: Lake, name: str, written: pa.Table, replaced: set, deleted: set,
                 metadata: dict | None = None) -> bool:
    """One transaction: the files executors ``written`` plus the rewrites that drop the ids
    ``replaced`` (by rows in ``written``) or ``deleted``. False, committing nothing, when
    there is nothing to do."""
    if written.num_rows == 0 and not replaced and not deleted:
        return False
    actions = pa.concat_tables([conform_actions(written), drop_rows(spark, lake, name, replaced, deleted)])
    return tables.commit_files(lake, name, actions, metadata)


def merge_staged(lake: Lake, name: str, frame, deletes: list[str]) -> tuple[bool, int]:
    """For a table with a change data feed (gold): executors stage ``frame``'s rows under
    ``lake/_staging/``, then one MERGE streams them (and key-only tombstones for ``deletes``),
    so the feed keeps row-level changes while the driver holds no rows. Returns (committed,
    rows upserted)."""
    remove_stale_staging(lake, name)
    # Named from its start time: S3 has no directory times, and a later run must tell its age.
    staging = table_files(lake, name, under=f"{int(time.time())}-{uuid.uuid4().hex[:16]}")
    try:
        staged = conform_actions(write_frame(frame, staging).toArrow()) if frame is not None \
            else FILE_ACTIONS.empty_table()
        if staged.num_rows == 0 and not deletes:
            return False, 0
        schema, keys = SCHEMAS[name], MERGE_KEYS[name]
        tombstones = pa.Table.from_arrays(
            [pa.array(deletes, f.type) if f.name in keys else pa.nulls(len(deletes), f.type) for f in schema],
            schema=schema)
        tables.merge_stream(lake, name, staged_reader(staging, staged.column("path").to_pylist(), tombstones),
                            deletes)
        return True, added_rows(staged)
    finally:
        remove_staging(staging)


def remove_stale_staging(lake: Lake, name: str, now: float | None = None) -> list[str]:
    """Remove the staging areas of ``name`` that killed runs left (older than STALE_STAGING_SECONDS);
    return their names."""
    runs = {info.key.split("/")[3] for info in lake.store.list(f"lake/_staging/{name}/")}
    cutoff = (time.time() if now is None else now) - STALE_STAGING_SECONDS
    stale = sorted(run for run in runs if _staging_started(run) < cutoff)
    for run in stale:
        remove_staging(table_files(lake, name, under=run))
    return stale


def _staging_started(run: str) -> int:
    head = run.split("-", 1)[0]
    return int(head) if head.isdigit() else 0  # a bare uuid: named before start times, stale


def conform_actions(data: pa.Table) -> pa.Table:
    return pa.Table.from_arrays([data.column(f.name).cast(f.type) if f.name in data.column_names
                                 else pa.array([0] * data.num_rows, f.type) for f in FILE_ACTIONS], schema=FILE_ACTIONS)


def added_rows(actions: pa.Table) -> int:
    adds = actions.filter(pc.equal(actions.column("op"), "add"))
    return int(pc.sum(adds.column("num_records")).as_py() or 0)
