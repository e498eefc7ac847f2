"""Retrieval tests reuse the API suite's fixtures: the real packaged model, the sample
chunks cut as the pipeline cuts them, and the app under real uvicorn."""

from __future__ import annotations

from pathlib import Path

from api.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    embedder,
    publish,
    sample_chunks,
    sample_docs,
    sample_vectors,
    start_api,
)

SLOW_MODULES = {"test_hybrid.py", "test_lexical_versions.py", "test_rerank.py", "test_multilingual.py"}


def pytest_collection_modifyitems(config, items):
    """The model- and server-backed modules are part of `make test`, not `make test-fast`."""
    import pytest

    here = Path(__file__).parent
    for item in items:
        path = Path(item.fspath)
        if path.parent == here and path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
