"""Gold tables written directly through the lake (delta-rs), in the schema of
docs/architecture.md, so the embeddings and index tests do not depend on Spark."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from lakerag.lake import Lake, chunk_id_for, doc_id_for, tables

GOLD_SCHEMA = tables.SCHEMAS["gold"]

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
    current = set(tables.read_arrow(lake, "gold", ["chunk_id"]).column("chunk_id").to_pylist())
    stale = sorted(current - {row["chunk_id"] for row in rows})
    tables.merge(lake, "gold", source, pa.table({"chunk_id": pa.array(stale, pa.string())}))
    return tables.version(lake, "gold")


def append_copies(lake: Lake, name: str, rows: int) -> None:
    """The first ``rows`` rows of ``name`` written again, as two overlapping runs did before the run lock."""
    from deltalake import write_deltalake

    write_deltalake(lake.table_uri(name), tables.read_arrow(lake, name).slice(0, rows), mode="append",
                    storage_options=lake.storage_options())
