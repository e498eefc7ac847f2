"""Event-driven sync in the cluster, Airflow side: the DAG runs on its cron or an event on the asset
the API writes to; the API's requests are what Airflow's own API models accept; and against a real
`airflow api-server` (sqlite, SimpleAuthManager) an event from the API's trigger queues a DAG run."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from airflow_helpers import DAG_ID, DAGS_FOLDER, free_port, load_dagbag
from lakerag import config
from lakerag.api.airflow_trigger import AirflowClient, PipelineTrigger

AIRFLOW = Path(sys.executable).parent / "airflow"  # the venv running these tests (.venv-airflow)


def test_dag_is_scheduled_on_the_asset_the_api_writes_to(dag):
    from airflow.sdk import AssetOrTimeSchedule

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.uri == config.Settings().airflow_asset_uri
    assert dag.max_active_runs == 1  # events during a run queue one more run, not one each


def test_the_asset_follows_the_variable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_LAKERAG_ASSET_URI", "x-lakerag://acme-prod")
    dag = load_dagbag().dags[DAG_ID]
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.uri == "x-lakerag://acme-prod"


def test_requests_are_what_airflows_own_api_accepts():
    """Each request the trigger makes goes to a route Airflow serves, with a body its model validates."""
    from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody
    from airflow.api_fastapi.auth.managers.simple.routes.login import login_router
    from airflow.api_fastapi.core_api.datamodels.assets import CreateAssetEventsBody
    from airflow.api_fastapi.core_api.routes.public import public_router

    routes = {(method, route.path) for route in public_router.routes for method in getattr(route, "methods", ())}
    routes |= {(method, "/auth" + route.path) for route in login_router.routes for method in route.methods}
    seen = []

    def airflow(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if request.url.path == "/auth/token":
            LoginBody.model_validate(body)
            return httpx.Response(201, json={"access_token": "jwt"})
        assert request.headers["Authorization"] == "Bearer jwt"
        if request.url.path == "/api/v2/assets":
            return httpx.Response(200, json={"assets": [{"id": 3, "uri": "x-lakerag://raw"}], "total_entries": 1})
        event = CreateAssetEventsBody.model_validate(body)
        return httpx.Response(200, json={"id": 1, "asset_id": event.asset_id, "extra": event.extra})

    client = AirflowClient("http://airflow:8080", "lakerag-trigger", "pw", transport=httpx.MockTransport(airflow))
    assert PipelineTrigger(client, "x-lakerag://raw").send(["uploaded raw/a.txt"])
    assert [(method, path) for method, path, _ in seen] == [
        ("POST", "/auth/token"), ("GET", "/api/v2/assets"), ("POST", "/api/v2/assets/events")]
    for method, path, _ in seen:
        assert (method, path) in routes, f"Airflow serves no {method} {path}"
    assert seen[-1][2] == {"asset_id": 3, "extra": {"source": "lakerag-api", "changes": ["uploaded raw/a.txt"]}}


# --- a real api-server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_airflow(tmp_path_factory):
    """Airflow 3 as the chart runs it (SimpleAuthManager, the trigger user with role op), on sqlite,
    with this repo's DAG folder serialized and unpaused. Yields (url, password)."""
    home = tmp_path_factory.mktemp("airflow-home")
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({"admin": "admin-pw", "lakerag-trigger": password}))
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__CORE__AUTH_MANAGER":
               "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,lakerag-trigger:op",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16), "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "AIRFLOW__API__WORKERS": "1"}
    for name in [n for n in env if n.startswith("AIRFLOW_VAR_")]:
        del env[name]
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([str(AIRFLOW), *command], env=env, check=True, capture_output=True, timeout=900)
    port = free_port()
    log = (home / "api-server.log").open("w")
    server = subprocess.Popen([str(AIRFLOW), "api-server", "--port", str(port), "--host", "127.0.0.1"], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"airflow api-server did not start:\n{(home / 'api-server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url, password
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_an_event_from_the_api_queues_a_run_of_the_dag(real_airflow):
    url, password = real_airflow
    client = AirflowClient(url, "lakerag-trigger", password)
    trigger = PipelineTrigger(client, config.Settings().airflow_asset_uri)
    assert trigger.send(["uploaded raw/basalt.txt"]) is True
    # What Airflow recorded, read back as the admin: the event, and a run of the DAG queued on it.
    token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": "admin-pw"}).json()["access_token"]
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
    asset_id = client.asset_id(config.Settings().airflow_asset_uri)
    events = admin.get("/api/v2/assets/events", params={"asset_id": asset_id}).json()["asset_events"]
    assert [e["extra"]["changes"] for e in events] == [["uploaded raw/basalt.txt"]]
    queued = admin.get(f"/api/v2/dags/{DAG_ID}/assets/queuedEvents").json()["queued_events"]
    assert [q["asset_id"] for q in queued] == [asset_id]
    # A second change before the scheduler starts the run joins the same queued run.
    assert trigger.send(["deleted raw/granite.txt"]) is True
    assert len(admin.get(f"/api/v2/dags/{DAG_ID}/assets/queuedEvents").json()["queued_events"]) == 1
    # Airflow's own login refuses a wrong password: nothing recorded, the trigger reports failure.
    wrong = PipelineTrigger(AirflowClient(url, "lakerag-trigger", "wrong"), config.Settings().airflow_asset_uri)
    assert wrong.send(["uploaded raw/c.txt"]) is False
    assert len(admin.get("/api/v2/assets/events", params={"asset_id": asset_id}).json()["asset_events"]) == 2
