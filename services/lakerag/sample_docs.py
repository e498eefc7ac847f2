"""The bundled sample documents that ``make run`` (``lakerag run --samples``) serves."""

from __future__ import annotations

from pathlib import Path

from .store import ObjectStore

DOCS = Path(__file__).resolve().parent / "samples" / "docs"


def seed(store: ObjectStore) -> int:
    """Copy the sample documents into raw/ of a store that holds nothing yet; how many were copied.

    A store holding anything at all (tables, an index, its own documents) is left as it is: a
    sample deleted through the API stays deleted on the next ``make run``."""
    if next(iter(store.list()), None) is not None:
        return 0
    docs = sorted(path for path in DOCS.iterdir() if path.is_file())
    for path in docs:
        store.put(f"raw/{path.name}", path.read_bytes())
    return len(docs)
