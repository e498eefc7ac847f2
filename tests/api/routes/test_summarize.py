"""POST /summarize over HTTP: a whole document in chunk order, a query-focused summary, errors."""

from __future__ import annotations

import re

from lakerag.lake import doc_id_for


def test_document_summary_covers_the_document_in_chunk_order(served):
    doc_id = doc_id_for("raw/data-retention-policy.pdf")
    response = served.client.post("/summarize", json={"doc_id": doc_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] and body["mode"] == "extractive" and body["doc_id"] == doc_id
    assert {c["doc_id"] for c in body["chunks"]} == {doc_id}
    assert [c["chunk_index"] for c in body["chunks"]] == sorted(c["chunk_index"] for c in body["chunks"])
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", body["summary"])]
    assert len(cited) >= 3 and cited == sorted(cited)  # sentences kept in document order
    assert max(cited) <= len(body["chunks"])


def test_query_focused_summary_and_no_match(served):
    query = "the stale gold tables incident in March 2026 and the manifest loader error"
    body = served.client.post("/summarize", json={"query": query}).json()
    assert body["matched"] and body["chunks"][0]["source"] == "raw/incident-postmortem-inc-2291.pdf"
    assert body["summary"].startswith("Extractive summary") and body["query"] == query
    body = served.client.post("/summarize", json={"query": "best sourdough recipe"}).json()
    assert body["matched"] is False and body["chunks"] == [] and body["mode"] == "none"


def test_summarize_errors(served):
    assert served.client.post("/summarize", json={"doc_id": "0123456789abcdef"}).status_code == 404
    assert served.client.post("/summarize", json={}).status_code == 422
    assert served.client.post("/summarize", json={"doc_id": "a", "query": "b"}).status_code == 422


def test_an_empty_doc_id_or_query_says_what_to_send(served):
    """Was pydantic's "Value should have at least 1 item after validation, not 0"."""
    for body, message in (({"doc_id": ""}, "is empty: give a document's doc_id"), ({"query": ""}, "has no words")):
        response = served.client.post("/summarize", json=body)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["msg"].startswith(message), error


def test_a_query_summary_can_be_kept_to_a_folder(served):
    """Search and answers take source_prefix; "summarise what the data- documents say about X" did not."""
    body = served.client.post("/summarize", json={"query": "retention of personal data",
                                                  "source_prefix": "raw/data-"}).json()
    assert body["matched"] and all(chunk["source"].startswith("raw/data-") for chunk in body["chunks"])
    none = served.client.post("/summarize", json={"query": "retention of personal data",
                                                  "source_prefix": "raw/nope/"}).json()
    assert none["matched"] is False and "no indexed chunk matches the filter" in none["reason"]
    # A whole document is already one document: the prefix is for a query.
    wrong = served.client.post("/summarize", json={"doc_id": "0123456789abcdef", "source_prefix": "raw/"})
    assert wrong.status_code == 422 and "source_prefix goes with query" in wrong.text
