"""Event-driven sync in a cluster: ask Airflow to run the pipeline now, not at the next schedule.

The pipeline DAG (airflow-dags/lakerag_pipeline.py) is scheduled on the asset
``LAKERAG_AIRFLOW_ASSET_URI`` or its cron, whichever comes first, one run at a time. After
an upload or a delete the API records an event on that asset through Airflow 3's REST API:
``POST /auth/token`` (user + password -> JWT), ``GET /api/v2/assets`` (the asset's id, once),
``POST /api/v2/assets/events`` ``{"asset_id", "extra"}``.

A request never waits for Airflow and never fails because of it: one background thread
sends, and notifications that arrive while it is busy coalesce into one more event. A failed
event is logged and counted (``lakerag_airflow_triggers_total{outcome="failed"}``); the cron
schedule is the safety net. With ``LAKERAG_AIRFLOW_POLL_SECONDS`` > 0 the same thread lists
raw/ that often and records an event when objects were written straight to the bucket
(the polling route); a listing it has sent an event for is not sent again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx

from ..config import Settings
from ..store import StoreError
from ..watch import listing_changes, raw_listing

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_REASONS = 20  # an event names at most this many changes (a burst of uploads is one event)


class TriggerError(RuntimeError):
    """Airflow did not record the event; the message says what to check."""


class AirflowClient:
    """The three calls of Airflow 3's REST API the trigger needs, with a cached JWT and asset id."""

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = TIMEOUT_SECONDS,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._token: str | None = None
        self._asset_ids: dict[str, int] = {}

    def close(self) -> None:
        self._http.close()

    def _login(self) -> str:
        response = self._http.post("/auth/token", json={"username": self.username, "password": self._password})
        if response.status_code not in (200, 201):
            raise TriggerError(f"Airflow refused the login of {self.username!r} (HTTP {response.status_code}): "
                               "check LAKERAG_AIRFLOW_USERNAME / LAKERAG_AIRFLOW_PASSWORD")
        return response.json()["access_token"]

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        for attempt in range(2):
            if self.username and self._token is None:
                self._token = self._login()
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            response = self._http.request(method, path, headers=headers, **kwargs)
            if response.status_code == 401 and self.username and attempt == 0:
                self._token = None  # expired: log in again once
                continue
            return response
        return response

    def asset_id(self, uri: str) -> int:
        if uri not in self._asset_ids:
            response = self._request("GET", "/api/v2/assets", params={"uri_pattern": uri, "limit": 100})
            _raise_for(response, "list assets")
            ids = [asset["id"] for asset in response.json().get("assets", []) if asset.get("uri") == uri]
            if not ids:
                raise TriggerError(f"Airflow has no asset {uri!r}: the lakerag_pipeline DAG declares it once it "
                                   "is parsed with AIRFLOW_VAR_LAKERAG_ASSET_URI equal to LAKERAG_AIRFLOW_ASSET_URI")
            self._asset_ids[uri] = ids[0]
        return self._asset_ids[uri]

    def record_event(self, uri: str, extra: dict) -> dict:
        """Record one event on the asset ``uri``; Airflow's answer (the event) or TriggerError."""
        asset_id = self.asset_id(uri)
        response = self._request("POST", "/api/v2/assets/events", json={"asset_id": asset_id, "extra": extra})
        if response.status_code == 404:
            self._asset_ids.pop(uri, None)  # the asset was re-created under another id: look it up again
        _raise_for(response, f"record an event on asset {uri!r}")
        return response.json()


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code >= 300:
        detail = response.text[:300].replace("\n", " ")
        raise TriggerError(f"Airflow could not {what}: HTTP {response.status_code} {detail}")


class PipelineTrigger:
    """One daemon thread that records asset events: on ``notify`` (uploads, deletes) and, when
    ``poll_seconds`` > 0, when the raw/ listing changed. ``on_result(ok)`` counts each attempt."""

    def __init__(self, client: AirflowClient, asset_uri: str, *, poll_seconds: float = 0.0,
                 store_factory: Callable[[], object] | None = None,
                 on_result: Callable[[bool], None] | None = None):
        self.client = client
        self.asset_uri = asset_uri
        self.poll_seconds = poll_seconds
        self._store_factory = store_factory
        self._on_result = on_result
        self._lock = threading.Lock()
        self._reasons: list[str] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seen: dict[str, str] | None = None  # the raw/ listing covered by the last event sent

    @classmethod
    def from_settings(cls, settings: Settings, store_factory=None, on_result=None) -> PipelineTrigger | None:
        """None when LAKERAG_AIRFLOW_API_URL is unset (the default: no Airflow, e.g. `lakerag run`)."""
        if not settings.airflow_api_url:
            return None
        client = AirflowClient(settings.airflow_api_url, settings.airflow_username, settings.airflow_password)
        return cls(client, settings.airflow_asset_uri, poll_seconds=settings.airflow_poll_seconds,
                   store_factory=store_factory if settings.airflow_poll_seconds > 0 else None, on_result=on_result)

    def notify(self, reason: str) -> None:
        """Ask for an event; returns at once (the thread sends it)."""
        with self._lock:
            if len(self._reasons) < MAX_REASONS:
                self._reasons.append(reason)
        self._wake.set()

    def send(self, reasons: list[str]) -> bool:
        """Record one event now (the caller's thread); True when Airflow recorded it."""
        try:
            event = self.client.record_event(self.asset_uri, {"source": "lakerag-api", "changes": reasons})
        except (TriggerError, httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("could not trigger the pipeline (%s); the schedule will pick up %s",
                        f"{type(exc).__name__}: {exc}", ", ".join(reasons))
            ok = False
        else:
            log.info("pipeline triggered: asset event %s on %s for %s", event.get("id"), self.asset_uri,
                     ", ".join(reasons))
            ok = True
        if self._on_result:
            self._on_result(ok)
        return ok

    def _listing(self) -> dict[str, str] | None:
        if self._store_factory is None:
            return None
        try:
            return raw_listing(self._store_factory())
        except StoreError as exc:
            log.warning("cannot list raw/ for the pipeline trigger: %s", exc)
            return None

    def step(self) -> bool | None:
        """One round: send when asked or when raw/ changed since the last event. None: nothing to send."""
        with self._lock:
            reasons, self._reasons = self._reasons, []
        listing = self._listing()  # taken before sending: the run the event starts sees at least this
        if listing is not None and self.seen is None and not reasons:
            self.seen = listing  # first look: what was there before the API started is the schedule's
            return None
        changed = listing is not None and listing != self.seen
        if not (reasons or changed):
            return None
        if not reasons:
            counts = listing_changes(self.seen, listing)
            reasons = ["raw/ changed in the store: " + ", ".join(f"{n} {what}" for what, n in counts.items() if n)]
        ok = self.send(reasons)
        if ok and listing is not None:
            self.seen = listing
        return ok

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds if self._store_factory else None)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.step()
            except Exception:  # the trigger must never die: the next notify or poll tries again
                log.exception("pipeline trigger failed")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run_forever, name="pipeline-trigger", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread; an event in flight is not waited for long (the pod's grace period is short,
        and the schedule catches up)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self.client.close()
