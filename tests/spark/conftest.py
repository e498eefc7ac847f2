"""One Spark session for every Spark test (starting one costs several seconds)."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    from lakerag.config import Settings
    from lakerag_spark.session import spark_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = spark_session(Settings(spark_master="local[2]"), app_name="lakerag-tests")
    yield session
    session.stop()
