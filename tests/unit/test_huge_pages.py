"""A loaded flat index's vectors sit in huge pages (index/huge_pages.py), and search answers the same."""

from __future__ import annotations

import asyncio
import errno
import logging
import platform
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
from lakerag.index import huge_pages
from lakerag.index.huge_pages import MADV_COLLAPSE, MADV_HUGEPAGE, use_huge_pages, use_huge_pages_soon

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _kernel_collapses() -> bool:
    """THP not off and MADV_COLLAPSE known (Linux 6.1+): where use_huge_pages must succeed."""
    if not THP.exists() or "[never]" in THP.read_text():
        return False
    major, minor = (int(p) for p in platform.release().split(".")[:2])
    return (major, minor) >= (6, 1)


def _huge_kib(address: int, size: int) -> int:
    """AnonHugePages (KiB) of this process's mappings overlapping [address, address + size)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start < address + size and address < end
        elif inside and head == "AnonHugePages:":
            total += int(line.split()[1])
    return total


def _vectors(n: int, d: int = 384) -> np.ndarray:
    vectors = np.random.default_rng(3).standard_normal((n, d), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_flat_vectors_are_collapsed_into_huge_pages_and_search_is_unchanged():
    vectors = _vectors(40_000)  # 61 MB: above glibc's largest mmap threshold, so its own fresh mapping
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    address = faiss.rev_swig_ptr(index.codes.data(), index.codes.size()).ctypes.data
    before = index.search(vectors[:5], 10)
    done = use_huge_pages(index)
    after = index.search(vectors[:5], 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    if not _kernel_collapses():
        assert done is False
        pytest.skip("this kernel keeps 4 KiB pages (THP off or no MADV_COLLAPSE): nothing to check")
    assert done is True  # MADV_COLLAPSE succeeds only when the whole range is collapsed
    # All but the partial 2 MiB pages at both ends. An absolute figure, not a difference from before: the
    # mapping holding the vectors may already hold huge pages (a clean-clone CI run found 18 MiB there).
    assert _huge_kib(address, index.codes.size()) >= 56 * 1024


def test_the_collapse_can_run_while_the_index_serves(caplog):
    caplog.set_level(logging.DEBUG, logger="lakerag.index.huge_pages")  # the errno if the kernel refuses
    vectors = _vectors(40_000)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    address = faiss.rev_swig_ptr(index.codes.data(), index.codes.size()).ctypes.data
    before = index.search(vectors[:5], 10)
    collapsed = use_huge_pages_soon(index)
    during = index.search(vectors[:5], 10)  # the API serves while the kernel collapses
    assert collapsed.wait(timeout=60)
    after = index.search(vectors[:5], 10)
    for answer in (during, after):
        np.testing.assert_array_equal(before[1], answer[1])
        np.testing.assert_array_equal(before[0], answer[0])
    if not _kernel_collapses():
        pytest.skip("this kernel keeps 4 KiB pages (THP off or no MADV_COLLAPSE): nothing to check")
    assert _huge_kib(address, index.codes.size()) >= 56 * 1024, caplog.text


def test_on_a_schedule_each_step_runs_on_the_loop_between_its_other_work(monkeypatch):
    """The API hands the collapse to its event loop (the thread that searches): every madvise runs
    there, one huge page per loop turn, while the loop goes on with its other callbacks."""
    real_madvise = huge_pages._libc_madvise()
    calls: list[tuple[int, int, int]] = []  # (advice, length, thread)

    def recording(start: int, length: int, advice: int) -> int:
        calls.append((advice, length, threading.get_ident()))
        return real_madvise(start, length, advice)

    monkeypatch.setattr(huge_pages, "_libc_madvise", lambda: recording)
    vectors = _vectors(40_000)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    address = faiss.rev_swig_ptr(index.codes.data(), index.codes.size()).ctypes.data
    before = index.search(vectors[:5], 10)

    async def serve() -> int:
        loop = asyncio.get_running_loop()
        schedule = lambda delay, callback: loop.call_soon_threadsafe(loop.call_later, delay, callback)
        loader = threading.Thread(target=lambda: loaded.append(use_huge_pages_soon(index, schedule)))
        loaded: list[threading.Event] = []
        loader.start()  # as the API's index watcher: it loads the version in its own thread
        loader.join()
        turns = 0
        while not loaded[0].is_set():
            await asyncio.sleep(0)
            turns += 1
        return turns

    loop_thread = threading.get_ident()
    turns = asyncio.run(serve())
    assert calls and {thread for _, _, thread in calls} == {loop_thread}
    np.testing.assert_array_equal(before[1], index.search(vectors[:5], 10)[1])
    if not _kernel_collapses():
        pytest.skip("this kernel keeps 4 KiB pages (THP off or no MADV_COLLAPSE): nothing more to check")
    collapses = [length for advice, length, _ in calls if advice == MADV_COLLAPSE]
    assert len(collapses) >= 28 and set(collapses) == {huge_pages.STEP_BYTES}  # ~58 MiB, a huge page at a time
    assert turns >= len(collapses)  # the loop ran its own work between the steps
    assert _huge_kib(address, index.codes.size()) >= 56 * 1024


class _Kernel:
    """madvise answering from a script of errnos per advice (0: done; done once the script is out),
    as the kernel would; the transient refusals it scripts cannot be produced on demand with real pages."""

    def __init__(self, collapse_errors, hugepage_error=0):
        self.script = {MADV_HUGEPAGE: [hugepage_error], MADV_COLLAPSE: list(collapse_errors)}
        self.calls = []
        self.collapsed: list[tuple[int, int]] = []

    def __call__(self, start: int, length: int, advice: int) -> int:
        self.calls.append(advice)
        error = self.script[advice].pop(0) if self.script[advice] else 0
        if advice == MADV_COLLAPSE and not error:
            self.collapsed.append((start, length))
        return error


def _advise(kernel: _Kernel, length: int) -> bool:
    """``huge_pages._advise`` over [0, length), every step run at once, as ``use_huge_pages`` does."""
    steps = huge_pages._advise(kernel, 0, length)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def test_a_transient_refusal_is_retried_and_the_collapse_completes(monkeypatch):
    monkeypatch.setattr(huge_pages, "COLLAPSE_RETRY_SECONDS", 0)
    kernel = _Kernel([errno.EAGAIN, errno.EAGAIN, 0])
    assert _advise(kernel, 60 << 20) is True
    assert kernel.calls[:4] == [MADV_HUGEPAGE, MADV_COLLAPSE, MADV_COLLAPSE, MADV_COLLAPSE]  # the first step, twice again
    step = huge_pages.STEP_BYTES
    assert kernel.collapsed == [(at, step) for at in range(0, 60 << 20, step)]  # then the rest, each once


def test_a_lasting_refusal_keeps_small_pages_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(huge_pages, "COLLAPSE_RETRY_SECONDS", 0)
    caplog.set_level(logging.INFO, logger="lakerag.index.huge_pages")
    out_of_huge_pages = _Kernel([errno.ENOMEM])  # not transient: not retried
    assert _advise(out_of_huge_pages, 60 << 20) is False
    assert out_of_huge_pages.calls == [MADV_HUGEPAGE, MADV_COLLAPSE]
    assert "ENOMEM" in caplog.text and "60 MiB" in caplog.text and "searches are correct" in caplog.text
    always_busy = _Kernel([errno.EAGAIN] * huge_pages.COLLAPSE_TRIES)
    assert _advise(always_busy, 60 << 20) is False
    assert always_busy.calls.count(MADV_COLLAPSE) == huge_pages.COLLAPSE_TRIES
    no_thp = _Kernel([], hugepage_error=errno.EINVAL)  # nothing to collapse with: not tried, not an INFO line
    caplog.clear()
    assert _advise(no_thp, 60 << 20) is False
    assert no_thp.calls == [MADV_HUGEPAGE] and caplog.text == ""


def test_hnsw_storage_is_collapsed_too():
    vectors = _vectors(6_000)
    index = faiss.IndexHNSWFlat(vectors.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    assert use_huge_pages(index) is _kernel_collapses()


def test_indexes_without_flat_vectors_or_too_small_are_left_alone():
    vectors = _vectors(3_000)
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, vectors.shape[1], 4, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    assert use_huge_pages(ivf) is False
    small = faiss.IndexFlatIP(vectors.shape[1])
    small.add(vectors[:1000])  # 1.5 MB: not one whole huge page
    assert use_huge_pages(small) is False
