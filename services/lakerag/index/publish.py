"""Index versions in the object store: build (`lakerag pipeline index`), publish,
download, list, roll back, prune.

Publish protocol: upload ``index/<version>/{index.faiss, chunks.sqlite, bm25.*}``, then
its ``manifest.json``, then write ``index/CURRENT`` last. A reader that follows
CURRENT therefore always finds a complete version, and a version with a
manifest is complete. Versions are immutable; names sort chronologically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from ..config import Settings
from ..embedding import cap_build_threads
from ..encoder_identity import UNFINISHED, identity_for, same_encoder
from ..lake import CURRENT_KEY, INDEX_PREFIX, Lake, summarises_a_crash
from ..store import NotFound, ObjectStore, StoreError, read_blocks
from .artifacts import (
    CHUNK_COLUMNS,
    HITS_FILE,
    MANIFEST_FILE,
    ROWS_FILE,
    IndexRejected,
    LoadedIndex,
    check_listed,
    checksum_error,
    content_fingerprint,
    load_index_dir,
    new_version_name,
    read_manifest,
    record_verified,
    verified_manifest,
    verify_index_dir,
    write_index_dir,
)

log = logging.getLogger(__name__)
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


# --- pointer and versions --------------------------------------------------------------------------------

def read_current(store: ObjectStore) -> str | None:
    """The served version name, or None before the first publish."""
    try:
        return store.get(CURRENT_KEY).decode("utf-8", "replace").strip() or None
    except NotFound:
        return None


def read_store_manifest(store: ObjectStore, version: str) -> dict | None:
    try:
        return json.loads(store.get(f"{INDEX_PREFIX}{version}/{MANIFEST_FILE}"))
    except NotFound:
        return None


def served_manifest(store: ObjectStore, model: str) -> dict | None:
    """The served version's manifest when it was built for ``model``; None when nothing is
    published, it is another model's, or the store cannot be read (callers go on without it)."""
    try:
        version = read_current(store)
        manifest = read_store_manifest(store, version) if version else None
    except (StoreError, ValueError):
        return None
    return manifest if manifest and manifest.get("model") == model else None


def _version_dirs(store: ObjectStore) -> dict[str, set[str]]:
    """version -> file names under index/<version>/ (complete or not)."""
    found: dict[str, set[str]] = {}
    for info in store.list(INDEX_PREFIX):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2]:
            found.setdefault(parts[1], set()).add(parts[2])
    return found


def describe_versions(settings: Settings) -> list[str]:
    """One line per published version for `lakerag index list`; ``*`` marks CURRENT."""
    store = Lake.open(settings).store
    current = read_current(store)
    lines = []
    for version in published_versions(store):
        manifest = read_store_manifest(store, version) or {}
        # After a rollback: run_index publishes again only once the lake changes.
        newer = "  (newer than CURRENT, which was rolled back: not served)" if current and version > current else ""
        lines.append(f"{'*' if version == current else ' '} {version}  {manifest.get('vector_count', '?'):>8} vectors  "
                     f"{manifest.get('index_type', '?'):5} gold v{manifest.get('gold_version', '?')}  "
                     f"{manifest.get('model', '?')}{newer}")
    if not lines:  # name the store: a shell without LAKERAG_STORE_URI looks at the default one
        where = f"{store.url(INDEX_PREFIX)} (LAKERAG_STORE_URI)"
        return [f"no index versions published yet in {where}: run `lakerag pipeline run`"]
    return lines


def published_versions(store: ObjectStore) -> list[str]:
    """Published versions (those with a manifest), oldest first."""
    return sorted(v for v, files in _version_dirs(store).items() if MANIFEST_FILE in files)


def resolve_version(store: ObjectStore, name: str) -> str:
    """The published version ``name`` stands for: a full name, ``current``, ``previous`` (published
    just before CURRENT) or a unique prefix of the name or of its fingerprint; IndexRejected otherwise."""
    published = published_versions(store)
    if name in published:
        return name
    listing = "`lakerag index list` shows them"
    if name.lower() in ("current", "previous"):
        current = read_current(store)
        if current is None or not published:
            raise IndexRejected(f"no index version published yet in {store.uri}: run `lakerag pipeline run`")
        if name.lower() == "current":
            return current
        older = [v for v in published if v < current]
        if not older:
            raise IndexRejected(f"no version published before CURRENT ({current}) is retained; {listing}")
        return older[-1]
    matches = [v for v in published if v.startswith(name) or v.partition("-")[2].startswith(name)]
    if len(matches) > 1:
        raise IndexRejected(f"{name!r} matches {len(matches)} versions ({', '.join(matches)}): give more of the name")
    if not matches:
        raise IndexRejected(f"no published index version {name!r} in {store.uri} (never published, pruned, or not "
                            f"finished); versions: {', '.join(published) or 'none'}; {listing}")
    return matches[0]


