"""Index build, publish, load and rollback: real FAISS, real Delta, file:// and moto S3."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import as_legacy_version
from lakerag.embed_job import run_embed
from lakerag.index.artifacts import IndexRejected, load_index_dir, sha256_file, write_index_dir
from lakerag.index.publish import (
    choose_index_type,
    download_version,
    load_current,
    prune,
    publish_dir,
    published_versions,
    read_current,
    rollback,
    run_index,
)
from lakerag.lake import Lake, doc_id_for

from .gold import append_copies, synthetic_docs, write_gold

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def random_chunks(count: int, dimension: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = pd.DataFrame({"chunk_id": [f"c{i:04d}" for i in range(count)], "doc_id": [f"d{i // 3}" for i in range(count)],
                           "chunk_index": [i % 3 for i in range(count)], "text": [f"text {i}" for i in range(count)],
                           "source": [f"raw/d{i // 3}.txt" for i in range(count)], "title": ["t"] * count,
                           "page": [None] * count})
    return vectors, chunks


def clustered_chunks(count: int, dimension: int = 32, clusters: int = 40, seed: int = 0):
    """Unit vectors around ``clusters`` centres (what embeddings look like, unlike uniform noise)."""
    vectors, chunks = random_chunks(count, dimension, seed)
    rng = np.random.default_rng(seed + 1)
    centres = rng.normal(size=(clusters, dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, count)] + 0.6 * vectors
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), chunks


def pipeline(settings, docs) -> dict:
    lake = Lake.open(settings)
    write_gold(lake, docs)
    assert run_embed(settings)["ok"]
    return run_index(settings)


# --- artifacts on local disk (no model needed) ------------------------------------------------------------

def _write_calls() -> int:
    """write() system calls this process has made so far (Linux's per-process I/O counters)."""
    with open("/proc/self/io") as counters_file:
        counters = dict(line.split(": ") for line in counters_file.read().splitlines())
    return int(counters["syscw"])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's /proc/<pid>/io counters")
def test_a_version_is_written_published_and_synced_in_blocks_of_at_most_1_mib(tmp_path):
    """One write() of 2 MiB or more took ~10x as long as 1 MiB writes on these machines (240 MB:
    1.95-2.71 s against 0.06-0.21 s; the first API start's sync paid it). N bytes in blocks of at most
    1 MiB take at least N / 1 MiB write calls: FAISS's own writer made one, the copies one per 8 MiB."""
    from lakerag.store import WRITE_BLOCK_BYTES, LocalStore

    assert WRITE_BLOCK_BYTES == 1 << 20
    vectors, chunks = random_chunks(16, dimension=1 << 20)  # a 64 MiB index.faiss beside 16 small rows

    def least_calls(*paths) -> int:
        return sum(os.path.getsize(path) for path in paths) // WRITE_BLOCK_BYTES

    before = _write_calls()
    write_index_dir(tmp_path / "built", vectors, chunks, MODEL, gold_version=1, lexical=False)
    assert _write_calls() - before >= least_calls(tmp_path / "built" / "index.faiss")

    before = _write_calls()
    version = publish_dir(LocalStore(tmp_path / "store"), tmp_path / "built")
    published = list((tmp_path / "store" / "index" / version).iterdir())
    assert _write_calls() - before >= least_calls(*published)

    before = _write_calls()
    synced = download_version(LocalStore(tmp_path / "store"), version, tmp_path / "synced")
    assert _write_calls() - before >= least_calls(*synced.iterdir())
    assert (synced / "index.faiss").read_bytes() == (tmp_path / "built" / "index.faiss").read_bytes()


def test_written_index_loads_and_searches_exactly(tmp_path):
    vectors, chunks = random_chunks(40)
    manifest = write_index_dir(tmp_path / "v", vectors, chunks, MODEL, gold_version=7)
    assert manifest["vector_count"] == 40 and manifest["gold_version"] == 7 and manifest["index_type"] == "flat"
    # every file of the version is listed with its checksum
    written = {p.name for p in (tmp_path / "v").iterdir()} - {"manifest.json"}
    assert {"index.faiss", "chunks.sqlite"} <= written == set(manifest["files"])
    assert all(sha256_file(tmp_path / "v" / name) == sha for name, sha in manifest["files"].items())
    loaded = load_index_dir(tmp_path / "v", expected_model=MODEL, expected_dimension=16)
    assert loaded.version == manifest["version"] and loaded.vector_count == 40
    scores, ids = loaded.search(vectors[[5, 17]], k=3)
    assert ids[:, 0].tolist() == [5, 17]
    expected = np.sort(vectors @ vectors[5])[::-1][:3]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5)
    assert loaded.chunks.loc[ids[1, 0], "chunk_id"] == "c0017"


