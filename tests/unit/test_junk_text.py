"""Text files that are not text go to quarantine with a reason instead of being indexed as junk."""

from __future__ import annotations

import random

import pytest
from lakerag.extract import extract

RNG = random.Random(13)


@pytest.mark.parametrize("name,data,reason", [
    ("random-high.txt", bytes(RNG.randrange(128, 256) for _ in range(4096)), "control characters: binary data"),
    ("random-printable.txt", bytes(RNG.randrange(32, 127) for _ in range(4096)), "no words"),
    ("random-printable.md", bytes(RNG.randrange(32, 127) for _ in range(4096)), "no words"),
    ("digits.txt", " ".join(str(RNG.randrange(10**6)) for _ in range(400)).encode(), "no words"),
    ("latin1-noise.txt", bytes(RNG.choice(range(0xa0, 0x100)) for _ in range(3000)) + b" ok", "not UTF-8"),
    ("tool.txt", b"\x7fELF\x02\x01\x01" + b"text-looking bytes " * 50, "ELF executable"),
    ("bundle.txt", b"PK\x03\x04" + b"name.xml " * 50, "ZIP archive"),
    ("image.md", b"\x89PNG\r\n\x1a\n" + b"IHDR chunk " * 50, "PNG image"),
    ("packed.txt", b"\x1f\x8b\x08" + b"compressed " * 50, "gzip archive"),
])
def test_junk_is_quarantined_with_a_reason(name, data, reason):
    extraction = extract(f"raw/{name}", data)
    assert not extraction.ok and reason in extraction.reason, extraction.reason


@pytest.mark.parametrize("text", [
    "Übersicht der Kosten für das dritte Quartal, mit Erläuterungen zu allen Abweichungen. " * 5,
    "这是一个测试文件，用于检查中文文本是否被正确处理。我们需要足够长的文本来触发检查。" * 10,
    "def retry(call, attempts=3):\n    for n in range(attempts):\n        return call(n)\n" * 10,
    "2026-05-12 10:00:01 INFO started the nightly export for tenant acme (42 files)\n" * 20,
])
def test_real_text_in_any_script_or_shape_is_kept(text):
    assert extract("raw/doc.txt", text.encode()).ok


@pytest.mark.parametrize("text,encoding", [
    ("Озеро данных хранит все документы компании в исходном виде, а конвейер делает их доступными для поиска. " * 2,
     "koi8-r"),
    ("データレイクは、あらゆる規模のすべての構造化データと非構造化データを保存できる一元化されたリポジトリです。" * 2,
     "shift_jis"),
])
def test_text_in_a_legacy_encoding_is_quarantined_with_what_to_do(text, encoding):
    """Such a file was called "random or binary data, not text"."""
    extraction = extract("raw/legacy.txt", text.encode(encoding))
    assert not extraction.ok
    assert "text in another encoding" in extraction.reason and "iconv -f ENCODING -t UTF-8" in extraction.reason, \
        extraction.reason


def test_windows_1252_text_is_kept():
    data = ("Caf\xe9 na\xefve r\xe9sum\xe9 \u2013 the \u201cquoted\u201d words of a memo. " * 10).encode("cp1252")
    assert extract("raw/memo.txt", data).ok


def test_a_short_latin1_word_is_kept():
    assert extract("raw/latin.txt", "Grüße".encode("latin-1")).pages == ["Grüße"]
