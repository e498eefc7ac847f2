"""text.py: normalisation keeps case and punctuation; chunks are overlapping sentence windows."""

from __future__ import annotations

import itertools
import unicodedata
from pathlib import Path

import pytest
from lakerag.text import chunk_pages, count_tokens, guess_title, normalise, normalise_pages, split_sentences


def test_normalise_removes_noise_and_keeps_case_and_punctuation():
    raw = "Hello,\x00 World!\x07  It's\t<b>GREAT</b> &amp; ﬁne\u00a0\u200b—really?\r\n\r\n\r\n\r\nNext\u00adline  "
    # Soft hyphen and zero-width space vanish, NBSP becomes a space, 4 blank lines become one.
    assert normalise(raw, "html") == "Hello, World! It's GREAT & fine —really?\n\nNextline"
    # In plain text the tags and the entity are text.
    assert normalise(raw) == "Hello, World! It's <b>GREAT</b> &amp; fine —really?\n\nNextline"


def test_normalise_composes_nfc_and_strips_markup_remnants_of_markup_documents():
    decomposed = "Cafe\u0301 **bold** <!-- note --> <div class='x'>text</div>\n```\ncode\n```"
    assert normalise(decomposed, "txt") == "Café **bold** <!-- note --> <div class='x'>text</div>\n```\ncode\n```"
    text = normalise(decomposed, "md")
    assert text == unicodedata.normalize("NFC", text)
    assert "Café" in text and "bold" in text and "**" not in text and "<" not in text and "```" not in text
    assert "note" not in text and "code" in text
    # Comparisons and maths are not markup.
    assert normalise("a < b and c > d", "md") == "a < b and c > d"
    # Angle brackets around words that are not HTML elements, or bare words after one, are text.
    assert normalise("chord <c e g> and <a c e>, List<T>", "md") == "chord <c e g> and <a c e>, List<T>"
    assert normalise("") == "" and normalise(" \n\t ") == ""


def test_split_sentences_respects_abbreviations_and_lines():
    text = "Dr. Smith arrived at 3.30 today. Was he late? Yes!\nA heading\nThe U.S. Army, e.g. a unit. End."
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == ["Dr. Smith arrived at 3.30 today.", "Was he late?", "Yes!", "A heading",
                         "The U.S. Army, e.g. a unit.", "End."]


def test_a_line_after_a_comma_or_a_wrapped_line_goes_on_even_when_it_reads_like_a_field():
    """Four sample sentences were cut in two: a short line ending in a comma before a capitalised
    name, and prose going on "once: branch, ..." or "pipeline: Leopoldine ..." read as a JSON field."""
    text = ("For Restricted data the Data Protection Officer,\nMarguerite Oyelaran-Fitzgibbon, must approve.\n"
            "The goal is to go through the whole path of a change from start to end\n"
            "once: branch, review, CI and deploy.\nowner: Platform team\nchat: #lake-ops")
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "For Restricted data the Data Protection Officer,\nMarguerite Oyelaran-Fitzgibbon, must approve.",
        "The goal is to go through the whole path of a change from start to end\nonce: branch, review, CI and deploy.",
        "owner: Platform team", "chat: #lake-ops"]


def test_a_sentence_wrapped_over_lines_is_one_sentence():
    """Hard-wrapped text (plain text files, PDF) breaks lines mid-sentence: each line was taken for
    a sentence, so chunks started mid-sentence ("fired, what you did, ...": 27 of the 58 sample
    chunks started in lower case)."""
    text = ("4. AFTER THE PAGE\n\nWrite a short note in the shift log for every page, even false alarms: what\n"
            "fired, what you did, and whether the alert should be tuned. Any SEV1 or SEV2\n"
            "needs a postmortem draft within five working days.\n"
            "A heading without a full stop\nThe next paragraph starts here.\n"
            "- a list item\n- another item that is long enough to look like a wrapped line of prose\n"
            "1) numbered\nreleases.version: 2.4.0\nreleases.date: 2026-05-04")
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == [
        "4.", "AFTER THE PAGE",
        ("Write a short note in the shift log for every page, even false alarms: what\nfired, what you did, "
        "and whether the alert should be tuned."),
        "Any SEV1 or SEV2\nneeds a postmortem draft within five working days.",
        "A heading without a full stop", "The next paragraph starts here.",
        "- a list item", "- another item that is long enough to look like a wrapped line of prose", "1) numbered",
        "releases.version: 2.4.0", "releases.date: 2026-05-04"]


