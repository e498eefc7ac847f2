"""Back a flat index's vectors with transparent huge pages (Linux).

A flat search reads every stored vector. On 4 KiB pages the same 100k x 384
scan took 6.0-9.5 ms here depending on where its allocation landed; collapsed
into 2 MiB pages it took 4.9-5.0 ms every time (bench/search.py's index,
measured in one process). FAISS allocates the vectors itself, so this asks the
kernel to collapse that allocation once it is loaded (``MADV_COLLAPSE``, Linux
6.1+; ~0.05 s for 150 MB, but ~0.4 s in a process started right after ~0.5 GB of
files were written, as a pod's first start after its index sync).
The API does it beside serving (``use_huge_pages_soon``), a huge page per turn
of its event loop: the index serves at once and its scans speed up when the
collapse is done. Elsewhere, or with THP set to ``never``, nothing changes.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Generator

import faiss

log = logging.getLogger(__name__)
MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE_PAGE = 1 << 21
COLLAPSE_TRIES = 3
COLLAPSE_RETRY_SECONDS = 0.01


def _flat_codes(index):
    """The IndexFlatCodes holding the vectors (a flat index, or an HNSW index's storage); None otherwise."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        index = faiss.downcast_index(index.storage)
    return index if isinstance(index, faiss.IndexFlatCodes) else None


# What the API collapses in one go on its event loop: one huge page, ~0.65 ms here (up to ~5 ms in a
# process started right after ~0.5 GB of files were written), so a search waits at most that long.
STEP_BYTES = HUGE_PAGE

# run ``callback`` after ``delay`` seconds, on the thread that searches (the API's event loop)
Schedule = Callable[[float, Callable[[], None]], None]


def _vectors_span(index) -> tuple[int, int] | None:
    """(start, length) of the whole huge pages inside the index's vectors; None when there is nothing to collapse."""
    flat = _flat_codes(index)
    if flat is None or not sys.platform.startswith("linux"):
        return None
    size = flat.codes.size()
    if size < 2 * HUGE_PAGE:
        return None
    address = faiss.rev_swig_ptr(flat.codes.data(), size).ctypes.data
    start = (address + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
    return start, ((address + size) & ~(HUGE_PAGE - 1)) - start


def _libc_madvise() -> Callable[[int, int, int], int]:
    """``madvise(start, length, advice) -> errno`` (0: done)."""
    libc = ctypes.CDLL(None, use_errno=True)  # the process itself: libc's madvise, no library lookup
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lambda start, length, advice: 0 if libc.madvise(start, length, advice) == 0 else ctypes.get_errno()


def collapse_steps(index, step_bytes: int = STEP_BYTES) -> Generator[float, None, bool]:
    """Collapse the index's vectors ``step_bytes`` at a time; yields the seconds to wait before the
    next step and returns True when the kernel collapsed them all. Nothing runs before the first
    ``next``, so the caller decides where and when each step runs."""
    span = _vectors_span(index)
    if span is None:
        return False
    return (yield from _advise(_libc_madvise(), *span, step_bytes))


def _advise(madvise, start: int, length: int, step_bytes: int = STEP_BYTES) -> Generator[float, None, bool]:
    """Mark the range huge-page-able, then collapse it a step at a time. EAGAIN is the kernel's
    "transient, retry may succeed" (a page locked or busy at that moment): that step is tried again
    after ``COLLAPSE_RETRY_SECONDS``, up to ``COLLAPSE_TRIES`` times. Other errors (ENOMEM: no free
    huge page) leave the rest on 4 KiB pages, which searches read just the same, only slower."""
    error = madvise(start, length, MADV_HUGEPAGE)
    at, tries = start, 0
    while not error and at < start + length:
        yield COLLAPSE_RETRY_SECONDS if tries else 0.0
        error = madvise(at, min(step_bytes, start + length - at), MADV_COLLAPSE)
        tries = tries + 1 if error == errno.EAGAIN else 0
        if error == errno.EAGAIN and tries < COLLAPSE_TRIES:
            error = 0  # this step again
        elif not error:
            at += step_bytes
    if error:  # EINVAL: this kernel has no MADV_COLLAPSE or THP is off, nothing unusual to report
        log.log(logging.DEBUG if error == errno.EINVAL else logging.INFO,
                "huge pages for the index: madvise failed with %s (%s); the rest of its %d MiB stays on "
                "4 KiB pages, searches are correct but slower", errno.errorcode.get(error, error),
                os.strerror(error), (start + length - at) >> 20)
    return error == 0


def use_huge_pages(index) -> bool:
    """Collapse the index's vectors into huge pages now, in the calling thread; True when the kernel did."""
    steps = collapse_steps(index)
    while True:
        try:
            time.sleep(next(steps))
        except StopIteration as done:
            return bool(done.value)


def use_huge_pages_soon(index, schedule: Schedule | None = None) -> threading.Event:
    """Collapse the index's vectors while it serves; the event is set once it is done.

    ``schedule`` runs each step on the thread that searches, between requests (the API passes its
    event loop's). Collapsed from any other thread, the API's later query encodes ran ~0.1 ms slower
    for the life of the process (bench/search.py's LakeRAG server against its bare one; a server that
    loads in a thread and collapses on its main thread did not: docs/search-latency.md, 2026-12-06). The
    cause is not pinned down. Without ``schedule``, a daemon thread collapses it (madvise runs
    without the GIL); searches meanwhile read the same vectors on 4 KiB pages."""
    done = threading.Event()

    def finished(collapsed: bool) -> None:
        if collapsed:
            log.debug("index vectors collapsed into huge pages")
        done.set()

    if schedule is None:
        threading.Thread(target=lambda: finished(use_huge_pages(index)), name="index-huge-pages",
                         daemon=True).start()
        return done
    steps = collapse_steps(index)  # holds the index until it is done

    def step(delay: float = 0.0) -> None:
        try:
            schedule(delay, next_step)
        except RuntimeError:  # the loop is closed: the process is stopping
            done.set()

    def next_step() -> None:
        try:
            step(next(steps))
        except StopIteration as end:
            finished(bool(end.value))

    step()
    return done
