"""`lakerag backup DEST_URI` and `lakerag restore SRC_URI`: the lake and the index, store to store.

A backup copies ``raw/`` (the user's files), ``lake/`` (every Delta table: data files and
``_delta_log``) and ``index/`` (the retained versions and ``CURRENT``) to another store
(file:// or s3://, either way). Every object is read, hashed (SHA-256), written and read
back to check the hash. ``_backup/catalog.json`` at the destination, written last, lists
the objects of the snapshot with their hash, size and source version; a second backup
copies only objects whose source version changed (incremental) and never deletes
anything at the destination (a backup taken after a loss cannot wipe the earlier one).
A backup cut off half way resumes: every PROGRESS_EVERY objects copied, a record under
``_backup/progress/`` lists them (each record only its own, so their bytes grow with the lake,
not its square); restore never reads them.

Order keeps every copy usable even if it stops half way: data files before the Delta log
entries that name them, index files before the manifest that marks a version complete,
``index/CURRENT`` last. The Delta logs are listed before the data files, so each log
entry copied has its files already written at the source; ``index/CURRENT`` is read before
anything is listed, so the version it names is in the listing even when an index is
published while the backup runs. ``_delta_log/_last_checkpoint`` is left out (and out of a
restore): rewritten in place, it could name a checkpoint written after the listing, which
makes the table unreadable; it is only a hint, and readers find checkpoints by listing.

A restore copies the catalog's objects, verifying each hash, into an empty store, in the
same order. A restore that was cut off resumes: a store holding only objects of the catalog,
each with its hash, gets the rest; anything else in it (not in the backup, or changed since)
is never overwritten and the restore is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

from .config import Settings
from .lake import CURRENT_KEY, INDEX_PREFIX, RAW_PREFIX
from .lake.run_lock import LEASE_KEY  # a run's lease: restored, it would hold the new store for its length
from .store import NotFound, ObjectStore, S3Access, open_store, read_blocks, reader_sha256

log = logging.getLogger(__name__)

PREFIXES = (RAW_PREFIX, "lake/", INDEX_PREFIX)
CATALOG_KEY = "_backup/catalog.json"
CATALOG_FORMAT = 1
PROGRESS_PREFIX = "_backup/progress/"
PROGRESS_EVERY = 200  # objects copied between two progress records


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why and what to do."""


def _copied(key: str) -> bool:
    """Whether a listed object belongs in a backup (and a restore): not a run's lease, a file still being
    written, or the Delta log's checkpoint hint."""
    return key != LEASE_KEY and ".lakerag-tmp" not in key and not key.endswith("/_delta_log/_last_checkpoint")


def _order(key: str) -> tuple[int, str]:
    """Copy order: data, then Delta log entries, then index manifests, then CURRENT."""
    if key == CURRENT_KEY:
        return 3, key
    if key.startswith(INDEX_PREFIX) and key.endswith("/manifest.json"):
        return 2, key
    if "/_delta_log/" in key:
        return 1, key
    return 0, key


def _snapshot(store: ObjectStore) -> tuple[dict, bytes | None]:
    """key -> ObjectInfo of what to back up (Delta logs listed first, then everything else) and the
    bytes of index/CURRENT, read before the listing: read when copied, last, it could name a version
    published after the listing, which the backup would not hold."""
    try:
        current = store.get(CURRENT_KEY)
    except NotFound:
        current = None
    logs = {i.key: i for i in store.list("lake/") if "/_delta_log/" in i.key and _copied(i.key)}
    found = {}
    for prefix in PREFIXES:
        for info in store.list(prefix):
            if "/_delta_log/" not in info.key and _copied(info.key):
                found[info.key] = info
    found.update(logs)
    if current is None:
        found.pop(CURRENT_KEY, None)  # written after the read: it names a version not listed
    return found, current


def _copy_verified(source: ObjectStore, dest: ObjectStore, key: str, expected: str | None = None) -> tuple[str, int]:
    """Copy ``key`` block by block, hashing on the way, then read it back to check the hash. Streamed:
    an object can outgrow the job's memory (the index.faiss of bge-large over 250k chunks is 1 GB)."""
    digest, size = hashlib.sha256(), 0
    with source.reader(key) as reader:
        writer = dest.writer(key)
        try:
            for block in read_blocks(reader):
                digest.update(block)
                size += len(block)
                writer.write(block)
            if expected is not None and digest.hexdigest() != expected:
                raise BackupError(f"{source.url(key)} fails its checksum (sha256 {digest.hexdigest()[:12]}…, catalog "
                                  f"says {expected[:12]}…): the backup is damaged; restore from another backup")
            writer.commit()
        except BaseException:
            writer.abort()  # nothing half-copied is left at the destination
            raise
    _check_read_back(dest, key, digest.hexdigest())
    return digest.hexdigest(), size