def test_sample_chunks_start_where_a_sentence_does():
    from lakerag.extract import extract
    from lakerag.text import normalise_pages

    docs = Path(__file__).resolve().parents[2] / "services" / "lakerag" / "samples" / "docs"
    starts = {}
    for path in sorted(docs.iterdir()):
        extraction = extract(f"raw/{path.name}", path.read_bytes())
        if extraction.ok and extraction.file_type != "json":  # JSON: "key: value" lines start in lower case
            pages = normalise_pages(extraction.pages, extraction.file_type)
            for chunk in chunk_pages(pages, 200, 40, paged=extraction.page_count is not None):
                starts[f"{path.name}#{chunk.index}"] = chunk.text[:40]
    assert len(starts) > 30
    assert {name: start for name, start in starts.items() if start[:1].islower()} == {}


def _sentences(n: int) -> str:
    return " ".join(f"Sentence {i} talks about topic {i}." for i in range(n))


def test_chunks_are_sentence_windows_within_the_token_budget_with_overlap():
    text = _sentences(40)  # 7 tokens per sentence
    chunks = chunk_pages([text], chunk_tokens=30, overlap_tokens=10)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count <= 30
        assert chunk.text.startswith("Sentence ") and chunk.text.endswith(".")
        assert chunk.text in text and chunk.page is None
        assert chunk.token_count == count_tokens(chunk.text)
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.rsplit(". ", 1)[-1]
        assert after.text.startswith(last_sentence)  # one 7-token sentence overlaps
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # Every sentence lands in some chunk.
    assert all(f"topic {i}." in " ".join(c.text for c in chunks) for i in range(40))


def test_no_overlap_partitions_the_text():
    text = _sentences(20)
    chunks = chunk_pages([text], chunk_tokens=21, overlap_tokens=0)
    assert " ".join(c.text for c in chunks) == text
    assert all(c.token_count == 21 for c in chunks[:-1])


def test_overlong_sentence_is_cut_on_token_boundaries():
    text = " ".join(f"w{i}" for i in range(100))  # one 100-token "sentence"
    chunks = chunk_pages([text], chunk_tokens=20, overlap_tokens=5)
    assert all(c.token_count <= 20 for c in chunks)
    words = [c.text.split() for c in chunks]
    assert words[0][0] == "w0" and words[-1][-1] == "w99"
    assert words[1][0] == words[0][-5]  # 5-token overlap
    assert all(w.startswith("w") for ws in words for w in ws)


def test_a_run_of_text_without_spaces_is_cut_into_bounded_chunks():
    """4 MB of one "word" (a PDF page extracted without spaces, a base64 blob with no breaks) was
    one chunk of 4 MB counted as 1 token: returned whole in every search hit and prompt."""
    text = "a" * 1_000_000 + " Then a normal sentence ends the page."
    chunks = chunk_pages([text], chunk_tokens=200, overlap_tokens=40)
    assert max(len(c.text) for c in chunks) <= 10_000  # 200 tokens of at most 40 characters
    assert all(c.token_count <= 200 for c in chunks)
    assert chunks[-1].text.endswith("Then a normal sentence ends the page.")
    assert count_tokens("a" * 120) == 3
    assert count_tokens("Rechtsschutzversicherungsgesellschaften zahlen.") == 3  # a long real word is one


def test_pages_are_tracked_for_paged_documents():
    pages = [_sentences(10), "Second page. " + _sentences(10)]
    chunks = chunk_pages(pages, chunk_tokens=40, overlap_tokens=0, paged=True)
    assert chunks[0].page == 1 and chunks[-1].page == 2
    assert any("Second page." in c.text for c in chunks)
    spanning = [c for c in chunks if "\n\n" in c.text]
    assert all(c.page == 1 for c in spanning)


def test_short_document_is_one_chunk_and_empty_is_none():
    assert [c.text for c in chunk_pages(["Just one line."], 200, 40)] == ["Just one line."]
    assert chunk_pages(["", "  "], 200, 40) == []
    with pytest.raises(ValueError):
        chunk_pages(["x"], 10, 10)


def test_chunking_is_deterministic():
    pages = [_sentences(30)]
    assert chunk_pages(pages, 25, 5) == chunk_pages(pages, 25, 5)


