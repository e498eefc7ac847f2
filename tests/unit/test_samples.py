"""The bundled sample documents meet their spec, and every smoke question has one right document."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import lakerag
import pypdf
import pytest

SAMPLES = Path(lakerag.__file__).parent / "samples"
DOCS = SAMPLES / "docs"
QUESTIONS = json.loads((SAMPLES / "questions.json").read_text(encoding="utf-8"))
EXT_TYPE = {".pdf": "pdf", ".txt": "txt", ".json": "json", ".md": "md", ".html": "html"}


def doc_paths() -> list[Path]:
    return sorted(p for p in DOCS.iterdir() if p.is_file())


def text_of(path: Path) -> str:
    """PDF text via pypdf, raw text otherwise; whitespace collapsed so line wraps don't matter."""
    if path.suffix == ".pdf":
        raw = "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
    else:
        raw = path.read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", raw)


def test_counts_per_type_and_names():
    paths = doc_paths()
    types = Counter(EXT_TYPE.get(p.suffix) for p in paths)
    assert None not in types, f"unexpected extension in {[p.name for p in paths]}"
    assert len(paths) >= 14
    for kind in ("pdf", "txt", "json", "md", "html"):
        assert types[kind] >= 3, f"only {types[kind]} {kind} samples"
    for p in paths:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.[a-z]+", p.name), p.name


def test_pdfs_small_and_multi_page():
    page_counts = {}
    for p in DOCS.glob("*.pdf"):
        assert p.stat().st_size < 100_000, p.name
        pages = pypdf.PdfReader(p).pages
        page_counts[p.name] = len(pages)
        assert 300 <= len(text_of(p).split()) <= 1500, p.name
    multi = [n for n, c in page_counts.items() if 2 <= c <= 5]
    assert len(multi) >= 3, page_counts


def load_generator():
    spec = importlib.util.spec_from_file_location("make_pdfs", SAMPLES / "make_pdfs.py")
    make_pdfs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pdfs)
    return make_pdfs


def test_pdf_text_extracts_exactly_as_written():
    for name, (title, pages) in load_generator().PDFS.items():
        reader = pypdf.PdfReader(DOCS / name)
        assert len(reader.pages) == len(pages), name
        for page, sections in zip(reader.pages, pages):
            extracted = re.sub(r"\s+", " ", page.extract_text())
            for heading, paragraph in sections:
                assert heading in extracted, f"{name}: heading {heading!r}"
                assert re.sub(r"\s+", " ", paragraph) in extracted, f"{name}: {paragraph[:60]!r}..."


def test_committed_pdfs_match_the_generator(tmp_path):
    written = load_generator().write_pdfs(tmp_path)
    assert {p.name for p in written} == {p.name for p in DOCS.glob("*.pdf")}
    for p in written:
        assert p.read_bytes() == (DOCS / p.name).read_bytes(), f"rerun make_pdfs.py: {p.name} is stale"


@pytest.mark.parametrize("path", [p for p in doc_paths() if p.suffix in (".txt", ".md")], ids=lambda p: p.name)
def test_text_documents_have_300_to_1500_words(path):
    assert 300 <= len(text_of(path).split()) <= 1500


def nesting_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nesting_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nesting_depth, value), default=0)
    return 0


def has_array_of_objects(value) -> bool:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return True
    return any(has_array_of_objects(v) for v in children)


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.json")), ids=lambda p: p.name)
def test_json_documents_are_nested(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert has_array_of_objects(data), f"{path.name} has no array of objects"
    # object -> array -> object -> object/array: text lives below the top level.
    assert nesting_depth(data) >= 4, f"{path.name} is too flat"


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.html")), ids=lambda p: p.name)
def test_html_documents_carry_noise_to_strip(path):
    html = path.read_text(encoding="utf-8").lower()
    for tag in ("<nav", "<script", "<style", "<footer", "<h1"):
        assert tag in html, f"{path.name} lacks {tag}>"


def test_questions_have_exactly_one_right_document():
    assert len(QUESTIONS) >= 10
    texts = {f"raw/{p.name}": text_of(p) for p in doc_paths()}
    for q in QUESTIONS:
        assert set(q) == {"question", "expected_source", "answer_contains"}, q
        assert q["expected_source"] in texts, f"no sample for {q['expected_source']}"
        holders = [key for key, text in texts.items() if q["answer_contains"] in text]
        assert holders == [q["expected_source"]], f"{q['answer_contains']!r} found in {holders}"


def test_the_samples_seed_only_a_store_that_holds_nothing(tmp_path):
    from lakerag import sample_docs
    from lakerag.store import LocalStore

    store = LocalStore(tmp_path / "lake")
    assert sample_docs.seed(store) == len(doc_paths())
    assert sorted(info.key for info in store.list()) == [f"raw/{p.name}" for p in doc_paths()]
    # A sample deleted (through the API) stays deleted: the store is not new any more.
    store.delete("raw/glossary.txt")
    assert sample_docs.seed(store) == 0 and not store.exists("raw/glossary.txt")
    # Nor is a store whose every document went, while its tables stay.
    emptied = LocalStore(tmp_path / "emptied")
    emptied.put("silver/_delta_log/00000000000000000000.json", b"{}")
    assert sample_docs.seed(emptied) == 0 and not list(emptied.list("raw/"))
