"""Raw files -> Spark ETL (run_etl) -> embeddings -> published index, incremental end to end."""

from __future__ import annotations

import os
import sys

import pytest
from lakerag.embed_job import run_embed
from lakerag.index.publish import load_current, published_versions, run_index
from lakerag.lake import Lake, doc_id_for, tables

pytestmark = pytest.mark.slow

DOCS = {
    "raw/bees.txt": "Honey bees communicate the direction of flowers with a waggle dance. The hive keeps a steady "
                    "temperature in winter by shivering flight muscles.",
    "raw/rail.md": "# Night trains\n\nSleeper trains connect Vienna with Hamburg and Brussels. Couchettes hold six "
                   "berths and breakfast is served before arrival.",
    "raw/tax.txt": "Quarterly VAT returns are due one month after the end of the quarter. Late filing adds a "
                   "surcharge of two percent of the outstanding amount.",
}
NEW_DOC = ("raw/volcano.txt", ("Basaltic lava flows are fluid and travel far from the vent. Explosive eruptions "
                               "come from viscous magma rich in silica and dissolved gas."))


@pytest.fixture(scope="module", autouse=True)
def spark_python():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def gold_chunk_ids(lake: Lake, key: str) -> set[str]:
    gold = tables.read_pandas(lake, "gold")
    return set(gold.loc[gold["doc_id"] == doc_id_for(key), "chunk_id"])


def run(settings) -> tuple[dict, dict, dict]:
    from lakerag_spark.pipeline import run_etl

    etl = run_etl(settings)
    assert etl["ok"], etl.get("error")
    return etl, run_embed(settings), run_index(settings)


def test_pipeline_is_incremental_from_raw_files_to_the_index(local_settings, embedder, tmp_path):
    lake = Lake.open(local_settings)
    for key, text in DOCS.items():
        lake.store.put(key, text.encode())

    _, embed, index = run(local_settings)
    gold_rows = tables.read_pandas(lake, "gold")
    assert embed["embedded"] == len(gold_rows) >= 3
    assert index["published"] and index["vector_count"] == len(gold_rows)

    _, embed, index = run(local_settings)  # nothing changed
    assert embed["embedded"] == 0 and not embed["committed"]
    assert not index["published"] and len(published_versions(lake.store)) == 1

    lake.store.put(*NEW_DOC[:1], NEW_DOC[1].encode())
    _, embed, index = run(local_settings)
    new_chunks = gold_chunk_ids(lake, NEW_DOC[0])
    assert new_chunks and embed["embedded"] == len(new_chunks) and embed["deleted"] == 0
    assert index["published"]
    loaded = load_current(lake.store, tmp_path / "serving", embedder.name, embedder.dimension)
    _, ids = loaded.search(embedder.encode_queries(["what makes a volcanic eruption explosive"]), k=1)
    assert loaded.chunks.loc[ids[0, 0], "doc_id"] == doc_id_for(NEW_DOC[0])

    removed = gold_chunk_ids(lake, "raw/tax.txt")
    lake.store.delete("raw/tax.txt")
    _, embed, index = run(local_settings)
    assert embed["deleted"] == len(removed) and embed["embedded"] == 0
    loaded = load_current(lake.store, tmp_path / "serving", embedder.name, embedder.dimension)
    assert doc_id_for("raw/tax.txt") not in set(loaded.chunks["doc_id"])
    assert loaded.vector_count == index["vector_count"] == len(tables.read_pandas(lake, "gold"))
