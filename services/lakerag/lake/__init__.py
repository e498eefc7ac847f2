"""Where things live under the store root, and how delta-rs reaches them (``store.S3Access``).

    raw/<key>                 the user's files, never modified by the pipeline (hidden ones are no documents)
    lake/bronze               extracted text per raw object        (Delta)
    lake/quarantine           raw objects that could not be read   (Delta)
    lake/silver               cleaned, deduplicated documents      (Delta)
    lake/gold                 chunks, change data feed on          (Delta)
    lake/embeddings           chunk vectors keyed by model         (Delta)
    lake/_runs/<stage>.json   last run summary per stage (pipeline health)
    lake/_runs/documents.json where each raw file stands (GET /documents; written by each ETL run)
    lake/_runs/encoders.json  which encoder made each model's embeddings (written by each embed run)
    index/<version>/...       published, immutable index versions
    index/CURRENT             pointer to the served version, written last
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config import Settings
from ..store import NotFound, ObjectInfo, ObjectStore, S3Access, StoreError, store_for
from .run_marker import this_process

log = logging.getLogger(__name__)

RAW_PREFIX = "raw/"
INDEX_PREFIX = "index/"
CURRENT_KEY = "index/CURRENT"
TABLES = ("bronze", "quarantine", "silver", "gold", "embeddings")
DOCUMENTS_KEY = "lake/_runs/documents.json"
ENCODERS_KEY = "lake/_runs/encoders.json"  # model -> the encoder that made all of its embeddings


@dataclass(frozen=True)
class Lake:
    settings: Settings
    store: ObjectStore

    @classmethod
    def open(cls, settings: Settings) -> Lake:
        return cls(settings, store_for(settings))

    def table_uri(self, name: str) -> str:
        return self.store.url(f"lake/{name}")

    def storage_options(self) -> dict[str, str]:
        """Options for delta-rs; empty for local paths."""
        return S3Access.from_settings(self.settings).delta_options() if self.settings.is_s3 else {}

    def mark_run_started(self, stage: str) -> None:
        """A marker the stage's summary removes: left behind, it says a run started and never finished."""
        marker = {"stage": stage, "started_at": datetime.now(UTC).isoformat(), **this_process()}
        self.store.put(f"lake/_runs/{stage}.started.json", json.dumps(marker).encode())

    def read_run_started(self, stage: str) -> dict | None:
        try:
            return json.loads(self.store.get(f"lake/_runs/{stage}.started.json"))
        except NotFound:
            return None

    def write_run_summary(self, stage: str, summary: dict) -> None:
        """Store the stage's summary with when it finished and when the stage last succeeded
        (carried over from the previous summary when this run failed): the API's pipeline gauges."""
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        summary.setdefault("finished_at", finished)
        if summary.get("ok", True):
            summary["last_success_at"] = summary["finished_at"]
        else:
            try:
                previous = self.read_run_summary(stage) or {}
            except (ValueError, StoreError):
                previous = {}
            summary["last_success_at"] = previous.get("last_success_at")
        self.store.put(f"lake/_runs/{stage}.json", json.dumps(summary, indent=2, default=str).encode())
        self.store.delete(f"lake/_runs/{stage}.started.json")

    def read_document_status(self) -> dict | None:
        """What the last ETL run wrote with ``tables.write_document_status``; None before one did."""
        try:
            return json.loads(self.store.get(DOCUMENTS_KEY))
        except NotFound:
            return None

    def read_run_summary(self, stage: str) -> dict | None:
        try:
            return json.loads(self.store.get(f"lake/_runs/{stage}.json"))
        except NotFound:
            return None

    def read_embeddings_encoder(self, model: str) -> dict | None:
        """The encoder (``encoder_identity``) that made every embeddings vector of ``model``, as the
        last embeddings run that finished recorded it; None before one did."""
        found = self._recorded_encoders().get(model)
        return found if isinstance(found, dict) else None

    def write_embeddings_encoder(self, model: str, encoder: dict) -> None:
        recorded = self._recorded_encoders()
        if recorded.get(model) != encoder:
            self.store.put(ENCODERS_KEY, json.dumps({**recorded, model: encoder}, indent=2).encode())

    def _recorded_encoders(self) -> dict:
        """``ENCODERS_KEY`` as a dict; empty when missing or damaged (the next run that finishes
        writes it again)."""
        try:
            recorded = json.loads(self.store.get(ENCODERS_KEY))
        except (NotFound, ValueError):
            return {}
        return recorded if isinstance(recorded, dict) else {}


