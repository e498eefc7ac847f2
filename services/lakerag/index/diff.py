"""`lakerag index diff V1 V2`: documents and chunks added, removed and changed between two
published index versions, read from the versions themselves (their chunk rows, checksum-verified)."""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

from ..lake import INDEX_PREFIX
from ..store import NotFound, ObjectStore, write_blocks
from .artifacts import CHUNKS_FILE, IndexRejected, rows_file
from .publish import read_store_manifest, resolve_version
from .rows import ChunkRows


def read_version_chunks(store: ObjectStore, version: str):
    """The chunk rows of one published version (a DataFrame); IndexRejected when it is not retained or corrupt."""
    manifest = read_store_manifest(store, version)
    if manifest is None:
        raise IndexRejected(f"index version {version} is not retained in {store.uri} (never published, or "
                            "pruned); `lakerag index list` shows the retained ones")
    name = rows_file(manifest)
    try:
        data = store.get(f"{INDEX_PREFIX}{version}/{name}")
    except NotFound:
        raise IndexRejected(f"index version {version} lacks {name}: the version is incomplete") from None
    if hashlib.sha256(data).hexdigest() != manifest["files"].get(name):
        raise IndexRejected(f"{name} of {version} fails its checksum: the stored version is corrupt")
    if name == CHUNKS_FILE:  # published before chunks.sqlite
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pandas()
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="lakerag-diff-") as tmp:
        with open(Path(tmp) / name, "wb") as out:
            write_blocks(out, data)
        rows = ChunkRows.open(Path(tmp) / name)
        return pd.DataFrame(rows.columns())


def _documents(chunks) -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for row in chunks.itertuples(index=False):
        doc = docs.setdefault(row.doc_id, {"source": row.source, "chunks": {},
                                           "content_hash": getattr(row, "content_hash", None)})
        doc["chunks"][int(row.chunk_index)] = row.chunk_id
    return docs


def diff_versions(store: ObjectStore, old: str, new: str) -> dict:
    """Per document (keyed by raw key) and per chunk: what ``new`` adds, removes and changes against ``old``.

    A document changed when its chunk ids (which hash the text) or its content hash differ;
    a chunk changed when the same document position holds another chunk id. ``old`` and ``new``
    take any name resolve_version does (`previous`, `current`, a unique prefix).
    """
    old, new = resolve_version(store, old), resolve_version(store, new)
    before, after = _documents(read_version_chunks(store, old)), _documents(read_version_chunks(store, new))
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
