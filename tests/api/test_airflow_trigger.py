"""Event-driven sync in a cluster, API side: uploads and deletes record an Airflow asset event in the
background (JWT login, asset id lookup, POST /api/v2/assets/events), never failing the request; a
down Airflow is logged and counted; the raw/ poll catches objects written straight to the store.
Airflow is the stub of airflow_stub.py here; tests/airflow posts to a real Airflow api-server."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import wait_until
from lakerag import config
from lakerag.api.airflow_trigger import AirflowClient, PipelineTrigger
from lakerag.lake import doc_id_for

from .airflow_stub import ASSET_ID, AirflowStub


@pytest.fixture
def airflow():
    with AirflowStub() as stub:
        yield stub


def trigger_settings(local_settings: config.Settings, url: str, **changes) -> config.Settings:
    return local_settings.replace(airflow_api_url=url, airflow_username="lakerag-trigger",
                                  airflow_password="s3cret", **changes)


BASALT = b"Basalt columns form as lava cools and contracts."


def upload(api, name: str, data: bytes = BASALT) -> dict:
    response = api.client.post("/documents", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return response.json()


def trigger_count(api, outcome: str) -> float:
    text = api.client.get("/metrics").text
    match = re.search(rf'^lakerag_airflow_triggers_total{{outcome="{outcome}"}} (\S+)$', text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_upload_and_delete_each_record_an_event_on_the_asset(local_settings, start_api, airflow):
    with start_api(trigger_settings(local_settings, airflow.url)) as api:
        uploaded = upload(api, "basalt.txt")
        assert "requested from Airflow" in uploaded["note"]
        events = airflow.wait_for_events(1)
        assert events == [{"asset_id": ASSET_ID, "extra": {"source": "lakerag-api", "changes": ["uploaded raw/basalt.txt"]}}]
        # The same bytes again change nothing: no event (the next one is the delete's).
        again = api.client.post("/documents", files={"file": ("basalt.txt", BASALT)})
        assert again.status_code == 200 and "Airflow" not in again.json()["note"], again.text
        response = api.client.delete(f"/documents/{doc_id_for('raw/basalt.txt')}")
        assert response.status_code == 200 and "requested from Airflow" in response.json()["note"]
        assert airflow.wait_for_events(2)[1]["extra"]["changes"] == ["deleted raw/basalt.txt"]
        assert wait_until(lambda: trigger_count(api, "sent") == 2)
        assert trigger_count(api, "failed") == 0
    # One login and one asset lookup serve every event (JWT and id cached).
    assert airflow.logins == 1
    assert airflow.requests.count(("GET", "/api/v2/assets")) == 1


def test_a_down_airflow_never_fails_the_upload_and_is_counted(local_settings, start_api, airflow, caplog):
    airflow.mode = "down"
    with start_api(trigger_settings(local_settings, airflow.url)) as api:
        started = time.perf_counter()
        upload(api, "basalt.txt")
        assert time.perf_counter() - started < 5  # the request did not wait for Airflow's answer
        assert wait_until(lambda: trigger_count(api, "failed") == 1)
        assert (Path(local_settings.store_uri.removeprefix("file://")) / "raw" / "basalt.txt").exists()
        airflow.mode = "ok"  # back: the next change goes through
        upload(api, "granite.txt")
        assert airflow.wait_for_events(1)[0]["extra"]["changes"] == ["uploaded raw/granite.txt"]
        assert wait_until(lambda: trigger_count(api, "sent") == 1)
    assert any("could not trigger the pipeline" in r.getMessage() and "HTTP 503" in r.getMessage()
               for r in caplog.records)
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_nothing_listening_never_fails_the_upload(local_settings, start_api):
    from conftest import free_port

    with start_api(trigger_settings(local_settings, f"http://127.0.0.1:{free_port()}")) as api:
        upload(api, "basalt.txt")
        assert wait_until(lambda: trigger_count(api, "failed") == 1)


def test_off_by_default(local_settings, start_api):
    with start_api(local_settings) as api:
        assert api.state.trigger is None
        assert "the next pipeline run" in upload(api, "basalt.txt")["note"]


def test_an_expired_token_logs_in_again(airflow):
    client = AirflowClient(airflow.url, "lakerag-trigger", "s3cret")
    trigger = PipelineTrigger(client, airflow.asset_uri)
    assert trigger.send(["uploaded raw/a.txt"])
    airflow.expire_tokens()
    assert trigger.send(["uploaded raw/b.txt"])
    assert airflow.logins == 2 and len(airflow.events) == 2


def test_wrong_password_fails_with_what_to_check(airflow, caplog):
    trigger = PipelineTrigger(AirflowClient(airflow.url, "lakerag-trigger", "wrong"), airflow.asset_uri)
    assert trigger.send(["uploaded raw/a.txt"]) is False
    assert any("LAKERAG_AIRFLOW_USERNAME / LAKERAG_AIRFLOW_PASSWORD" in r.getMessage() for r in caplog.records)
    assert airflow.events == []


def test_an_asset_airflow_does_not_know_says_how_to_declare_it(airflow, caplog):
    trigger = PipelineTrigger(AirflowClient(airflow.url, "lakerag-trigger", "s3cret"), "x-lakerag://elsewhere")
    assert trigger.send(["uploaded raw/a.txt"]) is False
    assert any("AIRFLOW_VAR_LAKERAG_ASSET_URI" in r.getMessage() for r in caplog.records)


def test_a_burst_of_changes_makes_few_events_that_name_every_change(airflow):
    """Notifications that arrive while an event is in flight coalesce into one more event."""
    airflow.mode = "slow"
    trigger = PipelineTrigger(AirflowClient(airflow.url, "lakerag-trigger", "s3cret"), airflow.asset_uri)
    trigger.start()
    try:
        for i in range(10):
            trigger.notify(f"uploaded raw/{i}.txt")
        assert wait_until(lambda: sum(len(e["extra"]["changes"]) for e in airflow.events) == 10)
        time.sleep(2 * airflow.delay)  # nothing more follows
    finally:
        trigger.stop()
    assert len(airflow.events) <= 2
    named = [change for event in airflow.events for change in event["extra"]["changes"]]
    assert sorted(named) == sorted(f"uploaded raw/{i}.txt" for i in range(10))


def test_the_poll_catches_objects_written_straight_to_the_store(local_settings, start_api, airflow):
    raw = Path(local_settings.store_uri.removeprefix("file://")) / "raw"
    raw.mkdir(parents=True)
    (raw / "before.txt").write_text("Present before the API started: the schedule's business.")
    with start_api(trigger_settings(local_settings, airflow.url, airflow_poll_seconds=0.2)) as api:
        time.sleep(1.0)
        assert airflow.events == []  # what was there at start triggers nothing
        (raw / "copied.txt").write_text("Copied into the bucket with aws s3 cp, not through the API.")
        events = airflow.wait_for_events(1)
        assert events[0]["extra"]["changes"] == ["raw/ changed in the store: 1 new"]
        # An upload through the API is one event: the poll does not send it again (which of the two
        # sends it depends on whether a poll falls between the write and the route's notify).
        upload(api, "basalt.txt")
        airflow.wait_for_events(2)
        time.sleep(1.0)
        assert len(airflow.events) == 2
        (raw / "copied.txt").unlink()
        assert airflow.wait_for_events(3)[2]["extra"]["changes"] == ["raw/ changed in the store: 1 deleted"]


def test_settings_are_checked_with_the_fix():
    with pytest.raises(config.ConfigError, match="LAKERAG_AIRFLOW_API_URL"):
        config.from_env({"LAKERAG_AIRFLOW_API_URL": "airflow:8080"})
    with pytest.raises(config.ConfigError, match="go together"):
        config.from_env({"LAKERAG_AIRFLOW_API_URL": "http://airflow:8080", "LAKERAG_AIRFLOW_USERNAME": "u"})
    with pytest.raises(config.ConfigError, match="LAKERAG_AIRFLOW_POLL_SECONDS"):
        config.from_env({"LAKERAG_AIRFLOW_POLL_SECONDS": "10"})
    lines, _ = config.report({"LAKERAG_AIRFLOW_API_URL": "http://a:8080", "LAKERAG_AIRFLOW_USERNAME": "u",
                              "LAKERAG_AIRFLOW_PASSWORD": "s3cret"})
    assert not any("s3cret" in line for line in lines)
