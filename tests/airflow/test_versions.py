"""The DAG tests run on the Airflow the airflow image ships: `make airflow-env` installs
Airflow's own packages at the versions of images/locks/airflow.txt (images/constraints.py)."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "images"))
from constraints import venv_constraints


def test_this_venv_runs_the_airflow_the_image_ships():
    differ = {}
    for name, pinned in venv_constraints("airflow").items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differ[name] = (installed, pinned)
    assert not differ, f"installed vs locked: {differ}; recreate it: rm -rf .venv-airflow && make airflow-env"
