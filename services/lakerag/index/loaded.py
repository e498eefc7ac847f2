"""One verified index version in memory, and what search asks of it.

Row ids are FAISS ids: row i of the chunk rows (``rows.ChunkRows``) is vector i and BM25
document i. Search (lakerag.search) reaches FAISS, BM25 and the rows only through these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..embedding import cap_this_thread
from .hit_rows import HitRows
from .lexical import LexicalIndex
from .rows import ROW_FIELDS, ChunkRows

__all__ = ["ROW_FIELDS", "LoadedIndex"]


@dataclass
class LoadedIndex:
    version: str
    manifest: dict
    index: faiss.Index
    chunk_rows: ChunkRows
    path: Path
    lexical: LexicalIndex | None = None  # None: a version built before hybrid search (dense only)
    encoder_check: str | None = None  # how the API decided its query encoder fits (encoder_identity)
    hit_rows: HitRows | None = None  # None: a version written before chunks.hits (its rows from chunk_rows alone)

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
        cap_this_thread()
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
            cap_this_thread()
            scores, ids = self.index.search(query_vector, min(k, len(allowed)), params=self._only(allowed, k))
        ids, scores = ids[0], scores[0]
        # FAISS pads missing hits with -1 after the found ones; the mask only when there are some (numpy
        # calls cost ~5-10 µs each on the caches the scan has just flushed).
        if len(ids) and ids[-1] < 0:
            valid = ids >= 0
            ids, scores = ids[valid], scores[valid]
        return ids, scores

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

    def rows(self, ids) -> list[dict]:
        """The ``ROW_FIELDS`` of each row id, in order."""
        return self.chunk_rows.rows(ids)

    def row_members(self, ids) -> list[bytes] | None:
        """Each row id's fields as ready JSON members (``hit_rows``), in order; None when this version has none."""
        return self.hit_rows.members(ids) if self.hit_rows is not None else None

    def texts(self, ids) -> list[str]:
        return self.chunk_rows.texts(ids)

    def document_rows(self, doc_id: str) -> np.ndarray:
        """Row ids of one document's chunks, in chunk order."""
        return self.chunk_rows.document_rows(doc_id)

    def matching_rows(self, doc_id: str | None = None, source_prefix: str | None = None) -> np.ndarray:
        """Row ids whose doc_id is ``doc_id`` and whose source starts with ``source_prefix``."""
        return self.chunk_rows.matching(doc_id, source_prefix)

    def chunks_per_document(self) -> dict[str, int]:
        return self.chunk_rows.chunks_per_document()

    def source_of(self, doc_id: str) -> str | None:
        """The raw key of the document ``doc_id``, when this version holds it."""
        return self.chunk_rows.source_of(doc_id)

    @property
    def chunks(self):
        """All rows as a pandas DataFrame, for tools and tests (imports pandas; the API never calls it)."""
        import pandas as pd

        return pd.DataFrame(self.chunk_rows.columns(), columns=list(ROW_FIELDS))