def _put_verified(dest: ObjectStore, key: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    dest.put(key, data)
    _check_read_back(dest, key, digest)
    return digest


def _check_read_back(dest: ObjectStore, key: str, digest: str) -> None:
    if _sha256(dest, key) != digest:
        raise BackupError(f"{dest.url(key)} reads back with another checksum than was written; check the "
                          "destination store and retry")


def _sha256(store: ObjectStore, key: str) -> str:
    with store.reader(key) as reader:
        return reader_sha256(reader)


def read_catalog(store: ObjectStore) -> dict | None:
    try:
        catalog = json.loads(store.get(CATALOG_KEY))
    except NotFound:
        return None
    if catalog.get("format") != CATALOG_FORMAT:
        raise BackupError(f"{store.url(CATALOG_KEY)} is not a format-{CATALOG_FORMAT} LakeRAG backup catalog")
    return catalog


def _progress_records(store: ObjectStore) -> list[dict]:
    """The progress records backups that were cut off left, oldest first; records that are not what a
    backup writes are skipped."""
    records = []
    for info in sorted(store.list(PROGRESS_PREFIX), key=lambda info: info.key):
        try:
            record = json.loads(store.get(info.key))
        except (NotFound, ValueError):
            continue
        if isinstance(record, dict) and record.get("format") == CATALOG_FORMAT and isinstance(record.get("source"), str) \
                and isinstance(record.get("objects"), dict):
            records.append(record)
    return records


def _progress(dest: ObjectStore, source_uri: str) -> dict:
    """What backups of this store that were cut off had copied (key -> catalog entry), or nothing."""
    done = {}
    for record in _progress_records(dest):
        if record["source"] == source_uri:
            done |= record["objects"]
    if done:
        log.info("resuming the backup that was cut off at %s (%d objects copied)", dest.url(PROGRESS_PREFIX), len(done))
    return done


def _open(settings: Settings, uri: str) -> ObjectStore:
    """``uri`` (either side of a backup), reached with the settings' S3 access, as the lake's store is."""
    return open_store(uri, access=S3Access.from_settings(settings))


def _overlap(first: str, second: str) -> bool:
    """Whether one store URI is the other or lies inside it (compared on whole path segments)."""
    first, second = first.rstrip("/") + "/", second.rstrip("/") + "/"
    return first.startswith(second) or second.startswith(first)


def backup(settings: Settings, dest_uri: str) -> dict:
    """Copy the store's raw/, lake/ and index/ to ``dest_uri``; return counts."""
    started = time.perf_counter()
    source, dest = _open(settings, settings.store_uri), _open(settings, dest_uri)
    if _overlap(source.uri, dest.uri):
        raise BackupError(f"backup destination {dest.uri} overlaps the store {source.uri} (the same place, or one "
                          "inside the other): a backup there is lost with the store, and one under raw/ would be "
                          "indexed as documents; choose a bucket or directory outside it")
    previous_catalog = read_catalog(dest) or {}
    previous = previous_catalog.get("objects", {}) | _progress(dest, source.uri)
    snapshot, current = _snapshot(source)
    if not snapshot and previous:  # the catalog is what restore reads: an empty one would lose the backup
        raise BackupError(f"the store {source.uri} holds nothing, but the backup at {dest.uri} holds "
                          f"{len(previous)} object{'s' if len(previous) != 1 else ''} (of "
                          f"{previous_catalog.get('source', 'another store')}, {previous_catalog.get('created_at')}): "
                          "check LAKERAG_STORE_URI (and the store's credentials); the backup is left as it was")
    objects, copied, copied_bytes = {}, 0, 0
    progress = _Progress(dest, source.uri)
    for key, info in sorted(snapshot.items(), key=lambda item: _order(item[0])):
        known = previous.get(key)
        if key == CURRENT_KEY:  # the bytes read before the listing, not what it holds now
            digest = hashlib.sha256(current).hexdigest()
            if known and known["sha256"] == digest:
                objects[key] = known
                continue
            _warn_if_dangling(current, objects)
            digest, size = _put_verified(dest, key, current), len(current)
        elif known and known["source_version"] == info.version and known["size"] == info.size:
            objects[key] = known  # unchanged since the last backup: not read again
            continue
        else:
            try:
                digest, size = _copy_verified(source, dest, key)
            except NotFound:  # removed since the listing (e.g. a pruned index version): not part of this snapshot
                continue
        objects[key] = {"sha256": digest, "size": size, "source_version": info.version}
        copied, copied_bytes = copied + 1, copied_bytes + size
        progress.copied(key, objects[key])
    catalog = {"format": CATALOG_FORMAT, "source": source.uri, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime()),
               "objects": objects}
    dest.put(CATALOG_KEY, json.dumps(catalog, indent=1, sort_keys=True).encode())  # last: marks it complete
    progress.clear()
    summary = {"title": "backup", "ok": True, "source": source.uri, "destination": dest.uri,
               "objects": len(objects), "copied": copied, "copied_bytes": copied_bytes,
               "unchanged": len(objects) - copied, "seconds": round(time.perf_counter() - started, 2)}
    if not objects:  # a new store, or a mistyped one: succeeds, so that a nightly job says which
        summary["warning"] = (f"the store {source.uri} holds nothing under raw/, lake/ or index/: this backup is "
                              "empty; check LAKERAG_STORE_URI if the store should hold documents")
        log.warning("%s", summary["warning"])
    log.info("backup of %s to %s: %d objects, %d copied", source.uri, dest.uri, len(objects), copied)
    return summary


