"""extract.py: every supported type yields its text; every kind of bad input yields a reason."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from docmaker import BAD_REASON_WORDS, bad_documents, good_documents, make_pdf
from lakerag.extract import Extraction, extract, file_type_for, flatten_json, looks_binary, size_problem
from lakerag.text import guess_title, normalise, normalise_pages


def test_pdf_keeps_one_entry_per_page():
    result = extract("raw/two.pdf", make_pdf(["First page about lakes.", "Second page about rivers."]))
    assert result.ok and result.file_type == "pdf"
    assert result.page_count == 2
    assert "lakes" in result.pages[0] and "rivers" in result.pages[1]


def test_txt_utf8_and_latin1_are_read_not_quarantined():
    assert extract("raw/a.txt", "naïve café — ok".encode()).pages == ["naïve café — ok"]
    latin1 = extract("raw/b.txt", "Crème brûlée à la française".encode("latin-1"))
    assert latin1.ok and latin1.pages == ["Crème brûlée à la française"]
    # Windows-1252 curly quotes (bytes 0x93/0x94) decode to the quotes, not control characters.
    assert extract("raw/c.txt", b"\x93quoted\x94 text").pages == ["\u201cquoted\u201d text"]
    assert extract("raw/d.txt", "\ufeffwith BOM".encode("utf-8")).pages == ["with BOM"]
    assert extract("raw/e.txt", "utf-16 text".encode("utf-16")).pages == ["utf-16 text"]
    assert extract("raw/a.txt", b"x").page_count is None


def test_binary_garbage_named_txt_is_quarantined():
    garbage = bad_documents()["garbage.txt"]
    assert looks_binary(garbage)
    result = extract("raw/garbage.txt", garbage)
    assert not result.ok and "binary" in result.reason and result.pages == []
    assert not looks_binary("plain text, accents é".encode("latin-1"))


def test_json_flattened_with_keys_as_context():
    doc = {"title": "Report", "author": {"name": "Ada", "active": True}, "tags": ["a", "b"],
           "sections": [{"heading": "Intro", "body": "Hello."}, {"heading": "End", "body": None}], "n": 3}
    result = extract("raw/r.json", json.dumps(doc).encode())
    assert result.ok and result.file_type == "json"
    assert result.pages[0].split("\n") == [
        "title: Report", "author.name: Ada", "author.active: true", "tags: a, b",
        "sections.heading: Intro", "sections.body: Hello.", "sections.heading: End", "n: 3"]
    assert flatten_json(["x", "y"]) == ["x, y"]


def test_invalid_and_empty_json_are_quarantined():
    assert "invalid JSON at line 1" in extract("raw/bad.json", b'{"a": ').reason
    assert "no text" in extract("raw/empty.json", b'{"a": null, "b": []}').reason


def test_markdown_markup_is_stripped():
    md = (b"---\nlayout: post\n---\n# Title Here\n\nSome **bold**, *em*, `code`, snake_case_name and "
          b"[a link](http://x.org).\n\n![diagram](d.png)\n\n> quoted\n\n```python\nprint(1)\n```\n"
          b"| k | v |\n|---|---|\n| a | 1 |\n")
    text = extract("raw/doc.md", md).pages[0]
    for gone in ("**", "`", "](", "# ", "```", "---", "layout", "> "):
        assert gone not in text
    for kept in ("Title Here", "Some bold, em, code, snake_case_name and a link.", "diagram", "quoted",
                 "print(1)", "a · 1"):
        assert kept in text


def test_html_visible_text_only():
    page = (b'<html><head><meta charset="iso-8859-1"><title>Doc Title</title><style>p{}</style></head>'
            b"<body><nav><a href='/'>Intranet home</a> | People</nav>"
            b"<h1>Heading</h1><p>Caf\xe9 &amp; <b>bold</b><br>next</p><script>alert(1)</script>"
            b'<img alt="a chart"><footer>Cookie settings</footer></body></html>')
    text = extract("raw/p.html", page).pages[0]
    assert text.lstrip().startswith("Doc Title")
    assert "Café & bold" in text and "next" in text and "a chart" in text
    assert "alert" not in text and "p{}" not in text and "<" not in text
    assert "Intranet home" not in text and "Cookie settings" not in text


@pytest.mark.parametrize("name", sorted(BAD_REASON_WORDS))
def test_bad_input_gives_a_reason(name):
    result = extract(f"raw/{name}", bad_documents()[name])
    assert isinstance(result, Extraction) and not result.ok
    assert BAD_REASON_WORDS[name] in result.reason
    assert result.pages == [] and result.page_count is None


@pytest.mark.parametrize("name", sorted(good_documents()))
def test_good_documents_read(name):
    result = extract(f"raw/{name}", good_documents()[name])
    assert result.ok, result.reason
    assert any(page.strip() for page in result.pages)


def test_size_limit_and_empty():
    assert "over the limit of 10 bytes" in extract("raw/a.txt", b"x" * 11, max_bytes=10).reason
    assert extract("raw/a.txt", b"x" * 10, max_bytes=10).ok
    assert "LAKERAG_MAX_FILE_BYTES" in size_problem(11, 10)
    assert "empty" in size_problem(0, 10)
    assert size_problem(5, 10) is None
    assert "no text" in extract("raw/blank.txt", b" \n\t \n").reason


def test_scanned_pdf_without_text_is_quarantined_with_a_hint():
    assert "OCR" in extract("raw/scan.pdf", make_pdf([""])).reason


def test_not_a_pdf_and_unsupported_extensions():
    assert "no %PDF- header" in extract("raw/fake.pdf", b"hello, I am text").reason
    assert "unsupported file extension .docx" in extract("raw/a.docx", b"PK..").reason
    assert "unsupported file extension (none)" in extract("raw/README", b"text").reason


def test_file_type_from_names_with_spaces_unicode_and_dots():
    assert file_type_for("raw/my report (final).PDF") == "pdf"
    assert file_type_for("raw/résumé 2026.md") == "md"
    assert file_type_for("raw/notes..v2.txt") == "txt"
    assert file_type_for("raw/page.htm") == "html"
    assert file_type_for("raw/.hidden") is None


def test_plain_text_keeps_angle_brackets_asterisks_pipes_and_entities():
    music = "X:1\nK:C\n|: C2 E2 G2 :| <c e g>4 *fermata* **ff** | A & B &amp; <b>not html</b>\n"
    assert normalise(extract("raw/tune.txt", music.encode()).pages[0], "txt") == music.strip()


def test_markdown_strips_real_markup_only():
    md = (b"# Tune\n\nChord <c e g>4 then |: C2 E2 :| and 3 < 4 > 2, a*b, <b>loud</b> <span class=\"x\">on</span>"
          b"<!-- hidden -->\n\n| k | v |\n|---|---|\n| a | 1 |\n\nafter | the table\n")
    text = normalise(extract("raw/tune.md", md).pages[0], "md")
    assert "Chord <c e g>4 then |: C2 E2 :| and 3 < 4 > 2, a*b, loud on" in text
    assert "hidden" not in text and "<b>" not in text and "<span" not in text
    assert "k · v\na · 1" in text and "---" not in text
    assert "after | the table" in text  # a pipe outside a table is text


@pytest.mark.parametrize("depth", [990, 5000])
def test_json_nested_too_deep_is_quarantined_with_what_to_do(depth):
    """Python's own words were the reason before: "could not extract json: RecursionError: maximum
    recursion depth exceeded while decoding a JSON array from a unicode string"."""
    deep = b'{"title": "Deep", "x": ' + b"[" * depth + b'"leaf"' + b"]" * depth + b"}"
    result = extract("raw/deep.json", deep)
    assert not result.ok
    assert result.reason == ("JSON nested too deeply to read (about 1,000 levels or more): "
                             "flatten the structure and upload the file again")