def test_search_pads_with_minus_one_when_k_exceeds_the_index(tmp_path):
    vectors, chunks = random_chunks(2)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    _, ids = load_index_dir(tmp_path).search(vectors[0], k=5)
    assert ids[0].tolist()[2:] == [-1, -1, -1]


def test_tampered_local_file_is_rejected(tmp_path):
    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    data = bytearray((tmp_path / "chunks.sqlite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "chunks.sqlite").write_bytes(bytes(data))
    with pytest.raises(IndexRejected, match="chunks.sqlite fails its checksum"):
        load_index_dir(tmp_path)


def test_missing_file_and_missing_manifest_are_rejected(tmp_path):
    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    (tmp_path / "index.faiss").unlink()
    with pytest.raises(IndexRejected, match="index.faiss is missing"):
        load_index_dir(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(IndexRejected, match="incomplete"):
        load_index_dir(tmp_path)


def test_chunk_rows_come_back_as_written_and_filters_select_them(tmp_path):
    vectors, chunks = random_chunks(9)
    chunks.loc[0, "title"] = ""  # an empty title is served as none
    chunks["page"] = pd.array([1, None, 2, None, None, None, None, None, 3], dtype="Int32")
    chunks.loc[6:, "source"] = "raw/sub/ü-d2.txt"
    chunks["content_hash"] = [f"h{i}" for i in range(9)]
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    loaded = load_index_dir(tmp_path)
    rows = loaded.rows([8, 0, 8])
    assert [r["chunk_id"] for r in rows] == ["c0008", "c0000", "c0008"]
    assert rows[0] == {"doc_id": "d2", "chunk_id": "c0008", "chunk_index": 2, "text": "text 8",
                       "source": "raw/sub/ü-d2.txt", "title": "t", "page": 3, "source_version": None,
                       "content_hash": "h8"}
    assert rows[1]["title"] is None and loaded.rows([1])[0]["page"] is None
    assert loaded.texts([4, 3]) == ["text 4", "text 3"]
    assert loaded.matching_rows(doc_id="d1").tolist() == [3, 4, 5]
    assert loaded.matching_rows(source_prefix="raw/sub/").tolist() == [6, 7, 8]
    assert loaded.matching_rows(source_prefix="raw/sub/ü").tolist() == [6, 7, 8]
    assert loaded.matching_rows(source_prefix="raw/d").tolist() == [0, 1, 2, 3, 4, 5]
    assert loaded.matching_rows(doc_id="d1", source_prefix="raw/sub/").tolist() == []
    assert loaded.document_rows("d0").tolist() == [0, 1, 2]
    assert loaded.chunks_per_document() == {"d0": 3, "d1": 3, "d2": 3}
    with pytest.raises(IndexError, match="no chunk rows"):
        loaded.rows([9])


def test_a_version_published_as_chunks_parquet_still_loads_where_pyarrow_is_installed(tmp_path):
    vectors, chunks = random_chunks(12)
    write_index_dir(tmp_path / "new", vectors, chunks, MODEL, 1, version="20260101T000000Z-new")
    write_index_dir(tmp_path / "old", vectors, chunks, MODEL, 1, version="20260101T000000Z-old")
    as_legacy_version(tmp_path / "old")
    new, old = load_index_dir(tmp_path / "new"), load_index_dir(tmp_path / "old")
    assert "chunks.sqlite" not in old.manifest["files"]
    assert old.rows(range(12)) == new.rows(range(12))
    assert old.matching_rows(doc_id="d2").tolist() == [6, 7, 8]


def test_a_verified_copy_is_not_hashed_again_but_a_changed_file_is(tmp_path, monkeypatch):
    from lakerag.index import artifacts

    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    artifacts.verify_index_dir(tmp_path)  # what a sync does after a download
    hashed = []
    monkeypatch.setattr(artifacts, "sha256_file", lambda path: hashed.append(path.name) or sha256_file(path))
    load_index_dir(tmp_path)
    assert hashed == []
    (tmp_path / "index.faiss").write_bytes((tmp_path / "index.faiss").read_bytes())  # same bytes, new mtime
    load_index_dir(tmp_path)
    assert "index.faiss" in hashed


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenMP's default is one thread here")
def test_searches_in_other_threads_keep_the_thread_cap(tmp_path):
    """OpenMP keeps its thread count per thread: a cap set in one thread (the API's warm-up)
    must still hold in the request threads that search."""
    import threading

    import faiss
    from lakerag.embedding import cap_threads

    vectors, chunks = random_chunks(20)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    loaded = load_index_dir(tmp_path)
    cap_threads(1, torch=False)
    seen = []

    def request() -> None:
        loaded.search(vectors[:1], k=3)
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    assert seen == [1]


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenMP's default is one thread here")
def test_an_index_built_beside_the_api_uses_the_cpu_quota(local_settings, embedder, monkeypatch, tmp_path):
    """`lakerag run` serves and indexes in one process. The API's one FAISS thread per search, set
    first (its warm-up), used to become every later index build's: HNSW builds took twice as long
    on 2 CPUs. The build gets the quota, and searches keep their cap afterwards."""
    import threading

    import faiss
    from lakerag.embedding import THREAD_ENV_VARS, cap_threads, cpu_quota
    from lakerag.index import publish

    for var in THREAD_ENV_VARS:  # cap_threads writes the environment: restored after the test
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("lakerag.embedding._written", {})  # a fresh process: no earlier test's caps
    monkeypatch.setattr("lakerag.embedding._users", {})
    settings = local_settings.replace(ann_threshold=5)
    cap_threads(1, torch=False)  # as the API's warm-up does (cap_search_threads)
    build_threads, search_threads = [], []
    real_write = publish.write_index_dir

    def write_index_dir(*args, **kwargs):
        build_threads.append(faiss.omp_get_max_threads())
        return real_write(*args, **kwargs)

    monkeypatch.setattr(publish, "write_index_dir", write_index_dir)
    results = []
    watcher = threading.Thread(target=lambda: results.append(pipeline(settings, synthetic_docs(4))))
    watcher.start()
    watcher.join()
    assert results[0]["published"] and results[0]["index_type"] == "hnsw"
    assert build_threads == [cpu_quota()] and cpu_quota() >= 2

    loaded = load_current(Lake.open(settings).store, tmp_path / "serving")

    def request() -> None:
        loaded.search(np.ones((1, loaded.dimension), np.float32), k=3)
        search_threads.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    assert search_threads == [1]


def test_rows_outlive_a_pruned_version(tmp_path):
    """A request still holding a version reads its hits after the version's directory is pruned
    (the open SQLite file keeps them readable)."""
    import shutil

    vectors, chunks = random_chunks(30)
    write_index_dir(tmp_path / "v1", vectors, chunks, MODEL, 1)
    loaded = load_index_dir(tmp_path / "v1")
    shutil.rmtree(tmp_path / "v1")
    assert [row["chunk_id"] for row in loaded.rows([29, 0, 7])] == ["c0029", "c0000", "c0007"]


def test_model_mismatch_is_rejected_with_both_names_and_the_fix(tmp_path):
    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1)
    with pytest.raises(IndexRejected) as error:
        load_index_dir(tmp_path, expected_model="BAAI/bge-large-en-v1.5", expected_dimension=1024)
    message = str(error.value)
    assert MODEL in message and "BAAI/bge-large-en-v1.5" in message
    assert "dimension 16" in message and "1024" in message
    assert "LAKERAG_EMBEDDING_MODEL" in message and "lakerag pipeline run" in message
    with pytest.raises(IndexRejected, match="dimension"):
        load_index_dir(tmp_path, expected_model=MODEL, expected_dimension=384)


def test_hnsw_index_records_its_recall(tmp_path):
    vectors, chunks = random_chunks(600, dimension=32)
    manifest = write_index_dir(tmp_path, vectors, chunks, MODEL, 1, index_type="hnsw")
    assert manifest["index_type"] == "hnsw" and manifest["recall_queries"] == 600
    assert 0.9 <= manifest["recall_at_10"] <= 1.0
    loaded = load_index_dir(tmp_path)
    assert loaded.index.hnsw.efSearch == manifest["hnsw"]["ef_search"]  # search setting survives serialisation
    _, ids = loaded.search(vectors[:50], k=1)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.95


def test_ivf_index_meets_its_recall_target_and_loading_keeps_nprobe(tmp_path):
    import faiss

    vectors, chunks = clustered_chunks(4000)
    manifest = write_index_dir(tmp_path, vectors, chunks, MODEL, 1, index_type="ivf", recall_target=0.95)
    ivf = manifest["ivf"]
    assert manifest["index_type"] == "ivf" and ivf["lists"] == 4000 // 39 and ivf["recall_target"] == 0.95
    assert manifest["recall_at_10"] >= 0.95 and manifest["recall_queries"] == 1000
    assert ivf["encoding"] in {"SQ8", "Flat"} and 1 <= ivf["nprobe"] <= ivf["lists"]
    loaded = load_index_dir(tmp_path)
    assert faiss.extract_index_ivf(loaded.index).nprobe == ivf["nprobe"]
    _, ids = loaded.search(vectors[:100], k=1)
    assert (ids[:, 0] == np.arange(100)).mean() >= 0.95


def test_ivf_probes_more_lists_for_a_higher_recall_target(tmp_path):
    vectors, chunks = clustered_chunks(4000)
    loose = write_index_dir(tmp_path / "loose", vectors, chunks, MODEL, 1, index_type="ivf", recall_target=0.3)
    strict = write_index_dir(tmp_path / "strict", vectors, chunks, MODEL, 1, index_type="ivf", recall_target=0.99)
    assert loose["ivf"]["nprobe"] < strict["ivf"]["nprobe"]
    assert 0.3 <= loose["recall_at_10"] < strict["recall_at_10"] and strict["recall_at_10"] >= 0.99


def test_filtered_search_on_ivf_finds_a_document_outside_the_probed_lists(tmp_path):
    from lakerag.search import filters

    vectors, chunks = clustered_chunks(4000)
    write_index_dir(tmp_path, vectors, chunks, MODEL, 1, index_type="ivf", recall_target=0.3)
    loaded = load_index_dir(tmp_path)
    far_doc = chunks["doc_id"][int(np.argmin(vectors @ vectors[0]))]  # least similar to the query
    allowed = filters.allowed_rows(loaded, doc_id=far_doc)
    ids, _ = loaded.dense(vectors[:1], len(allowed), allowed)
    assert sorted(ids.tolist()) == sorted(allowed.tolist())


def test_index_type_follows_the_vector_count(local_settings):
    settings = local_settings.replace(ann_threshold=100, ivf_threshold=1000)
    assert [choose_index_type(n, settings) for n in (100, 101, 1000, 1001)] == ["flat", "hnsw", "hnsw", "ivf"]


# --- publish protocol in the store ------------------------------------------------------------------------

class FailingStore:
    """Wraps a store; the put of one key fails, as a crash mid-upload would."""

    def __init__(self, store, fail_on: str):
        self.store, self.fail_on = store, fail_on

    def put(self, key, data):
        if key.endswith(self.fail_on):
            raise OSError(f"connection reset while uploading {key}")
        self.store.put(key, data)

    def writer(self, key):
        writer = self.store.writer(key)
        if key.endswith(self.fail_on):
            def reset(data):
                raise OSError(f"connection reset while uploading {key}")
            writer.write = reset
        return writer

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_interrupted_upload_never_becomes_current(local_settings, tmp_path):
    store = Lake.open(local_settings).store
    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path / "a", vectors, chunks, MODEL, 1, version="20260101T000000Z-aaaaaaaa")
    assert publish_dir(store, tmp_path / "a") == "20260101T000000Z-aaaaaaaa"
    write_index_dir(tmp_path / "b", vectors[:5], chunks[:5], MODEL, 2, version="20260101T000001Z-bbbbbbbb")
    with pytest.raises(OSError):
        publish_dir(FailingStore(store, "chunks.sqlite"), tmp_path / "b")
    assert read_current(store) == "20260101T000000Z-aaaaaaaa"
    assert published_versions(Lake.open(local_settings).store) == ["20260101T000000Z-aaaaaaaa"]  # b has no manifest: not published
    loaded = load_current(store, tmp_path / "serving", MODEL, 16)
    assert loaded.version == "20260101T000000Z-aaaaaaaa" and loaded.vector_count == 10
    with pytest.raises(IndexRejected, match="incomplete"):
        download_version(store, "20260101T000001Z-bbbbbbbb", tmp_path / "serving" / "b")
    assert not (tmp_path / "serving" / "b").exists()


def test_tampered_file_in_store_is_rejected_and_not_placed(settings, tmp_path):
    store = Lake.open(settings).store
    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path / "v", vectors, chunks, MODEL, 1, version="20260101T000000Z-aaaaaaaa")
    publish_dir(store, tmp_path / "v")
    key = "index/20260101T000000Z-aaaaaaaa/index.faiss"
    data = bytearray(store.get(key))
    data[-1] ^= 0x01
    store.put(key, bytes(data))
    with pytest.raises(IndexRejected, match="index.faiss fails its checksum"):
        load_current(store, tmp_path / "serving", MODEL, 16)
    assert not (tmp_path / "serving" / "20260101T000000Z-aaaaaaaa").exists()
    assert [p.name for p in (tmp_path / "serving").iterdir()] == []  # no temp leftovers


