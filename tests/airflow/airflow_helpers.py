"""Shared by the Airflow tests: where the DAGs are, loading them, and building a task's pod."""

from __future__ import annotations

import copy
import socket
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "airflow-dags"
DAG_ID = "lakerag_pipeline"
TASK_ORDER = ["bronze", "silver", "gold", "embed", "publish_index", "health"]


def load_dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def render_pod(dag, task_id: str, conf: dict | None = None):
    """The pod a task would create: templates rendered as at run time (Variables from the
    AIRFLOW_VAR_* env backend, params validated from the trigger conf), then the
    operator's own build_pod_request_obj (dry_run: no cluster needed)."""
    from airflow.sdk.execution_time.context import VariableAccessor

    task = copy.deepcopy(dag.get_task(task_id))
    params = copy.deepcopy(dag.params)
    for key, value in (conf or {}).items():
        params[key] = value
    context = {
        "params": params.validate(),
        "var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)},
        "ti": types.SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, map_index=-1, try_number=1),
        "run_id": "manual__test",
        "dag": dag,
    }
    task.render_template_fields(context)
    return task, task.build_pod_request_obj(context, dry_run=True)


def cron_of(dag) -> str | None:
    """The cron part of the DAG's schedule (AssetOrTimeSchedule: cron or asset event); None: events only."""
    from airflow.sdk import AssetOrTimeSchedule

    timetable = dag.timetable
    return timetable.timetable.expression if isinstance(timetable, AssetOrTimeSchedule) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
