"""POST /search over HTTP: ranked hits from the sample index, filters, no-match, no-index."""

from __future__ import annotations

import json

from conftest import SAMPLES


def questions():
    return json.loads((SAMPLES / "questions.json").read_text())


def test_search_ranks_the_right_document_first(served):
    for q in questions()[:6]:
        response = served.client.post("/search", json={"query": q["question"], "k": 3})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["matched"] is True
        assert body["hits"][0]["source"] == q["expected_source"], (q["question"], body["hits"][0])
        hit = body["hits"][0]
        assert set(hit) >= {"score", "doc_id", "chunk_id", "chunk_index", "text", "source", "title", "page"}
        assert body["index_version"] == "20260101T000000Z-samples1"
        scores = [h["score"] for h in body["hits"]]
        assert scores == sorted(scores, reverse=True)