class CurrentMoved(Exception):
    """CURRENT changed while a run built its version (a rollback meanwhile): the version is uploaded,
    CURRENT is left as the operator set it."""

    def __init__(self, version: str, was: str | None, now: str | None):
        super().__init__(f"index/CURRENT changed while this run built its index ({was} -> {now}: a rollback?): "
                         f"uploaded {version} but left CURRENT as it is (`lakerag index rollback {version}` serves it)")
        self.version, self.now = version, now


_UNCHECKED = object()


def publish_dir(store: ObjectStore, local_dir, replacing: str | None | object = _UNCHECKED) -> str:
    """Upload a verified version directory, then point CURRENT at it; return the version. With
    ``replacing`` (the CURRENT the caller decided against), raise CurrentMoved instead of switching
    when CURRENT no longer names it."""
    local_dir = Path(local_dir)
    manifest = verify_index_dir(local_dir)
    version = manifest["version"]
    prefix = f"{INDEX_PREFIX}{version}/"
    if store.exists(prefix + MANIFEST_FILE):
        raise ValueError(f"index version {version} is already published; versions are immutable")
    for name in manifest["files"]:
        _upload(store, prefix + name, local_dir / name)
    store.put(prefix + MANIFEST_FILE, (local_dir / MANIFEST_FILE).read_bytes())  # marks the version complete
    if replacing is not _UNCHECKED and (now := read_current(store)) != replacing:  # a rollback's window: this look
        raise CurrentMoved(version, replacing, now)
    store.put(CURRENT_KEY, version.encode())  # last: readers switch only now
    log.info("published index %s (%s vectors) to %s", version, manifest["vector_count"], store.url(prefix))
    return version


