"""Request filters (``doc_id``, ``source_prefix``) as the set of rows a search may return."""

from __future__ import annotations

import numpy as np

from ..index.loaded import LoadedIndex
from ..lake import RAW_PREFIX


def allowed_rows(index: LoadedIndex, doc_id: str | None = None, source_prefix: str | None = None
                 ) -> np.ndarray | None:
    """Row ids matching every given filter (possibly none), or None without filters."""
    if not (doc_id or source_prefix):
        return None
    return index.matching_rows(doc_id, source_prefix)


def no_match_reason(doc_id: str | None, source_prefix: str | None) -> str:
    reason = "no indexed chunk matches the filter " + \
        ", ".join(f"{n}={v!r}" for n, v in (("doc_id", doc_id), ("source_prefix", source_prefix)) if v)
    if source_prefix and not source_prefix.startswith(RAW_PREFIX):  # a folder as the user sees it under raw/
        reason += f"; sources are keys under {RAW_PREFIX}: try source_prefix={RAW_PREFIX + source_prefix.lstrip('/')!r}"
    return reason
