"""The chunk rows of one index version as ready JSON (``chunks.hits``), spliced into search responses.

A search's five hits read from ``chunks.sqlite`` cost ~0.15 ms on the caches the FAISS scan has
just flushed: SQLite's five statements, not the data (docs/search-latency.md). Here each row's
JSON members were encoded when the version was written, so a hit is a slice of a memory-mapped
file. The price is a second copy of every chunk's text per version; ``chunks.sqlite`` stays the
rows' source for everything else (filters, documents, summaries, answers). Versions written
before this file are served from ``chunks.sqlite`` alone.

Layout: each row's members (``"doc_id":"…","chunk_id":"…",…``, ``ROW_FIELDS`` in order, no
braces) back to back; then count + 1 offsets into them and the count, little-endian uint64.
"""

from __future__ import annotations

import mmap
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic_core import to_json

from ..store import WRITE_BLOCK_BYTES, write_blocks
from .rows import ROW_FIELDS

HITS_FILE = "chunks.hits"
_WORD = np.dtype("<u8")


def write_hit_rows(path, columns: Mapping[str, Sequence]) -> None:
    """Write ``columns`` (field -> one plain Python value per row) as ``path``."""
    count = len(columns["chunk_id"])
    offsets = np.zeros(count + 1, dtype=_WORD)
    pending, size = [], 0
    with open(path, "wb") as out:
        for i, values in enumerate(zip(*(columns[name] for name in ROW_FIELDS))):
            members = to_json(dict(zip(ROW_FIELDS, values)))[1:-1]  # as to_json writes them inside a hit
            pending.append(members)
            size += len(members)
            offsets[i + 1] = offsets[i] + len(members)
            if size >= WRITE_BLOCK_BYTES:
                write_blocks(out, b"".join(pending))
                pending, size = [], 0
        write_blocks(out, b"".join(pending))
        write_blocks(out, offsets.tobytes() + np.array([count], dtype=_WORD).tobytes())


class HitRows:
    """One version's ``chunks.hits``, memory-mapped: its open mapping keeps the rows readable after
    the version directory is pruned under a request still holding this version."""

    def __init__(self, path):
        with open(path, "rb") as handle:
            self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        size = len(self._data)
        count = int.from_bytes(self._data[-8:], "little") if size >= 8 else -1
        start = size - _WORD.itemsize * (count + 2)
        if count < 0 or start < 0:
            raise ValueError(f"{path} is not a chunks.hits file ({size} bytes)")
        self._offsets = np.frombuffer(self._data, dtype=_WORD, count=count + 1, offset=start)
        if self._offsets[0] != 0 or self._offsets[-1] != start or np.any(np.diff(self._offsets.astype(np.int64)) < 0):
            raise ValueError(f"{path}: its offsets do not describe its {start} bytes of rows")
        self.count = count

    def members(self, ids) -> list[bytes]:
        """Each row id's JSON members, in order."""
        data, offsets, count = self._data, self._offsets, self.count
        found = []
        for i in ids:
            if not 0 <= i < count:
                raise IndexError(f"no chunk row {i} (the version holds {count})")
            found.append(data[offsets[i]:offsets[i + 1]])
        return found
