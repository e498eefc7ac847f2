"""The object store behaves the same on file:// and s3:// (a real moto S3 server)."""

from __future__ import annotations

import hashlib
import os

import pytest
from lakerag.store import LocalStore, NotFound, S3Store, StoreError, check_key, open_store, same_bytes


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'root'}")
    bucket = request.getfixturevalue("s3_env")
    endpoint = request.getfixturevalue("moto_endpoint")
    return open_store(f"s3://{bucket}/some/prefix", endpoint_url=endpoint, region="us-east-1")


def test_put_get_exists_delete(store):
    assert not store.exists("raw/a.txt")
    store.put("raw/a.txt", b"hello")
    assert store.get("raw/a.txt") == b"hello" and store.exists("raw/a.txt")
    store.put("raw/a.txt", b"replaced")
    assert store.get("raw/a.txt") == b"replaced"
    store.delete("raw/a.txt")
    assert not store.exists("raw/a.txt")
    store.delete("raw/a.txt")  # deleting a missing key is not an error
    with pytest.raises(NotFound):
        store.get("raw/a.txt")


def test_list_is_relative_and_prefixed(store):
    for key in ("raw/b.txt", "raw/a dir/é ü.md", "raw/notes..v2.txt", "lake/x", "index/CURRENT"):
        store.put(key, key.encode())
    # Order is not part of the contract (S3 lists lexicographically, a directory walk does not).
    listed = sorted(store.list("raw/"), key=lambda o: o.key)
    assert [o.key for o in listed] == ["raw/a dir/é ü.md", "raw/b.txt", "raw/notes..v2.txt"]
    assert [o.size for o in listed] == [len(o.key.encode()) for o in listed]
    assert {o.key for o in store.list()} >= {"lake/x", "index/CURRENT", "raw/b.txt"}
    assert list(store.list("nothing/")) == []


def test_s3_folder_markers_are_not_listed(s3_env, moto_endpoint):
    """A "folder" made in the S3 console (or by s3a/pyarrow) is an empty object named "raw/policies/":
    it was listed as a document (quarantined as an empty file) and broke backups to file://."""
    store = open_store(f"s3://{s3_env}/some/prefix", endpoint_url=moto_endpoint, region="us-east-1")
    store.put("raw/policies/a.txt", b"alpha")
    for marker in ("raw/", "raw/policies/", "lake/_staging/"):
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{marker}", Body=b"")
    assert [o.key for o in store.list("raw/")] == ["raw/policies/a.txt"]
    assert [o.key for o in store.list()] == ["raw/policies/a.txt"]


def test_version_changes_when_the_bytes_change(store):
    store.put("raw/v.txt", b"one")
    first = next(iter(store.list("raw/"))).version
    store.put("raw/v.txt", b"two, longer")
    assert next(iter(store.list("raw/"))).version != first


def test_same_bytes_tells_the_stored_bytes_from_others_of_any_size(store):
    data = b"forklift pallets " * 100_000  # several read blocks
    sha = hashlib.sha256(data).hexdigest()
    assert same_bytes(store, "raw/a.txt", len(data), sha) is None  # nothing stored yet
    store.put("raw/a.txt", data)
    assert same_bytes(store, "raw/a.txt", len(data), sha) is True
    other = data[:-1] + b"S"  # the same size: only the hash tells
    assert same_bytes(store, "raw/a.txt", len(other), hashlib.sha256(other).hexdigest()) is False
    assert same_bytes(store, "raw/a.txt", len(data) + 1, sha) is False


def test_url_points_at_the_key(store):
    url = store.url("lake/gold")
    if isinstance(store, S3Store):
        assert url == f"s3://{store.bucket}/some/prefix/lake/gold"
    else:
        assert url == str(store.root / "lake" / "gold")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "../x", "raw/..", "a\\b", "raw/./x", "x\x00y"])
def test_check_key_rejects_escapes(key):
    with pytest.raises(StoreError):
        check_key(key)


@pytest.mark.parametrize("key", ["raw/notes..v2.txt", "raw/my file.pdf", "raw/résumé.md", "raw/..hidden"])
def test_check_key_accepts_odd_but_safe_names(key):
    assert check_key(key) == key


def test_local_store_is_atomic_and_skips_temp_files(tmp_path):
    store = LocalStore(tmp_path)
    store.put("index/CURRENT", b"v1")
    (tmp_path / "index" / ".x.lakerag-tmp").write_bytes(b"partial")
    assert [o.key for o in store.list("index/")] == ["index/CURRENT"]
    assert not list(tmp_path.glob("index/.*lakerag-tmp*"))[1:]  # put leaves no temp file of its own


