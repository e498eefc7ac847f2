"""Gold tables written directly with delta-rs, in the schema of docs/architecture.md,
so the embeddings and index tests do not depend on Spark."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from lakerag.lake import Lake, chunk_id_for, doc_id_for

GOLD_SCHEMA = pa.schema([
    ("chunk_id", pa.string()), ("doc_id", pa.string()), ("chunk_index", pa.int32()), ("text", pa.string()),
    ("title", pa.string()), ("source", pa.string()), ("page", pa.int32()), ("content_hash", pa.string()),
    ("token_count", pa.int32()),
])

TOPICS = ["solar panels convert sunlight into electricity", "the river floods every spring after snowmelt",
          "sourdough bread needs a long cold fermentation", "the committee approved the annual budget",
          "migratory birds navigate by the earth's magnetic field", "the compiler inlines small functions",
          "glaciers carve deep valleys over millennia", "the orchestra rehearsed the second movement",
          "vaccines train the immune system to recognise pathogens", "the harbour was dredged for larger ships"]


def document(key: str, paragraphs: list[str]) -> list[dict]:
    """Gold rows of one document: one chunk per paragraph."""
    doc_id = doc_id_for(key)
    content_hash = hashlib.sha256("\n".join(paragraphs).encode()).hexdigest()
    return [{"chunk_id": chunk_id_for(doc_id, i, text), "doc_id": doc_id, "chunk_index": i, "text": text,
             "title": key.rsplit("/", 1)[-1], "source": key, "page": None, "content_hash": content_hash,
             "token_count": len(text.split())} for i, text in enumerate(paragraphs)]


def synthetic_docs(count: int, chunks_per_doc: int = 3, start: int = 0) -> dict[str, list[str]]:
    """Short distinct documents: key -> paragraphs."""
    docs = {}
    for n in range(start, start + count):
        docs[f"raw/doc-{n:05d}.txt"] = [
            f"Document {n}, part {p}: {TOPICS[(n + p) % len(TOPICS)]}, noted in report {n * 7 + p}."
            for p in range(chunks_per_doc)]
    return docs


def write_gold(lake: Lake, docs: dict[str, list[str]]) -> int:
    """Make gold hold exactly ``docs`` (MERGE on chunk_id, delete the rest, like the ETL); return its version."""
    rows = [row for key, paragraphs in sorted(docs.items()) for row in document(key, paragraphs)]
    source = pa.Table.from_pylist(rows, schema=GOLD_SCHEMA)
    uri, options = lake.table_uri("gold"), lake.storage_options()
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        write_deltalake(uri, source, storage_options=options, configuration={"delta.enableChangeDataFeed": "true"})
        return DeltaTable(uri, storage_options=options).version()
    table = DeltaTable(uri, storage_options=options)
    (table.merge(source, "t.chunk_id = s.chunk_id", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all()
     .when_not_matched_by_source_delete().execute())
    return DeltaTable(uri, storage_options=options).version()
