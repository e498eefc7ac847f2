"""Fusion math on small fixed rankings, checked against hand-computed values."""

from __future__ import annotations

import pytest
from lakerag.search.fusion import convex, min_max, weighted_rrf

DENSE = ["a", "b", "c"]
LEXICAL = ["c", "d", "a"]


def scores(fused):
    return {doc: round(score, 6) for doc, score in fused}


def test_equal_weight_rrf_sums_reciprocal_ranks_and_breaks_ties_by_first_appearance():
    fused = weighted_rrf({"dense": DENSE, "lexical": LEXICAL}, {"dense": 1.0, "lexical": 1.0}, k=60)
    assert scores(fused) == {"a": round(1 / 61 + 1 / 63, 6), "b": round(1 / 62, 6),
                             "c": round(1 / 63 + 1 / 61, 6), "d": round(1 / 62, 6)}
    # a and c tie, as do b and d: the dense list's order decides.
    assert [doc for doc, _ in fused] == ["a", "c", "b", "d"]


def test_lexical_weight_scales_its_contribution():
    fused = weighted_rrf({"dense": DENSE, "lexical": LEXICAL}, {"dense": 1.0, "lexical": 0.3}, k=60)
    assert scores(fused) == {"a": round(1 / 61 + 0.3 / 63, 6), "b": round(1 / 62, 6),
                             "c": round(1 / 63 + 0.3 / 61, 6), "d": round(0.3 / 62, 6)}
    assert [doc for doc, _ in fused] == ["a", "c", "b", "d"]
    only_dense = weighted_rrf({"dense": DENSE, "lexical": LEXICAL}, {"dense": 1.0, "lexical": 0.0}, k=60)
    assert [doc for doc, _ in only_dense][:3] == DENSE


def test_missing_weight_defaults_to_one_and_k_zero_is_plain_reciprocal_rank():
    fused = weighted_rrf({"x": ["p", "q"], "y": ["q"]}, {}, k=0)
    assert scores(fused) == {"q": round(1 / 2 + 1, 6), "p": 1.0}
    assert [doc for doc, _ in fused] == ["q", "p"]


@pytest.mark.parametrize("dense_rank,lifted", [(2, True), (27, True), (28, False), (50, False)])
def test_default_weights_lift_an_exact_lexical_hit_above_the_dense_top_only_within_dense_rank_27(dense_rank, lifted):
    """With dense 1.0 / lexical 0.3 / k 60, the BM25 top chunk overtakes the dense top chunk
    (absent from BM25) iff 1/(60+r) + 0.3/61 > 1/61, i.e. its dense rank r <= 27."""
    dense = ["top"] + [f"filler{i}" for i in range(2, dense_rank)] + ["exact"]
    assert dense.index("exact") + 1 == dense_rank
    fused = weighted_rrf({"dense": dense, "lexical": ["exact"]}, {"dense": 1.0, "lexical": 0.3}, k=60)
    order = [doc for doc, _ in fused]
    assert (order.index("exact") < order.index("top")) is lifted


def test_rrf_rejects_negative_k():
    with pytest.raises(ValueError, match="k must be >= 0"):
        weighted_rrf({"dense": DENSE}, {}, k=-1)


def test_min_max_scales_to_unit_interval_and_constant_lists_to_one():
    assert min_max({"a": 3.0, "b": 1.0, "c": 2.0}) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert min_max({"a": 0.7, "b": 0.7}) == {"a": 1.0, "b": 1.0}
    assert min_max({}) == {}


def test_convex_combines_normalised_scores_and_counts_a_missing_document_as_zero():
    dense = {"a": 0.9, "b": 0.7, "c": 0.5}  # normalised: a 1, b 0.5, c 0
    lexical = {"c": 12.0, "d": 4.0}  # normalised: c 1, d 0
    fused = convex(dense, lexical, alpha=0.8)
    assert scores(fused) == {"a": 0.8, "b": 0.4, "c": 0.2, "d": 0.0}
    assert [doc for doc, _ in fused] == ["a", "b", "c", "d"]
    assert [doc for doc, _ in convex(dense, lexical, alpha=1.0)][:3] == ["a", "b", "c"]
    assert next(doc for doc, _ in convex(dense, lexical, alpha=0.0)) == "c"
    with pytest.raises(ValueError, match="alpha"):
        convex(dense, lexical, alpha=1.5)
