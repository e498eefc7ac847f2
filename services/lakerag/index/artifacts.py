"""One index version on local disk: build, write, verify, load.

A version directory holds ``index.faiss`` (inner product over L2-normalised
vectors), ``chunks.sqlite`` (row i = FAISS id i, ``rows.py``), the same rows as ready JSON for
search responses (``chunks.hits``, ``hit_rows.py``) and ``manifest.json``, which
names the model, dimension, gold version and the SHA-256 of every file.
Verification checks the checksums before anything is deserialised; loading refuses a
version built with another model than the caller's. Writing takes a pandas frame (the
publisher has one); loading needs neither pandas nor pyarrow, except for versions
published before ``chunks.sqlite`` (``chunks.parquet``), which are read where pyarrow is
installed and otherwise refused with what to run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from ..store import write_blocks
from .errors import IndexRejected
from .hit_rows import HITS_FILE, HitRows, write_hit_rows
from .huge_pages import Schedule, use_huge_pages, use_huge_pages_soon
from .lexical import load_lexical, write_lexical
from .loaded import LoadedIndex
from .rows import ROW_FIELDS, ROWS_FILE, ChunkRows, write_rows

FORMAT = 1
INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.parquet"  # chunk rows of versions published before chunks.sqlite (read, never written)
MANIFEST_FILE = "manifest.json"
VERIFIED_STAMP = ".verified.json"  # local only (never listed or published): what the last verification saw
REPUBLISH = "republish the index (`lakerag pipeline index --full-rebuild`)"  # what to do about a broken version
CHUNK_COLUMNS = ("chunk_id", "doc_id", "chunk_index", "text", "source", "title", "page")
# Lineage of each chunk (the raw object's source version and the document's content hash):
# written when the chunks carry them; versions built before lineage lack them.
LINEAGE_COLUMNS = ("source_version", "content_hash")


def chunk_columns(chunks) -> list[str]:
    """The columns an index version keeps of ``chunks``: CHUNK_COLUMNS plus the lineage ones present."""
    return [*CHUNK_COLUMNS, *(c for c in LINEAGE_COLUMNS if c in chunks.columns)]
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
RECALL_SAMPLE = 1000
RECALL_K = 10
RECALL_TARGET = 0.95
IVF_TRAIN_PER_LIST = 50  # k-means points per list (FAISS warns under 39)
IVF_KMEANS_ITERATIONS = 10  # coarse lists need no converged k-means; FAISS's 25 costs 2.5x the training
IVF_ENCODINGS = ("SQ8", "Flat")  # 8-bit codes first (1/4 of the memory); full vectors when SQ8 misses the target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_fingerprint(vectors: np.ndarray, chunks, model: str) -> str:
    """SHA-256 of what an index serves (model, vectors, chunk rows), independent of
    how FAISS or Parquet serialise it: equal fingerprints mean an identical index."""
    digest = hashlib.sha256()
    digest.update(f"{model}\x1f{vectors.shape[1] if vectors.ndim == 2 else 0}\x1f".encode())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    frame = chunks.loc[:, chunk_columns(chunks)]
    digest.update(frame.to_json(orient="values", force_ascii=False).encode())
    return digest.hexdigest()


def new_version_name(fingerprint: str, now: datetime | None = None) -> str:
    """``20261127T090000Z-1a2b3c4d``: sorts chronologically, names the content."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


