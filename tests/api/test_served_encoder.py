"""An index another encoder built: served when this process's encoder makes its vectors again,
refused (saying what to set) when it does not."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from .conftest import publish

SAME_MODEL_OTHER_BYTES = "b" * 64


def _other_export(embedder) -> dict:
    """The identity of an export of the same model with other bytes (as after an image upgrade)."""
    return {**embedder.encoder, "sha256": SAME_MODEL_OTHER_BYTES}


def _index_built_by(tmp_path, embedder, sample_vectors, encoder: dict, vectors=None, index_type: str = "flat"):
    from lakerag.index.artifacts import write_index_dir

    chunks, made = sample_vectors
    path = tmp_path / "built"
    write_index_dir(path, made if vectors is None else vectors, chunks, embedder.name, gold_version=1,
                    index_type=index_type, version="20260301T000000Z-otherexport", extra={"encoder": encoder})
    return path


def test_an_index_an_export_of_other_bytes_built_is_served_when_the_vectors_agree(local_settings, embedder,
                                                                                 sample_vectors, start_api,
                                                                                 tmp_path):
    """After an upgrade whose image bakes a new export (same model, other bytes), the new API pods
    refused the served index until the next DAG run embedded every chunk again: no search at all
    in between."""
    publish(local_settings, _index_built_by(tmp_path, embedder, sample_vectors, _other_export(embedder)))
    with start_api(local_settings) as api:
        status = api.client.get("/index").json()
        assert status["loaded"] and status["version"] == "20260301T000000Z-otherexport", status
        assert "makes the same vectors" in status["encoder_check"] and SAME_MODEL_OTHER_BYTES[:12] in status["encoder_check"]
        hits = api.client.post("/search", json={"query": "How much per diem for meals abroad?", "k": 3}).json()
        assert hits["hits"] and hits["hits"][0]["source"] == "raw/employee-travel-policy.pdf", hits


def test_an_index_whose_vectors_this_encoder_does_not_make_is_refused(local_settings, embedder, sample_vectors,
                                                                      start_api, tmp_path):
    _, made = sample_vectors
    # Another model's vectors: the same shape, each a little off (cosine ~0.99 to this encoder's).
    noise = np.random.default_rng(7).normal(size=made.shape).astype(np.float32)
    other = made + 0.15 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    publish(local_settings, _index_built_by(tmp_path, embedder, sample_vectors, _other_export(embedder), other))
    with start_api(local_settings) as api:
        status = api.client.get("/index").json()
        assert not status["loaded"], status
        assert "built by encoder" in status["last_error"] and "lowest cosine 0.9" in status["last_error"], status
        assert "LAKERAG_ENCODER" in status["last_error"]  # still says what to set


def test_the_same_encoder_is_served_without_encoding_anything(embedder, sample_vectors, monkeypatch, tmp_path):
    """The check encodes chunks only when the recorded encoder differs."""
    from lakerag.encoder_identity import check_served_encoder
    from lakerag.index.artifacts import load_index_dir

    loaded = load_index_dir(_index_built_by(tmp_path, embedder, sample_vectors, dict(embedder.encoder)),
                            embedder.name)
    monkeypatch.setattr(embedder, "encode_passages", lambda *_: pytest.fail("encoded chunks for the same encoder"))
    check_served_encoder(loaded, embedder)
    assert loaded.encoder_check == "built by this encoder"
    check_served_encoder(loaded, SimpleNamespace(encoder={}))  # an embedder made by hand (tests, benches)
    assert loaded.encoder_check == "not checked: this process's encoder has no identity"


def test_an_hnsw_index_gives_its_vectors_back_for_the_check(embedder, sample_vectors, tmp_path):
    """Past 200k chunks a version is HNSW (production's size): its stored vectors are compared too."""
    from lakerag.encoder_identity import check_served_encoder
    from lakerag.index.artifacts import load_index_dir

    loaded = load_index_dir(_index_built_by(tmp_path, embedder, sample_vectors, _other_export(embedder),
                                            index_type="hnsw"), embedder.name)
    check_served_encoder(loaded, embedder)
    assert "makes the same vectors" in loaded.encoder_check


def test_torch_serves_an_index_the_onnx_export_built(embedder, sample_vectors, tmp_path):
    """The torch variant of the API (for the reranker) refused the index the ONNX embeddings job
    published, though sentence-transformers makes the same vectors."""
    from lakerag import config
    from lakerag.embedding import load_embedder
    from lakerag.encoder_identity import check_served_encoder
    from lakerag.index.artifacts import load_index_dir

    assert embedder.encoder["runtime"] == "onnx"
    on_torch = load_embedder(config.from_env({"LAKERAG_ENCODER": "torch"}))
    loaded = load_index_dir(_index_built_by(tmp_path, embedder, sample_vectors, dict(embedder.encoder)),
                            embedder.name)
    check_served_encoder(loaded, on_torch)
    assert loaded.encoder_check.startswith("built by onnx") and "torch" in loaded.encoder_check


def test_an_index_whose_vectors_cannot_be_read_back_is_refused_as_before(embedder, sample_vectors, tmp_path):
    """IVF with 8-bit codes keeps codes, not the vectors: nothing to compare, so the recorded
    encoder decides, as it did before."""
    from lakerag.encoder_identity import check_served_encoder
    from lakerag.index.artifacts import IndexRejected, load_index_dir

    loaded = load_index_dir(_index_built_by(tmp_path, embedder, sample_vectors, _other_export(embedder),
                                            index_type="ivf"), embedder.name)
    with pytest.raises(IndexRejected, match="Its vectors cannot be read back .*direct map not initialized"):
        check_served_encoder(loaded, embedder)


def test_a_replayed_version_an_export_of_other_bytes_built_is_answered(local_settings, embedder, sample_index,
                                                                       sample_vectors, start_api, tmp_path):
    publish(local_settings, _index_built_by(tmp_path, embedder, sample_vectors, _other_export(embedder)))
    served = publish(local_settings, sample_index)
    with start_api(local_settings) as api:
        assert api.client.get("/index").json()["version"] == served
        replayed = api.client.post("/search", json={"query": "per diem for meals abroad", "k": 3,
                                                    "as_of": "20260301T000000Z-otherexport"})
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["lineage"]["index_version"] == "20260301T000000Z-otherexport"
