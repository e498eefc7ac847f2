"""The DAG tests run on the Airflow the airflow image ships: `make airflow-env` installs
Airflow's own packages at the versions of images/locks/airflow.txt (images/constraints.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images"))
from constraints import drift


def test_this_venv_runs_the_airflow_the_image_ships():
    differ = drift("airflow")
    assert not differ, f"installed vs locked: {differ}; recreate it: rm -rf .venv-airflow && make airflow-env"