def build_faiss(vectors: np.ndarray, index_type: str = "flat",
                recall_target: float = RECALL_TARGET) -> tuple[faiss.Index, dict]:
    """An inner-product index over ``vectors``; for HNSW and IVF also its recall@10 against exact search."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatIP(dimension)
        index.add(vectors)
        return index, {}
    started = time.perf_counter()
    if index_type == "ivf":
        index, info = build_ivf(vectors, recall_target)
        info["build_seconds"] = round(time.perf_counter() - started, 2)
        return index, info
    if index_type != "hnsw":
        raise ValueError(f"unknown index type {index_type!r}: use 'flat', 'hnsw' or 'ivf'")
    index = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    index.hnsw.efSearch = HNSW_EF_SEARCH  # serialised with the index
    info = {"hnsw": {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH},
            "build_seconds": round(time.perf_counter() - started, 2)}
    info.update(measure_recall(index, vectors))
    return index, info


def ivf_list_count(count: int) -> int:
    """Inverted lists for ``count`` vectors: about 4·sqrt(n), with enough training points per list."""
    return max(1, min(int(4 * np.sqrt(count)), count // 39))


def build_ivf(vectors: np.ndarray, recall_target: float = RECALL_TARGET) -> tuple[faiss.Index, dict]:
    """An IVF index whose nprobe is the smallest power of two meeting ``recall_target``
    (recall@10 against exact search over sampled indexed vectors).

    The coarse quantizer is trained by k-means on a seeded sample; 8-bit scalar codes are
    tried first and full vectors (IVF-Flat) only when the codes cannot reach the target.
    """
    count, dimension = vectors.shape
    lists = ivf_list_count(count)
    rng = np.random.default_rng(0)
    train = vectors[np.sort(rng.choice(count, size=min(count, IVF_TRAIN_PER_LIST * lists), replace=False))]
    queries, truth = recall_probe(vectors)
    quantizer = faiss.IndexFlatIP(dimension)
    recall, nprobe, index, encoding = 0.0, lists, None, IVF_ENCODINGS[-1]
    for encoding in IVF_ENCODINGS:
        if encoding == "SQ8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dimension, lists, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dimension, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_KMEANS_ITERATIONS
        index.train(train)  # k-means runs once: a trained quantizer is reused
        index.add(vectors)
        for nprobe in powers_of_two_up_to(lists):
            index.nprobe = nprobe  # serialised with the index
            recall = recall_of(index, queries, truth)
            if recall >= recall_target:
                break
        if recall >= recall_target:
            break
    return index, {"ivf": {"lists": lists, "nprobe": nprobe, "encoding": encoding, "train_vectors": len(train),
                           "recall_target": recall_target},
                   f"recall_at_{RECALL_K}": round(recall, 4), "recall_queries": len(queries)}


def powers_of_two_up_to(limit: int) -> list[int]:
    values = [1]
    while values[-1] < limit:
        values.append(min(limit, values[-1] * 2))
    return values


def recall_probe(vectors: np.ndarray, sample: int = RECALL_SAMPLE, k: int = RECALL_K) -> tuple[np.ndarray, np.ndarray]:
    """Seeded sample of the indexed vectors as queries (a rebuild measures the same ones) and
    their exact top-k ids."""
    rng = np.random.default_rng(0)
    picks = rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    queries = vectors[picks]
    _, truth = faiss.knn(queries, vectors, min(k, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
    return queries, truth


def recall_of(index: faiss.Index, queries: np.ndarray, truth: np.ndarray) -> float:
    _, found = index.search(queries, truth.shape[1])
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist()))
    return hits / truth.size


def measure_recall(index: faiss.Index, vectors: np.ndarray, sample: int = RECALL_SAMPLE, k: int = RECALL_K) -> dict:
    """recall@k of ``index`` against exact inner-product search over sampled indexed vectors."""
    if min(k, len(vectors)) == 0:
        return {f"recall_at_{RECALL_K}": None, "recall_queries": 0}
    queries, truth = recall_probe(vectors, sample, k)
    return {f"recall_at_{RECALL_K}": round(recall_of(index, queries, truth), 4), "recall_queries": len(queries)}


def write_index_dir(path, vectors: np.ndarray, chunks, model: str, gold_version: int,
                    index_type: str = "flat", version: str | None = None, extra: dict | None = None,
                    lexical: bool = True, recall_target: float = RECALL_TARGET) -> dict:
    """Write one version (index.faiss, chunks.sqlite, chunks.hits, the BM25 files, manifest.json last) into
    ``path``; return the manifest.

    Row i of ``chunks`` (a pandas DataFrame) describes vector i. ``extra`` adds keys to the manifest
    (e.g. the embeddings table version it was built from). ``lexical=False``
    writes a dense-only version (as releases before hybrid search did).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(chunks):
        raise ValueError(f"need one vector per chunk row: vectors {vectors.shape}, {len(chunks)} chunk rows")
    missing = [c for c in CHUNK_COLUMNS if c not in chunks.columns]
    if missing:
        raise ValueError(f"chunks lack columns {missing}; need {list(CHUNK_COLUMNS)}")
    chunks = chunks.loc[:, chunk_columns(chunks)].reset_index(drop=True)
    fingerprint = content_fingerprint(vectors, chunks, model)
    index, info = build_faiss(vectors, index_type, recall_target)
    write_faiss(index, path / INDEX_FILE)
    columns = plain_columns(chunks)
    write_rows(path / ROWS_FILE, columns)
    write_hit_rows(path / HITS_FILE, columns)
    lexical_section = None
    if lexical:
        lexical_section = write_lexical(path, chunks["text"].tolist())
    manifest = {
        "format": FORMAT,
        "version": version or new_version_name(fingerprint),
        "model": model,
        "dimension": int(vectors.shape[1]),
        "metric": "inner_product",
        "normalized": True,
        "index_type": index_type,
        "vector_count": int(index.ntotal),
        "gold_version": int(gold_version),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "content_sha256": fingerprint,
        **info,
        **(extra or {}),
        **({"lexical": lexical_section} if lexical_section else {}),
        "files": {name: sha256_file(path / name)
                  for name in (INDEX_FILE, ROWS_FILE, HITS_FILE, *(lexical_section or {}).get("files", ()))},
    }
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def write_faiss(index, path: Path) -> None:
    """``faiss.write_index`` in ``WRITE_BLOCK_BYTES`` writes: FAISS's own file writer hands the whole
    vector array to one ``fwrite`` (a 100k x 384 index: 1.4 s here against 0.05 s in blocks)."""
    with open(path, "wb") as out:
        faiss.write_index(index, faiss.PyCallbackIOWriter(lambda data: write_blocks(out, data) or len(data)))


