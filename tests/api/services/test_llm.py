"""The extractive writer quotes real sentences of the retrieved chunks and cites them."""

from __future__ import annotations

import re

from lakerag.api.services.llm import EXTRACTIVE_LABEL, ExtractiveWriter, numbered_sources, split_sentences

HITS = [
    {"text": "The hotel cap is EUR 180 per night in most cities. London and Zurich allow EUR 260.",
     "title": "Travel policy", "source": "raw/travel.pdf", "page": 2},
    {"text": "Economy class is the default for flights under six hours. Business class needs VP approval.",
     "title": "Travel policy", "source": "raw/travel.pdf", "page": 3},
]


def test_extractive_answer_quotes_the_best_sentence_with_its_citation(embedder):
    answer = ExtractiveWriter(embedder).answer("How much may a hotel cost per night?", HITS)
    assert answer.startswith(EXTRACTIVE_LABEL)
    assert "The hotel cap is EUR 180 per night in most cities. [1]" in answer
    assert set(re.findall(r"\[(\d)\]", answer)) <= {"1", "2"}


def test_summary_keeps_document_order(embedder):
    summary = ExtractiveWriter(embedder).summarize(HITS, title="Travel policy")
    cited = [int(n) for n in re.findall(r"\[(\d)\]", summary)]
    assert cited == sorted(cited) and len(cited) >= 3


def test_sources_are_numbered_with_title_and_page():
    text = numbered_sources(HITS)
    assert text.startswith("[1] (Travel policy, page 2)\nThe hotel cap") and "\n\n[2] (Travel policy, page 3)" in text
    assert split_sentences("Short. This sentence is long enough to keep.") == ["This sentence is long enough to keep."]
