"""Raw bytes + object key -> text per page, or the reason the file cannot be read.

Pure Python (stdlib + pypdf) so it runs unchanged in Spark executors. Nothing
here raises on bad input: every problem becomes a quarantine reason that says
what is wrong and what to do about it.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser

from .text import HTML_ELEMENTS, normalise, strip_tag

# Extension -> file_type (the bronze `file_type` column).
FILE_TYPES = {
    ".pdf": "pdf",
    ".txt": "txt",
    ".text": "txt",
    ".json": "json",
    ".jsonl": "jsonl",  # JSON Lines: one JSON value per line
    ".ndjson": "jsonl",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
}
PAGED_TYPES = {"pdf"}

# The version of the text the pipeline makes of a file: extraction here, cleaning and titles in
# text.py. Bump it with any change that alters that text for some file: the next pipeline run
# then re-extracts every document (each ETL table records the version it was built from as the
# property lakerag.textVersion), not only new or changed files.
TEXT_VERSION = "1"

# pypdf reports every recoverable oddity of a damaged file as a log warning.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Extraction:
    file_type: str | None
    pages: list[str] = field(default_factory=list)
    # Set when the file cannot be read; the file goes to quarantine with it.
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def page_count(self) -> int | None:
        return len(self.pages) if self.file_type in PAGED_TYPES and self.ok else None


def file_type_for(key: str) -> str | None:
    """Detected type from the file name's extension (case-insensitive), None if unsupported."""
    return FILE_TYPES.get(posixpath.splitext(posixpath.basename(key))[1].lower())


def size_problem(size: int, max_bytes: int | None) -> str | None:
    """Reason to refuse a file by its size alone (checked before its bytes are fetched)."""
    if size == 0:
        return "empty file (0 bytes): upload the file again with its content"
    if max_bytes is not None and size > max_bytes:
        return (f"file is {size} bytes, over the limit of {max_bytes} bytes: split it or raise "
                f"LAKERAG_MAX_FILE_BYTES")
    return None