def plain_columns(chunks) -> dict[str, list]:
    """``ROW_FIELDS`` of a chunk frame as plain Python lists: ints, str, None for missing values
    (pandas' NaN/NA) and for an empty title; lineage columns the frame lacks are all None."""
    import pandas

    def plain(value):
        return None if value is None or value is pandas.NA or (isinstance(value, float) and math.isnan(value)) \
            else value

    count = len(chunks)
    columns = {name: [plain(v) for v in chunks[name].tolist()] if name in chunks.columns else [None] * count
               for name in ROW_FIELDS}
    columns["chunk_index"] = [int(v) for v in columns["chunk_index"]]
    columns["page"] = [None if v is None else int(v) for v in columns["page"]]
    columns["title"] = [v or None for v in columns["title"]]
    return columns


def rows_file(manifest: dict) -> str:
    """The chunk rows file a manifest lists: chunks.sqlite, or chunks.parquet for older versions."""
    files = manifest["files"]
    if ROWS_FILE in files or CHUNKS_FILE not in files:
        return ROWS_FILE
    return CHUNKS_FILE


def read_manifest(path) -> dict:
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise IndexRejected(f"{path} has no {MANIFEST_FILE}: the version is incomplete; sync it again "
                            "(`lakerag index sync --once`)") from None
    except (OSError, ValueError) as exc:
        raise IndexRejected(f"{path / MANIFEST_FILE} is unreadable ({exc}); sync the version again") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise IndexRejected(f"{path / MANIFEST_FILE} is not a format-{FORMAT} LakeRAG manifest; rebuild the index "
                            "with this release (`lakerag pipeline index --full-rebuild`)")
    return manifest


def check_listed(path: Path, manifest: dict) -> None:
    """The manifest lists every file a version needs (FAISS, chunk rows, the BM25 files it names)."""
    for name in (INDEX_FILE, rows_file(manifest), *(manifest.get("lexical") or {}).get("files", ())):
        if name not in manifest["files"]:
            raise IndexRejected(f"manifest of {path} does not list {name}; republish the index")


def checksum_error(file: Path, actual: str, expected: str) -> IndexRejected:
    return IndexRejected(f"{file} fails its checksum (sha256 {actual[:12]}…, manifest says {expected[:12]}…): "
                         "the file is corrupt or was modified; sync the version again or roll back "
                         "(`lakerag index rollback VERSION`)")


def verify_index_dir(path) -> dict:
    """Check that every file the manifest lists is present with its SHA-256; return the manifest.
    Records what it verified (``record_verified``) so that loading the same files need not hash again."""
    path = Path(path)
    manifest = read_manifest(path)
    check_listed(path, manifest)
    for name in manifest["files"]:
        if not (path / name).is_file():
            raise IndexRejected(f"{path / name} is missing: the version is incomplete; sync it again")
    names = list(manifest["files"])
    # hashlib releases the GIL: the files are hashed in parallel, one per core.
    with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1) or 1) as pool:
        actual = dict(zip(names, pool.map(lambda name: sha256_file(path / name), names)))
    for name, expected in manifest["files"].items():
        if actual[name] != expected:
            raise checksum_error(path / name, actual[name], expected)
    record_verified(path, manifest)
    return manifest


def record_verified(path: Path, manifest: dict) -> None:
    """Note (``VERIFIED_STAMP``) the size, mtime and inode of the files whose checksums were just checked."""
    try:
        (path / VERIFIED_STAMP).write_text(json.dumps(_file_stats(path, manifest)))
    except OSError:
        pass  # a read-only copy: the next load hashes again