def raw_documents(store: ObjectStore) -> Iterator[ObjectInfo]:
    """The objects under raw/ that are documents: hidden files (a name or folder starting with ".",
    e.g. .DS_Store, .gitkeep) are left out, as Hadoop's input formats and `lakerag upload` do; a
    "." or ".." segment is kept, for bronze to quarantine with the reason."""
    for info in store.list(RAW_PREFIX):
        if not any(part.startswith(".") and part not in {".", ".."} for part in info.key.split("/")):
            yield info


def raw_keys_for(store: ObjectStore, doc_id: str, known: str | None = None) -> list[str]:
    """The raw/ keys of the document ``doc_id`` (empty when there is none). ``known``, a key the
    caller already has for it (the served index's source), is looked up alone first: a listing of
    raw/ costs one LIST call per 1,000 objects."""
    if known and known.startswith(RAW_PREFIX) and doc_id_for(known) == doc_id and store.exists(known):
        return [known]
    return [obj.key for obj in raw_documents(store) if doc_id_for(obj.key) == doc_id]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def doc_id_for(key: str) -> str:
    """Stable document id from the raw object key (same key, same id, every run)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def chunk_id_for(doc_id: str, position: int, text: str) -> str:
    """Stable chunk id from the document, the chunk's position and its text."""
    digest = hashlib.sha256(f"{doc_id}\x1f{position}\x1f{text}".encode()).hexdigest()
    return digest[:24]


INTERRUPTED = "interrupted (Ctrl-C); what it committed stays, the next run does the rest"
TERMINATED = "stopped (SIGTERM: its pod was deleted, or `kill`); what it committed stays, the next run does the rest"


class Terminated(KeyboardInterrupt):
    """SIGTERM (Airflow cancelled the task and its pod was deleted, a node drained, `kill`): stops a
    batch stage the way Ctrl-C does. As a pod's PID 1, a process with no handler for it ignores it
    until the kubelet's SIGKILL; killed, it leaves its stage looking unfinished."""


def summarises_a_crash(stage: str, title: str | None = None):
    """For a stage's entry point: an exception that escapes it writes a failed summary (which also
    removes the marker) before it propagates, so a marker whose process still runs always means
    the stage is in flight, also in a long-lived process (the watcher, `lakerag run`) that goes on."""

    def wrap(run):
        @functools.wraps(run)
        def guarded(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except (Exception, KeyboardInterrupt) as exc:
                settings = next(a for a in (*args, *kwargs.values()) if isinstance(a, Settings))
                _record_crash(settings, stage, title or f"pipeline {stage}", exc)
                raise

        return guarded

    return wrap


def _record_crash(settings: Settings, stage: str, title: str, exc: BaseException) -> None:
    error = (TERMINATED if isinstance(exc, Terminated) else INTERRUPTED if isinstance(exc, KeyboardInterrupt)
             else f"{type(exc).__name__}: {exc}")
    try:
        lake = Lake.open(settings)
        marker = lake.read_run_started(stage)
        if marker and marker.get("pid") == os.getpid() and marker.get("host") == socket.gethostname():
            lake.write_run_summary(stage, {"title": title, "ok": False, "error": error})
    except Exception as inner:  # noqa: BLE001 - the stage's own error is the one to raise
        log.warning("could not record that %s failed: %s", stage, inner)
