"""POST /answer over HTTP: extractive without a key, Gemini through the real google-genai client
against a local stub of its REST endpoint (success, upstream error, timeout), and no LLM call
when nothing relevant is found."""

from __future__ import annotations

import json
import re

from conftest import SAMPLES  # tests/ on sys.path

from ..conftest import publish

QUESTION = "What is the hotel cap per night for business trips in most cities?"


def test_extractive_answer_cites_the_returned_chunks(served):
    response = served.client.post("/answer", json={"question": QUESTION, "k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] is True and body["mode"] == "extractive"
    assert body["answer"].startswith("Extractive answer (no LLM configured")
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    assert cited and cited <= set(range(1, len(body["chunks"]) + 1))
    assert body["chunks"][0]["source"] == "raw/employee-travel-policy.pdf"
    # every quoted sentence comes from the chunk its citation names (a heading leads it after ": ")
    for sentence, number in re.findall(r"([^\[\]]+?) \[(\d+)\]", body["answer"].split(":", 1)[1]):
        for part in re.split(r": |; ", sentence.strip()):
            assert part in " ".join(body["chunks"][int(number) - 1]["text"].split()), part
    assert "Hotels: The hotel cap is EUR 165 per night in most cities" in body["answer"]


def test_an_answer_can_be_limited_to_a_document_or_a_source_prefix(served):
    """/search took doc_id and source_prefix but /answer did not: "ask this document" (or only the
    policies) was not possible, and the answer drew on whatever ranked first anywhere."""
    from lakerag.lake import doc_id_for

    runbook = doc_id_for("raw/oncall-runbook.txt")
    body = served.client.post("/answer", json={"question": "incident bridge phone number", "doc_id": runbook}).json()
    assert body["matched"] and {chunk["doc_id"] for chunk in body["chunks"]} == {runbook}
    body = served.client.post("/answer", json={"question": "retention of personal data",
                                               "source_prefix": "raw/data-"}).json()
    assert body["matched"] and all(chunk["source"].startswith("raw/data-") for chunk in body["chunks"])
    nothing = served.client.post("/answer", json={"question": QUESTION, "source_prefix": "raw/nope/"}).json()
    assert nothing["matched"] is False and "no indexed chunk matches the filter" in nothing["reason"]


def test_extractive_answers_to_the_sample_questions_hold_their_facts(served):
    """The smoke questions' facts, quoted without an LLM: 15 of 18 while headings ran into the
    sentence under them and JSON records were cut into one-value lines or run together."""
    held = []
    for question in json.loads((SAMPLES / "questions.json").read_text()):
        body = served.client.post("/answer", json={"question": question["question"], "k": 5}).json()
        held.append(question["answer_contains"] in " ".join(body["answer"].split()))
    assert sum(held) >= 16, held


def test_gemini_answer_through_the_real_client(local_settings, sample_index, start_api, gemini):
    publish(local_settings, sample_index)
    with start_api(local_settings, gemini_api_key="test-key", gemini_base_url=gemini.url,
                   gemini_model="gemini-test") as api:
        response = api.client.post("/answer", json={"question": QUESTION, "k": 3})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["mode"] == "gemini" and "[1]" in body["answer"] and len(body["chunks"]) >= 1
        [request] = gemini.requests
        assert re.fullmatch(r"/v1(beta)?/models/gemini-test:generateContent", request["path"])
        assert request["api_key"] == "test-key"
        prompt = request["body"]["contents"][0]["parts"][0]["text"]
        assert "[1] (" in prompt and QUESTION in prompt and body["chunks"][0]["text"][:80] in prompt
        assert "cite" in request["body"]["systemInstruction"]["parts"][0]["text"].lower()
        metrics = api.client.get("/metrics").text
        assert "lakerag_llm_request_duration_seconds_count 1.0" in metrics


def test_citations_of_sources_that_were_not_given_are_dropped(local_settings, sample_index, start_api, gemini):
    """[n] means chunks[n-1]: a model citing [0] or [9] of three sources must not send clients past the list."""
    publish(local_settings, sample_index)
    gemini.text = "The loader raised E-7731-QX [1][9]. See also [0]."
    with start_api(local_settings, gemini_api_key="test-key", gemini_base_url=gemini.url) as api:
        body = api.client.post("/answer", json={"question": QUESTION, "k": 3}).json()
        assert 1 <= len(body["chunks"]) <= 3
        assert body["answer"] == "The loader raised E-7731-QX [1]. See also."
        body = api.client.post("/summarize", json={"query": QUESTION, "k": 2}).json()
        assert "[9]" not in body["summary"] and "[0]" not in body["summary"] and "[1]" in body["summary"]


def test_when_gemini_fails_the_answer_quotes_the_sources_and_says_why(local_settings, sample_index, start_api,
                                                                      gemini):
    """An LLM outage, quota or timeout left the user with a 502/503/504 and no answer, though the
    sources were retrieved and the extractive writer needs nothing but the model already loaded."""
    publish(local_settings, sample_index)
    with start_api(local_settings, gemini_api_key="test-key", gemini_base_url=gemini.url,
                   llm_timeout_seconds=1.0) as api:
        for mode, reason in (("error", "answered 503 UNAVAILABLE: The model is overloaded"),
                             ("rate_limited", "is rate-limiting this API key (429)"),
                             ("empty", "returned no text (finish reason FinishReason.SAFETY)"),
                             ("slow", "did not answer within 1s")):
            gemini.mode, gemini.delay = mode, 3.0
            response = api.client.post("/answer", json={"question": QUESTION, "k": 4})
            assert response.status_code == 200, (mode, response.text)
            body = response.json()
            assert body["mode"] == "extractive" and reason in body["fallback_reason"], (mode, body["fallback_reason"])
            assert body["answer"].startswith(f"Extractive answer (Gemini (gemini-2.5-flash) {reason}")
            assert "Hotels: The hotel cap is EUR 165 per night in most cities" in body["answer"], mode
            assert "no LLM configured" not in body["answer"]
        gemini.mode = "error"
        summary = api.client.post("/summarize", json={"query": QUESTION, "k": 2}).json()
        assert summary["mode"] == "extractive" and "overloaded" in summary["fallback_reason"]
        assert summary["summary"].startswith("Extractive summary (Gemini (gemini-2.5-flash) answered 503")
        assert "again later; key sentences" in summary["summary"]  # one stop, not ".;"
        gemini.mode = "ok"
        body = api.client.post("/answer", json={"question": QUESTION}).json()
        assert body["mode"] == "gemini" and body["fallback_reason"] is None
        metrics = api.client.get("/metrics").text  # operators still see every failure
        assert 'lakerag_llm_errors_total{reason="upstream"} 2.0' in metrics
        assert 'lakerag_llm_errors_total{reason="timeout"} 1.0' in metrics


def test_gemini_failures_are_502_or_504_with_the_reason(local_settings, sample_index, start_api, gemini):
    """LAKERAG_LLM_FALLBACK=false: a client that wants the LLM's answer or an error."""
    publish(local_settings, sample_index)
    with start_api(local_settings, gemini_api_key="test-key", gemini_base_url=gemini.url,
                   llm_timeout_seconds=1.0, llm_fallback=False) as api:
        gemini.mode = "error"
        response = api.client.post("/answer", json={"question": QUESTION})
        assert response.status_code == 502
        assert "503" in response.json()["detail"] and "overloaded" in response.json()["detail"]

        gemini.mode = "rate_limited"  # a quota: the client should come back later, and is told when
        response = api.client.post("/answer", json={"question": QUESTION})
        assert response.status_code == 503 and response.headers["retry-after"] == "30"
        assert "429" in response.json()["detail"] and "try again in 30 s" in response.json()["detail"]

        gemini.mode = "empty"
        response = api.client.post("/answer", json={"question": QUESTION})
        assert response.status_code == 502 and "no text" in response.json()["detail"]

        gemini.mode, gemini.delay = "slow", 3.0
        response = api.client.post("/answer", json={"question": QUESTION})
        assert response.status_code == 504
        assert "did not answer within 1s" in response.json()["detail"]

        metrics = api.client.get("/metrics").text
        assert 'lakerag_llm_errors_total{reason="upstream"} 1.0' in metrics
        assert 'lakerag_llm_errors_total{reason="timeout"} 1.0' in metrics
        assert 'lakerag_llm_errors_total{reason="rate_limited"} 1.0' in metrics
        assert 'lakerag_http_requests_total{method="POST",route="/answer",status="502"} 2.0' in metrics


def test_nothing_relevant_says_so_without_calling_the_llm(local_settings, sample_index, start_api, gemini):
    publish(local_settings, sample_index)
    with start_api(local_settings, gemini_api_key="test-key", gemini_base_url=gemini.url) as api:
        response = api.client.post("/answer", json={"question": "How do I bake sourdough bread?"})
        assert response.status_code == 200
        body = response.json()
        assert body["matched"] is False and body["mode"] == "none" and body["chunks"] == []
        assert "nothing relevant" in body["answer"] and body["reason"]
        assert gemini.requests == []
        assert 'lakerag_no_answer_total{route="/answer"} 1.0' in api.client.get("/metrics").text
