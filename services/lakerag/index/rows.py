"""The chunk rows of one index version as a SQLite file (``chunks.sqlite``), read with the stdlib.

Row ``row`` = FAISS id = BM25 document. The API reads hits, filters and per-document
rows through ``ChunkRows`` with Python's own ``sqlite3``: no pyarrow or pandas in the
serving process. SQLite over JSON or Arrow because opening it costs ~1 ms at any size
(nothing is parsed or held in memory at load) and a hit lookup is an indexed query
(docs/architecture.md has the measurements). Versions are immutable, so the file is
opened read-only and ``immutable`` (no locking).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

ROWS_FILE = "chunks.sqlite"
# Fields of a chunk row as search hits carry them; the lineage ones (last two) are null in
# versions built before lineage.
ROW_FIELDS = ("doc_id", "chunk_id", "chunk_index", "text", "source", "title", "page", "source_version",
              "content_hash")
_SCHEMA = """
CREATE TABLE chunks (row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL,
                     chunk_index INTEGER NOT NULL, text TEXT NOT NULL, source TEXT, title TEXT, page INTEGER,
                     source_version TEXT, content_hash TEXT);
"""
# Built after the rows are in (faster than maintaining them per insert).
_INDEXES = ("CREATE INDEX chunks_by_doc ON chunks (doc_id, chunk_index)",
            "CREATE INDEX chunks_by_source ON chunks (source)")
_BATCH = 500  # ids per IN (...) query: well under SQLite's variable limit
_LOOKUPS = 20  # up to this many ids, one primary-key lookup each


def _fill(connection: sqlite3.Connection, columns: Mapping[str, Sequence], count: int) -> None:
    connection.executescript(_SCHEMA)
    values = [columns[name] if name in columns else [None] * count for name in ROW_FIELDS]
    connection.executemany(f"INSERT INTO chunks (row, {', '.join(ROW_FIELDS)}) VALUES "
                           f"(?, {', '.join('?' * len(ROW_FIELDS))})", zip(range(count), *values))
    for statement in _INDEXES:
        connection.execute(statement)
    connection.commit()


def write_rows(path, columns: Mapping[str, Sequence]) -> None:
    """Write ``columns`` (field -> one plain Python value per row, None for missing) as ``path``."""
    count = len(columns["chunk_id"])
    path = Path(path)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = OFF")  # a new file, written once: no rollback journal
        _fill(connection, columns, count)
    finally:
        connection.close()


class ChunkRows:
    """Read-only access to one version's chunk rows, shared by the request threads.

    One connection, opened at load and used under a lock (a lookup takes microseconds): its
    open file keeps the rows readable after the version directory is pruned under a request
    still holding this version.
    """

    def __init__(self, connection: sqlite3.Connection):
        self._connection = connection
        self._lookup = connection.cursor()  # reused by the per-id lookups: no cursor made per hit
        self._lock = threading.Lock()
        self.count = self._query("SELECT count(*) FROM chunks")[0][0]

    @classmethod
    def open(cls, path) -> ChunkRows:
        return cls(_connect_read_only(path))

    @classmethod
    def in_memory(cls, columns: Mapping[str, Sequence]) -> ChunkRows:
        """Rows held in memory (versions published as chunks.parquet)."""
        connection = sqlite3.connect(":memory:", check_same_thread=False)
        _fill(connection, columns, len(columns["chunk_id"]))
        return cls(connection)

    def _query(self, sql: str, parameters: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, tuple(parameters)).fetchall()

    def _by_ids(self, columns: str, ids) -> list[tuple]:
        """The ``columns`` of each row id, in the order of ``ids``."""
        wanted = np.asarray(ids).ravel().tolist()
        found: dict[int, tuple] = {}
        if len(wanted) <= _LOOKUPS:  # a search's hits: a quarter cheaper than IN (...) on cold caches
            one = f"SELECT row, {columns} FROM chunks WHERE row = ?"
            with self._lock:
                for i in wanted:
                    row = self._lookup.execute(one, (i,)).fetchone()
                    if row is not None:
                        found[row[0]] = row[1:]
        else:
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start:start + _BATCH]
                for row in self._query(f"SELECT row, {columns} FROM chunks WHERE row IN "
                                       f"({', '.join('?' * len(batch))})", batch):
                    found[row[0]] = row[1:]
        missing = [i for i in wanted if i not in found]
        if missing:
            raise IndexError(f"no chunk rows {missing[:5]} (the version holds {self.count})")
        return [found[i] for i in wanted]

    def rows(self, ids) -> list[dict]:
        """The ``ROW_FIELDS`` of each row id, in order."""
        return [dict(zip(ROW_FIELDS, row)) for row in self._by_ids(", ".join(ROW_FIELDS), ids)]

    def texts(self, ids) -> list[str]:
        return [row[0] for row in self._by_ids("text", ids)]

    def document_rows(self, doc_id: str) -> np.ndarray:
        """Row ids of one document's chunks, in chunk order."""
        found = self._query("SELECT row FROM chunks WHERE doc_id = ? ORDER BY chunk_index, row", (doc_id,))
        return np.array([r[0] for r in found], dtype=np.int64)

    def matching(self, doc_id: str | None = None, source_prefix: str | None = None) -> np.ndarray:
        """Row ids (ascending) whose doc_id equals ``doc_id`` and whose source starts with ``source_prefix``."""
        where, parameters = [], []
        if doc_id:
            where.append("doc_id = ?")
            parameters.append(doc_id)
        if source_prefix:
            # A range on the source index, then the exact prefix test (SQLite compares text as UTF-8
            # bytes, whose order is code point order).
            where.append("source >= ? AND substr(source, 1, ?) = ?")
            parameters += [source_prefix, len(source_prefix), source_prefix]
            upper = _next_prefix(source_prefix)
            if upper is not None:
                where.append("source < ?")
                parameters.append(upper)
        sql = "SELECT row FROM chunks" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY row"
        return np.array([r[0] for r in self._query(sql, parameters)], dtype=np.int64)

    def source_of(self, doc_id: str) -> str | None:
        """The raw key of the document ``doc_id``; None when no chunk of it is here."""
        found = self._query("SELECT source FROM chunks WHERE doc_id = ? LIMIT 1", (doc_id,))
        return found[0][0] if found else None

    def chunks_per_document(self) -> dict[str, int]:
        return dict(self._query("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id"))

    def columns(self) -> dict[str, list]:
        """Every row as plain columns (``ROW_FIELDS``), in row order."""
        found = self._query(f"SELECT {', '.join(ROW_FIELDS)} FROM chunks ORDER BY row")
        return {name: [r[i] for r in found] for i, name in enumerate(ROW_FIELDS)}


def scan_rows(path, columns: Sequence[str]) -> Iterator[tuple]:
    """The ``columns`` (of ``ROW_FIELDS``) of every row of a rows file, in row order, read as they are
    consumed: a whole-version read (`lakerag index diff`) holds no more than the caller keeps."""
    unknown = set(columns) - set(ROW_FIELDS)
    if unknown:
        raise ValueError(f"no such row fields: {sorted(unknown)}")
    with contextlib.closing(_connect_read_only(path)) as connection:
        yield from connection.execute(f"SELECT {', '.join(columns)} FROM chunks ORDER BY row")


def _connect_read_only(path) -> sqlite3.Connection:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"  # versions never change: no locking
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _next_prefix(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None when there is none to write)."""
    last = ord(prefix[-1]) + 1
    if last > 0x10FFFF or 0xD800 <= last <= 0xDFFF:
        return None
    return prefix[:-1] + chr(last)