def _file_stats(path: Path, manifest: dict) -> dict[str, list[int]]:
    stats = {}
    for name in (MANIFEST_FILE, *manifest["files"]):
        info = (path / name).stat()
        stats[name] = [info.st_size, info.st_mtime_ns, info.st_ino]
    return stats


def verified_manifest(path) -> dict:
    """The manifest of a version directory, hashing its files only when they are not exactly
    (size, mtime, inode) the ones a verification recorded: a sync verifies what it downloads, and
    loading it (or restarting over the same copy) then costs no second pass over every byte."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
        if json.loads((path / VERIFIED_STAMP).read_text()) == _file_stats(path, manifest):
            return manifest
    except (OSError, ValueError, IndexRejected):
        pass
    return verify_index_dir(path)


def check_model(manifest: dict, expected_model: str | None, expected_dimension: int | None) -> None:
    model, dimension = manifest.get("model"), int(manifest.get("dimension", -1))
    if (expected_model is None or model == expected_model) and \
            (expected_dimension is None or dimension == expected_dimension):
        return
    loaded = expected_model or "the loaded model"
    raise IndexRejected(
        f"index {manifest.get('version')} was built with model {model!r} (dimension {dimension}), but this "
        f"process uses {loaded!r} (dimension {expected_dimension if expected_dimension is not None else '?'}). "
        f"Rebuild the index for this model (LAKERAG_EMBEDDING_MODEL={expected_model or '...'} "
        f"`lakerag pipeline run`), or set LAKERAG_EMBEDDING_MODEL={model} for this service."
    )


def read_rows(path: Path, manifest: dict) -> ChunkRows:
    """The chunk rows of a verified version directory."""
    if rows_file(manifest) == ROWS_FILE:
        try:
            return ChunkRows.open(path / ROWS_FILE)
        except sqlite3.DatabaseError as exc:
            raise IndexRejected(f"{path / ROWS_FILE} cannot be read ({exc}); {REPUBLISH}") from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise IndexRejected(
            f"index {manifest.get('version')} keeps its chunk rows in {CHUNKS_FILE} (published by an older release); "
            f"this process reads {ROWS_FILE} and has no pyarrow to read the old file. Republish the index with this "
            "release (`lakerag pipeline index`; it republishes an old-format CURRENT even when nothing changed)"
        ) from None
    return ChunkRows.in_memory(plain_columns(pq.read_table(path / CHUNKS_FILE).to_pandas()))


def read_hit_rows(path: Path, manifest: dict) -> HitRows | None:
    """The ready JSON rows of a verified version directory; None for versions written before them."""
    if HITS_FILE not in manifest["files"]:
        return None
    try:
        hit_rows = HitRows(path / HITS_FILE)
    except ValueError as exc:
        raise IndexRejected(f"{exc}; {REPUBLISH}") from None
    if hit_rows.count != int(manifest["vector_count"]):
        raise IndexRejected(f"{path / HITS_FILE} holds {hit_rows.count} rows, manifest says {manifest['vector_count']}; "
                            f"{REPUBLISH}")
    return hit_rows


def load_index_dir(path, expected_model: str | None = None, expected_dimension: int | None = None,
                   huge_pages_later: bool = False, schedule: Schedule | None = None) -> LoadedIndex:
    """Verify (``verified_manifest``) and load one version directory; IndexRejected when it must not be served.
    ``huge_pages_later``: return before the vectors are collapsed into huge pages (``use_huge_pages_soon``,
    its steps run by ``schedule``)."""
    path = Path(path)
    manifest = verified_manifest(path)
    check_model(manifest, expected_model, expected_dimension)
    index = faiss.read_index(str(path / INDEX_FILE))
    if manifest.get("index_type") == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(manifest["ivf"]["nprobe"])  # the manifest's measured choice
    chunks = read_rows(path, manifest)
    count = int(manifest.get("vector_count", -1))
    if index.ntotal != count or chunks.count != count or index.d != int(manifest["dimension"]):
        raise IndexRejected(f"{path}: index holds {index.ntotal} vectors of dimension {index.d} and "
                            f"{chunks.count} chunk rows, manifest says {count} of dimension {manifest['dimension']}; "
                            f"{REPUBLISH}")
    hit_rows = read_hit_rows(path, manifest)
    lexical = None
    if manifest.get("lexical"):
        lexical = load_lexical(path, manifest["lexical"], count)
    if huge_pages_later:  # last: the collapse slows the page faults of anything loading beside it
        use_huge_pages_soon(index, schedule)
    else:
        use_huge_pages(index)
    return LoadedIndex(version=manifest["version"], manifest=manifest, index=index, chunk_rows=chunks, path=path,
                       lexical=lexical, hit_rows=hit_rows)
