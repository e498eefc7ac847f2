"""Event-driven sync: run the incremental pipeline when raw/ changes.

``PipelineWatcher`` lists ``raw/`` (keys and source versions: ETag on S3, size+mtime
locally) every ``LAKERAG_WATCH_POLL_SECONDS``. When the listing differs from the one
the last successful run started from, it waits until the listing has been still for
``LAKERAG_WATCH_DEBOUNCE_SECONDS`` (a burst of uploads makes one run), then runs
etl -> embed -> index on one long-lived Spark session, so a one-document change does
not pay Spark's start-up. Runs never overlap: changes that land during a run differ
from the listing that run started from and cause exactly one more run afterwards.

Listing is the portable event source: it works the same on file:// and any S3 API
(MinIO, moto, AWS) with no bucket notification set up. ``lakerag run`` (serve and
watch) and ``lakerag pipeline watch`` (watch only) use it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from .config import Settings
from .lake import RAW_PREFIX, Lake, raw_documents
from .store import StoreError

log = logging.getLogger(__name__)

FAILURE_BACKOFF_POLLS = 10  # a failed run is retried after this many poll intervals
MAX_DEBOUNCE_FACTOR = 10  # a store that never settles still runs after 10 debounce periods


def raw_listing(store) -> dict[str, str]:
    """raw key -> source version; equal listings mean nothing to do."""
    return {info.key: info.version for info in raw_documents(store)}


def listing_changes(before: dict[str, str] | None, after: dict[str, str]) -> dict[str, int]:
    before = before or {}
    return {"new": sum(k not in before for k in after),
            "changed": sum(k in before and before[k] != v for k, v in after.items()),
            "deleted": sum(k not in after for k in before)}


class PipelineWatcher:
    """Watches raw/ and runs the pipeline one run at a time, in its own thread (``start``)
    or the caller's (``run_forever``). ``on_published(summary)`` is called after a run
    that published a new index version (the embedded API reloads at once)."""

    def __init__(self, settings: Settings, on_published: Callable[[dict], None] | None = None,
                 run: Callable[[], dict] | None = None):
        self.settings = settings
        self.store = Lake.open(settings).store
        self.on_published = on_published
        self._run = run or self._run_pipeline
        self._spark = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed: dict[str, str] | None = None  # the listing the last good run started from
        self.runs = 0
        self.failures = 0
        self.last_summary: dict | None = None

    # --- one run -------------------------------------------------------------------------------------

    def _session(self):
        """The watcher's Spark session, started by the first run that needs it: inside that run,
        so its summary counts the start (~25 s here) and status shows the run meanwhile. A session
        whose JVM died is replaced, else every later run would fail until a restart."""
        from lakerag_spark.session import session_alive, spark_session, stop_session

        if self._spark is not None and not session_alive(self._spark):
            log.warning("the Spark session died (its JVM was killed, or ran out of memory); starting a new one")
            stop_session(self._spark)
            self._spark = None
        if self._spark is None:
            previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            self._spark = spark_session(self.settings, app_name="lakerag-watch")
            if threading.current_thread() is threading.main_thread():
                # The session installs its own (cancel every job, raise KeyboardInterrupt): the caller's decide.
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return self._spark

    def _run_pipeline(self) -> dict:
        from .lake.run_lock import pipeline_lock
        from .pipeline import run_all

        with pipeline_lock(self.store, "the pipeline watcher"):
            return run_all(self.settings, spark=self._session)

    def run_once(self) -> dict:
        """Run the pipeline over the store as it is now; remember the listing it started from."""
        listing = raw_listing(self.store)
        started = time.perf_counter()
        try:
            summary = self._run()
        except Exception as exc:  # a failed run must not end the watcher
            log.exception("pipeline run failed")
            summary = {"title": "pipeline run", "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.runs += 1
        self.last_summary = summary
        if summary.get("ok", True):
            self.processed = listing
        else:
            self.failures += 1
        index = summary.get("index") or {}
        published = bool(index.get("published"))
        log.info("pipeline run %d %s in %.1fs%s", self.runs, "done" if summary.get("ok", True) else "FAILED",
                 time.perf_counter() - started, f"; published index {index.get('version')}" if published else "")
        if published and self.on_published:
            try:
                self.on_published(summary)
            except Exception:  # a listener's failure must not stop the watcher
                log.exception("on_published listener failed")
        return summary

    # --- the loop ------------------------------------------------------------------------------------

    def _settled(self, listing: dict[str, str]) -> dict[str, str] | None:
        """Wait until the listing stays the same for one debounce period; None when stopped."""
        debounce = self.settings.watch_debounce_seconds
        deadline = time.monotonic() + debounce * MAX_DEBOUNCE_FACTOR
        while debounce > 0 and time.monotonic() < deadline:
            if self._stop.wait(debounce):
                return None
            again = raw_listing(self.store)
            if again == listing:
                break
            listing = again
        return listing

    def poll(self) -> bool:
        """One poll: run when raw/ differs from what the last good run saw. True when it ran."""
        listing = raw_listing(self.store)
        if self.processed is not None and listing == self.processed:
            return False
        listing = self._settled(listing)
        if listing is None:
            return False
        if self.processed is None:  # not a change: this process has not run over the store yet
            log.info("first look at raw/ since start (%d documents): running the pipeline to catch up", len(listing))
        else:
            log.info("raw/ changed (%s): running the pipeline",
                     ", ".join(f"{n} {what}" for what, n in listing_changes(self.processed, listing).items() if n))
        summary = self.run_once()
        if not summary.get("ok", True):  # back off instead of failing in a tight loop
            self._stop.wait(self.settings.watch_poll_seconds * FAILURE_BACKOFF_POLLS)
        return True

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except StoreError as exc:
                log.warning("cannot list %s: %s", self.store.url(RAW_PREFIX), exc)
            except Exception:
                log.exception("pipeline watcher poll failed")
            self._stop.wait(self.settings.watch_poll_seconds)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run_forever, name="pipeline-watcher", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to end after the current poll or run (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 120.0) -> None:
        """Stop polling; a run in progress finishes first (its commits are never cut short)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        if self._spark is not None:
            from lakerag_spark.session import stop_session

            stop_session(self._spark)
            self._spark = None
