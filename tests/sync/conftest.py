from __future__ import annotations

import pytest
from lakerag import config


@pytest.fixture(scope="session")
def embedder():
    from lakerag.embedding import load_embedder

    return load_embedder(config.from_env({}))


@pytest.fixture(params=["file", "s3"])
def settings(request):
    """A fresh store: a local directory, then a bucket on the moto S3 server."""
    return request.getfixturevalue("local_settings" if request.param == "file" else "s3_settings")
