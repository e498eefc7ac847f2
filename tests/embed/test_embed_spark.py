"""The embeddings job on Spark executors (`lakerag pipeline embed --spark`): the same table
contents as the single-process job, incremental, idempotent, deletes; real Spark local[2],
the packaged model in each executor, real Delta."""

from __future__ import annotations

import numpy as np
import pytest
from lakerag.index.publish import run_index
from lakerag.lake import Lake, tables

from .gold import document, synthetic_docs, write_gold

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    from lakerag.config import Settings
    from lakerag_spark.session import spark_session
    from pyspark.sql import SparkSession

    owned = SparkSession.getActiveSession() is None
    session = spark_session(Settings(spark_master="local[2]"), app_name="lakerag-tests-embed")
    yield session
    if owned:
        session.stop()


def vectors_by_id(lake: Lake, model: str) -> dict[str, np.ndarray]:
    rows = tables.model_rows(tables.snapshot(lake, "embeddings"), model, ["chunk_id", "vector"])
    return {c: np.asarray(v, np.float32) for c, v in zip(rows.column("chunk_id").to_pylist(),
                                                         rows.column("vector").to_pylist())}


def test_executors_embed_gold_like_the_single_process_job(spark, local_settings, embedder):
    from lakerag_spark.embed import run_embed_spark

    settings = local_settings.replace(spark_master="local[2]")
    lake = Lake.open(settings)
    docs = synthetic_docs(6)
    write_gold(lake, docs)
    summary = run_embed_spark(spark, settings)
    assert summary["ok"] and summary["committed"] and summary["embedded"] == 18
    got = vectors_by_id(lake, settings.embedding_model)
    rows = [row for key, paragraphs in sorted(docs.items()) for row in document(key, paragraphs)]
    expected = embedder.encode_passages([r["text"] for r in rows])
    assert set(got) == {r["chunk_id"] for r in rows}
    cosines = [float(got[r["chunk_id"]] @ expected[i]) for i, r in enumerate(rows)]
    assert min(cosines) > 0.999  # same model, same vectors, whichever process encoded them

    version = tables.version(lake, "embeddings")
    again = run_embed_spark(spark, settings)
    assert not again["committed"] and again["embedded"] == 0 and tables.version(lake, "embeddings") == version

    # One document gone, one new: only its chunks are encoded, the gone ones' vectors dropped.
    del docs["raw/doc-00000.txt"]
    docs.update(synthetic_docs(1, start=50))
    write_gold(lake, docs)
    changed = run_embed_spark(spark, settings)
    assert changed["embedded"] == 3 and changed["deleted"] == 3
    gold_ids = set(tables.read_arrow(lake, "gold", ["chunk_id"]).column("chunk_id").to_pylist())
    assert set(vectors_by_id(lake, settings.embedding_model)) == gold_ids

    # A full rebuild replaces every vector (no duplicates), and the index builds from them.
    rebuilt = run_embed_spark(spark, settings, full_rebuild=True)
    assert rebuilt["embedded"] == len(gold_ids) == tables.row_count(lake, "embeddings")
    assert run_index(settings)["vector_count"] == len(gold_ids)


def test_executors_check_another_encoder_against_the_stored_vectors(spark, local_settings, embedder, monkeypatch):
    """torch for ONNX makes the same vectors: the Spark job keeps every row, as the single-process
    job does, and makes the few vectors it compares on an executor, never in the driver."""
    from lakerag import embed_job, embedding
    from lakerag_spark.embed import run_embed_spark

    settings = local_settings.replace(spark_master="local[2]")
    lake = Lake.open(settings)
    write_gold(lake, synthetic_docs(3))
    assert run_embed_spark(spark, settings)["embedded"] == 9
    version = tables.version(lake, "embeddings")

    def not_in_the_driver(_settings):
        raise AssertionError("the driver loaded the model")

    monkeypatch.setattr(embedding, "load_embedder", not_in_the_driver)
    monkeypatch.setattr(embed_job, "load_embedder", not_in_the_driver)
    summary = run_embed_spark(spark, settings.replace(encoder="torch"))
    assert summary["embedded"] == 0 and "over 8 of its chunks" in summary["same_vectors"], summary
    assert tables.version(lake, "embeddings") == version
