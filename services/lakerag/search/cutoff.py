"""Out-of-context detection.

A query is "out of context" when even its best chunk scores below an absolute
cut-off; hits far below the best one are dropped by a relative cut-off
(``score >= relative * best``). Cosine scores are not comparable between models
(bge-large puts unrelated text near 0.6, MiniLM near 0.1), so the defaults are
per model; ``LAKERAG_MIN_SCORE`` / ``LAKERAG_RELATIVE_SCORE`` override them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Settings
from .ranking import Ranked

# lower-cased model name -> (min_score, relative_score), calibrated on the sample
# questions against off-topic ones (see tests/api/services/test_retrieval.py).
MODEL_CUTOFFS = {
    "sentence-transformers/all-minilm-l6-v2": (0.30, 0.60),
    "baai/bge-large-en-v1.5": (0.62, 0.85),
    "baai/bge-base-en-v1.5": (0.60, 0.85),
    "baai/bge-small-en-v1.5": (0.60, 0.85),
}
DEFAULT_CUTOFFS = (0.30, 0.60)
# Under this tokenizer coverage the dense cosine says nothing (e.g. Arabic with an English model).
BLIND_COVERAGE = 0.5


@dataclass(frozen=True)
class Cutoffs:
    min_score: float
    relative: float


def cutoffs_for(settings: Settings, model: str) -> Cutoffs:
    base_min, base_rel = MODEL_CUTOFFS.get(model.lower().rstrip("/"), DEFAULT_CUTOFFS)
    return Cutoffs(settings.min_score if settings.min_score >= 0 else base_min,
                   settings.relative_score if settings.relative_score >= 0 else base_rel)


def apply(candidates: Ranked, dense_of: dict[int, float], best: float, exact: np.ndarray | None,
          cutoffs: Cutoffs) -> Ranked | None:
    """The candidates whose dense score clears both cut-offs, plus the ``exact`` ones (chunks
    holding every query term, kept whatever their dense score; None: no such chunk); None when
    the query is out of context (the best dense score is under ``min_score`` and nothing is exact)."""
    if best < cutoffs.min_score and (exact is None or not exact.any()):
        return None
    floor = max(cutoffs.min_score, best * cutoffs.relative)
    keep = [dense_of[i] >= floor for i in candidates.ids.tolist()]
    if all(keep):  # the common case: no arrays to build on the caches the FAISS scan has just flushed
        return candidates
    keep = np.array(keep, dtype=bool)
    return candidates.where(keep if exact is None else keep | exact)


def out_of_context_reason(best: float, cutoffs: Cutoffs, model: str, hybrid: bool) -> str:
    return (f"no relevant match: the best chunk scores {best:.3f}, below the relevance cut-off "
            f"{cutoffs.min_score:.2f} for {model}; the indexed documents do not seem to cover this"
            + (", and no chunk contains all of the query's terms" if hybrid else ""))
