"""Answers and summaries from retrieved chunks.

* ``GeminiWriter``: Gemini through the maintained ``google-genai`` SDK when
  ``GEMINI_API_KEY`` is set. ``LAKERAG_GEMINI_BASE_URL`` points it elsewhere (a
  proxy, or the local stub the tests run). On any upstream failure it answers
  through its ``fallback`` (extractive, the reason said), or, without one
  (LAKERAG_LLM_FALLBACK=false), raises ``UpstreamError``, which the API turns into
  502 (503 rate-limited, 504 on timeout) with the reason.
* ``ExtractiveWriter``: no LLM. It picks the sentences of the retrieved chunks
  closest to the question (or, for a whole-document summary, closest to the
  document's centroid) with the embedding model already loaded, and cites them.

Citations are ``[n]`` where ``n`` is the 1-based position in the chunk list the
API returns with the text.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from fastapi import HTTPException

from ...config import Settings
from ...embedding import Embedder
from ...text import FIELD_LINE
from ...text import split_sentences as text_sentences
from ..metrics import Metrics

log = logging.getLogger(__name__)

NO_LLM = "no LLM configured"
EXTRACTIVE_LABEL = "Extractive answer ({why}; these are the most relevant sentences of the sources):"
EXTRACTIVE_SUMMARY_LABEL = "Extractive summary ({why}; key sentences of the sources):"
MAX_SENTENCES_SCORED = 160  # bounds the encode cost of an extractive summary of a long document

SYSTEM_ANSWER = (
    "You answer questions using only the numbered sources you are given. Cite every statement with the number "
    "of its source in square brackets, e.g. [1] or [2][3]. If the sources do not contain the answer, say that "
    "the documents do not cover it. Be concise."
)
SYSTEM_SUMMARY = (
    "You summarise documents using only the numbered sources you are given, in a few short paragraphs. Cite the "
    "sources of each statement in square brackets, e.g. [1]."
)


RATE_LIMIT_RETRY_SECONDS = 30  # Gemini's per-minute quotas refill within a minute


class UpstreamError(Exception):
    """The LLM failed; ``status_code`` is 502 (error), 503 (rate-limited: retry after
    ``retry_after`` seconds) or 504 (timeout)."""

    def __init__(self, reason: str, status_code: int = 502, retry_after: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.retry_after = retry_after

    def as_http(self) -> HTTPException:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return HTTPException(self.status_code, detail=self.reason, headers=headers)


@dataclass(frozen=True)
class Written:
    """An answer or summary, the writer that wrote it, and why a fallback wrote it (if one did)."""

    text: str
    mode: str
    fallback_reason: str | None = None


class Writer(Protocol):
    mode: str

    def answer(self, question: str, hits: list[dict]) -> Written: ...

    def summarize(self, hits: list[dict], query: str | None = None, title: str | None = None) -> Written: ...


def numbered_sources(hits: list[dict]) -> str:
    lines = []
    for number, hit in enumerate(hits, start=1):
        where = hit.get("title") or hit.get("source") or ""
        if hit.get("page"):
            where += f", page {hit['page']}"
        lines.append(f"[{number}] ({where})\n{hit['text']}")
    return "\n\n".join(lines)


_CITATION = re.compile(r" ?\[(\d+)\]")


def given_citations_only(text: str, sources: int) -> str:
    """The text without citations of sources it was not given: [n] means chunks[n-1], and a model
    may still write [0] or [9] for three sources."""
    def keep(match: re.Match) -> str:
        if 1 <= int(match.group(1)) <= sources:
            return match.group(0)
        log.warning("dropped citation [%s] of %d sources from the LLM's text", match.group(1), sources)
        return ""

    return _CITATION.sub(keep, text)


class GeminiWriter:
    mode = "gemini"

    def __init__(self, settings: Settings, metrics: Metrics, fallback: ExtractiveWriter | None = None):
        from google import genai
        from google.genai import types

        self._types = types
        self.model = settings.gemini_model
        self.timeout = settings.llm_timeout_seconds
        self.metrics = metrics
        options = types.HttpOptions(timeout=int(settings.llm_timeout_seconds * 1000),
                                    base_url=settings.gemini_base_url or None)
        self.client = genai.Client(api_key=settings.gemini_api_key, http_options=options)
        self.fallback = fallback

    def answer(self, question: str, hits: list[dict]) -> Written:
        prompt = f"Sources:\n\n{numbered_sources(hits)}\n\nQuestion: {question}"
        return self._written(SYSTEM_ANSWER, prompt, len(hits),
                             lambda why: self.fallback.answer(question, hits, why=why))

    def summarize(self, hits: list[dict], query: str | None = None, title: str | None = None) -> Written:
        focus = f"Summarise what the sources say about: {query}" if query else \
            f"Summarise the document{f' {title!r}' if title else ''}."
        return self._written(SYSTEM_SUMMARY, f"Sources:\n\n{numbered_sources(hits)}\n\n{focus}", len(hits),
                             lambda why: self.fallback.summarize(hits, query=query, title=title, why=why))

    def _written(self, system: str, prompt: str, sources: int, extractive) -> Written:
        """Gemini's text; when it fails, ``extractive(reason)`` with the reason, or without a
        fallback the ``UpstreamError``."""
        try:
            return Written(given_citations_only(self._generate(system, prompt), sources), self.mode)
        except UpstreamError as exc:
            if self.fallback is None:
                raise
            log.warning("%s: quoting the sources instead", exc.reason)
            return replace(extractive(exc.reason), fallback_reason=exc.reason)

    def _generate(self, system: str, prompt: str) -> str:
        from google.genai import errors

        started = time.perf_counter()
        try:
            response = self.client.models.generate_content(
                model=self.model, contents=prompt,
                config=self._types.GenerateContentConfig(system_instruction=system, temperature=0.2))
        except errors.APIError as exc:
            if exc.code == 429:
                self.metrics.llm_errors.labels("rate_limited").inc()
                raise UpstreamError(f"Gemini ({self.model}) is rate-limiting this API key (429): try again in "
                                    f"{RATE_LIMIT_RETRY_SECONDS} s, or raise the key's quota", 503,
                                    RATE_LIMIT_RETRY_SECONDS) from exc
            self.metrics.llm_errors.labels("upstream").inc()
            raise UpstreamError(f"Gemini ({self.model}) answered {exc.code} {exc.status or ''}: "
                                f"{exc.message or exc}".strip()) from exc
        except Exception as exc:
            names = {cls.__name__ for cls in type(exc).__mro__}
            if "TimeoutException" in names:
                self.metrics.llm_errors.labels("timeout").inc()
                raise UpstreamError(f"Gemini ({self.model}) did not answer within {self.timeout:g}s", 504) from exc
            self.metrics.llm_errors.labels("unreachable").inc()
            raise UpstreamError(f"Gemini ({self.model}) unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            self.metrics.llm_seconds.observe(time.perf_counter() - started)
        text = (response.text or "").strip()
        if not text:
            reason = ""
            if response.candidates:
                reason = f" (finish reason {response.candidates[0].finish_reason})"
            self.metrics.llm_errors.labels("empty").inc()
            raise UpstreamError(f"Gemini ({self.model}) returned no text{reason}")
        return text


_CLOSED = re.compile(r"[.!?:;\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*$")  # a unit that ends a sentence
_LIST_MARKER = re.compile(r"(?:[-*\u2022\u2013]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
HEADING_WORDS = 10  # an unclosed line of at most this many words reads as a heading, not a sentence
RECORD_FIELDS = 4  # short fields of a record (name, ticket, type) kept to lead its next long field


def _record_root(field: str) -> str:
    return field.split(":", 1)[0].split(".", 1)[0]


def split_sentences(text: str, title: str = "") -> list[str]:
    """The sentences of a chunk worth quoting, as text.split_sentences reads its lines (a wrapped
    line goes on; a heading, list item or field line stands alone). A heading (a short capitalised
    line that closes no sentence) is not quoted alone but leads the sentence under it ("Hotels: The
    hotel cap is ..."), which then names its subject. The short fields of a flattened JSON record
    (its name, ticket, version) lead the record's next long field the same way. The document's
    title, table cells and fragments under 4 words are dropped."""
    out, heading, fields = [], "", []
    for start, end in text_sentences(text):
        unit = _EMPHASIS.sub(r"\2", " ".join(text[start:end].split()))
        if title and unit.startswith(title):  # the title line (shown with the sources anyway) ...
            rest = unit[len(title):].strip(" -\u2013|:")
            if not rest or (not _CLOSED.search(rest) and len(rest.split()) <= HEADING_WORDS):
                unit = rest  # ... or run into a heading under it
        marker = _LIST_MARKER.match(unit)
        if marker:
            unit = unit[marker.end():]
        words = len(unit.split())
        if FIELD_LINE.match(unit):
            heading = ""
            if words < 4:
                fields = [*fields, unit][-RECORD_FIELDS:]
                continue
            unit = "; ".join([f for f in fields if _record_root(f) == _record_root(unit)] + [unit])
            fields = []
        elif not _CLOSED.search(unit) and not marker and words <= HEADING_WORDS:
            heading = unit if unit[:1].isupper() or unit[:1].isdigit() else ""
            continue
        if len(unit) >= 25 and words >= 4:
            out.append(f"{heading}: {unit}" if heading else unit)
        heading = ""
    return out


@dataclass
class _Sentence:
    text: str
    source: int  # 1-based citation number
    order: int


class ExtractiveWriter:
    mode = "extractive"

    def __init__(self, embedder: Embedder, sentences: int = 3):
        self.embedder = embedder
        self.sentences = sentences

    def _sentences(self, hits: list[dict]) -> list[_Sentence]:
        seen: set[str] = set()
        out = []
        for number, hit in enumerate(hits, start=1):
            for sentence in split_sentences(hit["text"], hit.get("title") or ""):
                key = sentence.lower()
                if key not in seen:  # overlapping chunks repeat sentences
                    seen.add(key)
                    out.append(_Sentence(sentence, number, len(out)))
        return out

    def answer(self, question: str, hits: list[dict], why: str = NO_LLM) -> Written:
        """``why``: why the answer is extractive, said in its first words."""
        label = EXTRACTIVE_LABEL.format(why=why.rstrip(". "))
        candidates = self._sentences(hits)[:MAX_SENTENCES_SCORED]
        if not candidates:
            return Written(f"{label} {hits[0]['text'][:400]} [1]", self.mode)
        query = self.embedder.encode_queries([question])[0]
        scores = self.embedder.encode_passages([s.text for s in candidates]) @ query
        best = np.argsort(-scores)[: self.sentences]
        # Keep sentences close to the best one; a weak third sentence only adds noise.
        chosen = [candidates[i] for i in best if scores[i] >= scores[best[0]] * 0.75]
        return Written(label + " " + " ".join(f"{s.text} [{s.source}]" for s in chosen), self.mode)

    def summarize(self, hits: list[dict], query: str | None = None, title: str | None = None,
                  why: str = NO_LLM) -> Written:
        label = EXTRACTIVE_SUMMARY_LABEL.format(why=why.rstrip(". "))
        candidates = self._sentences(hits)
        if len(candidates) > MAX_SENTENCES_SCORED:  # spread the sample over the whole document
            step = len(candidates) / MAX_SENTENCES_SCORED
            candidates = [candidates[int(i * step)] for i in range(MAX_SENTENCES_SCORED)]
        if not candidates:
            return Written(label + " " + " ".join(f"{h['text'][:300]} [{n}]" for n, h in enumerate(hits[:3], start=1)),
                           self.mode)
        vectors = self.embedder.encode_passages([s.text for s in candidates])
        if query:
            target = self.embedder.encode_queries([query])[0]
        else:  # the sentences most typical of the whole document
            target = vectors.mean(axis=0)
        scores = vectors @ target
        count = min(len(candidates), max(3, min(6, len(candidates) // 4)))
        chosen = sorted((candidates[i] for i in np.argsort(-scores)[:count]), key=lambda s: s.order)
        return Written(label + " " + " ".join(f"{s.text} [{s.source}]" for s in chosen), self.mode)


def make_writer(settings: Settings, embedder: Embedder, metrics: Metrics) -> Writer:
    if settings.gemini_api_key:
        log.info("answers: Gemini model %s%s%s", settings.gemini_model,
                 f" via {settings.gemini_base_url}" if settings.gemini_base_url else "",
                 ", extractive when it fails" if settings.llm_fallback else "")
        return GeminiWriter(settings, metrics, fallback=ExtractiveWriter(embedder) if settings.llm_fallback else None)
    log.info("answers: extractive (set GEMINI_API_KEY to use Gemini)")
    return ExtractiveWriter(embedder)
