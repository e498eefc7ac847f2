"""One pipeline run per store at a time on a host.

Two runs over one store at once (`lakerag run`'s watcher and a `lakerag pipeline run` in another
terminal, a cron job and a hand-started one) each merged the same changes: bronze, silver and gold
kept rows twice and the index served duplicate chunks, and later runs did not repair them. The
second run now waits for the first, then finds nothing left to do or only what changed meanwhile.

The lock is a flock on a file named after the store in the temp directory: the kernel releases it
when its process ends, killed or not, so a dead run never leaves the store locked. Runs on other
hosts (the DAG's pods) are kept apart by the DAG's max_active_runs=1.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


def lock_path(store_uri: str) -> Path:
    digest = hashlib.sha256(store_uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"lakerag-run-{digest}.lock"


@contextmanager
def pipeline_lock(store_uri: str, what: str) -> Iterator[None]:
    """Hold the store's run lock for ``what`` (e.g. "lakerag pipeline run"), waiting while
    another process on this host holds it."""
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


def _record(fd: int, what: str) -> None:
    """Who holds the lock, for the message of the run that waits."""
    holder = json.dumps({"pid": os.getpid(), "what": what,
                         "since": datetime.now(UTC).isoformat(timespec="seconds")}).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
    except OSError:  # a read-only descriptor: the lock holds all the same
        pass


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return f"{holder['what']}, pid {holder['pid']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
