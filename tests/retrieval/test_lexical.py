"""The BM25 part of an index version: written inside the version directory, covered by
the manifest's checksums, loaded with the dense index, and optional for old versions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from lakerag.index.artifacts import IndexRejected, load_index_dir, verify_index_dir, write_index_dir
from lakerag.index.lexical import terms

TEXTS = [
    "The incident bridge is opened by the on-call engineer within five minutes.",
    "Ticket CC-0419 tracks the cost allocation tag rollout for the data platform.",
    "Marguerite Oyelaran-Fitzgibbon approves travel above the per-diem budget.",
    "The the of and",  # only stopwords: no BM25 terms, but the row must stay aligned
    "Cost allocation tags are reviewed every quarter by finance.",
]


def chunk_frame(texts: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({
        "chunk_id": [f"c{i}" for i in range(len(texts))], "doc_id": [f"d{i}" for i in range(len(texts))],
        "chunk_index": [0] * len(texts), "text": texts, "source": [f"raw/doc{i}.txt" for i in range(len(texts))],
        "title": [f"doc{i}" for i in range(len(texts))], "page": [None] * len(texts)})
    frame["chunk_index"] = frame["chunk_index"].astype("Int32")
    frame["page"] = frame["page"].astype("Int32")
    return frame


def vectors(n: int, dimension: int = 8) -> np.ndarray:
    found = np.random.default_rng(0).normal(size=(n, dimension)).astype(np.float32)
    return found / np.linalg.norm(found, axis=1, keepdims=True)


@pytest.fixture
def version_dir(tmp_path):
    path = tmp_path / "v1"
    write_index_dir(path, vectors(len(TEXTS)), chunk_frame(TEXTS), "test-model", gold_version=3, version="v1")
    return path


def test_bm25_files_live_in_the_version_and_the_manifest_checksums_them(version_dir):
    manifest = json.loads((version_dir / "manifest.json").read_text())
    lexical = manifest["lexical"]
    assert lexical["library"] == "bm25s" and lexical["documents"] == len(TEXTS)
    assert lexical["files"] and all(name.startswith("bm25.") for name in lexical["files"])
    assert set(lexical["files"]) <= set(manifest["files"])
    assert {p.name for p in version_dir.iterdir()} == {*manifest["files"], "manifest.json"}


def test_loaded_version_answers_lexical_queries_with_rows_aligned_to_faiss_ids(version_dir):
    index = load_index_dir(version_dir, "test-model", 8)
    assert index.lexical is not None and index.lexical.documents == index.vector_count == len(TEXTS)
    scores, ids = index.lexical.search("who approves travel, Marguerite?", 3)
    assert ids[0] == 2 and index.chunks["text"].iat[int(ids[0])].startswith("Marguerite")
    assert list(scores) == sorted(scores, reverse=True) and (scores > 0).all()
    scores, ids = index.lexical.search("CC-0419", 5)
    assert ids.tolist() == [1]  # "cc" and "0419" occur only there; zero-score rows are dropped
    scores, ids = index.lexical.search("cost allocation", 5)
    assert sorted(ids.tolist()) == [1, 4]
    scores, ids = index.lexical.search("cost allocation", 5, allowed=np.array([4, 0]))
    assert ids.tolist() == [4]
    assert index.lexical.search("quantum entanglement", 5)[1].tolist() == []
    assert index.lexical.search("the of and", 5)[1].tolist() == []  # a query of stopwords only


def test_covering_lists_exactly_the_chunks_holding_every_query_term(version_dir):
    index = load_index_dir(version_dir)
    for query in ["CC-0419", "cost allocation", "Marguerite Oyelaran-Fitzgibbon", "cost quarter", "nothing-here",
                  "the"]:
        wanted = set(terms(query))
        expected = [i for i, text in enumerate(TEXTS) if wanted and wanted <= set(terms(text))]
        assert index.lexical.covering(query).tolist() == expected, query
    assert index.lexical.covering("cost allocation").tolist() == [1, 4]
    assert index.lexical.covering("cost quarter").tolist() == [4]


def test_covering_does_not_require_the_question_word(version_dir):
    """A question word is rarely in the answer: "Who approves travel above the per-diem budget?"
    found no chunk holding every term, so the hybrid cut-off called such a question out of
    context whenever its dense score was low."""
    index = load_index_dir(version_dir)
    assert index.lexical.covering("Who approves travel above the per-diem budget?").tolist() == [2]
    assert index.lexical.covering("Which ticket tracks CC-0419?").tolist() == [1]
    assert index.lexical.covering("Which ticket tracks the volcano?").tolist() == []  # the other terms still count


def test_tampered_bm25_file_is_rejected(version_dir):
    vocab = version_dir / "bm25.vocab.json"
    words = json.loads(vocab.read_text())
    words["injected"] = len(words)
    vocab.write_text(json.dumps(words))
    with pytest.raises(IndexRejected, match="bm25.vocab.json fails its checksum"):
        load_index_dir(version_dir)


def test_missing_bm25_file_is_rejected(version_dir):
    (version_dir / "bm25.data.npy").unlink()
    with pytest.raises(IndexRejected, match="bm25.data.npy is missing"):
        verify_index_dir(version_dir)


def test_manifest_that_drops_a_lexical_file_from_its_checksums_is_rejected(version_dir):
    manifest = json.loads((version_dir / "manifest.json").read_text())
    del manifest["files"]["bm25.indices.npy"]
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexRejected, match="does not list bm25.indices.npy"):
        verify_index_dir(version_dir)


def test_version_without_lexical_files_loads_dense_only(tmp_path):
    path = tmp_path / "old"
    manifest = write_index_dir(path, vectors(len(TEXTS)), chunk_frame(TEXTS), "test-model", 1, version="old",
                               lexical=False)
    assert "lexical" not in manifest and not list(path.glob("bm25.*"))
    index = load_index_dir(path)
    assert index.lexical is None and index.vector_count == len(TEXTS)


def test_empty_version_has_an_empty_lexical_part(tmp_path):
    path = tmp_path / "empty"
    manifest = write_index_dir(path, np.zeros((0, 8), np.float32), chunk_frame([]), "test-model", 1,
                               version="empty")
    assert manifest["lexical"]["documents"] == 0 and manifest["lexical"]["files"] == []
    index = load_index_dir(path)
    assert index.lexical is not None and index.lexical.search("anything", 5)[1].tolist() == []
    assert index.lexical.covering("anything").tolist() == []