def download_version(store: ObjectStore, version: str, dest_dir) -> Path:
    """Copy one version into ``dest_dir`` (its final directory) and return it.

    Files land in a temp directory beside ``dest_dir``, are verified, and only
    then renamed into place, so ``dest_dir`` is either absent or complete. An
    already verified copy is reused.
    """
    if not VERSION_NAME.fullmatch(version):
        raise IndexRejected(f"index/CURRENT names {version[:80]!r}, which is not a version name; roll back "
                            "(`lakerag index rollback VERSION`) or publish again (`lakerag pipeline index`)")
    dest = Path(dest_dir)
    if dest.is_dir():
        try:
            if verified_manifest(dest)["version"] == version:
                return dest
        except IndexRejected as exc:
            log.warning("replacing local copy %s: %s", dest, exc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.download-"))
    try:
        prefix = f"{INDEX_PREFIX}{version}/"
        manifest_bytes = _fetch(store, prefix + MANIFEST_FILE,
                                f"index version {version} has no {MANIFEST_FILE} in {store.url(prefix)}: it does not "
                                "exist or its upload is incomplete; `lakerag index list` shows published versions")
        (tmp / MANIFEST_FILE).write_bytes(manifest_bytes)
        manifest = read_manifest(tmp)
        if manifest.get("version") != version:
            raise IndexRejected(f"manifest under index/{version}/ names another version; republish the index")
        check_listed(tmp, manifest)
        # Each file streams to disk and is hashed on the way (memory: one chunk, whatever the index's size).
        for name, expected in manifest["files"].items():
            if "/" in name or name in {"", ".", "..", MANIFEST_FILE}:
                raise IndexRejected(f"manifest of {version} lists an invalid file name {name!r}")
            actual = fetch_to(store, prefix + name, tmp / name,
                              f"index version {version} lacks {name} in the store: the version is incomplete; roll "
                              "back or republish (`lakerag pipeline index --full-rebuild`)")
            if actual != expected:
                raise checksum_error(tmp / name, actual, expected)
        record_verified(tmp, manifest)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return dest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fetch(store: ObjectStore, key: str, missing: str) -> bytes:
    try:
        return store.get(key)
    except NotFound:
        raise IndexRejected(missing) from None


def fetch_to(store: ObjectStore, key: str, path: Path, missing: str) -> str:
    """Stream one object into ``path``; the sha256 of what was written. IndexRejected(``missing``)
    when there is no such object."""
    digest = hashlib.sha256()
    try:
        with store.reader(key) as source, path.open("wb") as out:
            for chunk in read_blocks(source):
                digest.update(chunk)
                out.write(chunk)
    except NotFound:
        raise IndexRejected(missing) from None
    return digest.hexdigest()


def _upload(store: ObjectStore, key: str, path: Path) -> None:
    """Stream one file to the store (an S3 multipart upload for a large one)."""
    writer = store.writer(key)
    try:
        with path.open("rb") as source:
            for chunk in read_blocks(source):
                writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def load_current(store: ObjectStore, dest_root, expected_model: str | None = None,
                 expected_dimension: int | None = None) -> LoadedIndex | None:
    """Download (if needed), verify and load what CURRENT names; None before the first publish."""
    version = read_current(store)
    if version is None:
        return None
    path = download_version(store, version, Path(dest_root) / version)
    return load_index_dir(path, expected_model, expected_dimension)


def rollback(settings: Settings, name: str) -> str:
    """Point CURRENT at an older (or newer) published version after verifying it is complete and intact;
    return its full name (``name`` may be any that resolve_version takes)."""
    store = Lake.open(settings).store
    version = resolve_version(store, name)
    with tempfile.TemporaryDirectory(prefix="lakerag-rollback-") as tmp:
        manifest = verified_manifest(download_version(store, version, Path(tmp) / version))
    if manifest["model"] != settings.embedding_model:
        raise IndexRejected(f"version {version} was built with model {manifest['model']!r} but "
                            f"LAKERAG_EMBEDDING_MODEL is {settings.embedding_model!r}: the API would refuse it; "
                            "set LAKERAG_EMBEDDING_MODEL to that model for the API and this command first")
    store.put(CURRENT_KEY, version.encode())
    log.info("index/CURRENT now points to %s", version)
    return version


def prune(store: ObjectStore, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the CURRENT one); return what was deleted."""
    current = read_current(store)
    versions = _version_dirs(store)
    names = sorted(versions)
    keep_set = set(names[-keep:]) if keep > 0 else set()
    deleted = []
    for name in names:
        if name in keep_set or name == current:
            continue
        prefix = f"{INDEX_PREFIX}{name}/"
        # Manifest first: a half-deleted version then reads as incomplete, never as valid.
        for file in sorted(versions[name], key=lambda f: f != MANIFEST_FILE):
            store.delete(prefix + file)
        deleted.append(name)
    return deleted


def _next_version(store: ObjectStore, fingerprint: str) -> str:
    """A new name that sorts after every existing version, even within the same second."""
    now = datetime.now(UTC).replace(microsecond=0)
    existing = sorted(_version_dirs(store))
    if existing:
        try:
            latest = datetime.strptime(existing[-1][:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            if now <= latest:
                now = latest + timedelta(seconds=1)
        except ValueError:
            pass
    return new_version_name(fingerprint, now)


# --- build ------------------------------------------------------------------------------------------------

# The build side below reads Delta tables (deltalake, pyarrow, pandas: the lake extra); they are
# imported there, so the API (sync, replay) imports this module without them.

def _source_versions(lake: Lake) -> dict[str, str]:
    """raw key -> source version (ETag or size-mtime) that bronze last extracted."""
    from ..lake import tables

    bronze = tables.snapshot(lake, "bronze")
    if bronze is None:
        return {}
    table = bronze.arrow(["key", "source_version"])
    return dict(zip(table.column("key").to_pylist(), table.column("source_version").to_pylist()))


def load_index_inputs(lake: Lake, model: str) -> tuple[np.ndarray, object, int, int | None, int]:
    """Gold chunk rows with their vectors of ``model``, in a stable order.

    Returns (vectors, chunks DataFrame, gold version, embeddings version, chunks without a vector).
    """
    import pyarrow.compute as pc

    from ..lake import tables

    gold = tables.snapshot(lake, "gold")
    embeddings = tables.snapshot(lake, "embeddings")
    # a chunk gold holds twice (runs that overlapped, before the run lock) is served once
    chunks = gold.pandas([*CHUNK_COLUMNS, "content_hash"]).drop_duplicates("chunk_id")
    chunks["source_version"] = chunks["source"].map(_source_versions(lake)).astype(object)
    chunks = chunks.sort_values(["source", "chunk_index", "chunk_id"], kind="stable").reset_index(drop=True)
    for column in ("chunk_index", "page"):
        chunks[column] = chunks[column].astype("Int32")
    dimension = 0
    vectors = np.zeros((len(chunks), 0), dtype=np.float32)
    found = np.zeros(len(chunks), dtype=bool)
    if embeddings is not None and len(chunks):
        table = tables.model_rows(embeddings, model, ["chunk_id", "dimension", "vector"])
        if table.num_rows:
            dimension = int(table.column("dimension")[0].as_py())
            flat = pc.list_flatten(table.column("vector")).to_numpy()
            all_vectors = flat.astype(np.float32, copy=False).reshape(table.num_rows, dimension)
            row_of = {cid: i for i, cid in enumerate(table.column("chunk_id").to_pylist())}
            rows = np.array([row_of.get(cid, -1) for cid in chunks["chunk_id"]], dtype=np.int64)
            found = rows >= 0
            vectors = all_vectors[np.where(found, rows, 0)]
    return vectors, chunks, gold.version, (embeddings.version if embeddings else None), int((~found).sum())


def choose_index_type(count: int, settings: Settings) -> str:
    """Exact search while it is cheap, HNSW in the middle, IVF past the size where HNSW's
    memory (~1.8 KB per 384-d vector) and build time dominate (docs/scaling.md)."""
    if count > settings.ivf_threshold:
        return "ivf"
    return "hnsw" if count > settings.ann_threshold else "flat"


def _verified_manifest(store: ObjectStore, version: str) -> dict | None:
    """The manifest of ``version`` when its files verify, else None (then the index is published again:
    readers cannot use what CURRENT names)."""
    try:
        with tempfile.TemporaryDirectory(prefix="lakerag-verify-") as tmp:
            return verified_manifest(download_version(store, version, Path(tmp) / "v"))
    except IndexRejected as exc:
        log.error("index/CURRENT names %s, which does not verify: %s", version, exc)
        return None


@summarises_a_crash("index")
def run_index(settings: Settings, force: bool = False) -> dict:
    """Build an index of the current model's vectors over gold and publish it, unless
    CURRENT already serves exactly that (then say so and publish nothing)."""
    from ..lake import tables

    started = time.perf_counter()
    lake = Lake.open(settings)
    store = lake.store
    model = settings.embedding_model
    summary: dict = {"title": "pipeline index", "ok": True, "model": model, "published": False}

    def finish(**fields) -> dict:
        summary.update(fields)
        summary["seconds"] = round(time.perf_counter() - started, 2)
        lake.write_run_summary("index", summary)
        return summary

    lake.mark_run_started("index")  # its summary clears this; status reports a killed run
    current = read_current(store)
    current_manifest = _verified_manifest(store, current) if current else None
    if current and current_manifest is None:
        summary["republish_reason"] = f"index/CURRENT names {current}, which does not verify: publishing again"
    elif current_manifest is not None and ROWS_FILE not in current_manifest["files"]:
        # Published before chunks.sqlite: an API without pyarrow cannot read its chunk rows.
        summary["republish_reason"] = f"index/CURRENT ({current}) keeps its chunk rows in the old chunks.parquet " \
                                      f"format: publishing it again with {ROWS_FILE}"
        current_manifest = None
    elif current_manifest is not None and HITS_FILE not in current_manifest["files"]:
        # Published before chunks.hits: served from chunks.sqlite, ~0.15 ms slower a search.
        summary["republish_reason"] = f"index/CURRENT ({current}) has no {HITS_FILE} (the rows search responses " \
                                      "splice in): publishing it again with it"
        current_manifest = None
    gold = tables.snapshot(lake, "gold")
    if gold is None:
        return finish(reason="no gold table yet: run `lakerag pipeline etl` first", current=current)
    embeddings = tables.snapshot(lake, "embeddings")
    gold_version, embeddings_version = gold.version, (embeddings.version if embeddings else None)
    made_by = lake.read_embeddings_encoder(model)
    if made_by and made_by.get("runtime") == UNFINISHED:
        return finish(ok=False, current=current, gold_version=gold_version,
                      reason=f"an embed run that embeds every chunk of {model} again for another encoder has not "
                             "finished, so its vectors are of two encoders: run `lakerag pipeline embed` to the end first")
    # An embed run that found its new encoder makes the stored vectors again changed no row: the
    # index is published again all the same, under the encoder the lake now records.
    built_by = (current_manifest or {}).get("encoder")
    recorded_since = bool(made_by and built_by) and not same_encoder(built_by, made_by)
    same_inputs = bool(current_manifest) and current_manifest.get("model") == model and \
        current_manifest.get("gold_version") == gold_version and \
        current_manifest.get("embeddings_version") == embeddings_version and not recorded_since
    if same_inputs and not force:
        return finish(reason=f"index/CURRENT ({current}) already reflects gold version {gold_version} and "
                             f"embeddings version {embeddings_version} of {model}", current=current,
                      gold_version=gold_version, vector_count=current_manifest.get("vector_count"))
    newest = (published_versions(store) or [None])[-1]
    rolled_back = current_manifest is not None and newest is not None and newest != current  # CURRENT verifies
    newest_manifest = read_store_manifest(store, newest) if rolled_back else None
    if newest_manifest and not force and newest_manifest.get("model") == model and \
            newest_manifest.get("gold_version") == gold_version and \
            newest_manifest.get("embeddings_version") == embeddings_version:
        # A rollback holds until the lake changes: publishing the version rolled back from again undoes it.
        return finish(reason=f"index/CURRENT was rolled back to {current}; the newest version, {newest}, already "
                             f"reflects gold version {gold_version}: not publishing it again until the lake changes "
                             f"(`lakerag index rollback {newest}` serves it; --full-rebuild publishes anyway)",
                      current=current, gold_version=gold_version, vector_count=current_manifest.get("vector_count"))

    vectors, chunks, gold_version, embeddings_version, missing = load_index_inputs(lake, model)
    if missing:
        return finish(ok=False, gold_version=gold_version, missing_vectors=missing, current=current,
                      reason=f"{missing} of {len(chunks)} gold chunks have no {model} vector: run "
                             "`lakerag pipeline embed` first (with the same LAKERAG_EMBEDDING_MODEL)")
    if not len(chunks):
        if not (current_manifest and current_manifest.get("model") == model):
            return finish(gold_version=gold_version, current=current, reason="gold is empty: nothing to index")
        # Everything was deleted: publish an empty index so readers stop serving old chunks.
        vectors = np.zeros((0, int(current_manifest["dimension"])), dtype=np.float32)
    fingerprint = content_fingerprint(vectors, chunks, model)
    # The encoder that made the vectors, as the embeddings run recorded it: this pod's own export may
    # be another (an int8 one on its cache). Lakes embedded before the record: this pod's encoder.
    encoder = made_by or identity_for(settings)
    # The same vectors re-embedded by another encoder (an export of other bytes that computes the
    # same): published again under its name, or an API holding that encoder would refuse the index.
    if not force and current_manifest and current_manifest.get("model") == model and \
            current_manifest.get("content_sha256") == fingerprint and \
            same_encoder(current_manifest.get("encoder") or encoder, encoder):
        return finish(reason=f"index/CURRENT ({current}) already serves identical content (gold version "
                             f"{current_manifest.get('gold_version')}); nothing to publish", current=current,
                      gold_version=gold_version, vector_count=len(chunks))

    cap_build_threads()
    index_type = choose_index_type(len(vectors), settings)
    with tempfile.TemporaryDirectory(prefix="lakerag-index-") as tmp:
        manifest = write_index_dir(tmp, vectors, chunks, model, gold_version, index_type=index_type,
                                   version=_next_version(store, fingerprint),
                                   extra={"embeddings_version": embeddings_version,
                                          "encoder": encoder},
                                   recall_target=settings.ann_recall_target)
        try:
            version = publish_dir(store, tmp, replacing=current)
        except CurrentMoved as moved:
            log.warning("%s", moved)
            return finish(reason=str(moved), uploaded=moved.version, current=moved.now,
                          gold_version=gold_version, vector_count=manifest["vector_count"])
    pruned = prune(store, settings.index_keep_versions)
    result = {"published": True, "version": version, "previous": current, "index_type": index_type,
              "vector_count": manifest["vector_count"], "dimension": manifest["dimension"],
              "gold_version": gold_version, "embeddings_version": embeddings_version, "pruned": pruned}
    if "recall_at_10" in manifest:
        result.update(recall_at_10=manifest["recall_at_10"], recall_queries=manifest["recall_queries"])
    if "ivf" in manifest:
        result["ivf"] = manifest["ivf"]
    return finish(**result)
