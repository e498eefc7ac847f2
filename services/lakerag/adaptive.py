"""Per-query fusion weights from signals known at query time (pure functions, no I/O).

A fixed weight cannot suit every query (docs/retrieval.md): the English model is
blind to Arabic, where BM25 is the only signal; on rare codes and names lexical
matching finds the entry the model cannot tell apart; on natural English
questions BM25 mostly adds noise. So each query gets its own weights for the
weighted reciprocal-rank fusion, from three signals in [0, 1]:

* ``coverage``: how well the embedding model's tokenizer covers the query.
  Characters per word piece, over the pieces holding a letter or digit,
  ``[UNK]`` pieces counting as no characters; 1.5 characters per piece or fewer
  (a script the vocabulary only knows letter by letter, unknown characters)
  -> 0, 3 or more (whole words and long sub-words) -> 1, linear in between.
* ``identifier``: how much the query is a code or name lookup: the share of its
  content tokens that carry a digit (``E1038``), are upper-case acronyms
  (``VACUUM``) or hyphen-joined capitalised names (``Oyelaran-Fitzgibbon``);
  1 when every content token is capitalised (a bare name: ``Jóhann
  Þorvaldsson``); scaled down for long queries (full up to 4 content tokens, 0 from 10).
* ``lexical_match``: how confident the lexical side is: the share of the query's
  BM25 terms that its top hit contains (1: an exact match exists in this index).

Then ``lexical_share = max(1 - coverage, identifier * lexical_match)`` and

    dense weight = 1 - lexical_share,   lexical weight = 0.1 + 0.9 * lexical_share

A natural, well-covered English question fuses 1.0 / 0.1 (measured: within
noise of dense, where 0.3 was not); a query in a script the model does not know,
or a code that BM25 matches exactly, is answered in lexical order (dense weight
0 only breaks ties below the lexical hits); queries in between blend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .terms import english_stopwords

BASE_LEXICAL_WEIGHT = 0.1
_WORD_PIECE_TEXT = re.compile(r"\w")
_TOKEN_EDGES = re.compile(r"^\W+|\W+$")
_HYPHENATED_NAME = re.compile(r"^[^\W\d_][^\W\d_]+(?:-[^\W\d_][^\W\d_]+)+$")
_STOPWORDS = english_stopwords()
_QUESTION_WORDS = frozenset({"who", "what", "where", "when", "which", "why", "how", "whose", "whom"})


@dataclass(frozen=True)
class Signals:
    coverage: float = 1.0
    identifier: float = 0.0
    lexical_match: float = 0.0


@dataclass(frozen=True)
class Weights:
    dense: float
    lexical: float
    lexical_share: float


def tokenizer_coverage(pieces: Sequence[str], unknown: str = "[UNK]") -> float:
    """Coverage of a query by a tokenizer, from its word pieces (``##`` / ``▁`` markers allowed)."""
    counted, characters = 0, 0
    for piece in pieces:
        if piece == unknown:
            counted += 1
            continue
        text = piece.removeprefix("##").lstrip("▁Ġ")
        if not _WORD_PIECE_TEXT.search(text):
            continue  # punctuation says nothing about the vocabulary
        counted += 1
        characters += len(text)
    if counted == 0:
        return 1.0  # nothing to judge (empty or punctuation): no reason to distrust the model
    return _clip((characters / counted - 1.5) / 1.5)


def identifier_likeness(query: str) -> float:
    """Share of the query's content tokens that look like codes or hyphenated names, for short queries."""
    tokens = [_TOKEN_EDGES.sub("", t) for t in query.split()]
    content = [t for t in tokens if t and t.lower() not in _STOPWORDS]
    if not content:
        return 0.0
    question = query.rstrip().endswith("?") or tokens[0].lower() in _QUESTION_WORDS
    if not question and all(t[:1].isupper() for t in content):
        return _clip((10 - len(content)) / 6)  # a bare name ("Jóhann Þorvaldsson"): a lookup
    codes = sum(1 for t in content if _is_code(t))
    length_factor = _clip((10 - len(content)) / 6)
    return codes / len(content) * length_factor


def _is_code(token: str) -> bool:
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    if has_digit:
        return has_alpha or sum(c.isdigit() for c in token) >= 3
    letters = [c for c in token if c.isalpha()]
    if len(letters) >= 2 and all(c.isupper() for c in letters):
        return True  # an acronym or an upper-case code word
    return bool(_HYPHENATED_NAME.match(token)) and all(part[:1].isupper() for part in token.split("-"))


def lexical_match(query_terms: Sequence[str], top_hit_terms: Sequence[str]) -> float:
    """Share of the query's distinct terms found in the lexical top hit (0 without terms or hit)."""
    wanted = set(query_terms)
    if not wanted or not top_hit_terms:
        return 0.0
    return len(wanted & set(top_hit_terms)) / len(wanted)


def adaptive_weights(signals: Signals) -> Weights:
    """The fusion weights for one query (module docstring: the rule and why)."""
    share = max(1.0 - _clip(signals.coverage), _clip(signals.identifier) * _clip(signals.lexical_match))
    return Weights(dense=round(1.0 - share, 4), lexical=round(BASE_LEXICAL_WEIGHT + (1 - BASE_LEXICAL_WEIGHT) * share,
                                                               4), lexical_share=round(share, 4))


def query_signals(query: str, pieces: Callable[[str], Sequence[str]] | None, query_terms: Sequence[str],
                  top_hit_terms: Sequence[str], unknown: str = "[UNK]") -> Signals:
    """All signals for one query; ``pieces`` is the embedding tokenizer (None: coverage unknown, 1)."""
    coverage = tokenizer_coverage(pieces(query), unknown) if pieces is not None else 1.0
    return Signals(coverage=coverage, identifier=identifier_likeness(query),
                   lexical_match=lexical_match(query_terms, top_hit_terms))


def word_pieces(tokenizer) -> tuple[Callable[[str], Sequence[str]] | None, str]:
    """(query -> word pieces, the unknown token) for a transformers tokenizer (torch encoder) or a
    ``tokenizers.Tokenizer`` (ONNX encoder); (None, "") for anything else (coverage then counts as 1)."""
    if hasattr(tokenizer, "tokenize"):
        return tokenizer.tokenize, getattr(tokenizer, "unk_token", None) or "[UNK]"
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "model"):
        unknown = getattr(tokenizer.model, "unk_token", None) or "[UNK]"
        return (lambda text: tokenizer.encode(text, add_special_tokens=False).tokens), unknown
    return None, ""


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))