def test_json_with_a_text_field_is_indexed_without_field_names():
    doc = {"title": "Harbour pilots", "text": "Pilots board ships at the outer buoy.", "id": 7, "tags": ["a", "b"]}
    page = extract("raw/p.json", json.dumps(doc).encode()).pages[0]
    assert page == "Harbour pilots\n\nPilots board ships at the outer buoy.\n\nid: 7\ntags: a, b"
    pages = normalise_pages([page], "json")
    assert guess_title(pages, "raw/p.json", "json") == "Harbour pilots"
    # Without a title, only the text; without a text field, every field flattened as before.
    assert extract("raw/q.json", b'{"body": "Just this."}').pages == ["Just this."]
    assert extract("raw/r.json", b'{"name": "Lamp", "price": 3}').pages == ["name: Lamp\nprice: 3"]


def test_a_json_array_of_text_records_is_indexed_record_by_record_without_field_names():
    """An export of articles or tickets ([{"title": …, "text": …}, …]) was flattened into one run of
    "title: … text: …" lines: field names in every chunk, records run together."""
    records = [{"title": "Ferry times", "text": "The ferry leaves the north pier at seven."},
               {"title": "Bridge works", "text": "The bridge closes on Sundays in May.", "author": "Ops"},
               {"id": 3, "status": "draft"}]
    page = extract("raw/notes.json", json.dumps(records).encode()).pages[0]
    assert page == ("Ferry times\n\nThe ferry leaves the north pier at seven.\n\n"
                    "Bridge works\n\nThe bridge closes on Sundays in May.\n\nauthor: Ops\n\n"
                    "id: 3\nstatus: draft")
    # An array of other things is flattened as before.
    assert extract("raw/t.json", b'[{"a": 1}, {"a": 2}]').pages == ["a: 1\na: 2"]


