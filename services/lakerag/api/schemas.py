"""Request and response bodies of the HTTP API (they make up the OpenAPI page at /docs)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..config import SearchMode

MAX_K = 50


def mode_field():
    return Field(default=None, description="dense (embeddings), lexical (BM25) or hybrid (both, fused); "
                                           "default LAKERAG_SEARCH_MODE")


def doc_id_filter_field():
    return Field(default=None, description="only chunks of this document")


def source_prefix_field():
    return Field(default=None, description="only chunks whose raw key starts with this, e.g. raw/policies/")


def invalid(message: str) -> PydanticCustomError:
    """A validator's error whose msg is ``message`` as written: a ValueError's msg starts
    "Value error, ", which the console and clients show to the user."""
    return PydanticCustomError("value_error", message)


def _encodable(value: str) -> str:
    """JSON may escape lone surrogates (\\ud800); they are not text and cannot be encoded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("must be valid UTF-8 text (it holds a lone surrogate escape such as \\ud800)") from None
    return value


WORD_PATTERN = r"[^\W_]"  # a letter or digit of any script; documented in the schema as `pattern`
_WORD = re.compile(WORD_PATTERN)


def _has_words(value: str) -> str:
    if not _WORD.search(_encodable(value)):
        raise invalid("has no words (only whitespace, punctuation or control characters); ask in words")
    return value


def _named(value: str) -> str:
    if not value:
        raise invalid("is empty: give a document's doc_id (GET /documents lists them)")
    return value


Text = Annotated[str, AfterValidator(_encodable)]  # identifiers and filters
Words = Annotated[str, AfterValidator(_has_words), Field(json_schema_extra={"pattern": WORD_PATTERN})]  # queries and questions
# minLength in the schema, the message from the validator: min_length on an optional field says
# "Value should have at least 1 item after validation".
DocId = Annotated[Text, AfterValidator(_named), Field(json_schema_extra={"minLength": 1})]
SomeWords = Annotated[Words, Field(json_schema_extra={"minLength": 1})]


VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)


def _version_name(value: str) -> str:
    if not _VERSION.match(value):
        raise invalid("must name an index version, such as 20261127T090000Z-1a2b3c4d: the index_version of the "
                         "answer to replay (`lakerag index list` shows the retained ones), not a time or a path")
    return value


def as_of_field():
    return Field(default=None, examples=["20261127T090000Z-1a2b3c4d"],
                 description="answer from this retained index version instead of the served one (replay); "
                             "404 when it was pruned (`lakerag index list` shows the retained ones)")


VersionName = Annotated[str, AfterValidator(_version_name), Field(json_schema_extra={"pattern": VERSION_PATTERN})]


class Lineage(BaseModel):
    """What a response was computed from: the index version and the Delta table versions behind it."""

    index_version: str
    model: str
    gold_version: int | None = Field(default=None, description="Delta version of lake/gold the index was built from")
    embeddings_version: int | None = Field(default=None, description="Delta version of lake/embeddings")
    created_at: str | None = None
    replayed: bool = Field(default=False, description="true when as_of picked a version other than the served one")


class RequestBody(BaseModel):
    """A request's JSON body. An unknown field is refused (422, naming the fields the request
    takes), not ignored: a typo such as ``top_k``, ``asOf`` or ``document_id`` would otherwise
    answer with the default k, from the served index version or from every document."""

    model_config = ConfigDict(extra="forbid")


class SearchRequest(RequestBody):
    query: Words = Field(min_length=1, max_length=2000, examples=["How long are incident postmortems kept?"])
    k: int = Field(default=5, ge=1, le=MAX_K)
    doc_id: Text | None = doc_id_filter_field()
    source_prefix: Text | None = source_prefix_field()
    mode: SearchMode | None = mode_field()
    as_of: VersionName | None = as_of_field()


class Hit(BaseModel):
    rank: int
    score: float | None = Field(description="the score the hits are ordered by: cosine similarity (dense), BM25 "
                                            "(lexical), weighted reciprocal-rank fusion (hybrid), or the "
                                            "cross-encoder's when reranked; null in a whole-document summary")
    doc_id: str
    chunk_id: str
    chunk_index: int
    text: str
    source: str
    title: str | None = None
    page: int | None = None
    source_version: str | None = Field(default=None, description="the raw object's version the chunk was "
                                                                  "extracted from (S3 ETag, or size-mtime)")
    content_hash: str | None = Field(default=None, description="sha256 of the document's bytes")
    dense_rank: int | None = Field(default=None, description="1-based rank in the dense candidates, if among them")
    dense_score: float | None = Field(default=None, description="cosine similarity to the query")
    lexical_rank: int | None = Field(default=None, description="1-based rank in the BM25 candidates, if among them")
    lexical_score: float | None = Field(default=None, description="BM25 score (0: no query term)")


