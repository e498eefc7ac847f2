"""One pipeline run per store at a time.

Two runs over one store at once (`lakerag run`'s watcher and a `lakerag pipeline run` in another
terminal, a cron job and a hand-started one, a DAG pod and a laptop) each merged the same changes:
bronze, silver and gold kept rows twice and the index served duplicate chunks, and later runs did
not repair them. The second run now waits for the first, then finds nothing left to do or only
what changed meanwhile.

Two locks, taken in this order:
- on the host, a flock on a file named after the store in the temp directory: the kernel
  releases it when its process ends, killed or not, so a dead run never leaves the store locked;
- on an S3 store, a lease in the store itself (``lake/_runs/lock.json``), so runs on other hosts
  wait too. It is created with a conditional write (If-None-Match) and renewed every third of
  LEASE_SECONDS (If-Match on its ETag). A waiter that sees the same lease unrenewed for
  LEASE_SECONDS of its own clock (no clock skew between hosts matters) takes it over: a pod
  killed mid-run holds the store that long at most. A file:// store is one host's directory:
  the flock covers it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..store import ConditionalWritesUnsupported, ObjectStore, StoreError

log = logging.getLogger(__name__)
LEASE_KEY = "lake/_runs/lock.json"
LEASE_SECONDS = 60.0


def lock_path(store_uri: str) -> Path:
    digest = hashlib.sha256(store_uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"lakerag-run-{digest}.lock"


@contextmanager
def pipeline_lock(store: ObjectStore, what: str) -> Iterator[None]:
    """Hold the store's run lock for ``what`` (e.g. "lakerag pipeline run"), waiting while another
    process holds it: on this host, and on any host when the store takes conditional writes (S3)."""
    with _host_lock(store.uri, what):
        if _has_leases(store):
            with store_lease(store, what):
                yield
        else:
            yield


def _has_leases(store: ObjectStore) -> bool:
    """S3 stores write conditionally; a file:// store is one host's directory, which the flock covers."""
    return hasattr(store, "create")


@contextmanager
def _host_lock(store_uri: str, what: str) -> Iterator[None]:
    path = lock_path(store_uri)
    try:
        fd = _open(path)
    except OSError as exc:  # a read-only temp dir: run, as before there was a lock, and say so
        log.warning("running without the store's run lock (%s: %s): a second run on this host at the same "
                    "time would not wait for this one", path, exc.strerror or exc)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for the pipeline run in flight on %s to finish (%s); Ctrl-C stops waiting",
                        store_uri, _holder(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        _record(fd, what)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # made by another user: flock works on a read-only descriptor too
        return os.open(path, os.O_RDONLY)


def _holder_record(what: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "since": datetime.now(UTC).isoformat(timespec="seconds")}


def _record(fd: int, what: str) -> None:
    """Who holds the lock, for the message of the run that waits."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder_record(what)).encode(), 0)
    except OSError:  # a read-only descriptor: the lock holds all the same
        pass


def _holder(path: Path) -> str:
    try:
        return _describe(json.loads(path.read_text()))
    except (OSError, ValueError):
        return "another process"


def _describe(holder) -> str:
    try:
        return f"{holder['what']}, pid {holder['pid']}, since {holder['since']}"
    except (KeyError, TypeError):
        return "another process"


# --- the lease in the store --------------------------------------------------------------------------------

@contextmanager
def store_lease(store: ObjectStore, what: str, seconds: float = LEASE_SECONDS) -> Iterator[None]:
    """Hold the store's lease for ``what``; wait while a live holder renews it."""
    holder = _holder_record(what) | {"lease_seconds": seconds}
    body = json.dumps(holder).encode()
    try:
        etag = _acquire(store, body, seconds)
    except ConditionalWritesUnsupported as exc:
        log.warning("running without the store's lease (%s): a run on another host at the same time would not "
                    "wait for this one", exc)
        yield
        return
    renewer = _Renewer(store, holder, etag, seconds)
    renewer.start()
    try:
        yield
    finally:
        renewer.stop()
        try:
            if store.etag(LEASE_KEY) == renewer.etag:  # still ours: a holder that lost it leaves it alone
                store.delete(LEASE_KEY)
        except StoreError as exc:  # it expires by itself
            log.warning("could not release the store's lease (%s): other runs wait %.0f s for it", exc, seconds)


def _acquire(store: ObjectStore, body: bytes, seconds: float) -> str:
    seen, seen_since, said = None, 0.0, None
    while True:
        etag = store.create(LEASE_KEY, body)
        if etag is not None:
            return etag
        current = store.etag(LEASE_KEY)
        if current is None:  # released meanwhile: try again (after a breath, in case it keeps racing)
            time.sleep(0.05)
            continue
        if current != seen:  # a new holder, or a renewal: it is alive
            seen, seen_since = current, time.monotonic()
            described = _lease_holder(store)
            if described != said:
                log.warning("waiting for the pipeline run in flight on %s to finish (%s; its lease in %s is "
                            "renewed every %.0f s); Ctrl-C stops waiting", store.uri, described, LEASE_KEY,
                            seconds / 3)
                said = described
        elif time.monotonic() - seen_since > seconds:
            etag = _replace(store, body, current)
            if etag is not None:
                log.warning("took over the store's run lock from %s: not renewed for %.0f s (its process was "
                            "killed?); what it committed stays, this run does the rest", said, seconds)
                return etag
        time.sleep(min(2.0, seconds / 10))


def _replace(store: ObjectStore, body: bytes, etag: str) -> str | None:
    """Overwrite the lease while its ETag is ``etag``; the new ETag, or None when it changed."""
    try:
        return store.replace_if(LEASE_KEY, body, etag)
    except ConditionalWritesUnsupported:  # If-None-Match but not If-Match (some S3 servers): look, then write
        if store.etag(LEASE_KEY) != etag:
            return None
        store.put(LEASE_KEY, body)
        return store.etag(LEASE_KEY)


def _lease_holder(store: ObjectStore) -> str:
    try:
        holder = json.loads(store.get(LEASE_KEY))
        return f"{_describe(holder)}, host {holder.get('host', '?')}"
    except (StoreError, ValueError, AttributeError):
        return "another run"


def live_lease(store: ObjectStore, now: datetime | None = None) -> dict | None:
    """The store's lease while its holder renews it (written within LEASE_SECONDS by the holder's
    clock), else None: what tells a run in flight on another host from one that was killed."""
    if not _has_leases(store):
        return None
    try:
        lease = json.loads(store.get(LEASE_KEY))
        written = datetime.fromisoformat(lease.get("renewed") or lease["since"])
        age = ((now or datetime.now(UTC)) - written).total_seconds()
    except (StoreError, ValueError, KeyError, TypeError, AttributeError):  # none, or not what a holder writes
        return None
    return lease if age <= float(lease.get("lease_seconds") or LEASE_SECONDS) else None


class _Renewer:
    """Rewrites the lease every third of its length while the run goes on."""

    def __init__(self, store: ObjectStore, holder: dict, etag: str, seconds: float):
        self.store, self.holder, self.etag, self.seconds = store, holder, etag, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lakerag-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            body = json.dumps(self.holder | {"renewed": datetime.now(UTC).isoformat(timespec="seconds")}).encode()
            try:
                etag = _replace(self.store, body, self.etag)
            except StoreError as exc:  # the store is down: try again; others wait until the lease runs out
                log.warning("could not renew the store's run lock (%s); trying again", exc)
                continue
            if etag is None:
                log.error("lost the store's run lock to %s (not renewed in time): another run may now write "
                          "beside this one", _lease_holder(self.store))
                return
            self.etag = etag
