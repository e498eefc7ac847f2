"""Each search step on its own, over a small real index version (FAISS + BM25 written and
loaded like a published one); vectors are hand-made so every expected order is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lakerag.index.artifacts import load_index_dir, write_index_dir
from lakerag.search import Fusion, Ranked, Reranker, cutoff, filters, hits_for, retrieve

TEXTS = ["solar panels make electricity", "the river floods in spring", "bread needs a cold fermentation",
         "solar farms cover the hills", "invoice code CC-0419 is overdue"]
DIMENSION = 4


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("steps")
    vectors = np.eye(len(TEXTS), DIMENSION, dtype=np.float32)
    vectors[4] = [0.6, 0.0, 0.0, 0.8]  # closest to row 0 after row 0 itself
    chunks = pd.DataFrame({
        "chunk_id": [f"c{i}" for i in range(len(TEXTS))], "doc_id": ["a", "b", "a", "c", "c"],
        "chunk_index": pd.array([1, 0, 0, 0, 1], dtype="Int32"), "text": TEXTS,
        "source": ["raw/a.txt", "raw/b.txt", "raw/a.txt", "raw/sub/c.pdf", "raw/sub/c.pdf"],
        "title": ["a", "b", "a", "c", "c"], "page": pd.array([None, None, None, 1, 2], dtype="Int32")})
    write_index_dir(path, vectors, chunks, "test-model", gold_version=1, version="20260101T000000Z-steps")
    return load_index_dir(path)


QUERY = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)


def test_filters_select_rows_by_document_and_source_prefix(index):
    assert filters.allowed_rows(index) is None
    assert filters.allowed_rows(index, doc_id="a").tolist() == [0, 2]
    assert filters.allowed_rows(index, source_prefix="raw/sub/").tolist() == [3, 4]
    assert filters.allowed_rows(index, doc_id="a", source_prefix="raw/sub/").tolist() == []
    assert filters.no_match_reason("a", None) == "no indexed chunk matches the filter doc_id='a'"


def test_a_source_prefix_without_raw_says_sources_start_with_raw():
    # Sources are raw/ keys: "policies/" matches nothing, and the reason says what would.
    assert filters.no_match_reason(None, "policies/") == (
        "no indexed chunk matches the filter source_prefix='policies/'; sources are keys under raw/: "
        "try source_prefix='raw/policies/'")
    assert filters.no_match_reason(None, "raw/nope/") == "no indexed chunk matches the filter source_prefix='raw/nope/'"


def test_dense_ranks_by_cosine_and_honours_allowed_rows(index):
    ranked = retrieve.dense(index, QUERY, 3)
    assert ranked.ids.tolist()[:2] == [0, 4] and ranked.scores[:2] == pytest.approx([1.0, 0.6])
    only = retrieve.dense(index, QUERY, 3, allowed=np.array([1, 4]))
    assert only.ids.tolist()[0] == 4 and set(only.ids.tolist()) <= {1, 4}
    # More rows asked for than the index holds: FAISS pads with -1, which never reaches a caller.
    everything = retrieve.dense(index, QUERY, 10)
    assert sorted(everything.ids.tolist()) == [0, 1, 2, 3, 4] and len(everything.scores) == 5


def test_lexical_keeps_only_rows_holding_a_query_term(index):
    scores = index.lexical_scores("solar power")
    assert sorted(retrieve.lexical(scores, 10).ids.tolist()) == [0, 3]
    assert retrieve.lexical(scores, 10, allowed=np.array([3])).ids.tolist() == [3]
    assert len(retrieve.lexical(index.lexical_scores("volcano"), 10)) == 0
    assert index.covering("CC-0419").tolist() == [4]


def test_fusion_merges_both_lists_and_its_weights_decide_the_order():
    dense, lexical = Ranked.of([0, 1, 2], [0.9, 0.8, 0.7]), Ranked.of([2, 3], [5.0, 1.0])
    assert Fusion(1.0, 0.3).fuse(dense, lexical).ids.tolist() == [2, 0, 1, 3]  # in both lists: first
    assert Fusion(1.0, 0.0).fuse(dense, lexical).ids.tolist() == [0, 1, 2, 3]
    assert Fusion(0.1, 1.0).fuse(dense, lexical).ids.tolist()[:2] == [2, 3]
    assert Fusion().fuse(Ranked.empty(), Ranked.empty()).ids.tolist() == []


def test_cutoff_drops_weak_rows_keeps_exact_ones_and_flags_out_of_context():
    candidates = Ranked.of([0, 1, 2], [0.9, 0.5, 0.2])
    dense_of = {0: 0.9, 1: 0.5, 2: 0.2}
    limits = cutoff.Cutoffs(min_score=0.3, relative=0.6)
    none_exact = np.zeros(3, dtype=bool)
    assert cutoff.apply(candidates, dense_of, 0.9, none_exact, limits).ids.tolist() == [0]  # floor 0.54
    assert cutoff.apply(candidates, dense_of, 0.9, np.array([False, False, True]), limits).ids.tolist() == [0, 2]
    assert cutoff.apply(candidates, {0: 0.2, 1: 0.1, 2: 0.1}, 0.2, none_exact, limits) is None
    everyone_clears = cutoff.apply(candidates, dense_of, 0.9, None, cutoff.Cutoffs(min_score=0.0, relative=0.0))
    assert everyone_clears.ids.tolist() == candidates.ids.tolist()
    assert "below the relevance cut-off 0.30" in cutoff.out_of_context_reason(0.2, limits, "m", hybrid=False)


class LengthScorer:
    """Stands in for a CrossEncoder's ``predict``: longer text, higher score."""

    def predict(self, pairs, show_progress_bar=False):
        return [float(len(text)) for _, text in pairs]


def test_rerank_reorders_the_first_candidates_by_the_model_scores(index):
    reranker = Reranker(name="length", model=LengthScorer(), candidates=3)
    ranked = reranker.rerank(index, "q", Ranked.of([0, 1, 2, 3], [4, 3, 2, 1]))
    assert ranked.ids.tolist() == [2, 0, 1]  # row 3 is beyond the candidates
    assert ranked.scores.tolist() == [float(len(TEXTS[i])) for i in (2, 0, 1)]


def test_hits_carry_rank_score_and_the_chunk_fields(index):
    hits = hits_for(index, Ranked.of([3, 0], [0.5, 0.25]))
    assert [h["rank"] for h in hits] == [1, 2] and [h["score"] for h in hits] == [0.5, 0.25]
    assert hits[0] == {"rank": 1, "score": 0.5, "doc_id": "c", "chunk_id": "c3", "chunk_index": 0,
                       "text": TEXTS[3], "source": "raw/sub/c.pdf", "title": "c", "page": 1,
                       "source_version": None, "content_hash": None}  # lineage: not in this version
    assert hits[1]["page"] is None
    assert index.document_rows("a").tolist() == [2, 0]  # chunk order, not row order
