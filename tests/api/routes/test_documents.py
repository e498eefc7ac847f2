"""POST/GET/DELETE /documents over HTTP: types, size limit, safe keys, API key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import lakerag.api
import pytest
from conftest import peak_rss, read_only, reset_peak_rss, serve_with_file_size_limit
from lakerag.extract import FILE_TYPES
from lakerag.lake import doc_id_for
from lakerag.store import open_store

STATIC = Path(lakerag.api.__file__).parent / "static"


@pytest.fixture
def api(local_settings, start_api):
    with start_api(local_settings, api_key="s3cret", max_upload_bytes=1000) as api:
        yield api


def upload(api, name, data=b"Some text about forklifts and pallets.", key="s3cret"):
    headers = {"X-API-Key": key} if key is not None else {}
    return api.client.post("/documents", files={"file": (name, data, "application/octet-stream")}, headers=headers)


def test_upload_lands_in_raw_with_a_safe_key(api, local_settings):
    store = open_store(local_settings.store_uri)
    response = upload(api, "notes.txt")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {**body, "key": "raw/notes.txt", "doc_id": doc_id_for("raw/notes.txt"), "replaced": False,
                    "size": 38}
    assert store.get("raw/notes.txt") == b"Some text about forklifts and pallets."
    assert upload(api, "notes.txt", b"Other text about forklifts.").json()["replaced"] is True
    assert store.get("raw/notes.txt") == b"Other text about forklifts."
    assert response.json()["note"] == "stored; the next pipeline run (`lakerag pipeline run`) indexes it"

    for hostile, expected in (("../../etc/passwd.txt", "raw/passwd.txt"), ("..\\..\\win.md", "raw/win.md"),
                              ("/abs/path/ok.json", "raw/ok.json"), ("..hidden.html", "raw/hidden.html"),
                              ("Übersicht – Q3 报告.md", "raw/Übersicht – Q3 报告.md")):
        response = upload(api, hostile)
        assert response.status_code == 201, (hostile, response.text)
        assert response.json()["key"] == expected
        assert store.exists(expected)
    assert sorted(p.name for p in (store.root).iterdir()) == ["raw"]  # nothing escaped raw/
    assert 'lakerag_upload_bytes_total' in api.client.get("/metrics").text


def test_uploading_the_bytes_already_stored_writes_nothing_and_asks_for_no_run(api, local_settings):
    """The same file uploaded again (a retry, a second click) said "replaced", rewrote the object
    (a new version, so the pipeline read it again) and asked for a pipeline run. Now it is 200
    ``unchanged``: nothing is written and no run is asked for. Other bytes of the same size replace it."""
    store = open_store(local_settings.store_uri)
    data = b"Some text about forklifts and pallets."
    assert upload(api, "notes.txt", data).status_code == 201
    path = store.root / "raw" / "notes.txt"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # a version the pipeline has already read
    before = next(store.list("raw/notes.txt")).version

    again = upload(api, "notes.txt", data)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["unchanged"] is True and body["replaced"] is False and body["size"] == len(data)
    assert "already holds these bytes" in body["note"] and "indexes it" not in body["note"]
    assert next(store.list("raw/notes.txt")).version == before  # not written: the pipeline has nothing to read
    assert not [p for p in path.parent.iterdir() if p.name != "notes.txt"]  # no temp file left behind

    same_size = data.replace(b"pallets", b"PALLETS")
    changed = upload(api, "notes.txt", same_size)
    assert changed.status_code == 201 and changed.json()["replaced"] is True and not changed.json()["unchanged"]
    assert store.get("raw/notes.txt") == same_size


def test_upload_refuses_bad_type_size_name_and_missing_or_wrong_key(api):
    assert upload(api, "tool.exe").status_code == 415
    assert upload(api, "noext").status_code == 415
    assert upload(api, "big.txt", b"x" * 1001).status_code == 413
    assert upload(api, "exact.txt", b"x" * 1000).status_code == 201
    assert upload(api, "empty.txt", b"").status_code == 400
    assert upload(api, "../..").status_code == 400
    response = upload(api, "a.txt", key=None)
    assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
    assert upload(api, "a.txt", key="wrong").status_code == 403


def test_every_type_the_pipeline_extracts_is_accepted_offered_and_served(api):
    """Upload, the console's file picker and the content route take their types from extract.FILE_TYPES:
    a `.text` file, which the pipeline reads from raw/, was refused by upload with 415."""
    for extension, kind in FILE_TYPES.items():
        response = upload(api, f"doc{extension}", b"{}" if kind == "json" else b"Some text about pallets.")
        assert response.status_code == 201, (extension, response.text)
        served = api.client.get(f"/documents/{response.json()['doc_id']}/content")
        assert served.status_code == 200
        expected = {"pdf": "application/pdf", "json": "application/json"}.get(kind, "text/plain")
        assert served.headers["content-type"].split(";")[0] == expected, extension
    picker = re.search(r'accept="([^"]+)"', (STATIC / "index.html").read_text()).group(1)
    assert sorted(picker.split(",")) == sorted(FILE_TYPES)


def test_two_files_in_one_request_are_refused_not_half_stored(api, local_settings):
    store = open_store(local_settings.store_uri)
    response = api.client.post("/documents", headers={"X-API-Key": "s3cret"},
                               files=[("file", ("a1.txt", b"first file", "text/plain")),
                                      ("file", ("b2.txt", b"second file", "text/plain"))])
    assert response.status_code == 400 and "one file per request" in response.json()["detail"]
    assert not store.exists("raw/a1.txt") and not store.exists("raw/b2.txt")
    assert upload(api, "a1.txt").status_code == 201  # one file alone still lands


def test_list_and_delete(api):
    upload(api, "first.txt")
    upload(api, "second.md")
    listing = api.client.get("/documents").json()
    assert [d["key"] for d in listing["documents"]] == ["raw/first.txt", "raw/second.md"]
    assert {d["state"] for d in listing["documents"]} == {"landed"} and listing["counts"] == {"landed": 2}
    doc_id = doc_id_for("raw/first.txt")
    assert api.client.delete(f"/documents/{doc_id}").status_code == 401
    assert api.client.delete(f"/documents/{doc_id}", headers={"X-API-Key": "nope"}).status_code == 403
    response = api.client.delete(f"/documents/{doc_id}", headers={"X-API-Key": "s3cret"})
    assert response.status_code == 200 and response.json()["key"] == "raw/first.txt"
    assert [d["key"] for d in api.client.get("/documents").json()["documents"]] == ["raw/second.md"]
    assert api.client.delete(f"/documents/{doc_id}", headers={"X-API-Key": "s3cret"}).status_code == 404


def test_a_delete_the_store_refuses_is_a_502_that_says_why(api, local_settings):
    """A file:// store on a read-only volume (or one this user may not write) answered a DELETE
    with 500 Internal Server Error: LocalStore raises OSError, the route caught StoreError only."""
    upload(api, "kept.txt")
    raw = Path(local_settings.store_uri.removeprefix("file://")) / "raw"
    with read_only(raw):
        response = api.client.delete(f"/documents/{doc_id_for('raw/kept.txt')}", headers={"X-API-Key": "s3cret"})
    assert response.status_code == 502, response.text
    assert re.fullmatch(r"could not delete raw/kept.txt from the store: (Read-only file system|Permission denied)",
                        response.json()["detail"]), response.text
    assert [d["key"] for d in api.client.get("/documents").json()["documents"]] == ["raw/kept.txt"]


def test_a_raw_file_the_store_cannot_read_is_listed_and_its_content_is_a_502(api, local_settings):
    """A symbolic-link loop under raw/ of a file:// store: GET /documents answered 500 (listing
    raised ELOOP), and once listed, its content did too (the route caught StoreError only)."""
    upload(api, "kept.txt")
    loop = Path(local_settings.store_uri.removeprefix("file://")) / "raw" / "loop.txt"
    loop.symlink_to(loop.name)
    listed = api.client.get("/documents")
    assert [d["key"] for d in listed.json()["documents"]] == ["raw/kept.txt", "raw/loop.txt"], listed.text
    response = api.client.get(f"/documents/{doc_id_for('raw/loop.txt')}/content")
    assert response.status_code == 502, response.text
    assert response.json()["detail"] == "could not read raw/loop.txt from the store: Too many levels of symbolic links"


def test_a_file_store_that_is_a_file_is_a_502_that_says_so(local_settings, start_api, tmp_path):
    """LAKERAG_STORE_URI=file://… naming a file: uploads, deletes and content reads answered 500,
    the document list "Not a directory" (a 500 too)."""
    not_a_dir = tmp_path / "lake.tar"
    not_a_dir.write_bytes(b"an archive, not the store")
    said = f"store file://{not_a_dir} is a file, not a directory: point LAKERAG_STORE_URI at a directory"
    with start_api(local_settings.replace(store_uri=f"file://{not_a_dir}")) as api:
        for response in (api.client.get("/documents"), upload(api, "notes.txt", key=None),
                         api.client.delete("/documents/0123456789abcdef"),
                         api.client.get("/documents/0123456789abcdef/content")):
            assert response.status_code == 502 and said in response.json()["detail"], response.text
        assert said in api.client.get("/ready").json()["message"]
    assert not_a_dir.read_bytes() == b"an archive, not the store"


def test_a_large_raw_file_is_served_without_holding_it_in_memory(api, local_settings):
    """Documents land in S3 at any size (only uploads are capped), and the console links each one:
    the content route read the whole file into memory, so a 1 GB scan could OOM-kill the API pod."""
    size = 256 * 1024 * 1024
    raw = Path(local_settings.store_uri.removeprefix("file://")) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with (raw / "scan.pdf").open("wb") as handle:
        handle.truncate(size)  # sparse: no disk, but every byte read is memory touched
    before = reset_peak_rss()  # the API serves from a thread of this process
    received = 0
    with api.client.stream("GET", f"/documents/{doc_id_for('raw/scan.pdf')}/content") as response:
        assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
        assert response.headers["content-security-policy"] == "sandbox"
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert received == size
    grew = peak_rss() - before
    assert grew < 64 * 1024 * 1024, f"serving {size} bytes raised the peak RSS by {grew} bytes"


def test_without_a_configured_key_writes_are_open(local_settings, start_api):
    with start_api(local_settings) as api:
        assert upload(api, "open.txt", key=None).status_code == 201


def test_safe_name_drops_control_characters_and_normalises_unicode():
    from lakerag.api.routes.documents import safe_name

    assert safe_name("tab\tand\x00nul\u200b.txt") == "tabandnul.txt"
    assert safe_name("Cafe\u0301.md") == "Caf\u00e9.md"  # NFC
    assert safe_name("a/b/../c.pdf") == "c.pdf"
    long = safe_name("x" * 500 + ".pdf")
    assert len(long) == 200 and long.endswith(".pdf")
    wide = safe_name("日" * 150 + ".txt")  # 454 bytes: over a file system's 255
    assert wide == "日" * 65 + ".txt" and len(wide.encode()) == 199  # cut on a character boundary
    with pytest.raises(ValueError):
        safe_name("dir/")


def test_documents_on_an_s3_store(s3_settings, start_api):
    with start_api(s3_settings) as api:
        assert upload(api, "report.md", key=None).status_code == 201
        again = upload(api, "report.md", key=None)  # the same bytes: S3 keeps its object, nothing is written
        assert again.status_code == 200 and again.json()["unchanged"] is True, again.text
        listing = api.client.get("/documents").json()
        assert [(d["key"], d["state"]) for d in listing["documents"]] == [("raw/report.md", "landed")]
        doc_id = doc_id_for("raw/report.md")
        assert api.client.delete(f"/documents/{doc_id}").status_code == 200
        assert api.client.get("/documents").json()["documents"] == []
        assert open_store(s3_settings.store_uri, s3_settings.aws_endpoint_url, "us-east-1").exists(
            "raw/report.md") is False


@pytest.mark.parametrize("damaged", [b"{not json", b'{"extracted": [["a"]], "documents": []}', b'[1, 2]',
                                     b'{"quarantined": [1], "documents": {"d": "no object"}}'])
def test_a_damaged_status_file_is_a_502_that_says_how_it_mends(api, local_settings, damaged):
    from lakerag.lake import DOCUMENTS_KEY

    open_store(local_settings.store_uri).put(DOCUMENTS_KEY, damaged)
    response = api.client.get("/documents")
    assert response.status_code == 502, response.text
    assert "the next pipeline run" in response.json()["detail"]


def test_a_copy_set_aside_names_the_file_indexed_in_its_place(api, local_settings):
    import json

    from lakerag.lake import DOCUMENTS_KEY

    store = open_store(local_settings.store_uri)
    for name in ("quokka.txt", "NOTES.TXT"):
        store.put(f"raw/{name}", b"Quokkas live on Rottnest Island.")
    listed = {o.key: o.version for o in store.list("raw/")}
    store.put(DOCUMENTS_KEY, json.dumps({
        "extracted": [[key, version] for key, version in listed.items()],
        "documents": {doc_id_for("raw/quokka.txt"): {"chunks": 1, "title": "quokka"}},
        "duplicates": {"raw/NOTES.TXT": "raw/quokka.txt"}}).encode())
    states = {d["key"]: d for d in api.client.get("/documents").json()["documents"]}
    assert states["raw/NOTES.TXT"]["state"] == "processed"
    assert states["raw/NOTES.TXT"]["reason"] == "the same content as raw/quokka.txt, which is indexed in its place"


def test_an_upload_to_a_full_store_is_a_507_and_keeps_what_was_stored(local_settings, tmp_path):
    """A store that could not take the file (a full volume) answered 500 Internal Server Error."""
    store = open_store(local_settings.store_uri)
    store.put("raw/report.txt", b"The report that was here before.")
    with serve_with_file_size_limit(local_settings, tmp_path, 64 * 1024) as base:
        for name in ("report.txt", "new.txt"):  # replacing a document, and a new one
            response = httpx.post(f"{base}/documents", files={"file": (name, b"forklift pallets " * 20_000)},
                                  timeout=60)
            assert response.status_code == 507, response.text
            assert response.json()["detail"] == f"could not write raw/{name} to the store: File too large", \
                response.text
    assert store.get("raw/report.txt") == b"The report that was here before."
    assert sorted(os.listdir(local_settings.store_uri.removeprefix("file://") + "/raw")) == ["report.txt"]  # no temp


def test_an_indexed_document_is_served_and_deleted_without_listing_raw(served, sample_docs):
    """A citation's link (GET /documents/{doc_id}/content) and a delete found the doc_id's key by
    listing all of raw/: on an S3 lake of 100k documents, 100 LIST calls per click. The served index
    knows the key of every document it holds."""
    store = served.state.lake.store
    key = "raw/employee-travel-policy.pdf"
    store.put(key, sample_docs["employee-travel-policy.pdf"])
    listed = []
    real_list = store.list
    store.list = lambda prefix="": listed.append(prefix) or real_list(prefix)
    try:
        content = served.client.get(f"/documents/{doc_id_for(key)}/content")
        assert content.status_code == 200 and content.content == sample_docs["employee-travel-policy.pdf"]
        deleted = served.client.delete(f"/documents/{doc_id_for(key)}")
        assert deleted.status_code == 200 and deleted.json()["key"] == key
        assert not store.exists(key)
        assert listed == []
        # Gone from raw/, still in the served index until the next run: a 404, found by listing.
        gone = served.client.get(f"/documents/{doc_id_for(key)}/content")
        assert gone.status_code == 404 and "GET /documents" in gone.json()["detail"]
    finally:
        del store.list
