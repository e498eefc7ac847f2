"""Concurrent uploads, deletes and lists over HTTP on file:// and moto S3: every 2xx write
is visible afterwards, every delete took effect, no request gets a 5xx."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from lakerag.lake import doc_id_for
from lakerag.store import store_for

KEY = {"X-API-Key": "k"}
THREADS = 8
DOCS = 12


@pytest.fixture(params=["file", "s3"])
def settings(request):
    return request.getfixturevalue("local_settings" if request.param == "file" else "s3_settings")


def _store(settings):
    return store_for(settings)


def test_store_list_survives_concurrent_deletes_and_puts(settings):
    """LocalStore.list used to stat a file another writer had just removed (FileNotFoundError)."""
    store = _store(settings)
    names = [f"raw/d{i:03}.txt" for i in range(200 if settings.store_uri.startswith("file") else 40)]
    for name in names:
        store.put(name, b"x")
    errors: list[BaseException] = []
    done = threading.Event()

    def lister():
        while not done.is_set():
            try:
                list(store.list("raw/"))
            except BaseException as exc:  # noqa: BLE001 - any error is the failure
                errors.append(exc)
                return

    threads = [threading.Thread(target=lister) for _ in range(3)]
    for thread in threads:
        thread.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(store.delete, names))
        list(pool.map(lambda n: store.put(n + ".md", b"y"), names[:20]))
    done.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(o.key for o in store.list("raw/")) == sorted(n + ".md" for n in names[:20])


def test_concurrent_uploads_deletes_and_lists_lose_nothing(settings, start_api):
    with start_api(settings, api_key="k") as api:
        url = api.url

        def call(method, path, **kwargs):
            with httpx.Client(base_url=url, timeout=60) as client:
                return client.request(method, path, headers=KEY, **kwargs)

        uploads = [("POST", "/documents", {"files": {"file": (f"doc{i}.txt", f"text number {i}".encode())}})
                   for i in range(DOCS)]
        with ThreadPoolExecutor(THREADS) as pool:
            responses = list(pool.map(lambda a: call(a[0], a[1], **a[2]), uploads + [("GET", "/documents", {})] * 8))
        assert [r.status_code for r in responses[:DOCS]] == [201] * DOCS, [r.text for r in responses]
        assert all(r.status_code == 200 for r in responses[DOCS:]), [r.text for r in responses[DOCS:]]
        listed = {d["key"] for d in api.client.get("/documents").json()["documents"]}
        assert listed == {f"raw/doc{i}.txt" for i in range(DOCS)}

        # 8 threads deleting the first 10 documents, each id several times, with lists in between.
        victims = [doc_id_for(f"raw/doc{i}.txt") for i in range(10)]
        work = [("DELETE", f"/documents/{d}") for d in victims * 3] + [("GET", "/documents")] * 10
        with ThreadPoolExecutor(THREADS) as pool:
            responses = list(pool.map(lambda a: call(*a), work))
        statuses = [r.status_code for r in responses]
        assert max(statuses) < 500, [r.text for r in responses if r.status_code >= 500]
        deletes = statuses[:30]
        assert all(s in (200, 404) for s in deletes), deletes
        for doc_id in victims:  # every id was acknowledged deleted at least once
            assert any(s == 200 for s, d in zip(deletes, victims * 3, strict=True) if d == doc_id)
        left = {d["key"] for d in api.client.get("/documents").json()["documents"]}
        assert left == {"raw/doc10.txt", "raw/doc11.txt"}
        assert sorted(o.key for o in _store(settings).list("raw/")) == ["raw/doc10.txt", "raw/doc11.txt"]