class SearchResponse(BaseModel):
    matched: bool
    reason: str | None = Field(default=None, description="why nothing matched (matched=false)")
    query: str
    index_version: str
    model: str
    mode: SearchMode
    note: str | None = Field(default=None, description="e.g. why a lexical/hybrid request was answered dense only")
    reranked_by: str | None = None
    fusion: dict[str, float | str] | None = Field(
        default=None, description="hybrid: the per-query weights fused with (dense_weight, lexical_weight, rrf_k) "
                                  "and, for the adaptive rule, the signals they came from (coverage, identifier, "
                                  "lexical_match; docs/retrieval.md)")
    min_score: float
    best_score: float | None = Field(default=None, description="the best dense (cosine) score; the cut-off "
                                                               "judges it")
    hits: list[Hit]
    encode_ms: float
    search_ms: float
    rerank_ms: float = 0.0
    lineage: Lineage | None = None


class AnswerRequest(RequestBody):
    question: Words = Field(min_length=1, max_length=2000, examples=["Who approves travel over budget?"])
    k: int = Field(default=5, ge=1, le=20)
    doc_id: Text | None = doc_id_filter_field()
    source_prefix: Text | None = source_prefix_field()
    mode: SearchMode | None = mode_field()
    as_of: VersionName | None = as_of_field()


class AnswerResponse(BaseModel):
    matched: bool
    answer: str = Field(description="text with numbered citations [n]; [n] is chunks[n-1]")
    mode: Literal["gemini", "extractive", "none"]
    reason: str | None = None
    fallback_reason: str | None = Field(default=None, description="why an extractive text stands in for the "
                                        "configured LLM's (it failed; LAKERAG_LLM_FALLBACK)")
    question: str
    index_version: str
    chunks: list[Hit]
    lineage: Lineage | None = None


class SummarizeRequest(RequestBody):
    doc_id: DocId | None = None
    query: SomeWords | None = Field(default=None, max_length=2000)
    k: int = Field(default=8, ge=1, le=20, description="chunks retrieved for a query-focused summary")
    source_prefix: Text | None = Field(default=None, description="with query: only chunks whose raw key starts "
                                                                 "with this, e.g. raw/policies/")
    mode: SearchMode | None = mode_field()
    as_of: VersionName | None = as_of_field()

    model_config = {"json_schema_extra": {"oneOf": [
        {"required": ["doc_id"], "properties": {"doc_id": {"type": "string"}, "query": {"type": "null"},
                                                "source_prefix": {"type": "null"}}},
        {"required": ["query"], "properties": {"query": {"type": "string"}, "doc_id": {"type": "null"}}}]}}

    @model_validator(mode="after")
    def one_of(self):
        if bool(self.doc_id) == bool(self.query):
            raise invalid("give exactly one of doc_id (whole document) or query (query-focused)")
        if self.doc_id and self.source_prefix:
            raise invalid("source_prefix goes with query: a doc_id summary is of that one document already")
        return self


class SummarizeResponse(BaseModel):
    matched: bool
    summary: str
    mode: Literal["gemini", "extractive", "none"]
    reason: str | None = None
    fallback_reason: str | None = Field(default=None, description="why an extractive text stands in for the "
                                        "configured LLM's (it failed; LAKERAG_LLM_FALLBACK)")
    doc_id: str | None = None
    title: str | None = None
    query: str | None = None
    index_version: str
    chunks: list[Hit]
    lineage: Lineage | None = None


class DocumentUploaded(BaseModel):
    key: str
    doc_id: str
    size: int
    replaced: bool = Field(description="other bytes were stored under this key; these replaced them")
    unchanged: bool = Field(default=False, description="these bytes were already stored under this key: nothing "
                                                       "was written and no pipeline run was asked for (status 200)")
    note: str


class DocumentState(BaseModel):
    key: str
    doc_id: str
    size: int
    state: Literal["landed", "quarantined", "processed", "indexed"]
    reason: str | None = None
    chunks: int | None = None
    title: str | None = None


class DocumentList(BaseModel):
    documents: list[DocumentState]
    counts: dict[str, int]
    index_version: str | None


class DocumentDeleted(BaseModel):
    key: str
    doc_id: str
    deleted: bool
    note: str


class IndexStatus(BaseModel):
    loaded: bool
    message: str
    version: str | None = None
    model: str | None = None
    dimension: int | None = None
    vectors: int | None = None
    index_type: str | None = None
    search_modes: list[SearchMode] | None = Field(default=None, description="what the served version supports: "
                                                  "dense only when it was built without its BM25 part")
    gold_version: int | None = None
    created_at: str | None = None
    age_seconds: float | None = None
    loaded_at: str | None = None
    reloads: int
    reload_failures: int = Field(description="index versions rejected (checksum, model, incomplete)")
    store_errors: int = Field(default=0, description="polls that could not reach the store")
    sync_state: str = Field(default="ok", description="last sync: ok | fallback (CURRENT does not verify; an "
                                                      "older version is served) | rejected | store_unreachable | "
                                                      "index_dir_unusable (full, or not writable)")
    rejected_version: str | None = Field(default=None, description="the version CURRENT names when it was rejected")
    last_error: str | None = None
    encoder_check: str | None = Field(default=None, description="how the served version's encoder was checked: "
                                      "built by this encoder, or by another that makes the same vectors")
    index_dir: str


class ReloadResponse(BaseModel):
    changed: bool
    version: str | None
    message: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    model: str | None
    model_error: str | None = None
    index_loaded: bool
    index_version: str | None
    message: str