@pytest.mark.parametrize("extension", [".jsonl", ".ndjson"])
def test_json_lines_are_indexed_record_by_record(extension):
    """JSON Lines, the usual export format in a lake, was "unsupported file extension .jsonl"."""
    lines = (b'{"title": "Ferry times", "text": "The ferry leaves the north pier at seven."}\r\n\n'
             b'{"title": "Bridge works", "body": "The bridge closes on Sundays in May.", "author": "Ops"}\n'
             b'{"id": 3, "status": "draft"}\n')
    result = extract(f"raw/notes{extension}", lines)
    assert result.ok and result.file_type == "jsonl"
    assert result.pages == [("Ferry times\n\nThe ferry leaves the north pier at seven.\n\n"
                             "Bridge works\n\nThe bridge closes on Sundays in May.\n\nauthor: Ops\n\n"
                             "id: 3\nstatus: draft")]
    # A file of many records is titled by its name, not by its first record.
    assert guess_title(normalise_pages(result.pages, "jsonl"), f"raw/notes{extension}", "jsonl") == "notes"
    bad = extract(f"raw/bad{extension}", b'{"text": "fine"}\n{"text": "cut off\n')
    assert bad.reason.startswith("invalid JSON on line 2 column")
    assert "each line of a JSON Lines file is one JSON value" in bad.reason


def test_an_aes_pdf_without_the_crypto_extra_names_the_missing_package(tmp_path):
    """Was quarantined as "corrupt PDF … re-export or repair the file": the file was fine."""
    pdf = tmp_path / "restricted.pdf"
    pdf.write_bytes(good_documents()["restricted.pdf"])
    script = ("import sys; sys.modules['cryptography'] = None\n"
              "from lakerag.extract import extract\n"
              f"print(extract('raw/restricted.pdf', open({str(pdf)!r}, 'rb').read()).reason)")
    reason = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "corrupt" not in reason and "pypdf[crypto]" in reason, reason