def test_a_large_version_syncs_through_a_bounded_buffer(settings, tmp_path):
    """A sync holds a chunk of each file, not the file: the index-sync container's memory limit
    does not cap the size of the index. A 256 MB index file, published and downloaded (file://
    and S3), raises the downloading process's peak memory by far less than its size."""
    import subprocess
    import sys

    vectors, chunks = random_chunks(10)
    built = tmp_path / "v"
    write_index_dir(built, vectors, chunks, MODEL, 1, version="20260101T000000Z-aaaaaaaa")
    with (built / "index.faiss").open("ab") as padded:  # only the checksums are checked on download
        for _ in range(32):
            padded.write(os.urandom(8 * 2**20))
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["files"]["index.faiss"] = sha256_file(built / "index.faiss")
    (built / "manifest.json").write_text(json.dumps(manifest))
    store = Lake.open(settings).store
    publish_dir(store, built)
    # Peak resident memory (VmHWM, kB) of the process itself: ru_maxrss would carry the forking
    # parent's peak over the exec.
    script = ("import re, sys\n"
              "from pathlib import Path\n"
              "from lakerag.index.publish import download_version\n"
              "from lakerag.store import open_store\n"
              "def peak(): return int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1])\n"
              "store = open_store(sys.argv[1], sys.argv[3])\n"
              "before = peak()\n"
              "download_version(store, '20260101T000000Z-aaaaaaaa', Path(sys.argv[2]))\n"
              "print(peak() - before)\n")
    done = subprocess.run([sys.executable, "-c", script, settings.store_uri, str(tmp_path / "serving" / "a"),
                           settings.aws_endpoint_url], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    growth_mb = int(done.stdout.split()[-1]) / 1024
    assert growth_mb < 64, f"peak memory grew {growth_mb:.0f} MB for a 256 MB file"
    assert sha256_file(tmp_path / "serving" / "a" / "index.faiss") == manifest["files"]["index.faiss"]


def test_download_replaces_a_corrupted_local_copy(local_settings, tmp_path):
    store = Lake.open(local_settings).store
    vectors, chunks = random_chunks(10)
    write_index_dir(tmp_path / "v", vectors, chunks, MODEL, 1, version="20260101T000000Z-aaaaaaaa")
    publish_dir(store, tmp_path / "v")
    dest = download_version(store, "20260101T000000Z-aaaaaaaa", tmp_path / "serving" / "x")
    (dest / "chunks.sqlite").write_bytes(b"garbage")
    dest = download_version(store, "20260101T000000Z-aaaaaaaa", dest)
    assert load_index_dir(dest).vector_count == 10


def test_prune_keeps_newest_and_current(local_settings, tmp_path):
    store = Lake.open(local_settings).store
    vectors, chunks = random_chunks(4)
    names = [f"2026010{i}T000000Z-0000000{i}" for i in range(1, 6)]
    for name in names:
        write_index_dir(tmp_path / name, vectors, chunks, MODEL, 1, version=name)
        publish_dir(store, tmp_path / name)
    store.put("index/CURRENT", names[0].encode())  # an operator rolled back to the oldest
    assert prune(store, keep=2) == names[1:3]
    assert published_versions(Lake.open(local_settings).store) == [names[0], *names[3:]]


# --- run_index end to end (real model) --------------------------------------------------------------------

@pytest.mark.slow
def test_second_run_publishes_nothing_and_changes_are_published(settings, embedder, tmp_path):
    store = Lake.open(settings).store
    docs = synthetic_docs(8)
    first = pipeline(settings, docs)
    assert first["published"] and first["vector_count"] == 24 and first["index_type"] == "flat"
    assert read_current(store) == first["version"]

    again = pipeline(settings, docs)
    assert not again["published"] and "already" in again["reason"]
    assert published_versions(Lake.open(settings).store) == [first["version"]] and read_current(store) == first["version"]

    # deleting a document removes its vectors from the next index
    del docs["raw/doc-00003.txt"]
    after_delete = pipeline(settings, docs)
    assert after_delete["published"] and after_delete["vector_count"] == 21
    assert after_delete["version"] > first["version"]  # names sort chronologically
    loaded = load_current(store, tmp_path / "serving", embedder.name, embedder.dimension)
    assert loaded.version == after_delete["version"]
    assert doc_id_for("raw/doc-00003.txt") not in set(loaded.chunks["doc_id"])
    assert loaded.manifest["gold_version"] == after_delete["gold_version"]

    # the index answers with the right chunk for a query in the model's space
    query = embedder.encode_queries(["sourdough bread fermentation"])
    _, ids = loaded.search(query, k=3)
    assert all("sourdough" in loaded.chunks.loc[i, "text"] for i in ids[0])

    # rollback re-points CURRENT to a complete older version
    rollback(settings, first["version"])
    assert read_current(store) == first["version"]
    assert load_current(store, tmp_path / "serving", embedder.name, 384).vector_count == 24


@pytest.mark.slow
def test_an_old_format_current_is_republished_even_when_nothing_changed(local_settings, embedder, tmp_path):
    store = Lake.open(local_settings).store
    docs = synthetic_docs(3)
    first = pipeline(local_settings, docs)
    # Make CURRENT what an older release published: chunk rows in chunks.parquet.
    old = as_legacy_version(download_version(store, first["version"], tmp_path / "old"))
    prefix = f"index/{first['version']}/"
    store.delete(prefix + "chunks.sqlite")
    for name in ("chunks.parquet", "manifest.json"):
        store.put(prefix + name, (old / name).read_bytes())
    again = run_index(local_settings)
    assert again["published"] and "chunks.parquet" in again["republish_reason"], again
    assert "chunks.sqlite" in load_current(store, tmp_path / "serving", embedder.name).manifest["files"]
    assert not run_index(local_settings)["published"]  # and then nothing more to do


@pytest.mark.slow
def test_a_current_without_chunks_hits_is_republished_with_it(local_settings, embedder, tmp_path):
    """A version published before chunks.hits serves its hits from chunks.sqlite; the next index run
    (the DAG's) publishes it again with the file, so an upgrade needs no --full-rebuild."""
    store = Lake.open(local_settings).store
    first = pipeline(local_settings, synthetic_docs(3))
    prefix = f"index/{first['version']}/"
    manifest = json.loads(store.get(prefix + "manifest.json"))
    del manifest["files"]["chunks.hits"]
    store.delete(prefix + "chunks.hits")
    store.put(prefix + "manifest.json", json.dumps(manifest).encode())
    assert load_current(store, tmp_path / "before", embedder.name).hit_rows is None
    again = run_index(local_settings)
    assert again["published"] and "has no chunks.hits" in again["republish_reason"], again
    served = load_current(store, tmp_path / "serving", embedder.name)
    assert served.hit_rows is not None and served.hit_rows.count == served.vector_count > 0
    assert not run_index(local_settings)["published"]  # and then nothing more to do


@pytest.mark.slow
def test_a_rollback_holds_until_the_lake_changes(local_settings, embedder):
    """The next `pipeline index` (the DAG's next scheduled run) saw gold newer than the rolled-back
    CURRENT and published the version rolled back from again, under a new name: the rollback
    lasted until the next run, with no new data."""
    store = Lake.open(local_settings).store
    docs = synthetic_docs(3)
    first = pipeline(local_settings, docs)
    docs.update(synthetic_docs(1, start=50))
    second = pipeline(local_settings, docs)
    rollback(local_settings, first["version"])

    again = run_index(local_settings)
    assert again["ok"] and not again["published"], again
    assert f"rolled back to {first['version']}" in again["reason"] and second["version"] in again["reason"]
    assert read_current(store) == first["version"]
    assert published_versions(store) == [first["version"], second["version"]]

    docs.update(synthetic_docs(1, start=60))  # new data: published, and served
    third = pipeline(local_settings, docs)
    assert third["published"] and read_current(store) == third["version"] and third["vector_count"] == 15
    forced = run_index(local_settings, force=True)  # --full-rebuild publishes whatever CURRENT is
    assert forced["published"]


def test_a_rollback_while_an_index_run_builds_is_not_undone_by_its_publish(local_settings, embedder, monkeypatch):
    """`index rollback` during an incident does not wait for the DAG's index task in flight, and that
    task then pointed CURRENT at what it built: the rollback was undone seconds after it said done."""
    import lakerag.index.publish as publish_module

    store = Lake.open(local_settings).store
    docs = synthetic_docs(3)
    first = pipeline(local_settings, docs)
    docs.update(synthetic_docs(1, start=50))
    second = pipeline(local_settings, docs)
    docs.update(synthetic_docs(1, start=60))
    write_gold(Lake.open(local_settings), docs)
    assert run_embed(local_settings)["ok"]
    built = publish_module.write_index_dir

    def built_while_someone_rolls_back(*args, **kwargs):
        manifest = built(*args, **kwargs)
        rollback(local_settings, first["version"])
        return manifest

    monkeypatch.setattr(publish_module, "write_index_dir", built_while_someone_rolls_back)
    third = run_index(local_settings)
    assert third["ok"] and not third["published"], third
    assert read_current(store) == first["version"]
    assert f"index/CURRENT changed while this run built its index ({second['version']} -> {first['version']}" \
        in third["reason"]
    assert third["uploaded"] in third["reason"] and published_versions(store)[-1] == third["uploaded"]
    monkeypatch.setattr(publish_module, "write_index_dir", built)
    assert not run_index(local_settings)["published"]  # and the rollback holds after it


@pytest.mark.slow
def test_rollback_refuses_missing_and_tampered_versions(local_settings, embedder):
    store = Lake.open(local_settings).store
    docs = synthetic_docs(3)
    first = pipeline(local_settings, docs)
    docs.update(synthetic_docs(1, start=50))
    second = pipeline(local_settings, docs)
    with pytest.raises(IndexRejected, match="no published index version"):
        rollback(local_settings, "20990101T000000Z-deadbeef")
    key = f"index/{first['version']}/chunks.sqlite"
    store.put(key, store.get(key) + b"x")
    with pytest.raises(IndexRejected, match="checksum"):
        rollback(local_settings, first["version"])
    assert read_current(store) == second["version"]


@pytest.mark.slow
def test_ann_index_above_threshold_records_recall(local_settings, embedder, tmp_path):
    settings = local_settings.replace(ann_threshold=20)
    summary = pipeline(settings, synthetic_docs(12))
    assert summary["index_type"] == "hnsw" and summary["vector_count"] == 36
    manifest = json.loads(Lake.open(settings).store.get(f"index/{summary['version']}/manifest.json"))
    assert manifest["recall_at_10"] == summary["recall_at_10"] and 0.9 <= manifest["recall_at_10"] <= 1.0
    assert manifest["recall_queries"] == 36


@pytest.mark.slow
def test_index_refuses_to_publish_without_vectors_for_the_model(local_settings, embedder):
    pipeline(local_settings, synthetic_docs(2))
    other = local_settings.replace(embedding_model="BAAI/bge-large-en-v1.5")
    summary = run_index(other)
    assert not summary["ok"] and not summary["published"]
    assert "lakerag pipeline embed" in summary["reason"] and summary["missing_vectors"] == 6


def test_a_chunk_gold_holds_twice_is_indexed_once(local_settings, embedder):
    """Runs that overlapped (before the run lock) left chunks twice in gold, and every index
    published from it served them twice: the same passage filled two of the k results."""
    lake = Lake.open(local_settings)
    write_gold(lake, synthetic_docs(3))
    append_copies(lake, "gold", 2)
    assert run_embed(local_settings)["embedded"] == 9
    summary = run_index(local_settings)
    assert summary["published"] and summary["vector_count"] == 9


@pytest.mark.slow
def test_old_versions_are_pruned_to_the_configured_count(local_settings, embedder):
    settings = local_settings.replace(index_keep_versions=2)
    docs = synthetic_docs(2)
    published = []
    for n in range(3):
        docs.update(synthetic_docs(1, start=100 + n))
        published.append(pipeline(settings, docs)["version"])
    assert published_versions(Lake.open(settings).store) == published[1:]
    assert read_current(Lake.open(settings).store) == published[-1]
