"""The two retrievers over a loaded index: dense (FAISS) and lexical (BM25)."""

from __future__ import annotations

import numpy as np

from ..index.lexical import top_positive
from ..index.loaded import LoadedIndex
from .ranking import Ranked


def dense(index: LoadedIndex, query_vector: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> Ranked:
    """The ``depth`` rows nearest to the query vector (cosine), only ``allowed`` ones when given."""
    return Ranked.of(*index.dense(query_vector, depth, allowed))


def lexical(scores: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> Ranked:
    """The ``depth`` best rows by BM25 ``scores`` (``LoadedIndex.lexical_scores``) that hold a query term."""
    top_scores, ids = top_positive(scores, depth, allowed)
    return Ranked.of(ids, top_scores)
