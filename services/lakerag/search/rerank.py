"""Optional cross-encoder reranking of the best candidates (LAKERAG_RERANK_MODEL, off by default)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..index.loaded import LoadedIndex
from ..torch_models import ModelUnavailable, offline_requested
from .ranking import Ranked


@dataclass
class Reranker:
    """A sentence-transformers CrossEncoder that reorders the best ``candidates`` chunks."""

    name: str
    model: Any = field(repr=False)
    candidates: int = 20

    def scores(self, query: str, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict([(query, text) for text in texts], show_progress_bar=False),
                          dtype=np.float32).reshape(len(texts))

    def rerank(self, index: LoadedIndex, query: str, ranked: Ranked) -> Ranked:
        """The first ``candidates`` of ``ranked`` in the cross-encoder's order, with its scores."""
        head = ranked.ids[:self.candidates]
        scores = self.scores(query, index.texts(head))
        order = np.argsort(-scores, kind="stable")
        return Ranked(head[order], scores[order])


def load_reranker(settings: Settings) -> Reranker | None:
    """The CrossEncoder LAKERAG_RERANK_MODEL names (a local directory or a model id in the
    cache), or None when it is empty (reranking off)."""
    if not settings.rerank_model:
        return None
    local = Path(settings.rerank_model).expanduser()
    try:
        # Here, not at the top: sentence-transformers (and torch) take seconds to import,
        # and reranking is off unless configured.
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(str(local) if local.is_dir() else settings.rerank_model, device="cpu",
                             cache_folder=settings.model_cache_dir or None,
                             local_files_only=local.is_dir() or offline_requested(settings))
    except Exception as exc:  # any loader failure means the setting cannot be honoured
        raise ModelUnavailable(
            f"LAKERAG_RERANK_MODEL={settings.rerank_model!r} could not be loaded as a sentence-transformers "
            f"CrossEncoder ({type(exc).__name__}: {exc}); point it at a local model directory or one in "
            "LAKERAG_MODEL_CACHE_DIR, or unset it to search without reranking") from exc
    return Reranker(name=settings.rerank_model, model=model, candidates=settings.rerank_candidates)
