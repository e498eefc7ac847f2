"""The lexical index is versioned with the dense one: publish v1, publish v2 with other
chunks, swap, and both dense and lexical search answer from v2; a tampered BM25 file is
refused and the old version keeps serving; a dense-only version still serves."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lakerag.index.artifacts import write_index_dir
from lakerag.lake import INDEX_PREFIX
from lakerag.store import open_store

from .conftest import publish

NEW_DOC = ("Vendor onboarding record QZ-5583: the Halvorsen-Mbatha freight account is settled through the "
           "Rotterdam clearing desk every second Tuesday.")


def write_version(path, embedder, chunks: pd.DataFrame, vectors: np.ndarray, version: str, lexical: bool = True):
    write_index_dir(path, vectors, chunks, embedder.name, gold_version=1, version=version, lexical=lexical)
    return path


def with_new_document(chunks: pd.DataFrame, vectors: np.ndarray, embedder):
    """v2: the travel policy removed, one new document added."""
    keep = (chunks["source"] != "raw/employee-travel-policy.pdf").to_numpy()
    row = {"chunk_id": "new-vendor-0", "doc_id": "newvendor0000000", "chunk_index": 0, "text": NEW_DOC,
           "source": "raw/new-vendor.txt", "title": "new vendor", "page": None}
    added = pd.DataFrame([row]).astype({"chunk_index": "Int32", "page": "Int32"})
    frame = pd.concat([chunks[keep], added], ignore_index=True)
    return frame, np.vstack([vectors[keep], embedder.encode_passages([NEW_DOC])])


def search(api, query: str, mode: str, k: int = 5) -> dict:
    response = api.client.post("/search", json={"query": query, "k": k, "mode": mode})
    assert response.status_code == 200, response.text
    return response.json()


def test_swap_switches_dense_and_lexical_together_and_a_tampered_bm25_file_is_refused(
        tmp_path, local_settings, embedder, sample_vectors, start_api):
    chunks, vectors = sample_vectors
    v1 = publish(local_settings, write_version(tmp_path / "v1", embedder, chunks, vectors, "20260101T000000Z-lex1"))
    with start_api(local_settings) as api:
        assert search(api, "QZ-5583", "lexical")["matched"] is False  # not in v1
        travel = search(api, "hotel cap per night business travel", "lexical")
        assert travel["index_version"] == v1
        assert "raw/employee-travel-policy.pdf" in {h["source"] for h in travel["hits"]}

        chunks2, vectors2 = with_new_document(chunks, vectors, embedder)
        v2 = publish(local_settings, write_version(tmp_path / "v2", embedder, chunks2, vectors2,
                                                   "20260102T000000Z-lex2"))
        reload = api.client.post("/admin/reload").json()
        assert reload["changed"] is True and reload["version"] == v2
        for mode in ("dense", "lexical", "hybrid"):
            body = search(api, "Which account does QZ-5583 settle through the Rotterdam clearing desk?", mode)
            assert body["index_version"] == v2 and body["mode"] == mode
            assert body["hits"][0]["source"] == "raw/new-vendor.txt", (mode, body["hits"][0])
            gone = search(api, "hotel cap per night business travel", mode, k=20)
            assert "raw/employee-travel-policy.pdf" not in {h["source"] for h in gone["hits"]}, mode
        lexical = search(api, "QZ-5583", "lexical")
        assert [h["source"] for h in lexical["hits"]] == ["raw/new-vendor.txt"]
        assert lexical["hits"][0]["lexical_rank"] == 1 and lexical["hits"][0]["lexical_score"] > 0

        # v3 in the store with one BM25 file altered after publishing: refused, v2 keeps serving.
        v3 = publish(local_settings, write_version(tmp_path / "v3", embedder, chunks, vectors,
                                                   "20260103T000000Z-lex3"))
        store = open_store(local_settings.store_uri)
        key = f"{INDEX_PREFIX}{v3}/bm25.vocab.json"
        store.put(key, store.get(key).replace(b'"hotel"', b'"motel"'))
        reload = api.client.post("/admin/reload").json()
        assert reload["changed"] is False and reload["version"] == v2
        status = api.client.get("/index").json()
        assert status["version"] == v2 and status["reload_failures"] == 1
        assert "bm25.vocab.json" in status["last_error"] and "checksum" in status["last_error"]
        assert search(api, "QZ-5583", "lexical")["index_version"] == v2


def test_version_without_lexical_part_serves_dense_and_says_so(tmp_path, local_settings, embedder, sample_vectors,
                                                              start_api):
    chunks, vectors = sample_vectors
    old = publish(local_settings, write_version(tmp_path / "old", embedder, chunks, vectors,
                                                "20250101T000000Z-old1", lexical=False))
    with start_api(local_settings) as api:
        dense = search(api, "How long are incident postmortems kept?", "dense")
        for mode in ("hybrid", "lexical"):
            body = search(api, "How long are incident postmortems kept?", mode)
            assert body["index_version"] == old and body["mode"] == "dense"
            assert "no lexical (BM25) part" in body["note"] and "--full-rebuild" in body["note"]
            assert [h["chunk_id"] for h in body["hits"]] == [h["chunk_id"] for h in dense["hits"]]
        assert dense["note"] is None
        assert api.client.get("/index").json()["search_modes"] == ["dense"]
