"""BM25 terms for any script (pure Python): what the lexical index and its queries are cut into.

``multiscript-v1`` (the current tokenizer), per ``\\w+`` run of the lower-cased text:

* Han, Hiragana and Katakana (written without spaces): every character and every
  pair of neighbouring characters, so a one-character query (``水``) and a word
  (``北京`` -> ``北``, ``京``, ``北京``) both find their text.
* Arabic: normalised (diacritics and tatweel dropped; alef forms -> ``ا``,
  ``ى`` -> ``ي``, ``ة`` -> ``ه``, ``ؤ`` -> ``و``, ``ئ`` -> ``ي``), then light
  stemming: a leading article (``ال``, ``وال``, ``بال``, ``كال``, ``فال``,
  ``لل``) while 2+ letters remain, and one common suffix while 3+ remain;
  Arabic stopwords dropped.
* Everything else (Latin, Cyrillic, Greek, Hangul, ...): words of 2+ characters,
  English stopwords dropped for Latin-script words, no stemming (the neutral
  default: an English stemmer would mangle names and other languages' words).
  For Latin text this is exactly ``bm25s.tokenize(..., stopwords="en")``, the
  tokenizer of index versions built before this one (``bm25s-en``).

A version's manifest names its tokenizer, and its queries are cut with that same
one, so versions built with the old tokenizer keep answering as they were built.
"""

from __future__ import annotations

import re
import unicodedata

TOKENIZER = "multiscript-v1"
LEGACY_TOKENIZER = "bm25s-en"  # what a lexical section without a "tokenizer" key was built with
TOKENIZERS = (TOKENIZER, LEGACY_TOKENIZER)

_WORD = re.compile(r"\w+")
_LEGACY_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s's default token pattern
# Han (incl. extension A and compatibility), Hiragana, Katakana.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ARABIC_LETTER = re.compile(r"[\u0600-\u06ff]")
_ARABIC_MARKS = re.compile(r"[\u064b-\u065f\u0670\u0640\u06d6-\u06ed]")  # harakat, dagger alef, tatweel, Quranic marks
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_ARABIC_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")
# Function words after normalisation (so "إلى" is listed as "الي").
ARABIC_STOPWORDS = frozenset({
    "في", "من", "علي", "الي", "عن", "مع", "ان", "او", "ثم", "هذا", "هذه", "ذلك", "تلك",
    "التي", "الذي", "الذين", "هو", "هي", "هم", "هن", "انا", "نحن", "انت", "كان", "كانت", "يكون",
    "قد", "لا", "ما", "لم", "لن", "كل", "بين", "عند", "حتي", "اذا", "اي", "بعد", "قبل",
    "منذ", "غير", "ايضا", "كما", "حيث", "لكن", "بل", "و", "ف", "ب", "ل",
})


def english_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_ENGLISH = english_stopwords()


def terms(text: str, tokenizer: str = TOKENIZER) -> list[str]:
    """The BM25 terms of ``text`` in order (repeats kept: BM25 counts them)."""
    if tokenizer == LEGACY_TOKENIZER:
        return [t for t in _LEGACY_WORD.findall(text.lower()) if t not in _ENGLISH]
    if tokenizer != TOKENIZER:
        raise ValueError(f"unknown BM25 tokenizer {tokenizer!r}: this release knows {', '.join(TOKENIZERS)}")
    out: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFC", text).lower()):
        if _CJK.search(word):
            _split_cjk(word, out)
        elif _ARABIC_LETTER.search(word):
            stem = arabic_stem(word)
            if len(stem) >= 2 and stem not in ARABIC_STOPWORDS:
                out.append(stem)
        elif len(word) >= 2 and word not in _ENGLISH:
            out.append(word)
    return out


def _split_cjk(word: str, out: list[str]) -> None:
    """CJK runs -> characters and bigrams; the rest of a mixed word (``iphone15``) as words."""
    position = 0
    for match in _CJK.finditer(word):
        rest = word[position:match.start()]
        if len(rest) >= 2:
            out.append(rest)
        run = match.group(0)
        out.extend(run)
        out.extend(run[i:i + 2] for i in range(len(run) - 1))
        position = match.end()
    rest = word[position:]
    if len(rest) >= 2:
        out.append(rest)


def arabic_normalise(word: str) -> str:
    return _ARABIC_MARKS.sub("", word).translate(_ARABIC_FOLD)


def arabic_stem(word: str) -> str:
    """Light stemming (after normalisation): one article prefix and one suffix, 2+ letters kept."""
    word = arabic_normalise(word)
    if word in ARABIC_STOPWORDS:
        return word
    for prefix in _ARABIC_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 2:
            word = word[len(prefix):]
            break
    for suffix in _ARABIC_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word
