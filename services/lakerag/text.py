"""Text normalisation and sentence-aware chunking (pure Python, runs in Spark executors).

Normalisation keeps case and punctuation (answers are shown to people); it only
removes what is never content: control characters, invisible characters and runs
of whitespace, and it composes Unicode to NFC. Markup remnants (HTML tags and
entities, bold markers, code fences) are removed only from HTML and Markdown
documents: in plain text, PDF and JSON ``<c e g>``, ``**`` and ``&amp;`` are text. A PDF's
running header and footer are dropped (``drop_running_lines``) and words hyphenated at line
breaks are joined again (``join_hyphenated_lines``).

Chunks are windows of whole sentences of at most ``chunk_tokens`` tokens that
overlap by up to ``overlap_tokens`` tokens; a sentence longer than a window is
cut on token boundaries. Every chunk is a verbatim slice of the normalised page
text, so a citation can point at it.
"""

from __future__ import annotations

import html
import posixpath
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

# --- normalisation ------------------------------------------------------------------

# C0/C1 controls except tab and newline (CR, VT and FF become newlines first).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# Never content: zero-width space, word joiner, BOM, soft hyphen, replacement character.
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad\ufffd]")
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl"})
_HTML_TAG = re.compile(r"<!--.*?-->|</?([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)/?>", re.DOTALL)
# Tag names that make "<name ...>" markup; anything else in angle brackets ("<c e g>", "<T>") is text.
HTML_ELEMENTS = frozenset({
    "a", "abbr", "address", "article", "aside", "audio", "b", "bdi", "bdo", "blockquote", "body", "br", "button",
    "caption", "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt",
    "em", "embed", "fieldset", "figcaption", "figure", "font", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "head", "header", "hr", "html", "i", "iframe", "img", "input", "ins", "kbd", "label", "legend", "li",
    "link", "main", "mark", "meta", "nav", "noscript", "object", "ol", "optgroup", "option", "p", "picture",
    "pre", "q", "s", "samp", "script", "section", "select", "small", "source", "span", "strike", "strong",
    "style", "sub", "summary", "sup", "table", "tbody", "td", "template", "textarea", "tfoot", "th", "thead",
    "time", "title", "tr", "tt", "u", "ul", "var", "video", "wbr",
})
MARKUP_TYPES = frozenset({"html", "md"})
# Inline tags vanish ("<b>x</b>." -> "x."); any other tag separates words ("a<br>b" -> "a b").
_INLINE_TAGS = {"a", "b", "i", "u", "em", "strong", "span", "code", "small", "mark", "abbr", "sup", "sub", "s",
                "font", "kbd", "q", "cite", "time", "var"}
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_FENCE_LINE = re.compile(r"^[ \t]*(?:```|~~~)[^\n]*$", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def is_markup_tag(match: re.Match) -> bool:
    """A real HTML tag or comment: a known element, bare or with ``name=value`` attributes."""
    name, attributes = match.group(1), match.group(2) or ""
    if name is None:
        return True  # a comment
    return name.lower() in HTML_ELEMENTS and (not attributes.strip() or "=" in attributes)


def strip_tag(match: re.Match) -> str:
    """The replacement of one ``_HTML_TAG`` match: none for an inline tag, a space for any other
    markup (words on both sides stay apart), the text itself when it is no markup."""
    if not is_markup_tag(match):
        return match.group(0)
    return "" if (match.group(1) or "").lower() in _INLINE_TAGS else " "


def normalise(text: str, file_type: str | None = None) -> str:
    """Clean ``text`` for indexing and display; case and punctuation are kept. Markup
    remnants go only for ``file_type`` html or md (module docstring)."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").translate(
        {ord("\r"): "\n", ord("\x0b"): "\n", ord("\x0c"): "\n", 0x2028: "\n", 0x2029: "\n\n"})
    text = _CONTROL.sub("", text)
    text = _INVISIBLE.sub("", text).translate(_LIGATURES)
    if file_type in MARKUP_TYPES:
        text = _HTML_TAG.sub(strip_tag, text)
        text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
        text = _FENCE_LINE.sub("", text)
        text = _BOLD.sub(r"\2", text)
    # Every kind of horizontal space (tabs, NBSP, thin spaces) becomes one plain space.
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return unicodedata.normalize("NFC", text.strip())


def normalise_pages(pages: list[str], file_type: str | None = None) -> list[str]:
    pages = [normalise(page, file_type) for page in pages]
    return join_hyphenated_lines(drop_running_lines(pages)) if file_type == "pdf" else pages


_DIGITS = re.compile(r"\d+")


def _edge_lines(lines: list[str]) -> list[int]:
    """Indexes of the first and last non-blank lines (two each; one on a page of under 8 lines)."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    width = min(2, max(1, len(filled) // 4))
    return filled[:width] + filled[-width:]


def drop_running_lines(pages: list[str]) -> list[str]:
    """A PDF's running header and footer ("Company Confidential", "Page 3 of 40"): a line at the top
    or bottom of at least half the pages (three or more; digits aside) is printed on every page,
    not written there, and would be indexed with each one. The first page keeps it: a running
    header is often the document's title."""
    if len(pages) < 3:
        return pages
    split = [page.split("\n") for page in pages]
    seen = Counter(key for lines in split for key in {_DIGITS.sub("#", lines[i].lower()) for i in _edge_lines(lines)})
    running = {key for key, pages_with in seen.items() if pages_with >= max(3, len(pages) / 2)}
    if not running:
        return pages
    kept, shown = [], set()
    for lines in split:
        keys = {i: _DIGITS.sub("#", lines[i].lower()) for i in _edge_lines(lines)}
        drop = {i for i, key in keys.items() if key in running and key in shown}
        shown.update(keys.values())
        kept.append(_BLANK_LINES.sub("\n\n", "\n".join(line for i, line in enumerate(lines) if i not in drop)).strip())
    return kept


# A word that justified typesetting broke over two lines: "manage-\nment".
_LINE_END_HYPHEN = re.compile(r"(\w+)-\n(\w+)")
_HYPHENATED = re.compile(r"\w+-\w+")


def join_hyphenated_lines(pages: list[str]) -> list[str]:
    """PDF text as extracted keeps a line break's hyphen: "manage-\nment" is one word again
    ("management"), unless the document spells it with a hyphen elsewhere ("well-known") or the
    second part starts with a capital or digit ("Jean-Pierre", "2020-2021"): then the hyphen stays."""
    hyphenated = {word.lower() for page in pages for word in _HYPHENATED.findall(page)}

    def join(match: re.Match) -> str:
        first, second = match.groups()
        if second[0].islower() and f"{first}-{second}".lower() not in hyphenated:
            return first + second
        return f"{first}-{second}"

    return [_LINE_END_HYPHEN.sub(join, page) for page in pages]


_JSON_KEY_LINE = re.compile(r"^[a-z_][\w.-]*: ")  # a flattened "path: value" line
_TITLE_KEY = re.compile(r"^(?:title|name|headline|subject)\s*:\s*(.+)$", re.IGNORECASE)


def guess_title(pages: list[str], key: str, file_type: str | None = None) -> str:
    """A display title: JSON's title-like field, else the first short line, else the file name
    (always, for JSON Lines: a file of many records, the first of which does not name it)."""
    first = next((page for page in pages if page.strip()), "")
    lines = [line.strip() for line in first.split("\n") if line.strip()]
    if file_type == "json":
        for line in lines:
            match = _TITLE_KEY.match(line)
            if match:
                return match.group(1).strip()[:200]
        # A document with an identified text field starts with its title line, then a blank line.
        if lines and "\n\n" in first and first.strip().split("\n\n", 1)[0].strip() == lines[0] \
                and not _JSON_KEY_LINE.match(lines[0]) and 2 <= len(lines[0]) <= 150:
            return lines[0]
        # Else the first top-level text field, if it reads like a title ("catalogue: Kafka topics").
        first_key, _, value = lines[0].partition(": ") if lines else ("", "", "")
        if "." not in first_key and 3 <= len(value.strip()) <= 150 and any(c.isalpha() for c in value):
            return value.strip()
    elif file_type != "jsonl" and lines and 2 <= len(lines[0]) <= 150:
        return lines[0]
    return posixpath.splitext(posixpath.basename(key))[0]


# --- tokens and sentences ------------------------------------------------------------

# A run of word characters counts one token per MAX_WORD_CHARS: text extracted without spaces
# (some PDFs) or a base64 blob would otherwise be one "word", and a chunk of megabytes.
MAX_WORD_CHARS = 40
_TOKEN = re.compile(rf"\w{{1,{MAX_WORD_CHARS}}}|[^\w\s]")


def count_tokens(text: str) -> int:
    """Words and punctuation marks: a model-independent stand-in for tokenizer tokens."""
    return len(_TOKEN.findall(text))


# A sentence ends at . ! ? … (plus closing quotes/brackets) followed by whitespace, or at
# CJK full stops. Lines and paragraphs end sentences too (headings, list items).
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig", "no",
                  "approx", "inc", "ltd", "co", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
                  "sept", "oct", "nov", "dec", "p", "pp", "vol", "al"}
