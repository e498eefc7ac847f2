"""The adaptive fusion rule on fixed word pieces, queries and rankings (no model, no index)."""

from __future__ import annotations

import pytest
from lakerag.adaptive import (
    Signals,
    adaptive_weights,
    identifier_likeness,
    lexical_match,
    query_signals,
    tokenizer_coverage,
)
from lakerag.search.fusion import weighted_rrf

# Word pieces as the packaged MiniLM (BERT uncased WordPiece) cuts these queries.
ENGLISH = ["what", "is", "the", "capital", "of", "france"]
ARABIC = ["م", "##ا", "ه", "##ي", "ع", "##ا", "##ص", "##م", "##ة"]
CHINESE = ["北", "京", "[UNK]", "中", "国"]
CODE = ["e", "##10", "##38"]


def test_tokenizer_coverage_is_high_for_words_and_zero_letter_by_letter_or_unknown():
    assert tokenizer_coverage(ENGLISH) == 1.0
    assert tokenizer_coverage(ARABIC) == 0.0
    assert tokenizer_coverage(CHINESE) == 0.0
    assert tokenizer_coverage(CODE) == pytest.approx((5 / 3 - 1.5) / 1.5)
    assert tokenizer_coverage(["-", "?"]) == 1.0  # nothing to judge
    assert tokenizer_coverage(["▁capital", "▁of", "▁france"]) == 1.0  # sentencepiece markers


@pytest.mark.parametrize("query,expected", [
    ("E1038", 1.0),
    ("CG-5136", 1.0),
    ("Oyelaran-Fitzgibbon", 1.0),
    ("Ångström-Øberg", 1.0),
    ("what is the capital of france", 0.0),
    ("John Lennon parents", 0.0),  # capitalised words in a question are not codes: the model knows names
    ("Jóhann Þorvaldsson", 1.0),  # a bare name is a lookup
    ("Rhône", 1.0),
    ("Where is Tarnwick", 0.0),  # a question, not a bare name
    ("Who signed contract HX-77?", 0.25),  # one code among 4 content tokens ("who" is no stopword)
    ("self-driving cars", 0.0),  # a lower-case hyphenated word is a word
])
def test_identifier_likeness(query, expected):
    assert identifier_likeness(query) == expected


def test_identifier_likeness_fades_for_long_queries():
    long = "is the E1038 fault code on the pump related to pressure loss in the cooling circuit of the plant"
    assert identifier_likeness(long) == 0.0


def test_lexical_match_is_the_share_of_query_terms_in_the_top_hit():
    assert lexical_match(["cc", "0419"], ["valve", "cc", "0419", "cc"]) == 1.0
    assert lexical_match(["cc", "0419"], ["cc"]) == 0.5
    assert lexical_match([], ["cc"]) == 0.0
    assert lexical_match(["cc"], []) == 0.0


def test_rule_natural_english_question_leans_on_dense():
    assert adaptive_weights(Signals(coverage=1.0, identifier=0.0, lexical_match=1.0)) == \
        adaptive_weights(Signals(coverage=1.0)) and adaptive_weights(Signals(coverage=1.0)).dense == 1.0
    assert adaptive_weights(Signals(coverage=1.0)).lexical == 0.1


def test_rule_uncovered_script_or_exact_code_goes_lexical():
    for signals in (Signals(coverage=0.0), Signals(coverage=1.0, identifier=1.0, lexical_match=1.0)):
        weights = adaptive_weights(signals)
        assert (weights.dense, weights.lexical, weights.lexical_share) == (0.0, 1.0, 1.0)
    # A code BM25 does not find exactly keeps dense in play.
    half = adaptive_weights(Signals(coverage=1.0, identifier=1.0, lexical_match=0.5))
    assert (half.dense, half.lexical) == (0.5, 0.55)


DENSE = ["d1", "d2", "d3", "x"]
LEXICAL = ["x", "l2", "d3"]


def fuse(signals):
    weights = adaptive_weights(signals)
    return [doc for doc, _ in weighted_rrf({"dense": DENSE, "lexical": LEXICAL},
                                           {"dense": weights.dense, "lexical": weights.lexical})]


def test_on_fixed_rankings_natural_query_follows_dense_and_code_query_takes_lexical_order():
    # 1.0 / 0.1 at k 60: agreement lifts d3 (1.1/63) and x (1/64 + 0.1/61) over d1 (1/61).
    assert fuse(Signals(coverage=1.0)) == ["d3", "x", "d1", "d2", "l2"]
    assert fuse(Signals(coverage=1.0, identifier=1.0, lexical_match=1.0)) == ["x", "l2", "d3", "d1", "d2"]
    # Arabic under an English model: lexical order; dense-only hits follow, in dense order.
    assert fuse(Signals(coverage=0.0)) == ["x", "l2", "d3", "d1", "d2"]


def test_query_signals_combine_tokenizer_query_and_top_hit():
    signals = query_signals("CC-0419", lambda q: ["cc", "-", "04", "##19"], ["cc", "0419"], ["cc", "0419"])
    assert signals == Signals(coverage=pytest.approx(1 / 3), identifier=1.0, lexical_match=1.0)
    assert adaptive_weights(signals).lexical == 1.0
    assert query_signals("x", None, [], []).coverage == 1.0