def test_base64_blobs_in_json_are_left_out_of_the_text():
    """An attachment or thumbnail inside a JSON record (base64 or a data: URI) was indexed as text:
    thousands of characters of noise in chunks that search and answers then cite."""
    blob = base64.b64encode(bytes(range(256)) * 40).decode()
    record = {"title": "Bridge works", "text": "The bridge closes on Sundays in May.",
              "attachment": blob, "thumbnail": f"data:image/png;base64,{blob[:600]}",
              "files": [{"name": "plan.pdf", "data": blob}], "sha256": "ab" * 32,
              "url": "https://example.com/" + "a/" * 150}
    page = extract("raw/r.json", json.dumps(record).encode()).pages[0]
    assert page == ("Bridge works\n\nThe bridge closes on Sundays in May.\n\n"
                    f"files.name: plan.pdf\nsha256: {'ab' * 32}\nurl: https://example.com/{'a/' * 150}")
    # A record that is nothing but a blob has no text: quarantined, not indexed as noise.
    assert "no text" in extract("raw/b.json", json.dumps({"payload": blob}).encode()).reason


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("name", ["export.txt", "notes.md", "page.html", "rows.json"])
def test_utf16_without_a_byte_order_mark_is_read_not_quarantined_as_binary(codec, name):
    """SQL Server's `bcp -w`, .NET's Encoding.Unicode and other Windows exports write UTF-16 with no
    byte-order mark: quarantined as "binary content, not text", though every character was text."""
    text = "Ferry timetable: the ferry leaves the north pier at nine, Skerry at ten (€4)."
    body = {"export.txt": text, "notes.md": f"# Ferry\n\n{text}", "page.html": f"<p>{text}</p>",
            "rows.json": json.dumps({"text": text}, ensure_ascii=False)}[name]
    result = extract(f"raw/{name}", body.encode(codec))
    assert result.ok, result.reason
    assert text in normalise(result.pages[0])
    # Binary with zero bytes is still binary, 16-bit samples with every high byte zero too.
    assert not extract("raw/x.txt", bytes(range(256)) * 8).ok
    samples = b"".join(((n * 7) % 200).to_bytes(2, "little" if codec.endswith("le") else "big") for n in range(4000))
    assert extract(f"raw/{name}", samples).reason == "binary content, not text: check the file type or convert it to text"


def test_html_inside_markdown_separates_words():
    """READMEs and docs use <br>, <table> and <details> inside Markdown: removing the tags ran the
    words together ("RoutePriceNorth pier4 euro", "Line oneline two"), for search and answers alike;
    and a file whose tags outweighed its words was quarantined as "the text has no words"."""
    md = ("# Fees\n\n<table><tr><th>Route</th><th>Price</th></tr><tr><td>North pier</td><td>4 euro</td></tr>"
          "</table>\n\nLine one<br>line two<br/>line three.\n\n<details><summary>More</summary>Hidden text."
          "</details>\n\nA <b>bold</b> word and <code>x</code>.\n")
    result = extract("raw/a.md", md.encode())
    assert result.ok, result.reason
    text = normalise(result.pages[0], "md")
    words = text.split()
    for run in (["Route", "Price", "North", "pier", "4", "euro"], ["one", "line", "two", "line", "three."],
                ["More", "Hidden", "text."], ["A", "bold", "word", "and", "x."]):
        assert any(words[i:i + len(run)] == run for i in range(len(words))), (run, text)


@pytest.mark.parametrize("front", [
    '---\ntitle: "Deploying the ferry booking service"\ndate: 2024-01-02\ntags: [ops]\n---\n',
    "---\ndate: 2024-01-02\ntitle: Deploying the ferry booking service\n---\n",
    '+++\ntitle = "Deploying the ferry booking service"\ndraft = false\n+++\n',
])
def test_a_markdown_front_matter_title_is_the_document_title(front):
    """Static-site docs (Jekyll, Hugo, MkDocs) name the page in front matter: it was dropped with the
    rest, so the document was titled by its first sentence and its title was not searchable."""
    body = "This guide explains how we roll out new versions. First, build the image and push it.\n"
    result = extract("raw/deploy-guide.md", (front + "\n" + body).encode())
    pages = normalise_pages(result.pages, "md")
    assert pages == [f"Deploying the ferry booking service\n\n{body.strip()}"]
    assert guess_title(pages, "raw/deploy-guide.md", "md") == "Deploying the ferry booking service"
    # A page whose heading already is that title keeps one copy; no title in front matter, nothing added.
    same = extract("raw/d.md", (front + "# Deploying the ferry booking service\n\n" + body).encode())
    assert normalise_pages(same.pages, "md") == [f"Deploying the ferry booking service\n\n{body.strip()}"]
    untitled = extract("raw/u.md", f"---\nlayout: post\n---\n{body}".encode())
    assert normalise_pages(untitled.pages, "md") == [body.strip()]


