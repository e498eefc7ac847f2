"""What a new user does to get the first pipeline run: unpausing alone starts exactly one."""

from __future__ import annotations

import re

import pendulum
from airflow_helpers import REPO


def core_timetable(dag):
    """The scheduler's view of the DAG (the serialized form), whose timetable plans runs."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable


def test_unpausing_starts_one_run_at_once_and_no_backlog(dag):
    from airflow.timetables.base import TimeRestriction

    timetable = core_timetable(dag)
    restriction = TimeRestriction(earliest=pendulum.instance(dag.start_date), latest=None, catchup=dag.catchup)
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    now = pendulum.now("UTC")
    assert first.run_after <= now, "unpausing would start nothing until the next hour"
    following = timetable.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=restriction)
    assert following.run_after > now, "unpausing would start a backlog of runs"


def test_docs_never_say_to_unpause_and_trigger():
    """Both give two runs, the manual one queued behind the scheduled one."""
    for path in ("docs/kubernetes.md", "docs/airflow.md", "charts/lakerag/templates/NOTES.txt", "README.md"):
        text = " ".join((REPO / path).read_text().split())
        said = re.search(r"unpause\w*,? (and|then) (press |click )?trigger", text, re.IGNORECASE)
        assert not said, f"{path}: ...{text[said.start() - 80:said.end() + 40]}..."
