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
    answer = ExtractiveWriter(embedder).answer("How much may a hotel cost per night?", HITS).text
    assert answer.startswith(EXTRACTIVE_LABEL.format(why="no LLM configured"))
    assert "The hotel cap is EUR 180 per night in most cities. [1]" in answer
    assert set(re.findall(r"\[(\d)\]", answer)) <= {"1", "2"}


def test_summary_keeps_document_order(embedder):
    summary = ExtractiveWriter(embedder).summarize(HITS, title="Travel policy").text
    cited = [int(n) for n in re.findall(r"\[(\d)\]", summary)]
    assert cited == sorted(cited) and len(cited) >= 3


def test_sources_are_numbered_with_title_and_page():
    text = numbered_sources(HITS)
    assert text.startswith("[1] (Travel policy, page 2)\nThe hotel cap") and "\n\n[2] (Travel policy, page 3)" in text
    assert split_sentences("Short. This sentence is long enough to keep.") == ["This sentence is long enough to keep."]



def test_a_heading_leads_the_sentence_under_it_and_is_not_quoted_alone():
    """Headings ran into the next sentence ("Hotels The hotel cap ...") or were quoted as answers
    ("Requesting access to lake data [1]"), table cells too; the title is shown with the sources."""
    text = ("Travel policy (HR-TRV-07)\nHotels\nThe hotel cap is EUR 165 per night in most cities, and EUR 210 in\n"
            "London. The cap includes taxes but not breakfast.\n\nChoose the right group\n\n"
            "- [ ] Ask the **group owner** to approve the request.\nRestricted\n\ncustomer personal data, driver data"
            "\n\nThe data owner approves every request within a day.")
    assert split_sentences(text, title="Travel policy (HR-TRV-07)") == [
        "Hotels: The hotel cap is EUR 165 per night in most cities, and EUR 210 in London.",
        "The cap includes taxes but not breakfast.",
        "Choose the right group: Ask the group owner to approve the request.",
        "The data owner approves every request within a day."]
    # A sentence that starts with the title's words keeps them; a title run into a heading leaves the heading.
    assert split_sentences("Hotels are booked through the travel portal.", title="Hotels") == [
        "Hotels are booked through the travel portal."]
    assert split_sentences("Postmortem INC-2291 Summary\nOn 14 March the pipeline failed.",
                           title="Postmortem INC-2291") == ["Summary: On 14 March the pipeline failed."]


def test_the_short_fields_of_a_json_record_lead_its_long_one():
    """A flattened record's ticket or name was a fragment under 4 words and never quoted, so the
    answer to "which ticket fixed ..." quoted the fix without its ticket."""
    text = ("releases.version: 2026.05.2\nreleases.changes.ticket: ORX-4471\nreleases.changes.type: fix\n"
            "releases.changes.summary: Duplicate events are no longer written on a retry.\n"
            "releases.changes.ticket: ORX-4477\nreleases.changes.summary: Dwell times use the day of arrival.\n"
            "owner.team: Platform")
    assert split_sentences(text) == [
        ("releases.version: 2026.05.2; releases.changes.ticket: ORX-4471; releases.changes.type: fix; "
        "releases.changes.summary: Duplicate events are no longer written on a retry."),
        "releases.changes.ticket: ORX-4477; releases.changes.summary: Dwell times use the day of arrival."]
