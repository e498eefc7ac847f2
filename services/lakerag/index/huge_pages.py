"""Back a flat index's vectors with transparent huge pages (Linux).

A flat search reads every stored vector. On 4 KiB pages the same 100k x 384
scan took 6.0-9.5 ms here depending on where its allocation landed; collapsed
into 2 MiB pages it took 4.9-5.0 ms every time (bench/search.py's index,
measured in one process). FAISS allocates the vectors itself, so this asks the
kernel to collapse that allocation once it is loaded (``MADV_COLLAPSE``, Linux
6.1+; ~0.05 s for 150 MB, but ~0.4 s in a process started right after ~0.5 GB of
files were written, as a pod's first start after its index sync).
The API does it in the background (``use_huge_pages_soon``): the index serves at
once and its scans speed up when the collapse is done. Elsewhere, or with THP set
to ``never``, nothing changes.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import threading
import time

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


def use_huge_pages(index) -> bool:
    """Collapse the index's vectors into huge pages; True when the kernel did."""
    flat = _flat_codes(index)
    if flat is None or not sys.platform.startswith("linux"):
        return False
    size = flat.codes.size()
    if size < 2 * HUGE_PAGE:
        return False
    address = faiss.rev_swig_ptr(flat.codes.data(), size).ctypes.data
    start = (address + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)  # whole huge pages inside the allocation
    length = ((address + size) & ~(HUGE_PAGE - 1)) - start
    libc = ctypes.CDLL(None, use_errno=True)  # the process itself: libc's madvise, no library lookup
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def madvise(advice: int) -> int:
        return 0 if libc.madvise(start, length, advice) == 0 else ctypes.get_errno()

    return _advise(madvise, length)


def _advise(madvise, length: int) -> bool:
    """``madvise(advice) -> errno (0: done)``: mark the range huge-page-able, then collapse it.
    EAGAIN is the kernel's "transient, retry may succeed" (a page locked or busy at that moment);
    a retry skips the pages already collapsed. Other errors (ENOMEM: no free huge page) keep 4 KiB
    pages for what is left, which searches read just the same, only slower."""
    error = madvise(MADV_HUGEPAGE)
    for attempt in range(COLLAPSE_TRIES if error == 0 else 0):
        if attempt:
            time.sleep(COLLAPSE_RETRY_SECONDS)
        error = madvise(MADV_COLLAPSE)
        if error != errno.EAGAIN:
            break
    if error:  # EINVAL: this kernel has no MADV_COLLAPSE or THP is off, nothing unusual to report
        log.log(logging.DEBUG if error == errno.EINVAL else logging.INFO,
                "huge pages for the index: madvise failed with %s (%s); the rest of its %d MiB stays on "
                "4 KiB pages, searches are correct but slower", errno.errorcode.get(error, error),
                os.strerror(error), length >> 20)
    return error == 0


def use_huge_pages_soon(index) -> threading.Thread:
    """``use_huge_pages`` in a daemon thread (madvise runs without the GIL); searches meanwhile read
    the same vectors on 4 KiB pages. The thread holds the index until it is done."""
    def collapse() -> None:
        started = time.perf_counter()
        if use_huge_pages(index):
            log.debug("index vectors collapsed into huge pages in %.2fs", time.perf_counter() - started)

    thread = threading.Thread(target=collapse, name="index-huge-pages", daemon=True)
    thread.start()
    return thread
