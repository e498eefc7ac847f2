"""A loaded flat index's vectors sit in huge pages (index/huge_pages.py), and search answers the same."""

from __future__ import annotations

import errno
import logging
import platform
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
    collapsing = use_huge_pages_soon(index)
    during = index.search(vectors[:5], 10)  # the API serves while the kernel collapses
    collapsing.join(timeout=60)
    assert not collapsing.is_alive()
    after = index.search(vectors[:5], 10)
    for answer in (during, after):
        np.testing.assert_array_equal(before[1], answer[1])
        np.testing.assert_array_equal(before[0], answer[0])
    if not _kernel_collapses():
        pytest.skip("this kernel keeps 4 KiB pages (THP off or no MADV_COLLAPSE): nothing to check")
    assert _huge_kib(address, index.codes.size()) >= 56 * 1024, caplog.text


class _Kernel:
    """madvise answering from a script of errnos per advice (0: done), as the kernel would; the
    transient refusals it scripts cannot be produced on demand with real pages."""

    def __init__(self, collapse_errors, hugepage_error=0):
        self.script = {MADV_HUGEPAGE: [hugepage_error], MADV_COLLAPSE: list(collapse_errors)}
        self.calls = []

    def __call__(self, advice: int) -> int:
        self.calls.append(advice)
        return self.script[advice].pop(0)


def test_a_transient_refusal_is_retried_and_the_collapse_completes(monkeypatch):
    monkeypatch.setattr(huge_pages, "COLLAPSE_RETRY_SECONDS", 0)
    kernel = _Kernel([errno.EAGAIN, errno.EAGAIN, 0])
    assert huge_pages._advise(kernel, 60 << 20) is True
    assert kernel.calls == [MADV_HUGEPAGE, MADV_COLLAPSE, MADV_COLLAPSE, MADV_COLLAPSE]


def test_a_lasting_refusal_keeps_small_pages_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(huge_pages, "COLLAPSE_RETRY_SECONDS", 0)
    caplog.set_level(logging.INFO, logger="lakerag.index.huge_pages")
    out_of_huge_pages = _Kernel([errno.ENOMEM])  # not transient: not retried
    assert huge_pages._advise(out_of_huge_pages, 60 << 20) is False
    assert out_of_huge_pages.calls == [MADV_HUGEPAGE, MADV_COLLAPSE]
    assert "ENOMEM" in caplog.text and "60 MiB" in caplog.text and "searches are correct" in caplog.text
    always_busy = _Kernel([errno.EAGAIN] * huge_pages.COLLAPSE_TRIES)
    assert huge_pages._advise(always_busy, 60 << 20) is False
    assert always_busy.calls.count(MADV_COLLAPSE) == huge_pages.COLLAPSE_TRIES
    no_thp = _Kernel([], hugepage_error=errno.EINVAL)  # nothing to collapse with: not tried, not an INFO line
    caplog.clear()
    assert huge_pages._advise(no_thp, 60 << 20) is False
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
