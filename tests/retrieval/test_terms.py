"""BM25 terms for non-Latin scripts, and versions keeping the tokenizer they were built with."""

from __future__ import annotations

import json

import bm25s
import pytest
from lakerag.index.artifacts import IndexRejected
from lakerag.index.lexical import load_lexical, write_lexical
from lakerag.terms import LEGACY_TOKENIZER, TOKENIZER, arabic_stem, terms


def test_a_single_cjk_character_and_a_cjk_word_are_both_terms():
    assert terms("水") == ["水"]
    assert terms("北京大学") == ["北", "京", "大", "学", "北京", "京大", "大学"]
    # The query's bigram is found in the text's bigrams, whatever the word boundaries.
    assert set(terms("北京")) <= set(terms("我在北京大学读书"))
    assert terms("かな カナ") == ["か", "な", "かな", "カ", "ナ", "カナ"]


def test_mixed_latin_and_cjk_keeps_the_latin_part_as_a_word():
    assert terms("iphone15手机") == ["iphone15", "手", "机", "手机"]


def test_arabic_is_normalised_and_lightly_stemmed_on_both_sides():
    # Diacritics, tatweel and hamza forms vanish; the article and a suffix come off.
    assert arabic_stem("الْمَدِينَة") == arabic_stem("مدينة") == "مدين"
    assert arabic_stem("أحمد") == arabic_stem("احمد")
    assert terms("مـدينة") == terms("المدينة")
    assert terms("ذهب إلى المدينة في الصباح") == ["ذهب", "مدين", "صباح"]  # إلى and في are stopwords
    assert arabic_stem("ال") == "ال"  # nothing left to strip to


def test_latin_text_cuts_exactly_as_the_legacy_bm25s_tokenizer():
    texts = ["The CC-0419 valve, Dvořák's 9th symphony; e-mail x@y.org", "snake_case and The of a", ""]
    legacy = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    assert [terms(t) for t in texts] == [terms(t, LEGACY_TOKENIZER) for t in texts] == legacy
    # The legacy tokenizer did not cut CJK: the whole run is one term, a single character none.
    assert terms("北京大学", LEGACY_TOKENIZER) == ["北京大学"]
    assert terms("水", LEGACY_TOKENIZER) == []


def test_unknown_tokenizer_is_refused():
    with pytest.raises(ValueError, match="unknown BM25 tokenizer"):
        terms("x", "whitespace-v9")


def test_manifest_records_the_tokenizer_and_an_old_section_loads_with_the_legacy_one(tmp_path):
    texts = ["北京大学的图书馆", "上海交通大学", "水"]
    section = write_lexical(tmp_path, texts)
    assert section["tokenizer"] == TOKENIZER
    index = load_lexical(tmp_path, section, len(texts))
    assert index.search("水", 3)[1].tolist() == [2]
    assert index.search("北京", 3)[1].tolist() == [0]
    assert index.covering("大学").tolist() == [0, 1]

    old = {k: v for k, v in section.items() if k != "tokenizer"}  # a version from before this release
    legacy = load_lexical(tmp_path, old, len(texts))
    assert legacy.tokenizer == LEGACY_TOKENIZER
    assert legacy.terms("水") == []  # cut as that version's queries always were
    with pytest.raises(IndexRejected, match="tokenizer"):
        load_lexical(tmp_path, json.loads(json.dumps({**section, "tokenizer": "other"})), len(texts))
