"""Retrieval over a loaded index version, as small steps (one module each):

``filters`` (doc_id / source_prefix -> allowed rows), ``retrieve`` (dense, lexical),
``fusion`` (hybrid), ``cutoff`` (out-of-context detection), ``rerank`` (cross-encoder);
``engine.search`` composes them. Each step takes and returns a ``Ranked``.
"""

from .cutoff import Cutoffs, cutoffs_for
from .engine import NO_INDEX, IndexNotLoaded, SearchOutcome, candidate_depth, hits_for, search
from .fusion import Fusion
from .ranking import Ranked
from .rerank import Reranker, load_reranker

__all__ = ["NO_INDEX", "Cutoffs", "Fusion", "IndexNotLoaded", "Ranked", "Reranker", "SearchOutcome",
           "candidate_depth", "cutoffs_for", "hits_for", "load_reranker", "search"]