_LAST_WORD = re.compile(r"([\w.]+)\.*$")
# Longer than any abbreviation ("e.g", "U.S.A") with its closing quotes and brackets.
_ABBREVIATION_TAIL = 32
# A line at least this long that does not end a sentence was wrapped (text files, PDF); shorter: a heading.
_WRAPPED_LINE = 60
_LINE_ENDS = frozenset(".!?:;\u2026\u3002\uff01\uff1f")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*\u2022\u2013]|\d{1,3}[.)]|[a-zA-Z][.)])\s")
FIELD_LINE = re.compile(r"[ \t]*[\w.\[\]-]+:\s")  # "key.path: value", as JSON documents are flattened


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences in ``text``, whitespace excluded. A line break ends a
    sentence (headings, list items) unless the next line goes on in lower case: hard-wrapped prose
    (plain text, PDF) breaks lines mid-sentence, and a chunk must not start there."""
    spans = []
    for line_start, line_end in _lines(text):
        start = line_start
        for end_match in _SENTENCE_END.finditer(text, line_start, line_end):
            end = end_match.end()
            # Only the sentence's last word decides, so look at a bounded tail: a line whose dots are
            # all abbreviations or lower-case continuations ("... elit. lorem ...", repeated for a
            # megabyte) never ends a sentence, and passing it whole made chunking quadratic.
            tail = text[max(start, end - _ABBREVIATION_TAIL):end]
            if end_match.group(0)[0] == "." and _is_abbreviation(tail, text[end:end + 3]):
                continue
            spans.append((start, end))
            start = end
        spans.append((start, line_end))
    result = []
    for start, end in spans:
        chunk = text[start:end]
        stripped_start = start + len(chunk) - len(chunk.lstrip())
        stripped_end = start + len(chunk.rstrip())
        if stripped_end > stripped_start:
            result.append((stripped_start, stripped_end))
    return result


def _lines(text: str):
    """(start, end) of each line, a line joined to the one before when that one was wrapped."""
    start = end = previous = None
    for line in re.finditer(r"[^\n]+", text):
        continues = start is not None and line.start() == end + 1 and _wrapped(previous, line.group(0))
        if start is not None and not continues:
            yield start, end
        start = line.start() if not continues else start
        end, previous = line.end(), line.group(0)
    if start is not None:
        yield start, end


def _wrapped(before: str, line: str) -> bool:
    """Whether ``line`` goes on with the sentence of the line ``before`` it: it is no list item, and
    it starts in lower case, or ``before`` ends with a comma, or ``before`` is long and does not end
    a sentence (a wrapped paragraph, not a heading). A ``key: value`` line (as JSON documents are
    flattened) stands alone unless it follows such a wrapped line: prose may go on "once: ..."."""
    before = before.rstrip()
    cut_short = len(before) >= _WRAPPED_LINE and before[-1] not in _LINE_ENDS
    if _LIST_ITEM.match(line):
        return False
    if FIELD_LINE.match(line):
        return cut_short and not FIELD_LINE.match(before)
    return line.lstrip()[:1].islower() or before.endswith(",") or cut_short


def _is_abbreviation(sentence: str, following: str) -> bool:
    match = _LAST_WORD.search(sentence.rstrip("\"'\u201d\u2019)]"))
    if not match:
        return False
    word = match.group(1).lower().rstrip(".")
    if word in _ABBREVIATIONS or re.fullmatch(r"[a-z](?:\.[a-z])*", word):  # "Dr.", "J. Smith", "U.S."
        return True
    # A lower-case continuation is not a new sentence ("approx. ten", "3 p.m. today").
    return bool(following.strip()) and following.strip()[0].islower()


# --- chunking ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    # 1-based page where the chunk starts; None for unpaged documents.
    page: int | None
    token_count: int


@dataclass(frozen=True)
class _Unit:
    page: int
    start: int
    end: int
    tokens: int


def _units(pages: list[str], piece_tokens: int, max_tokens: int) -> list[_Unit]:
    """Sentences of every page; a sentence longer than a window is cut into token pieces."""
    units = []
    for page_no, text in enumerate(pages):
        for start, end in split_sentences(text):
            tokens = [m.span() for m in _TOKEN.finditer(text, start, end)]
            if len(tokens) <= max_tokens:
                units.append(_Unit(page_no, start, end, len(tokens)))
                continue
            for i in range(0, len(tokens), piece_tokens):
                piece = tokens[i:i + piece_tokens]
                units.append(_Unit(page_no, piece[0][0], piece[-1][1], len(piece)))
    return units


def chunk_pages(pages: list[str], chunk_tokens: int, overlap_tokens: int, paged: bool = False) -> list[Chunk]:
    """Overlapping windows of whole sentences over the (normalised) pages of one document."""
    if chunk_tokens < 1 or not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError("need chunk_tokens >= 1 and 0 <= overlap_tokens < chunk_tokens")
    # Pieces of an over-long sentence are overlap-sized, so windows over them still overlap.
    piece_tokens = overlap_tokens if overlap_tokens > 0 else chunk_tokens
    units = _units(pages, piece_tokens, chunk_tokens)
    chunks: list[Chunk] = []
    first = 0
    while first < len(units):
        last, total = first, 0
        while last < len(units) and (total + units[last].tokens <= chunk_tokens or last == first):
            total += units[last].tokens
            last += 1
        chunks.append(_make_chunk(pages, units[first:last], len(chunks), paged))
        if last >= len(units):
            break
        # Start the next window with the trailing sentences that fit in the overlap budget.
        next_first, overlap = last, 0
        while next_first - 1 > first and overlap + units[next_first - 1].tokens <= overlap_tokens:
            next_first -= 1
            overlap += units[next_first].tokens
        first = next_first
    return chunks


def distinct(chunks: list[Chunk]) -> list[Chunk]:
    """The first of each identical chunk text in a document: a repetitive file (one line
    repeated for a megabyte) must cost what its distinct content costs, not minutes of
    embedding identical windows, nor flood the index with copies. Indexes keep their gaps."""
    seen: set[str] = set()
    kept = []
    for chunk in chunks:
        if chunk.text not in seen:
            seen.add(chunk.text)
            kept.append(chunk)
    return kept


def _make_chunk(pages: list[str], units: list[_Unit], index: int, paged: bool) -> Chunk:
    parts = []
    for unit in units:
        if parts and parts[-1][0] == unit.page:
            parts[-1][2] = unit.end
        else:
            parts.append([unit.page, unit.start, unit.end])
    text = "\n\n".join(pages[page][start:end] for page, start, end in parts)
    return Chunk(index, text, units[0].page + 1 if paged else None, count_tokens(text))