def test_guess_title():
    assert guess_title(["Quarterly Report\nBody text."], "raw/q.pdf") == "Quarterly Report"
    assert guess_title(["id: 7\ntitle: Catalog\nitems.name: Lamp"], "raw/c.json", "json") == "Catalog"
    assert guess_title(["id: 7"], "raw/dir/c.json", "json") == "c"
    assert guess_title(["catalogue: Kafka topics\ncluster.name: k1"], "raw/k.json", "json") == "Kafka topics"
    assert guess_title(["cluster.name: k1"], "raw/k.json", "json") == "k"
    # A JSON document with a text field: its title line, then the text.
    assert guess_title(["Kafka: a guide\n\nTopics are logs."], "raw/k.json", "json") == "Kafka: a guide"
    assert guess_title(["body: Hello\n\nWorld"], "raw/k.json", "json") == "Hello"  # a flattened field, as before
    assert guess_title(["x" * 300], "raw/long name.txt") == "long name"
    assert guess_title([], "raw/empty.md") == "empty"


def test_a_repetitive_document_costs_its_distinct_content():
    from lakerag.text import chunk_pages, distinct

    line = "the pump restarts when the pressure drops below the threshold. " * 1600  # ~100 KB, one line
    chunks = chunk_pages([line], 200, 40)
    kept = distinct(chunks)
    assert len(chunks) > 100 and len(kept) <= 20, (len(chunks), len(kept))
    assert len({c.text for c in kept}) == len(kept) and kept[0].index == 0
    assert [c.index for c in kept] == sorted(c.index for c in kept)


def test_a_word_hyphenated_at_a_pdf_line_break_is_one_word_again():
    """Justified PDFs break words over lines ("manage-\\nment"): search split them into "manage" and
    "ment", so "management" found nothing there. A real hyphen (known from elsewhere in the document,
    or before a capital or digit) stays."""
    pages = ["The data manage-\nment team owns the well-\nknown export of 2020-\n2021 with Jean-\nPierre.",
             "A well-known team."]
    assert normalise_pages(pages, "pdf")[0] == ("The data management team owns the well-known export of "
                                                "2020-2021 with Jean-Pierre.")
    assert terms_of("management") <= terms_of(normalise_pages(pages, "pdf")[0])
    # As pypdf reads it from a real PDF.
    from docmaker import make_pdf
    from lakerag.extract import extract

    pdf = extract("raw/a.pdf", make_pdf(["The data manage-\nment team owns the pipe-\nline."]))
    assert normalise_pages(pdf.pages, "pdf") == ["The data management team owns the pipeline."]
    # Elsewhere a line that ends in a hyphen is the author's: plain text and Markdown keep it.
    assert normalise_pages(["manage-\nment"], "txt") == ["manage-\nment"]
    assert normalise_pages(["- a list\n- of items"], "pdf") == ["- a list\n- of items"]


def terms_of(text: str) -> set[str]:
    from lakerag.terms import terms

    return set(terms(text))


def test_a_pdf_running_header_and_footer_are_not_indexed_on_every_page():
    """A header and a page footer printed on every page ("ACME Ltd - Company Confidential",
    "Page 3 of 40") were indexed with each page: every chunk matched "confidential", and the
    boilerplate diluted what each page is about."""
    body = ["The ferry leaves the north pier at nine.", "Skerry is served twice a day in summer.",
            "Tickets are sold on board.", "Bicycles travel free of charge."]
    pages = [f"ACME Ltd - Company Confidential\n{text}\nMore on the timetable.\nPage {n} of 4"
             for n, text in enumerate(body, start=1)]
    # Kept where it first appears: a title printed as the running header still titles the document.
    assert normalise_pages(pages, "pdf") == [pages[0]] + [f"{text}\nMore on the timetable." for text in body[1:]]
    assert guess_title(normalise_pages(pages, "pdf"), "raw/f.pdf", "pdf") == "ACME Ltd - Company Confidential"
    # Under three pages nothing is judged repeated; a line repeated inside pages is content.
    assert normalise_pages(pages[:2], "pdf") == pages[:2]
    middle = [f"On {topic}.\nSame sentence here.\nThat was {topic}." for topic in ("ferries", "fares", "bikes", "tides")]
    assert normalise_pages(middle, "pdf") == middle
