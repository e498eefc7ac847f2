"""`lakerag index diff V1 V2`: documents and chunks added, removed and changed between two
published index versions, read from the versions themselves (their chunk rows, checksum-verified).

Each version's rows file streams to a temporary file and only the ids are read from it: a diff
holds two versions' ids, not their texts."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..lake import INDEX_PREFIX
from ..store import ObjectStore
from .artifacts import CHUNKS_FILE, IndexRejected, rows_file
from .publish import fetch_to, read_store_manifest, resolve_version
from .rows import scan_rows

# What a diff reads of each row (content_hash is null, or absent, in versions built before lineage).
_ID_FIELDS = ("doc_id", "source", "chunk_index", "chunk_id", "content_hash")


def version_documents(store: ObjectStore, version: str) -> dict[str, dict]:
    """doc_id -> {source, content_hash, chunks: {chunk_index: chunk_id}} of one published version;
    IndexRejected when it is not retained or corrupt."""
    manifest = read_store_manifest(store, version)
    if manifest is None:
        raise IndexRejected(f"index version {version} is not retained in {store.uri} (never published, or "
                            "pruned); `lakerag index list` shows the retained ones")
    name = rows_file(manifest)
    with tempfile.TemporaryDirectory(prefix="lakerag-diff-") as tmp:
        path = Path(tmp) / name
        digest = fetch_to(store, f"{INDEX_PREFIX}{version}/{name}", path,
                          missing=f"index version {version} lacks {name}: the version is incomplete")
        if digest != manifest["files"].get(name):
            raise IndexRejected(f"{name} of {version} fails its checksum: the stored version is corrupt")
        return _documents(_parquet_ids(path) if name == CHUNKS_FILE else scan_rows(path, _ID_FIELDS))


def _parquet_ids(path: Path) -> Iterable[tuple]:
    """The id fields of a version published before chunks.sqlite (chunks.parquet), one batch at a time."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    present = [field for field in _ID_FIELDS if field in parquet.schema_arrow.names]
    for batch in parquet.iter_batches(columns=present):
        columns = [batch.column(field).to_pylist() if field in present else [None] * batch.num_rows
                   for field in _ID_FIELDS]
        yield from zip(*columns)


def _documents(rows: Iterable[tuple]) -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for doc_id, source, chunk_index, chunk_id, content_hash in rows:
        doc = docs.setdefault(doc_id, {"source": source, "chunks": {}, "content_hash": content_hash})
        doc["chunks"][int(chunk_index)] = chunk_id
    return docs


def diff_versions(store: ObjectStore, old: str, new: str) -> dict:
    """Per document (keyed by raw key) and per chunk: what ``new`` adds, removes and changes against ``old``.

    A document changed when its chunk ids (which hash the text) or its content hash differ;
    a chunk changed when the same document position holds another chunk id. ``old`` and ``new``
    take any name resolve_version does (`previous`, `current`, a unique prefix).
    """
    old, new = resolve_version(store, old), resolve_version(store, new)
    before, after = version_documents(store, old), version_documents(store, new)
    added = sorted(after[d]["source"] for d in after.keys() - before.keys())
    removed = sorted(before[d]["source"] for d in before.keys() - after.keys())
    changed = []
    chunk_counts = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    for doc_id in after.keys() & before.keys():
        a, b = after[doc_id], before[doc_id]
        positions = a["chunks"].keys() | b["chunks"].keys()
        differ = sum(1 for p in positions if p in a["chunks"] and p in b["chunks"]
                     and a["chunks"][p] != b["chunks"][p])
        chunk_counts["changed"] += differ
        chunk_counts["added"] += len(a["chunks"].keys() - b["chunks"].keys())
        chunk_counts["removed"] += len(b["chunks"].keys() - a["chunks"].keys())
        chunk_counts["unchanged"] += len(a["chunks"].keys() & b["chunks"].keys()) - differ
        if a["chunks"] != b["chunks"] or (a["content_hash"] and b["content_hash"]
                                          and a["content_hash"] != b["content_hash"]):
            changed.append(a["source"])
    chunk_counts["added"] += sum(len(after[d]["chunks"]) for d in after.keys() - before.keys())
    chunk_counts["removed"] += sum(len(before[d]["chunks"]) for d in before.keys() - after.keys())
    return {"from": old, "to": new,
            "documents": {"added": added, "removed": removed, "changed": sorted(changed),
                          "unchanged": len(after.keys() & before.keys()) - len(changed)},
            "chunks": chunk_counts}


def format_diff(diff: dict) -> str:
    docs, chunks = diff["documents"], diff["chunks"]
    counts = [f"{len(docs[w])} {w}" for w in ("added", "removed", "changed")] + [f"{docs['unchanged']} unchanged"]
    chunk_line = ", ".join(f"{chunks[w]} {w}" for w in ("added", "removed", "changed", "unchanged"))
    lines = [f"index diff {diff['from']} -> {diff['to']}", "documents: " + ", ".join(counts),
             "chunks:    " + chunk_line]
    for mark, what in (("+", "added"), ("-", "removed"), ("~", "changed")):
        lines.extend(f"  {mark} {source}" for source in docs[what])
    return "\n".join(lines)
