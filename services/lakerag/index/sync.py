"""Keep a local copy of the index version that ``index/CURRENT`` names, and hot-swap it.

Local layout (``LAKERAG_INDEX_DIR``)::

    versions/<version>/{index.faiss, chunks.parquet, manifest.json}   verified copies
    current -> versions/<version>                                      symlink, swapped atomically
    versions/.<version>.download-*/                                    in-progress downloads

A version is downloaded into a temp directory, every checksum verified, then
renamed into ``versions/`` (publish.download_version) and ``current`` is re-pointed with one rename: a
reader never sees a half-copied version.

Three users: ``lakerag index sync --once`` (the API pod's init container),
``lakerag index sync`` (a polling loop), and ``IndexWatcher``, the thread
inside the API that syncs, loads the new version beside the old one and swaps
the served reference in one assignment (in-flight requests keep the old one).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings
from ..store import ObjectStore, StoreError, store_for
from ..volume import WRITE_ERRNOS
from .artifacts import IndexRejected, LoadedIndex, check_model, load_index_dir, read_manifest, verify_index_dir
from .huge_pages import Schedule
from .publish import download_version, published_versions, read_current

log = logging.getLogger(__name__)

VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
KEEP_LOCAL_VERSIONS = 2  # the served one and the one before it (a quick rollback needs no download)
NOTHING_PUBLISHED = "no index published yet"
STORE_UNREACHABLE = "store_unreachable"
INDEX_DIR_UNUSABLE = "index_dir_unusable"
REJECTED = "version_rejected"


class IndexDirError(Exception):
    """The local index directory cannot hold a version: the pod's volume, not the store or the version."""


@dataclass
class SyncResult:
    status: str  # updated | unchanged | empty | skipped | fallback
    version: str | None
    message: str
    rejected: str | None = None  # fallback: the version CURRENT names, which did not verify


def local_current(dest) -> tuple[str, Path] | None:
    """(version, directory) that ``dest/current`` points to, or None."""
    link = Path(dest) / CURRENT_LINK
    if not link.is_symlink() and not link.is_dir():
        return None
    target = link.resolve()
    return (target.name, target) if target.is_dir() else None


