"""The watcher's scheduling on a real store: debounce, one run at a time, coalescing."""

from __future__ import annotations

import threading
import time

from lakerag.lake import Lake
from lakerag.watch import PipelineWatcher, listing_changes, raw_listing


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class RecordingRun:
    """Stands in for the pipeline so the test controls how long a run takes; records what
    raw/ held when each run started."""

    def __init__(self, store):
        self.store = store
        self.seen: list[set[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()

    def __call__(self) -> dict:
        self.running.set()
        self.seen.append(set(raw_listing(self.store)))
        self.gate.wait(30)
        self.running.clear()
        return {"ok": True, "index": {"published": True, "version": f"v{len(self.seen)}"}}


def test_listing_changes_counts_new_changed_deleted():
    assert listing_changes({"raw/a": "1", "raw/b": "1"}, {"raw/a": "2", "raw/c": "1"}) == \
        {"new": 1, "changed": 1, "deleted": 1}
    assert listing_changes(None, {"raw/a": "1"}) == {"new": 1, "changed": 0, "deleted": 0}


def test_a_burst_makes_one_run_and_changes_during_a_run_make_exactly_one_more(local_settings):
    settings = local_settings.replace(watch_poll_seconds=0.05, watch_debounce_seconds=0.3)
    store = Lake.open(settings).store
    run = RecordingRun(store)
    published = []
    watcher = PipelineWatcher(settings, run=run, on_published=published.append)
    watcher.start()
    try:
        assert wait_until(lambda: watcher.runs == 1)  # the first poll runs once over the (empty) store
        for i in range(5):  # a burst, closer together than the debounce period
            store.put(f"raw/burst-{i}.txt", b"text")
            time.sleep(0.05)
        assert wait_until(lambda: watcher.runs == 2)
        assert run.seen[1] == {f"raw/burst-{i}.txt" for i in range(5)}

        run.gate.clear()  # the next run blocks until the test releases it
        store.put("raw/slow.txt", b"text")
        assert run.running.wait(10)
        for i in range(3):  # land while that run is in progress
            store.put(f"raw/during-{i}.txt", b"text")
        store.delete("raw/burst-0.txt")
        time.sleep(1.0)
        assert watcher.runs == 2 and len(run.seen) == 3, "a second run started while one was in progress"
        run.gate.set()
        assert wait_until(lambda: watcher.runs == 4)
        time.sleep(1.0)  # and nothing more once the store is quiet
        assert watcher.runs == 4
        assert {f"raw/during-{i}.txt" for i in range(3)} <= run.seen[3]
        assert "raw/burst-0.txt" not in run.seen[3]
        assert [s["index"]["version"] for s in published] == ["v1", "v2", "v3", "v4"]
    finally:
        run.gate.set()
        watcher.stop()


def test_a_failed_run_is_retried_and_a_touched_file_counts_as_a_change(local_settings):
    settings = local_settings.replace(watch_poll_seconds=0.02, watch_debounce_seconds=0.0)
    store = Lake.open(settings).store
    outcomes = [RuntimeError("store hiccup"), {"ok": True}, {"ok": True}]

    def flaky() -> dict:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    store.put("raw/a.txt", b"one")
    watcher = PipelineWatcher(settings, run=flaky)
    assert watcher.poll() and watcher.failures == 1 and watcher.processed is None
    assert watcher.poll() and watcher.processed == raw_listing(store)
    assert not watcher.poll()  # nothing changed
    store.put("raw/a.txt", b"two!")  # same key, new bytes: a new source version
    assert watcher.poll() and not outcomes


def test_the_first_poll_says_it_catches_up_not_that_raw_changed(local_settings, caplog):
    """A restarted `lakerag run` over a processed store said "raw/ changed (16 new)" though
    nothing had changed: the watcher just had not seen the store yet."""
    settings = local_settings.replace(watch_poll_seconds=0.05, watch_debounce_seconds=0)
    store = Lake.open(settings).store
    for name in ("a.txt", "b.txt"):
        store.put(f"raw/{name}", b"text")
    watcher = PipelineWatcher(settings, run=RecordingRun(store))
    with caplog.at_level("INFO", logger="lakerag.watch"):
        assert watcher.poll()
        store.put("raw/c.txt", b"text")
        assert watcher.poll()
    started = [r.getMessage() for r in caplog.records if "running the pipeline" in r.getMessage()]
    assert started == ["first look at raw/ since start (2 documents): running the pipeline to catch up",
                       "raw/ changed (1 new): running the pipeline"]