def test_open_store_rejects_bad_uris(tmp_path):
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    with pytest.raises(StoreError, match="no bucket"):
        open_store("s3://")
    with pytest.raises(StoreError, match="file://DIR or s3://"):
        open_store("gs://bucket")


def test_unreachable_s3_is_a_clear_store_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    store = open_store("s3://bucket", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    with pytest.raises(StoreError, match="unreachable"):
        list(store.list("raw/"))


def test_boto3_delta_rs_and_pyarrow_reach_s3_from_the_same_settings(s3_env, moto_endpoint):
    """store_for (boto3), the lake's delta-rs options and pyarrow's S3FileSystem all come from
    S3Access.from_settings: what one writes, the others read."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lakerag import config
    from lakerag.lake import Lake, tables
    from lakerag.store import S3Access, store_for

    settings = config.from_env({"LAKERAG_STORE_URI": f"s3://{s3_env}/root", "AWS_REGION": "us-east-1",
                                "AWS_ENDPOINT_URL": moto_endpoint})
    access = S3Access.from_settings(settings)
    assert access.environment() == {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    options = access.delta_options()
    assert options["AWS_ENDPOINT_URL"] == moto_endpoint and options["AWS_ALLOW_HTTP"] == "true"
    assert options["AWS_REGION"] == "us-east-1" and options["AWS_ACCESS_KEY_ID"] == "testing"

    lake = Lake.open(settings)
    assert lake.storage_options() == options
    rows = pa.table({"chunk_id": ["c1"], "doc_id": ["d"], "chunk_index": pa.array([0], pa.int32()), "text": ["t"],
                     "title": [None], "source": ["raw/a.txt"], "page": pa.array([None], pa.int32()),
                     "content_hash": ["h"], "token_count": pa.array([1], pa.int32())})
    assert tables.merge(lake, "gold", rows, pa.table({"chunk_id": pa.array([], pa.string())}))  # delta-rs writes
    files = tables.snapshot(lake, "gold").file_uris()
    assert files and all(f.startswith(f"s3://{s3_env}/root/lake/gold/") for f in files)
    keys = {o.key for o in store_for(settings).list("lake/gold/")}  # boto3 lists what delta-rs wrote
    assert any(k.endswith(".parquet") for k in keys) and "lake/gold/_delta_log/00000000000000000001.json" in keys
    read = pq.read_table(files[0].removeprefix("s3://"), filesystem=access.arrow_filesystem())  # pyarrow reads it
    assert read.column("chunk_id").to_pylist() == ["c1"]


def test_local_store_needs_no_s3_options(tmp_path):
    from lakerag import config
    from lakerag.lake import Lake

    assert Lake.open(config.from_env({"LAKERAG_STORE_URI": f"file://{tmp_path}"})).storage_options() == {}


def test_hidden_files_under_raw_are_no_documents(tmp_path):
    """A .DS_Store or .gitkeep synced into raw/ was quarantined on every run ("empty file: upload the
    file again", "unsupported file extension"), keeping the pipeline's quarantine count up."""
    from lakerag.lake import raw_documents

    store = open_store(f"file://{tmp_path / 'root'}")
    for key in ("raw/a.txt", "raw/.DS_Store", "raw/sub/.gitkeep", "raw/.hidden/b.txt", "raw/sub/c.md"):
        store.put(key, b"x")
    assert sorted(o.key for o in raw_documents(store)) == ["raw/a.txt", "raw/sub/c.md"]


def test_a_pipe_or_socket_under_a_local_store_is_no_object(tmp_path):
    """A named pipe under raw/ was listed as an empty document, and reading it for
    GET /documents/{id}/content blocked one of the API's threads for good."""
    import socket

    store = open_store(f"file://{tmp_path / 'root'}")
    store.put("raw/a.txt", b"x")
    os.mkfifo(tmp_path / "root" / "raw" / "pipe.txt")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "root" / "raw" / "socket.txt"))
        assert [o.key for o in store.list("raw/")] == ["raw/a.txt"]


def test_a_reader_reads_on_from_where_it_seeks(store):
    """The content route serves a byte range by seeking: on S3 a ranged GET of the same object."""
    store.put("raw/a.bin", bytes(range(200)))
    with store.reader("raw/a.bin") as reader:
        reader.seek(150)
        assert reader.read() == bytes(range(150, 200))


def test_an_s3_object_replaced_before_the_seek_is_an_error_not_a_mix_of_two_files(s3_env, moto_endpoint):
    store = open_store(f"s3://{s3_env}", endpoint_url=moto_endpoint, region="us-east-1")
    store.put("raw/a.bin", b"first version " * 20)
    with store.reader("raw/a.bin") as reader:
        store.put("raw/a.bin", b"second version " * 20)
        with pytest.raises(StoreError, match="PreconditionFailed"):
            reader.seek(100)
