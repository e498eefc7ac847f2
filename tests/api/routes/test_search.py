"""POST /search over HTTP: ranked hits from the sample index, filters, no-match, no-index."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLES


def questions():
    return json.loads((SAMPLES / "questions.json").read_text())


def test_search_ranks_the_right_document_first(served):
    # Dense ranking; hybrid (the default mode) on the same questions: tests/retrieval/test_hybrid.py.
    for q in questions()[:6]:
        response = served.client.post("/search", json={"query": q["question"], "k": 3, "mode": "dense"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["matched"] is True
        assert body["hits"][0]["source"] == q["expected_source"], (q["question"], body["hits"][0])
        hit = body["hits"][0]
        assert set(hit) >= {"score", "doc_id", "chunk_id", "chunk_index", "text", "source", "title", "page"}
        assert body["index_version"] == "20260101T000000Z-samples1"
        scores = [h["score"] for h in body["hits"]]
        assert scores == sorted(scores, reverse=True)


def test_filters_restrict_hits_to_a_document_or_a_source_prefix(served):
    from lakerag.lake import doc_id_for

    doc_id = doc_id_for("raw/oncall-runbook.txt")
    query = "What is the hotel cap per night for business trips?"  # best match is another document
    body = served.client.post("/search", json={"query": query, "k": 5, "doc_id": doc_id}).json()
    assert body["hits"] == [] or {h["doc_id"] for h in body["hits"]} == {doc_id}
    body = served.client.post("/search", json={"query": "incident bridge phone number", "k": 5,
                                                "doc_id": doc_id}).json()
    assert body["matched"] and {h["doc_id"] for h in body["hits"]} == {doc_id}
    body = served.client.post("/search", json={"query": "retention of personal data", "k": 5,
                                                "source_prefix": "raw/data-"}).json()
    assert body["matched"] and all(h["source"].startswith("raw/data-") for h in body["hits"])
    body = served.client.post("/search", json={"query": "anything", "source_prefix": "raw/nope/"}).json()
    assert body["matched"] is False and "no indexed chunk matches the filter" in body["reason"]


def test_off_topic_query_is_an_explicit_no_match(served):
    response = served.client.post("/search", json={"query": "Who won the football world cup in 2018?"})
    assert response.status_code == 200
    body = response.json()
    assert body["matched"] is False and body["hits"] == []
    assert "no relevant match" in body["reason"] and body["best_score"] < body["min_score"]
    metrics = served.client.get("/metrics").text
    assert 'lakerag_no_answer_total{route="/search"} 1.0' in metrics


def test_bad_requests_are_422(served):
    assert served.client.post("/search", json={"query": ""}).status_code == 422
    assert served.client.post("/search", json={"query": "x", "k": 0}).status_code == 422
    assert served.client.post("/search", json={"query": "x", "k": 51}).status_code == 422
    assert served.client.post("/search", content=b"not json",
                              headers={"Content-Type": "application/json"}).status_code == 422


@pytest.mark.parametrize(("route", "body", "said"), [
    ("/search", {"query": " ?! "}, "has no words"),
    ("/answer", {"question": "..."}, "has no words"),
    ("/search", {"query": "x", "as_of": "../v1"}, "must name an index version"),
    ("/summarize", {}, "give exactly one of doc_id"),
])
def test_a_422_says_the_validators_words_without_pydantics_prefix(served, route, body, said):
    """The console shows each error's msg as is: it read "query: Value error, has no words …"."""
    response = served.client.post(route, json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "value_error" and error["msg"].startswith(said), error


def test_without_an_index_search_is_503_and_says_to_run_the_pipeline(local_settings, start_api):
    with start_api(local_settings) as api:
        response = api.client.post("/search", json={"query": "anything"})
        assert response.status_code == 503
        assert "no index yet — run the pipeline" in response.json()["detail"]
        assert api.client.get("/health").status_code == 200
        ready = api.client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["index_loaded"] is False and "no index yet" in ready.json()["message"]
