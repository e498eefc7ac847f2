"""`lakerag pipeline embed --spark`: the embeddings job for backfills, on Spark executors.

Same contract as ``lakerag.embed_job.run_embed`` (the default, one process, for small
changes): encode the gold chunks without a vector of the configured model, drop the vectors
of chunks gone from gold. Here each executor's Python worker loads the encoder once
(``load_embedder`` caches it per process; either backend, LAKERAG_ENCODER), encodes Arrow
batches of its partition with one thread per task (Spark runs one task per core), and writes
the vectors as files of the embeddings table; the driver sees chunk ids and file records and
commits one transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pyarrow as pa
from lakerag.config import Settings
from lakerag.embed_job import EmbedPlan, current_encoder
from lakerag.lake import Lake, summarises_a_crash, tables
from lakerag.lake.files import FileWriter

from lakerag_spark.frames import read_table
from lakerag_spark.session import for_executors
from lakerag_spark.writes import FILE_ACTIONS, FILE_ACTIONS_SPARK, added_rows, commit_files, conform_actions

log = logging.getLogger(__name__)
ENCODE_GROUP = 256  # texts per encode call inside a task


def remake_on_an_executor(spark, settings: Settings):
    """``texts -> vectors`` made by one executor task: the plan's check of a few stored vectors
    against a changed encoder, without loading the model into the driver."""
    settings = for_executors(settings)

    def remake(texts: list[str]):
        def run(_):
            from lakerag.embedding import load_embedder

            yield load_embedder(settings).encode_passages(texts)

        return spark.sparkContext.parallelize([0], 1).mapPartitions(run).collect()[0]

    return remake


def encode_and_write(settings: Settings, gold_version: int):
    """Executor function: (chunk_id, text) batches in, embeddings files written, FILE_ACTIONS out."""
    settings = for_executors(settings)
    target = tables.table_files(Lake.open(settings), "embeddings")

    def run(batches):
        import os

        import numpy as np
        from lakerag.embedding import load_embedder

        os.environ["OMP_NUM_THREADS"] = "1"  # one task per core: more threads only oversubscribe
        embedder = load_embedder(settings)
        writer = FileWriter(target)
        now = datetime.now(UTC)
        for batch in batches:
            ids = batch.column("chunk_id").to_pylist()
            texts = [t or "" for t in batch.column("text").to_pylist()]
            for start in range(0, len(ids), ENCODE_GROUP):
                part = ids[start:start + ENCODE_GROUP]
                matrix = embedder.encode_passages(texts[start:start + ENCODE_GROUP])
                offsets = pa.array(np.arange(len(part) + 1, dtype=np.int32) * embedder.dimension, pa.int32())
                rows = pa.Table.from_arrays(
                    [pa.array(part, pa.string()), pa.array([settings.embedding_model] * len(part), pa.string()),
                     pa.array([embedder.dimension] * len(part), pa.int32()),
                     pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), pa.float32())),
                     pa.array([gold_version] * len(part), pa.int64()),
                     pa.array([now] * len(part), pa.timestamp("us", tz="UTC"))],
                    schema=tables.SCHEMAS["embeddings"])
                yield from writer.add(rows)
        yield from writer.close()

    return run


@summarises_a_crash("embed")
def run_embed_spark(spark, settings: Settings, full_rebuild: bool = False) -> dict:
    lake = Lake.open(settings)
    model = settings.embedding_model
    plan = EmbedPlan.make(lake, model, full_rebuild, "pipeline embed (spark)", encoder=current_encoder(settings),
                          remake=remake_on_an_executor(spark, settings))
    if plan.done is not None:
        return plan.done
    written = FILE_ACTIONS.empty_table()
    if plan.to_embed:
        # a chunk gold holds twice (runs that overlapped) gets one vector
        chunks = read_table(spark, lake, "gold", ["chunk_id", "text"]).dropDuplicates(["chunk_id"])
        if plan.to_embed != plan.gold_ids:
            wanted = spark.createDataFrame([(c,) for c in sorted(plan.to_embed)], "chunk_id string")
            chunks = chunks.join(wanted.hint("broadcast"), "chunk_id")
        chunks = chunks.repartition(spark.sparkContext.defaultParallelism)
        written = conform_actions(chunks.mapInArrow(encode_and_write(settings, plan.gold_version),
                                                    FILE_ACTIONS_SPARK).toArrow())
    committed = commit_files(spark, lake, "embeddings", written, {(model, c) for c in plan.to_embed & plan.have},
                             {(model, c) for c in plan.to_delete},
                             metadata={"lakerag.model": model, "lakerag.gold_version": str(plan.gold_version)})
    return plan.finish(embedded=added_rows(written), deleted=len(plan.to_delete), committed=committed,
                       embeddings_version=tables.version(lake, "embeddings"),
                       executors=spark.sparkContext.defaultParallelism)