def extract(key: str, data: bytes, max_bytes: int | None = None) -> Extraction:
    """Text of ``data`` (the bytes of object ``key``), one entry per page (one for unpaged types)."""
    file_type = file_type_for(key)
    if file_type is None:
        ext = posixpath.splitext(posixpath.basename(key))[1] or "(none)"
        supported = ", ".join(sorted(FILE_TYPES))
        return Extraction(None, reason=f"unsupported file extension {ext}: supported are {supported}")
    problem = size_problem(len(data), max_bytes)
    if problem:
        return Extraction(file_type, reason=problem)
    try:
        pages = _EXTRACTORS[file_type](data)
    except _Unreadable as exc:
        return Extraction(file_type, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a parser bug on odd input must not stop the batch
        return Extraction(file_type, reason=f"could not extract {file_type}: {type(exc).__name__}: {exc}")
    if not any(normalise(page) for page in pages):
        hint = " (a scanned PDF without a text layer? OCR it first)" if file_type == "pdf" else ""
        return Extraction(file_type, reason=f"no text found in the file{hint}")
    return Extraction(file_type, pages)


class _Unreadable(ValueError):
    """Raised inside an extractor with the quarantine reason."""


# --- text decoding ---------------------------------------------------------------

_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
# C0 control bytes that never appear in text (tab, LF, VT, FF, CR and ESC excluded).
_CONTROL_BYTES = bytes(set(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}) + b"\x7f"


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not text in any 8-bit or UTF-8 encoding (images, archives, noise)."""
    sample = data[:65536]
    if any(sample.startswith(bom) for bom, _ in _BOMS):
        return False
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(2, len(sample) // 100)


# Formats that are never text, whatever the file is called (a .txt that is really an archive).
_NOT_TEXT_MAGIC = ((b"\x7fELF", "an ELF executable"), (b"PK\x03\x04", "a ZIP archive (or .docx/.xlsx/.jar)"),
                   (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
                   (b"Rar!\x1a\x07", "a RAR archive"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                   (b"GIF8", "a GIF image"), (b"%PDF-", "a PDF (name it .pdf)"), (b"\xca\xfe\xba\xbe", "a Java class"),
                   (b"\xfe\xed\xfa", "a Mach-O binary"), (b"\xcf\xfa\xed\xfe", "a Mach-O executable"), (b"\x00asm", "WebAssembly"))
_WORD_EDGES = "\"'()[]{}<>.,;:!?*_`~-"
_OTHER_ENCODING = ("or text in another encoding (GB18030, Big5, Shift-JIS, KOI8-R, …); save text as UTF-8 "
                   "(iconv -f ENCODING -t UTF-8)")


def check_plain_text(data: bytes, text: str) -> str:
    """Refuse decoded text that is not text: replacement/control characters, bytes that only
    Latin-1 can decode and come out mostly non-ASCII (random bytes), or no words at all."""
    sample = text[:65536]
    visible = [ch for ch in sample if not ch.isspace()]
    if not visible:
        return text
    try:
        data[:65536].decode("utf-8")
        utf8 = True
    except UnicodeDecodeError as exc:
        utf8 = exc.start > 65530  # only the sample's cut split a character
    odd = sum(1 for ch in visible if ch == "\ufffd" or unicodedata.category(ch) in {"Cc", "Co", "Cn", "Cs"})
    if odd > max(2, len(visible) // 50):
        if not utf8:  # Windows-1252/Latin-1 made them of bytes 0x80-0x9f
            raise _Unreadable(f"the bytes are not UTF-8, and as Windows-1252 {odd} of {len(visible)} characters are "
                              f"control characters: binary data, {_OTHER_ENCODING}")
        raise _Unreadable(f"{odd} of {len(visible)} characters are control or replacement characters: not text; "
                          "check the file or its encoding")
    # Real Latin-1/Windows-1252 prose is mostly ASCII (a few accents); short texts are not judged.
    if not utf8 and len(visible) >= 64 and sum(1 for ch in visible if ord(ch) > 127) > 0.5 * len(visible):
        raise _Unreadable(f"the bytes are not UTF-8 and as Windows-1252 they are mostly non-ASCII: random or binary "
                          f"data, {_OTHER_ENCODING}")
    if len(visible) >= 200:
        letters = sum(1 for ch in visible if ch.isalpha())
        in_words = sum(len(t) for t in sample.split() if (w := t.strip(_WORD_EDGES)) and
                       all(ch.isalpha() or ch in "'-" for ch in w))
        if letters < 0.8 * len(visible) and in_words < 0.3 * len(visible):
            raise _Unreadable("the text has no words (mostly symbols, digits or random characters): not a "
                              "document to search; check the file")
    return text


def _utf16_without_bom(data: bytes) -> str | None:
    """Text saved as UTF-16 with no byte-order mark (SQL Server's `bcp -w`, .NET's Encoding.Unicode):
    mostly Latin characters, so every other byte is zero. None for anything else."""
    pairs = min(len(data), 4096) // 2
    if pairs < 8:
        return None
    high_le, high_be = data[1:2 * pairs:2].count(0), data[0:2 * pairs:2].count(0)
    for codec, zeros, others in (("utf-16-le", high_le, high_be), ("utf-16-be", high_be, high_le)):
        if zeros >= 0.7 * pairs and others <= 0.02 * pairs:
            try:
                text = data[:len(data) // 2 * 2].decode(codec)
            except UnicodeDecodeError:  # lone surrogates: not text after all
                return None
            controls = sum(1 for ch in text[:pairs] if unicodedata.category(ch) == "Cc" and not ch.isspace())
            return text if controls <= max(2, pairs // 100) else None  # 16-bit samples, not characters
    return None


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode text bytes: BOM, UTF-16 without one, then a declared charset, UTF-8, Windows-1252,
    Latin-1 (never fails)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                raise _Unreadable(f"text starts with a {codec} byte-order mark but is not valid {codec}") from None
    for magic, what in _NOT_TEXT_MAGIC:
        if data.startswith(magic):
            raise _Unreadable(f"the bytes are {what}, not text: upload the document itself, or fix its extension")
    if (utf16 := _utf16_without_bom(data)) is not None:
        return utf16
    if looks_binary(data):
        raise _Unreadable("binary content, not text: check the file type or convert it to text")
    codecs = [declared] if declared else []
    # Windows-1252 is Latin-1 plus printable characters in 0x80-0x9f (curly quotes, dashes),
    # which is what "Latin-1" files from Windows usually are; Latin-1 itself decodes anything left.
    for codec in codecs + ["utf-8", "cp1252", "latin-1"]:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    raise AssertionError("latin-1 decodes every byte string")


# --- per-type extractors ----------------------------------------------------------

def _pdf(data: bytes) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    if b"%PDF-" not in data[:1024]:
        raise _Unreadable("not a PDF (no %PDF- header): check the file or fix its extension")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("encrypted PDF: remove the password and upload it again")
        pages = [page.extract_text() or "" for page in reader.pages]
    except _Unreadable:
        raise
    except DependencyError as exc:  # the file is fine; this install cannot decrypt it
        raise _Unreadable(f"encrypted PDF this install cannot open ({exc}): install pypdf[crypto] "
                          "(the spark image has it), then run the pipeline with --full-rebuild") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError, AssertionError) as exc:
        raise _Unreadable(f"corrupt PDF ({type(exc).__name__}: {exc}): re-export or repair the file") from None
    if not pages:
        raise _Unreadable("PDF has no pages: re-export or repair the file")
    return pages


def _txt(data: bytes) -> list[str]:
    return [check_plain_text(data, decode_text(data))]


def _json(data: bytes) -> list[str]:
    text = decode_text(data)
    with _json_errors():
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Unreadable(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if isinstance(value, list) and any(json_document(item) is not None for item in value):
            return [_records_text(value)]  # an export of records (articles, tickets)
        document = json_document(value)
        return [document] if document is not None else ["\n".join(flatten_json(value))]


def _jsonl(data: bytes) -> list[str]:
    values = []
    with _json_errors():
        for number, line in enumerate(decode_text(data).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise _Unreadable(f"invalid JSON on line {number} column {exc.colno}: {exc.msg} (each line of a "
                                  "JSON Lines file is one JSON value)") from None
        return [_records_text(values)]


def _records_text(records: list) -> str:
    """Records one after the other, each its own paragraphs: title and text without field names
    (``json_document``), or its fields flattened."""
    texts = (json_document(record) or "\n".join(flatten_json(record)) for record in records)
    return "\n\n".join(text for text in texts if text)


@contextmanager
def _json_errors():
    try:
        yield
    except RecursionError:  # the decoder and flatten_json both recurse once per level
        raise _Unreadable("JSON nested too deeply to read (about 1,000 levels or more): "
                          "flatten the structure and upload the file again") from None


# An object with one of these string fields is a document: its text without field names.
TEXT_FIELDS = ("text", "body", "content", "contents", "abstract", "description", "summary", "passage", "article")
TITLE_FIELDS = ("title", "name", "headline", "subject")


def json_document(value) -> str | None:
    """``title\n\ntext`` (then the other fields as ``path: value`` lines) for an object with a
    text field; None when no text field is identified (then every field is flattened).

    Field names in front of the text ("title: ... / text: ...") are noise to the embedding
    model and BM25 alike; the rest of the fields stay as context after the text."""
    if not isinstance(value, dict):
        return None
    fields = {str(key).lower(): key for key in value}
    text_key = next((fields[f] for f in TEXT_FIELDS if f in fields and isinstance(value[fields[f]], str)
                     and value[fields[f]].strip()), None)
    if text_key is None:
        return None
    title_key = next((fields[f] for f in TITLE_FIELDS if f in fields and isinstance(value[fields[f]], str)
                      and value[fields[f]].strip()), None)
    parts = [value[title_key].strip()] if title_key is not None else []
    parts.append(html_fragment_text(value[text_key]) if looks_like_html(value[text_key]) else value[text_key].strip())
    rest = {key: item for key, item in value.items() if key not in (text_key, title_key)}
    extra = flatten_json(rest)
    if extra:
        parts.append("\n".join(extra))
    return "\n\n".join(parts)


def flatten_json(value, path: str = "") -> list[str]:
    """One ``path: value`` line per scalar, keys kept as context (``author.name: Ada``).

    Lists of scalars become one line (``tags: a, b``); list items of objects share
    their parent's path, so ``sections.title`` reads naturally for every section.
    """
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            lines.extend(flatten_json(item, f"{path}.{key}" if path else str(key)))
        return lines
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            shown = ", ".join(_scalar(item) for item in value if item is not None and _scalar(item))
            return [f"{path}: {shown}" if path else shown] if shown else []
        lines = []
        for item in value:
            lines.extend(flatten_json(item, path))
        return lines
    if value is None:
        return []
    shown = _scalar(value)
    if not shown:
        return []
    return [f"{path}: {shown}" if path else shown]


def _scalar(value) -> str:
    """The value as text; "" for encoded bytes, which are left out."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    if isinstance(value, str) and is_encoded_bytes(text):
        return ""
    return " ".join(html_fragment_text(text).split("\n")) if isinstance(value, str) and looks_like_html(text) else text


# HTML in a JSON string (a CMS body): a closing tag of an HTML element, or a <br>. "<b> for bold" is text.
_HTML_FRAGMENT = re.compile(r"</([A-Za-z][A-Za-z0-9]*)[ \t]*>|<br[ \t]*/?>", re.IGNORECASE)


def looks_like_html(text: str) -> bool:
    return any(m.group(1) is None or m.group(1).lower() in HTML_ELEMENTS for m in _HTML_FRAGMENT.finditer(text))


def html_fragment_text(text: str) -> str:
    """The visible text of an HTML fragment, one line per block, no blank lines (in a record a
    blank line separates its fields)."""
    parser = _HTMLText.read(text)
    return "\n".join(" ".join(line.split()) for line in "".join(parser.parts).split("\n") if line.strip())


# Attachments and thumbnails inside records: base64 (MIME wraps it at 76) or a data: URI.
_DATA_URI = re.compile(r"\Adata:[\w.+/-]*(?:;[\w.=-]+)*;base64,")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def is_encoded_bytes(text: str) -> bool:
    """True for base64 of 200 characters or more: bytes, not words for search to find."""
    lines = _DATA_URI.sub("", text).split()
    length = sum(map(len, lines))
    return (length >= 200 and length / len(lines) >= 60
            and all(_BASE64_LINE.fullmatch(line) for line in lines))


_FENCE = re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE)
# An ATX heading, its closing hashes and any attributes ("## Fees {#fees}") dropped.
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+\{[#.][^{}]*\})?[ \t]*#*[ \t]*$", re.MULTILINE)
_TASK_BOX = re.compile(r"^([ \t]*(?:[-*+]|\d+[.)])[ \t]+)\[[ xX]\][ \t]+", re.MULTILINE)
# A backslash escape ("LAKERAG\_STORE\_URI", "1\."): the character itself, hidden from the markup
# rules below as a private-use stand-in, then put back.
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_ESCAPED = {0xE000 + ord(ch): ch for ch in map(chr, range(0x21, 0x7F)) if not ch.isalnum()}
_SETEXT = re.compile(r"^[ \t]{0,3}(=+|-+)[ \t]*$", re.MULTILINE)
# YAML (---) or TOML (+++) front matter of static-site pages; its title is kept.
_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?)\n\1[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"""^title[ \t]*[:=][ \t]*(["']?)(.+?)\1[ \t]*$""", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_LINK_DEF = re.compile(r"^[ \t]{0,3}\[(?!\^)[^\]]+\]:[ \t]+\S+.*$", re.MULTILINE)
# Footnotes: the marker goes, the definition's text stays ("[^1]: Children travel free").
_FOOTNOTE_DEF = re.compile(r"^[ \t]{0,3}\[\^[^\]\s]+\]:[ \t]*", re.MULTILINE)
_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]+\]")
_EMPHASIS = re.compile(r"(\*\*|\*|~~)(?=\S)(.+?)(?<=\S)\1")
# Underscore emphasis only at word edges, so snake_case names survive.
_UNDERSCORE_EMPHASIS = re.compile(r"(?<!\w)(__|_)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_CODE_SPAN = re.compile(r"`+([^`]+)`+")
_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE)
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$", re.MULTILINE)
_HR = re.compile(r"^[ \t]{0,3}([-*_])([ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_HTML_TAG = re.compile(r"<!--.*?-->|</?([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)/?>", re.DOTALL)


def _markdown(data: bytes) -> list[str]:
    text = decode_text(data).replace("\r\n", "\n")
    title = None
    if front := _FRONT_MATTER.match(text):
        match = _FRONT_MATTER_TITLE.search(front.group(2))
        title = match.group(2).strip() if match and match.group(2).strip() not in {">", "|", ">-", "|-"} else None
        text = text[front.end():]
    text = _ESCAPE.sub(lambda m: chr(0xE000 + ord(m.group(1))), text)
    text = _FENCE.sub("", text)
    text = _HEADING.sub(r"\1", text)
    text = _tables(text)
    text = _HR.sub("", text)
    text = _SETEXT.sub("", text)
    text = _LINK_DEF.sub("", text)
    text = _FOOTNOTE_REF.sub("", _FOOTNOTE_DEF.sub("", text))
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _CODE_SPAN.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _UNDERSCORE_EMPHASIS.sub(r"\2", text)
    text = _QUOTE.sub("", text)
    text = _TASK_BOX.sub(r"\1", text)
    text = _HTML_TAG.sub(strip_tag, text).translate(_ESCAPED)
    # As HTML's <title>: the first line, unless the page already starts with it (its heading).
    if title and not text.lstrip().startswith(title):
        text = f"{title}\n\n{text}"
    return [check_plain_text(data, text)]  # judged without the markup: HTML tables are words, not symbols


def _tables(text: str) -> str:
    """Rows of real Markdown tables (a header row, a ``|---|`` rule, rows) as ``a · b`` lines, the
    rule dropped; pipes anywhere else (``|: C2 E2 :|``, ``a | b``) are text and stay."""
    lines = text.split("\n")
    in_table = [False] * len(lines)
    for i, line in enumerate(lines):
        if "|" in line and _TABLE_RULE.fullmatch(line) and i > 0 and "|" in lines[i - 1]:
            in_table[i - 1] = in_table[i] = True
            j = i + 1
            while j < len(lines) and "|" in lines[j] and lines[j].strip():
                in_table[j] = True
                j += 1
    out = []
    for line, table in zip(lines, in_table):
        if not table:
            out.append(line)
        elif not _TABLE_RULE.fullmatch(line):
            out.append(" · ".join(cell.strip() for cell in line.strip().strip("|").split("|")))
    return "\n".join(out)


class _HTMLText(HTMLParser):
    """Visible text of an HTML document, one line per block element; a table row is one line of
    cells joined by " · ", as Markdown table rows are (``_tables``)."""

    # Site chrome (navigation menus, page footers) repeats on every page and answers nothing.
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "nav", "footer"})
    BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
             "section", "article", "header", "footer", "nav", "aside", "blockquote", "pre", "hr",
             "dt", "dd", "figcaption", "main", "form", "title"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False
        # Per open <table> (they nest): cells so far in its current row, and whether one is open.
        # Kept per table, not by counting tags, as HTML may leave </td> and </tr> out.
        self._tables: list[dict] = []

    @classmethod
    def read(cls, html: str) -> _HTMLText:
        """A parser that has read all of ``html``."""
        parser = cls()
        parser.feed(html)
        parser.close()
        return parser

    def _break(self) -> None:
        """A block's edge: a new line, or within a table cell a space (the row stays one line)."""
        self.parts.append(" " if self._tables and self._tables[-1]["in_cell"] else "\n")

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        table = self._tables[-1] if self._tables else None
        if tag == "tr" and table is not None:
            self.parts.append("\n")
            table.update(cells=0, in_cell=False)
        elif tag in ("td", "th") and table is not None:
            if table["cells"]:
                self.parts.append(" · ")
            table.update(cells=table["cells"] + 1, in_cell=True)
        elif tag in self.BLOCK:
            self._break()
            if tag == "table":
                self._tables.append({"cells": 0, "in_cell": False})
        if tag == "img":
            alt = dict(attrs).get("alt")
            if alt and not self._skip:
                self.parts.append(f" {alt} ")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag in ("tr", "td", "th"):
            if self._tables:
                self._tables[-1]["in_cell"] = False
        elif tag in self.BLOCK:
            if tag == "table" and self._tables:
                self._tables.pop()
            self._break()

    def handle_data(self, data):
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(data)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _html(data: bytes) -> list[str]:
    match = _META_CHARSET.search(data[:4096])
    text = decode_text(data, declared=match.group(1).decode("ascii") if match else None)
    parser = _HTMLText.read(text)
    body = "".join(parser.parts)
    title = " ".join("".join(parser.title).split())
    # Keep <title> as the first line unless the body already starts with it (usually the <h1>).
    if title and not body.lstrip().startswith(title):
        body = f"{title}\n\n{body}"
    return [body]


_EXTRACTORS = {"pdf": _pdf, "txt": _txt, "json": _json, "jsonl": _jsonl, "md": _markdown, "html": _html}
