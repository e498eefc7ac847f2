"""Small real documents for tests: multi-page PDFs (fpdf2) and every kind of bad input."""

from __future__ import annotations

import json
import random


def make_pdf(pages: list[str]) -> bytes:
    """A real PDF with one text page per entry (core fonts: Latin-1 text only)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def encrypted_pdf(pages: list[str], user_password: str = "") -> bytes:
    """An AES-256 encrypted PDF. With no user password anyone may open it (only editing is
    restricted, as Word and Acrobat write them), but reading it needs pypdf's crypto extra."""
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(pages))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def good_documents() -> dict[str, bytes]:
    """Readable raw files (name under raw/ -> bytes), one or more of every supported type."""
    return {
        "guide.pdf": make_pdf([
            "Lake Guide. The bronze table keeps the extracted text of every raw file. " * 3,
            "Silver cleans the text. Gold cuts it into overlapping chunks for retrieval. " * 3,
        ]),
        "notes.txt": b"Spark computes and delta-rs commits. Each stage merges rows by id.\n\nNo blind appends.",
        "catalog.json": json.dumps({"title": "Catalog", "items": [{"name": "Lamp", "price": 12},
                                                                  {"name": "Desk", "price": 80}]}).encode(),
        "readme.md": b"# Read Me\n\nThe **lake** keeps [documents](http://example.org) queryable.\n",
        "page.html": b"<html><head><title>Page</title></head><body><h1>Page</h1><p>Hello &amp; welcome.</p>"
                     b"<script>ignored()</script></body></html>",
        "caf\u00e9 menu.txt": "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, served daily.".encode("latin-1"),
        "notes..v2.txt": b"A name with two dots in a row is a fine key.",
        "restricted.pdf": encrypted_pdf(["Editing is restricted, reading is not: the lake indexes this page."]),
    }


def bad_documents() -> dict[str, bytes]:
    """Unreadable raw files (name -> bytes) and the word their quarantine reason must contain."""
    rng = random.Random(7)
    return {
        "broken.pdf": make_pdf(["This PDF is cut in half."])[:300],
        "empty.txt": b"",
        "garbage.txt": bytes(rng.randrange(256) for _ in range(4096)),
        "invalid.json": b'{"title": "unterminated',
        "slides.pptx": b"PK\x03\x04 not supported",
        "locked.pdf": encrypted_pdf(["Only with the password."], user_password="s3cret"),
    }


BAD_REASON_WORDS = {
    "broken.pdf": "corrupt PDF",
    "empty.txt": "empty",
    "garbage.txt": "binary",
    "invalid.json": "invalid JSON",
    "slides.pptx": "unsupported",
    "locked.pdf": "encrypted PDF: remove the password",
}
