"""API test fixtures: the real packaged model, a real index over the sample documents,
and the app running under real uvicorn on a free loopback port."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLES, free_port
from lakerag import config
from lakerag.extract import extract
from lakerag.lake import chunk_id_for, doc_id_for
from lakerag.text import chunk_pages, guess_title, normalise_pages


@pytest.fixture(scope="session")
def embedder():
    from lakerag.embedding import load_embedder

    return load_embedder(config.from_env({}))


def sample_chunks(docs: dict[str, bytes], settings: config.Settings | None = None) -> pd.DataFrame:
    """Chunk rows (the gold columns the index keeps) for raw files, the way the pipeline cuts them."""
    settings = settings or config.Settings()
    rows = []
    for name, data in sorted(docs.items()):
        key = f"raw/{name}"
        extraction = extract(key, data)
        assert extraction.ok, (key, extraction.reason)
        pages = normalise_pages(extraction.pages, extraction.file_type)
        doc_id = doc_id_for(key)
        title = guess_title(pages, key, extraction.file_type)
        for chunk in chunk_pages(pages, settings.chunk_tokens, settings.chunk_overlap_tokens,
                                 paged=extraction.page_count is not None):
            rows.append({"chunk_id": chunk_id_for(doc_id, chunk.index, chunk.text), "doc_id": doc_id,
                         "chunk_index": chunk.index, "text": chunk.text, "source": key, "title": title,
                         "page": chunk.page})
    frame = pd.DataFrame(rows)
    frame["page"] = frame["page"].astype("Int32")
    return frame


def write_index(path: Path, embedder, chunks: pd.DataFrame, version: str, vectors: np.ndarray | None = None,
                model: str | None = None) -> Path:
    from lakerag.index.artifacts import write_index_dir

    if vectors is None:
        vectors = embedder.encode_passages(chunks["text"].tolist())
    write_index_dir(path, vectors, chunks, model or embedder.name, gold_version=1, version=version)
    return path


@pytest.fixture(scope="session")
def sample_docs() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((SAMPLES / "docs").iterdir()) if p.is_file()}


@pytest.fixture(scope="session")
def sample_vectors(embedder, sample_docs):
    chunks = sample_chunks(sample_docs)
    return chunks, embedder.encode_passages(chunks["text"].tolist())


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, embedder, sample_vectors) -> Path:
    """Version ``20260101T000000Z-samples1`` over all sample documents."""
    chunks, vectors = sample_vectors
    return write_index(tmp_path_factory.mktemp("index") / "v1", embedder, chunks, "20260101T000000Z-samples1",
                       vectors=vectors)


@pytest.fixture(scope="session")
def sample_index_v2(tmp_path_factory, embedder, sample_vectors) -> Path:
    """A second version without the travel policy (so a swap is visible in results)."""
    chunks, vectors = sample_vectors
    keep = (chunks["source"] != "raw/employee-travel-policy.pdf").to_numpy()
    return write_index(tmp_path_factory.mktemp("index") / "v2", embedder,
                       chunks[keep].reset_index(drop=True), "20260102T000000Z-samples2", vectors=vectors[keep])


def publish(settings: config.Settings, index_dir: Path) -> str:
    from lakerag.index.publish import publish_dir
    from lakerag.store import store_for

    return publish_dir(store_for(settings), index_dir)


class RunningApi:
    """create_app under a real uvicorn server in a thread; ``url`` is its loopback address."""

    def __init__(self, settings: config.Settings, embedder=None, watch: bool = False):
        from lakerag.api.main import create_app

        self.settings = settings
        self.app = create_app(settings, embedder=embedder, watch=watch)
        self.state = self.app.state.lakerag
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        import uvicorn
        from lakerag.api.main import server_config

        # The server `lakerag serve` runs, on a free loopback port.
        self.server = uvicorn.Server(server_config(self.app, self.settings, host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not (self.server.started and self.state.ready.is_set()):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("API did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def start_api(embedder):
    """start_api(settings, watch=False, **setting_overrides) -> context manager of a RunningApi."""

    @contextmanager
    def start(settings: config.Settings, watch: bool = False, **overrides):
        settings = settings.replace(**overrides) if overrides else settings
        with RunningApi(settings, embedder=embedder, watch=watch) as api:
            yield api

    return start


@pytest.fixture
def served(local_settings, sample_index, start_api):
    """An API over a file:// store that has the sample index published."""
    publish(local_settings, sample_index)
    with start_api(local_settings) as api:
        yield api


@pytest.fixture
def gemini():
    from .gemini_stub import GeminiStub

    with GeminiStub() as stub:
        yield stub


def pytest_collection_modifyitems(config, items):
    """Every API test runs the real model and servers: part of `make test`, not `make test-fast`."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