class _Progress:
    """Records what a backup copied, PROGRESS_EVERY objects at a time, after any records left before."""

    def __init__(self, dest: ObjectStore, source_uri: str):
        self.dest, self.source_uri, self.pending = dest, source_uri, {}
        self.written = sum(1 for _ in dest.list(PROGRESS_PREFIX))

    def copied(self, key: str, entry: dict) -> None:
        self.pending[key] = entry
        if len(self.pending) >= PROGRESS_EVERY:
            record = {"format": CATALOG_FORMAT, "source": self.source_uri, "objects": self.pending}
            self.dest.put(f"{PROGRESS_PREFIX}{self.written:06d}.json", json.dumps(record).encode())
            self.written, self.pending = self.written + 1, {}

    def clear(self) -> None:
        for info in list(self.dest.list(PROGRESS_PREFIX)):
            self.dest.delete(info.key)


def _restored_before(target: ObjectStore, objects: dict) -> set[str]:
    """The keys an earlier restore of this backup already wrote into ``target`` (nothing, for an empty
    store); BackupError for anything else there: a restore never overwrites what it did not write."""
    present = set()
    for prefix in PREFIXES:
        for info in target.list(prefix):
            if not _copied(info.key):
                continue
            known = objects.get(info.key)
            if known is None:
                what = "is not in this backup"
            elif known["size"] != info.size or _sha256(target, info.key) != known["sha256"]:
                what = "is not what this backup holds (changed since it was restored?)"
            else:
                present.add(info.key)
                continue
            raise BackupError(f"restore needs an empty store, or one an interrupted restore of this backup left, but "
                              f"{target.url(info.key)} exists and {what}; restore into a new bucket or directory "
                              "(LAKERAG_STORE_URI) so nothing stored is overwritten")
    if present:
        log.warning("%s holds %d object(s) of this backup (an interrupted restore?): restoring the rest",
                    target.uri, len(present))
    return present


def _warn_if_dangling(current: bytes, objects: dict) -> None:
    version = current.decode("utf-8", "replace").strip()
    if f"{INDEX_PREFIX}{version}/manifest.json" not in objects:
        log.warning("index/CURRENT names %s, whose manifest.json is not in this backup (missing in the store, or "
                    "pruned while the backup ran): a store restored from it serves no index until `lakerag "
                    "pipeline index` runs; run the backup again to take the version now served", version[:80])


def restore(settings: Settings, src_uri: str) -> dict:
    """Copy the backup at ``src_uri`` into the (empty) store of ``settings``; return counts."""
    started = time.perf_counter()
    source, target = _open(settings, src_uri), _open(settings, settings.store_uri)
    catalog = read_catalog(source)
    if catalog is None:
        cut_off = ""
        if records := _progress_records(source):
            cut_off = (f"; a backup of {records[0]['source']} was cut off there after "
                       f"{sum(len(record['objects']) for record in records)} objects: run `lakerag backup` again "
                       "with that store to finish it")
        raise BackupError(f"{source.url(CATALOG_KEY)} does not exist: {src_uri} holds no complete LakeRAG backup "
                          f"(`lakerag backup` writes the catalog last){cut_off}")
    present = _restored_before(target, catalog["objects"])
    # Folder markers ("lake/_staging/") in a backup an older release took from S3: no file system holds them.
    # The checkpoint hints older releases backed up may name checkpoints the backup lacks.
    keys = sorted((key for key in catalog["objects"] if not key.endswith("/") and _copied(key)), key=_order)
    total = 0
    for key in keys:
        expected = catalog["objects"][key]["sha256"]
        if key in present:
            continue
        try:
            _, size = _copy_verified(source, target, key, expected=expected)
        except NotFound:
            raise BackupError(f"{source.url(key)} is listed in the backup catalog but missing; the backup is "
                              "damaged; restore from another backup") from None
        total += size
    log.info("restored %d objects from %s into %s%s", len(keys) - len(present), source.uri, target.uri,
             f" ({len(present)} were already there)" if present else "")
    return {"title": "restore", "ok": True, "source": source.uri, "store": target.uri,
            "objects": len(keys), "resumed": len(present), "bytes": total, "backup_created_at": catalog.get("created_at"),
            "seconds": round(time.perf_counter() - started, 2)}
