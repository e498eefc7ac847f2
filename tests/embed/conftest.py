from __future__ import annotations

import pytest
from lakerag import config
from lakerag.embedding import load_embedder


@pytest.fixture(scope="module")
def embedder():
    """The packaged model, loaded once (load_embedder also caches it per process)."""
    return load_embedder(config.from_env({}))


@pytest.fixture(params=["file", "s3"])
def settings(request, tmp_path):
    """Settings for a fresh store: a local directory, then a bucket on the moto S3 server."""
    if request.param == "file":
        return request.getfixturevalue("local_settings")
    return request.getfixturevalue("s3_settings")
