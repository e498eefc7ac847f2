"""One verified index version in memory, and what search asks of it.

Row ids are FAISS ids: row i of ``chunks`` is vector i and BM25 document i.
Search (lakerag.search) reaches FAISS and BM25 only through these methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from .lexical import LexicalIndex

# Fields of a chunk row as search hits carry them.
ROW_FIELDS = ("doc_id", "chunk_id", "chunk_index", "text", "source", "title", "page", "source_version",
              "content_hash")


@dataclass
class LoadedIndex:
    version: str
    manifest: dict
    index: faiss.Index
    chunks: pd.DataFrame
    path: Path
    lexical: LexicalIndex | None = None  # None: a version built before hybrid search (dense only)
    _rows: dict[str, list] | None = field(default=None, init=False, repr=False)

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def dimension(self) -> int:
        return int(self.manifest["dimension"])

    @property
    def vector_count(self) -> int:
        return int(self.manifest["vector_count"])

    @property
    def has_lexical(self) -> bool:
        return self.lexical is not None

    # --- dense ------------------------------------------------------------------------------------------------

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (inner product = cosine) and row ids into ``chunks``, best first; -1 pads missing hits."""
        queries = np.ascontiguousarray(np.atleast_2d(query_vectors), dtype=np.float32)
        if queries.shape[1] != self.dimension:
            raise ValueError(f"query vectors have dimension {queries.shape[1]}, index {self.version} has "
                             f"{self.dimension}")
        k = max(1, int(k))
        if self.index.ntotal == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        return self.index.search(queries, k)

    def dense(self, query_vector: np.ndarray, k: int, allowed: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, scores) of the best ``k`` rows for one query vector, best first; only
        ``allowed`` rows when given (exact for flat indexes)."""
        if allowed is None:
            scores, ids = self.search(query_vector, k)
        else:
            scores, ids = self.index.search(query_vector, min(k, len(allowed)), params=self._only(allowed, k))
        valid = ids[0] >= 0
        return ids[0][valid], scores[0][valid]

    def _only(self, allowed: np.ndarray, k: int):
        """FAISS search parameters restricting a search to ``allowed`` rows."""
        selector = faiss.IDSelectorBatch(allowed)
        if self.manifest.get("index_type") == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(256, 4 * k))
        elif self.manifest.get("index_type") == "ivf":
            # Matching chunks may sit in lists the query does not probe: scan every list.
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(self.manifest["ivf"]["lists"]))
        else:
            params = faiss.SearchParameters(sel=selector)
        params._keep = selector  # the params object does not own the selector
        return params

    def dense_scores(self, ids, query_vector: np.ndarray) -> np.ndarray:
        """Cosine of ``query_vector`` with the stored vectors of ``ids``."""
        stored = np.vstack([self.index.reconstruct(int(i)) for i in ids])
        return stored @ query_vector[0]

    # --- lexical ----------------------------------------------------------------------------------------------

    def lexical_scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (0 where no query term occurs)."""
        return self.lexical.scores(query)

    def lexical_terms(self, text: str) -> list[str]:
        """``text`` cut into BM25 terms as this version was built (its manifest names the tokenizer)."""
        return self.lexical.terms(text)

    def covering(self, query: str) -> np.ndarray:
        """Row ids of the chunks that hold every term of ``query``."""
        return self.lexical.covering(query)

    # --- rows -------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Plain Python columns for building hits: a few microseconds per hit instead of a
        pandas row lookup (~0.4 ms). Done once per version, before it is served."""
        missing = [None] * len(self.chunks)  # lineage columns of a version built before lineage
        columns = {name: self.chunks[name].tolist() if name in self.chunks else missing for name in ROW_FIELDS}
        columns["chunk_index"] = [int(v) for v in columns["chunk_index"]]
        columns["title"] = [_plain(v) or None for v in columns["title"]]
        columns["page"] = [None if _plain(v) is None else int(v) for v in columns["page"]]
        for name in ("source_version", "content_hash"):
            columns[name] = [_plain(v) for v in columns[name]]
        self._rows = columns

    def rows(self, ids) -> list[dict]:
        """The ``ROW_FIELDS`` of each row id, in order."""
        if self._rows is None:
            self.prepare()
        return [{name: self._rows[name][i] for name in ROW_FIELDS} for i in np.asarray(ids).tolist()]

    def texts(self, ids) -> list[str]:
        return self.chunks["text"].iloc[ids].tolist()

    def document_rows(self, doc_id: str) -> np.ndarray:
        """Row ids of one document's chunks, in chunk order."""
        rows = self.chunks.index[self.chunks["doc_id"] == doc_id].to_numpy()
        return rows[self.chunks["chunk_index"].to_numpy()[rows].argsort(kind="stable")]


def _plain(value):
    """None for pandas' missing values (None, NaN, pd.NA), the value otherwise."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