@contextmanager
def _locked(dest: Path):
    """One sync at a time per directory (init container, watcher, CLI)."""
    with open(dest / ".sync.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _point_current(dest: Path, version: str) -> None:
    tmp = dest / f".current-{os.getpid()}-{threading.get_ident()}"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{VERSIONS_DIR}/{version}", tmp)
    os.replace(tmp, dest / CURRENT_LINK)


def _prune(dest: Path, keep: set[str]) -> None:
    versions = dest / VERSIONS_DIR
    for stale in (dest / VERSIONS_DIR).glob(".*.download-*"):  # left by a killed sync
        shutil.rmtree(stale, ignore_errors=True)
    if not versions.is_dir():
        return
    others = sorted((p for p in versions.iterdir() if p.name not in keep), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    for old in others[max(0, KEEP_LOCAL_VERSIONS - len(keep)):]:
        shutil.rmtree(old, ignore_errors=True)


def sync(store: ObjectStore, dest, expected_model: str | None = None, expected_dimension: int | None = None,
         skip: set[str] | frozenset = frozenset()) -> SyncResult:
    """Make ``dest/current`` the version CURRENT names. Raises StoreError when the store
    cannot be read and IndexRejected when that version fails verification; in both
    cases the local copy is left as it was. Versions in ``skip`` are not retried."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        version = read_current(store)
        local = local_current(dest)
        if version is None:
            if local:
                return SyncResult("unchanged", local[0], f"{NOTHING_PUBLISHED} in {store.uri}; keeping the local "
                                                          f"copy {local[0]}")
            return SyncResult("empty", None, f"{NOTHING_PUBLISHED} in {store.uri} — run the pipeline")
        if local and local[0] == version:
            return SyncResult("unchanged", version, f"index {version} is current")
        if version in skip:
            return _fall_back(store, dest, local, version, "it was rejected before", expected_model,
                              expected_dimension, skip)
        started = time.perf_counter()
        try:
            # download_version verifies every checksum in a temp dir, then renames into place
            # (and reuses a verified copy, e.g. after a rollback).
            target = download_local(store, version, dest / VERSIONS_DIR / version, dest)
            check_model(read_manifest(target), expected_model, expected_dimension)
        except IndexRejected as exc:
            exc.version = version  # so a watcher can skip it until CURRENT changes
            return _fall_back(store, dest, local, version, str(exc), expected_model, expected_dimension,
                              skip, error=exc)
        log.info("index %s verified in %s (%.2fs)", version, target, time.perf_counter() - started)
        _point_current(dest, version)
        _prune(dest, keep={version} | ({local[0]} if local else set()))
        return SyncResult("updated", version, f"index {version} synced into {dest}")


def download_local(store: ObjectStore, version: str, target: Path, root: Path) -> Path:
    """publish.download_version into ``target`` under the local directory ``root``; a write error of
    ``root`` (full, over its size limit, read-only) raises IndexDirError that says so."""
    try:
        return download_version(store, version, target)
    except OSError as exc:
        name = os.fsdecode(exc.filename) if exc.filename else ""
        if exc.errno not in WRITE_ERRNOS and not (name and Path(name).is_relative_to(root)):
            raise  # reading a file:// store
        raise IndexDirError(f"the local directory {root} cannot hold index {version} ({exc.strerror or exc}): free "
                            "or enlarge it (LAKERAG_INDEX_DIR: the pod's index volume, the chart's "
                            "api.indexVolumeSizeLimit), or make it writable") from exc


def _fall_back(store: ObjectStore, dest: Path, local, rejected: str, why: str, expected_model, expected_dimension,
               skip, error: IndexRejected | None = None) -> SyncResult:
    """CURRENT names a version that does not verify: serve the newest published version that
    does (a new pod must not stay empty until someone rolls back by hand). Raises ``error``
    when no version verifies."""
    for candidate in sorted(published_versions(store), reverse=True):
        if candidate == rejected or candidate in skip:
            continue
        try:
            target = download_local(store, candidate, dest / VERSIONS_DIR / candidate, dest)
            check_model(read_manifest(target), expected_model, expected_dimension)
        except IndexRejected as exc:
            log.warning("fallback candidate %s does not verify either: %s", candidate, exc)
            continue
        message = (f"index/CURRENT names {rejected}, which does not verify ({why}); serving {candidate}, the "
                   "newest published version that does, until the pipeline publishes again")
        log.error("%s", message)
        if not (local and local[0] == candidate):
            _point_current(dest, candidate)
            _prune(dest, keep={candidate} | ({local[0]} if local else set()))
        return SyncResult("fallback", candidate, message, rejected=rejected)
    if error is None:
        return SyncResult("skipped", rejected, f"index {rejected} was rejected before; not retried")
    raise error


def _open(settings: Settings) -> ObjectStore:
    return store_for(settings)


def make_local_dir(path: Path) -> None:
    """Create the local index directory; OSError when it cannot be created or written."""
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError("not writable")


def sync_once(settings: Settings, dest) -> int:
    """``lakerag index sync --once``: exit 0 when ``dest`` holds a servable version or
    nothing is published yet; non-zero when neither the store nor a local copy can serve."""
    dest = Path(dest)
    try:  # the pod's volume, not the store: say so before blaming the published version
        make_local_dir(dest)
    except OSError as exc:
        print(f"index sync failed: the local directory {dest} cannot be used ({exc}): point --dest or "
              "LAKERAG_INDEX_DIR at a writable directory (the pod's index volume)", file=sys.stderr)
        return 1
    try:
        result = sync(_open(settings), dest, expected_model=settings.embedding_model)
    except IndexDirError as exc:  # the store is fine: no advice about it
        if local := local_current(dest):
            print(f"index sync: {exc}; keeping the local copy {local[0]}")
            return 0
        print(f"index sync failed: {exc}", file=sys.stderr)
        return 1
    except (StoreError, IndexRejected, OSError) as exc:
        what = "store unreachable" if isinstance(exc, StoreError) else "the published version is unusable"
        local = local_current(dest)
        if local:
            try:
                verify_index_dir(local[1])
                print(f"index sync: {what} ({exc}); keeping the local copy {local[0]} in {dest}")
                return 0
            except IndexRejected as bad:
                print(f"index sync: {what} ({exc}), and the local copy is unusable: {bad}", file=sys.stderr)
                return 1
        print(f"index sync failed: {what}: {exc}\n  and there is no local copy in {dest}. Check "
              "LAKERAG_STORE_URI and the store's credentials/endpoint (AWS_*), then retry.", file=sys.stderr)
        return 1
    print(result.message)
    return 0


def watch(settings: Settings, dest) -> int:
    """``lakerag index sync``: sync every LAKERAG_INDEX_POLL_SECONDS until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    store = _open(settings)
    print(f"index sync: watching {settings.store_uri} every {settings.index_poll_seconds:g} s for a new "
          f"CURRENT version, into {dest} (stop with Ctrl-C; --once syncs once and exits)", flush=True)
    last = None
    while not stop.is_set():
        try:
            message = sync(store, dest, expected_model=settings.embedding_model).message
        except (StoreError, IndexRejected, IndexDirError, OSError) as exc:
            message = f"sync failed, local copy kept: {exc}"
        if message != last:
            print(message, flush=True)
            last = message
        stop.wait(settings.index_poll_seconds)
    print("index sync: stopped", flush=True)
    return 0


class IndexWatcher:
    """The API's index: synced from the store, loaded beside the old one, swapped in one step.

    ``current`` is read by request handlers without a lock: a handler takes the
    reference once and uses that object to the end of the request, so a swap
    never changes the index under a running search.
    """

    def __init__(self, settings: Settings, expected_model: str, expected_dimension: int | None,
                 on_swap: Callable[[LoadedIndex], None] | None = None,
                 on_failure: Callable[[str, str], None] | None = None, sync_from_store: bool = True,
                 check: Callable[[LoadedIndex], None] | None = None, schedule: Schedule | None = None):
        self.settings = settings
        self.dest = Path(settings.index_dir)
        self.expected_model = expected_model
        self.expected_dimension = expected_dimension
        self.on_swap = on_swap
        self.on_failure = on_failure
        self.sync_from_store = sync_from_store
        self.check_version = check  # refuses a version (raises) before it is served, e.g. another encoder
        self.schedule = schedule  # runs the huge-page collapse's steps on the searching thread (huge_pages.py)
        self.current: LoadedIndex | None = None
        self.loaded_at: datetime | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.failures = 0  # versions rejected (checksum, model, incomplete)
        self.store_errors = 0  # polls that could not reach the store (not the index's fault)
        self.sync_state = "ok"  # ok | fallback | rejected | store_unreachable | index_dir_unusable: the last sync
        self.rejected_version: str | None = None
        self._rejected: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()  # start() and stop() run on different threads
        self._store: ObjectStore | None = None

    def _fail(self, message: str, reason: str = REJECTED, logged: bool = False) -> None:
        """Count a failed sync or load; ``logged``: its message was logged already (a fallback says
        what it serves instead, which "still serving nothing" would contradict)."""
        if reason == STORE_UNREACHABLE:
            self.store_errors += 1
        else:
            self.failures += 1
        self.last_error = message
        if not logged:
            log.error("index reload failed (%s), still serving %s: %s", reason,
                      self.current.version if self.current else "nothing", message)
        if self.on_failure:
            self.on_failure(message, reason)

    def check(self, force: bool = False) -> tuple[bool, str]:
        """Sync and, when the local version changed, load and swap. Returns (swapped, message);
        ``sync_state`` then says whether the store answered (ok | fallback | store_unreachable)."""
        with self._lock:
            if force:
                self._rejected.clear()
            if self.sync_from_store:
                try:
                    if self._store is None:
                        self._store = _open(self.settings)
                    result = sync(self._store, self.dest, self.expected_model, self.expected_dimension,
                                  skip=self._rejected)
                    if result.status == "fallback":
                        if result.rejected not in self._rejected or self.sync_state != "fallback":
                            self._fail(result.message, logged=True)  # counted once per rejected version
                        self._rejected.add(result.rejected)
                        self.sync_state, self.rejected_version = "fallback", result.rejected
                        self.last_error = result.message
                    else:
                        self.sync_state, self.rejected_version = "ok", None
                        self.last_error = None  # the store answered and CURRENT verified (or nothing is published)
                    if result.status == "empty" and self.current is None:
                        return False, f"{NOTHING_PUBLISHED} — run the pipeline"
                except IndexRejected as exc:
                    self._rejected.add(getattr(exc, "version", ""))
                    self.sync_state, self.rejected_version = "rejected", getattr(exc, "version", None)
                    self._fail(str(exc))
                except IndexDirError as exc:
                    self.sync_state = INDEX_DIR_UNUSABLE
                    self._fail(str(exc), INDEX_DIR_UNUSABLE)
                except (StoreError, OSError) as exc:
                    self.sync_state = STORE_UNREACHABLE
                    self._fail(f"cannot sync from {self.settings.store_uri}: {exc}", STORE_UNREACHABLE)
            local = local_current(self.dest)
            if local is None:
                return False, f"{NOTHING_PUBLISHED} — run the pipeline"
            version, path = local
            if self.current is not None and self.current.version == version:
                if self.sync_state in {STORE_UNREACHABLE, INDEX_DIR_UNUSABLE, "fallback", "rejected"}:
                    return False, f"serving {version}; {self.last_error}"
                return False, f"serving {version} (unchanged)"
            if version in self._rejected:
                return False, f"{version} was rejected: {self.last_error}"
            started = time.perf_counter()
            try:
                # Served before its vectors are on huge pages: a start or swap does not wait for the
                # kernel to compact memory for them (up to ~0.4 s; index/huge_pages.py).
                loaded = load_index_dir(path, expected_model=self.expected_model,
                                        expected_dimension=self.expected_dimension, huge_pages_later=True,
                                        schedule=self.schedule)
                if self.check_version:
                    self.check_version(loaded)
            except (IndexRejected, OSError, RuntimeError, ValueError) as exc:
                self._rejected.add(version)
                self._fail(f"index {version}: {exc}")
                return False, f"kept {self.current.version if self.current else 'no index'}: {exc}"
            previous = self.current
            self.current = loaded  # the swap: one reference assignment
            self.loaded_at = datetime.now(UTC)
            self.reloads += 1
            if self.sync_state == "ok":  # a fallback swap keeps saying why CURRENT is not served
                self.last_error = None
            log.info("now serving index %s (%d vectors, loaded in %.2fs; was %s)", version, loaded.vector_count,
                     time.perf_counter() - started, previous.version if previous else "none")
            if self.on_swap:
                self.on_swap(loaded)
            return True, f"now serving {version}"

    def prefetch(self) -> None:
        """Download and verify what CURRENT names, without loading it: the API runs this while its
        model loads, so start-up pays for the larger of the two, not their sum. ``check`` (which
        waits for it) then finds the version local and reports any problem; errors here only log."""
        if not self.sync_from_store:
            return
        started = time.perf_counter()
        try:
            with self._lock:
                if self._store is None:
                    self._store = _open(self.settings)
                result = sync(self._store, self.dest, self.expected_model, self.expected_dimension)
            log.info("index prefetch: %s (%.2fs)", result.message, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - check() syncs again and reports it
            log.info("index prefetch did not finish (check reports it): %s", exc)

    def start(self) -> None:
        """Poll in a daemon thread every LAKERAG_INDEX_POLL_SECONDS; nothing once ``stop()`` ran."""
        with self._thread_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.index_poll_seconds):
            try:
                self.check()
            except Exception:
                log.exception("index watcher poll failed")

    def stop(self) -> None:
        self._stop.set()
        with self._thread_lock:  # a start() under way finishes first: its thread can be joined
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
