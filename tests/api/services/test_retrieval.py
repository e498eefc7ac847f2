"""Out-of-context detection: the per-model cut-offs separate the sample questions from
off-topic ones with the real model, and settings override them."""

from __future__ import annotations

import json

from conftest import SAMPLES
from lakerag import config
from lakerag.index.artifacts import load_index_dir
from lakerag.search import IndexNotLoaded, cutoffs_for, search

OFF_TOPIC = ["What is the capital of France?", "How do I bake sourdough bread?",
             "Who won the football world cup in 2018?", "How tall is Mount Everest?",
             "What are the symptoms of the flu?", "Explain quantum entanglement", "Recommend a science fiction novel"]


def test_cutoffs_separate_sample_questions_from_off_topic_ones(embedder, sample_index):
    index = load_index_dir(sample_index, embedder.name, embedder.dimension)
    cutoffs = cutoffs_for(config.Settings(), embedder.name)
    questions = json.loads((SAMPLES / "questions.json").read_text())
    for q in questions:
        outcome = search(index, embedder, q["question"], 5, cutoffs)
        assert outcome.matched, (q["question"], outcome.best_score)
        assert outcome.hits[0]["score"] >= cutoffs.min_score
        assert all(h["score"] >= outcome.hits[0]["score"] * cutoffs.relative for h in outcome.hits)
    right = sum(search(index, embedder, q["question"], 5, cutoffs).hits[0]["source"] == q["expected_source"]
                for q in questions)
    assert right >= len(questions) - 2
    for text in OFF_TOPIC:
        outcome = search(index, embedder, text, 5, cutoffs)
        assert not outcome.matched and "no relevant match" in outcome.reason, (text, outcome.best_score)


def test_defaults_are_per_model_and_settings_override_them():
    assert cutoffs_for(config.Settings(), "sentence-transformers/all-MiniLM-L6-v2").min_score == 0.30
    assert cutoffs_for(config.Settings(), "BAAI/bge-large-en-v1.5").min_score > 0.5  # bge scores run high
    custom = config.Settings().replace(min_score=0.1, relative_score=0.9)
    assert cutoffs_for(custom, "BAAI/bge-large-en-v1.5") == cutoffs_for(custom, "anything")
    assert cutoffs_for(custom, "x").relative == 0.9


def test_no_index_raises(embedder):
    try:
        search(None, embedder, "q", 5, cutoffs_for(config.Settings(), embedder.name))
    except IndexNotLoaded as exc:
        assert "run the pipeline" in str(exc)
    else:
        raise AssertionError("expected IndexNotLoaded")