def test_html_table_rows_stay_together_as_markdown_rows_do():
    """Every cell of an HTML table became its own paragraph ("North pier", "4 euro"): a large table
    (a price list, an inventory exported from a wiki) was chunked with its rows torn apart. Rows now
    read "North pier · 4 euro", as Markdown tables do."""
    html = ("<html><body><h1>Fees</h1><table><thead><tr><th>Route</th><th>Price</th></tr></thead>"
            "<tr><td>North pier</td><td>4 euro</td></tr><tr><td><p>Skerry</p><p>(summer)</p></td>"
            "<td>6 <b>euro</b></td></tr></table><p>Call the office.</p></body></html>")
    text = normalise_pages(extract("raw/fees.html", html.encode()).pages, "html")[0]
    assert text == "Fees\n\nRoute · Price\nNorth pier · 4 euro\nSkerry (summer) · 6 euro\n\nCall the office."
    markdown = "# Fees\n\n| Route | Price |\n|---|---|\n| North pier | 4 euro |\n"
    assert "North pier · 4 euro" in extract("raw/fees.md", markdown.encode()).pages[0]
    # HTML may leave </td> and </tr> out; the text after the table is lines again.
    loose = "<table><tr><td>North pier<td>4 euro<tr><td>Skerry<td>6 euro</table><p>One.</p><p>Two.</p>"
    assert normalise_pages(extract("raw/l.html", loose.encode()).pages, "html") == [
        "North pier · 4 euro\nSkerry · 6 euro\n\nOne.\n\nTwo."]


def test_markdown_footnotes_keep_their_text():
    """A footnote's definition ("[^1]: Children travel free…") was taken for a link definition and
    dropped, text and all: a fact written in a footnote could not be found."""
    md = (b"# Fares\n\nTickets cost four euro.[^1] See [the site][site].\n\n"
          b"[^1]: Children under twelve travel free of charge on every route.\n"
          b'[site]: https://example.com/fares "Fares"\n')
    text = normalise(extract("raw/fares.md", md).pages[0], "md")
    assert text == ("Fares\n\nTickets cost four euro. See the site.\n\n"
                    "Children under twelve travel free of charge on every route.")


def test_markdown_escapes_heading_ids_and_task_boxes_are_not_text():
    r"""Exports (Notion, Confluence, pandoc) escape punctuation: "LAKERAG\_STORE\_URI" stayed escaped, so
    a search for LAKERAG_STORE_URI did not find it, and "\*twice\*" lost its stars to the emphasis rule
    and kept the backslashes ("\twice\"). Heading ids ("{#fees}") and task boxes ("[ ]") were text too."""
    md = (rb"# Setup" b"\n\n" rb"Set LAKERAG\_STORE\_URI first\. Then run \`make run\` \*twice\*." b"\n\n"
          rb"1\. Install it" b"\n" rb"- [ ] check the \[draft\] label" b"\n- [x] done\n" rb"## Fees {#fees}" b"\n")
    text = normalise(extract("raw/setup.md", md).pages[0], "md")
    assert text == ("Setup\n\nSet LAKERAG_STORE_URI first. Then run `make run` *twice*.\n\n1. Install it\n"
                    "- check the [draft] label\n- done\nFees")


@pytest.mark.parametrize("name", ["articles.json", "articles.jsonl"])
def test_html_in_a_json_text_field_is_read_as_html(name):
    """Help-centre and CMS exports (Zendesk articles, WordPress posts) put HTML in the body field: it was
    indexed tags, entities and all ("<p>Tickets cost <strong>four euro</strong>", "Children&nbsp;free")."""
    record = {"title": "Ferry fares", "id": 7,
              "body": "<p>Tickets cost <strong>four euro</strong>.</p><ul><li>Children&nbsp;free</li>"
                      "<li>Bikes free</li></ul><p>See <a href='/x'>fares</a> &amp; times.</p>"}
    data = json.dumps(record) if name.endswith(".json") else json.dumps(record) + "\n"
    text = normalise(extract(f"raw/{name}", data.encode()).pages[0], "json")
    assert text == "Ferry fares\n\nTickets cost four euro.\nChildren free\nBikes free\nSee fares & times.\n\nid: 7"
    # Text that merely mentions a tag or an ampersand stays as written.
    plain = {"title": "Markup", "text": "Write <b> for bold & <i> for italics in old HTML."}
    assert normalise(extract("raw/m.json", json.dumps(plain).encode()).pages[0], "json") == (
        "Markup\n\nWrite <b> for bold & <i> for italics in old HTML.")
