"""Airflow tests run in .venv-airflow (make airflow-env) with a throwaway AIRFLOW_HOME and no DB:
DagBag parsing and pod building need neither a metadata database nor a cluster."""

from __future__ import annotations

import os
import tempfile

# Before anything imports airflow: its config and logs go to a temp dir, never ~/airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="lakerag-airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import pytest
from airflow_helpers import DAG_ID, load_dagbag


@pytest.fixture(autouse=True)
def clean_airflow_vars(monkeypatch):
    """Each test starts from the DAG's defaults: no AIRFLOW_VAR_* from the caller's shell."""
    for name in list(os.environ):
        if name.startswith("AIRFLOW_VAR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def dagbag():
    return load_dagbag()


@pytest.fixture
def dag(dagbag):
    assert not dagbag.import_errors, dagbag.import_errors
    return dagbag.dags[DAG_ID]
