"""`lakerag backup` / `lakerag restore` on moto S3 with the real pipeline: the restored store
serves the same answers, its Delta tables are intact (a pipeline run finds nothing to do),
a second backup copies only what changed, and a damaged backup is refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from conftest import peak_rss, reset_peak_rss
from lakerag.backup import CATALOG_KEY, BackupError, backup, restore
from lakerag.lake import Lake, tables
from lakerag.pipeline import run_all
from lakerag.store import StoreError, open_store

DOCS = {"raw/volcano.txt": b"Explosive eruptions come from viscous magma rich in silica and dissolved gas.",
        "raw/bees.md": b"# Bees\n\nHoney bees tell each other where flowers are with a waggle dance."}
QUESTIONS = ["What kind of magma causes explosive eruptions?", "How do bees say where flowers are?"]




def new_bucket(endpoint: str) -> str:
    name = f"lakerag-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def answers(api) -> list[bytes]:
    return [api.client.post("/answer", json={"question": q}).content for q in QUESTIONS]


def gold_version(settings) -> int:
    lake = Lake.open(settings)
    return tables.version(lake, "gold")


def test_backup_then_restore_into_an_empty_bucket_serves_the_same_answers(s3_settings, moto_endpoint, start_api,
                                                                          tmp_path):
    store = Lake.open(s3_settings).store
    for key, data in DOCS.items():
        store.put(key, data)
    assert run_all(s3_settings)["ok"]
    target = f"s3://{new_bucket(moto_endpoint)}/backups/lakerag"

    first = backup(s3_settings, target)
    assert first["copied"] == first["objects"] > 10 and first["copied_bytes"] > 0
    again = backup(s3_settings, target)
    assert again["copied"] == 0 and again["unchanged"] == first["objects"]  # incremental: nothing read again

    store.put("raw/tea.txt", b"Green tea is steamed or pan-fired soon after picking to stop oxidation.")
    assert run_all(s3_settings)["ok"]
    third = backup(s3_settings, target)
    assert 0 < third["copied"] < third["objects"]

    restored = s3_settings.replace(store_uri=f"s3://{new_bucket(moto_endpoint)}/restored",
                                   index_dir=str(tmp_path / "restored-serving"))
    result = restore(restored, target)
    assert result["objects"] == third["objects"]
    assert restore(restored, target)["resumed"] == result["objects"]  # again: all there, nothing copied
    assert gold_version(restored) == gold_version(s3_settings)

    with start_api(s3_settings) as original:
        expected = answers(original)
    with start_api(restored) as api:
        assert answers(api) == expected
        assert b'"matched":true' in expected[0]

    rerun = run_all(restored)  # the restored lake is complete: incremental run has nothing to do
    assert rerun["ok"] and rerun["embed"]["embedded"] == 0 and rerun["index"]["published"] is False


def test_a_damaged_backup_is_refused_and_the_cli_says_why(local_settings, tmp_path):
    store = Lake.open(local_settings).store
    store.put("raw/a.txt", b"alpha")
    store.put("index/CURRENT", b"none-yet")
    target = f"file://{tmp_path / 'backup'}"
    env = {**os.environ, "LAKERAG_STORE_URI": local_settings.store_uri}

    def cli(*args, env=env):
        return subprocess.run([sys.executable, "-m", "lakerag.cli", *args], env=env, capture_output=True, text=True,
                              check=False)

    done = cli("backup", target)
    assert done.returncode == 0, done.stderr
    open_store(target).put("raw/a.txt", b"alphX")  # bit rot in the backup
    fresh = {**env, "LAKERAG_STORE_URI": f"file://{tmp_path / 'fresh'}"}
    failed = cli("restore", target, env=fresh)
    assert failed.returncode == 1 and "fails its checksum" in failed.stderr
    assert open_store(target).exists(CATALOG_KEY)
    missing = cli("restore", f"file://{tmp_path / 'nothing'}",
                  env={**env, "LAKERAG_STORE_URI": f"file://{tmp_path / 'fresh2'}"})
    assert missing.returncode == 1 and "no complete LakeRAG backup" in missing.stderr
    (tmp_path / "a-file").write_text("not a directory")
    unwritable = cli("backup", f"file://{tmp_path / 'a-file' / 'backup'}")  # was a FileExistsError traceback
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr, unwritable.stderr
    assert unwritable.stderr.startswith("lakerag backup: ") and "DEST_URI must be a directory" in unwritable.stderr
    good = f"file://{tmp_path / 'good'}"
    assert cli("backup", good).returncode == 0
    cannot_restore = cli("restore", good, env={**env, "LAKERAG_STORE_URI": f"file://{tmp_path / 'a-file' / 'x'}"})
    assert cannot_restore.returncode == 1 and "LAKERAG_STORE_URI must be a directory" in cannot_restore.stderr


def test_an_s3_store_with_folder_markers_backs_up_to_a_directory_and_restores(s3_settings, tmp_path):
    """S3 "folders" (empty objects named "lake/_staging/", as pyarrow and the S3 console make them)
    have no place in a file system: `lakerag backup file://...` stopped with FileExistsError."""
    store = Lake.open(s3_settings).store
    store.put("raw/policies/a.txt", b"alpha")
    store.put("lake/_staging/gold/part-0.parquet", b"beta")
    for marker in ("raw/policies/", "lake/_staging/", "lake/_staging/gold/"):
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{marker}", Body=b"")
    target = f"file://{tmp_path / 'backup'}"
    assert backup(s3_settings, target)["objects"] == 2
    restored = s3_settings.replace(store_uri=f"file://{tmp_path / 'restored'}")
    assert restore(restored, target)["objects"] == 2
    assert open_store(restored.store_uri).get("lake/_staging/gold/part-0.parquet") == b"beta"

    # A backup to S3 by a release that listed folder markers holds them in its catalog.
    older = f"{s3_settings.store_uri}-older-backup"
    backup(s3_settings, older)
    older_store = open_store(older, endpoint_url=s3_settings.aws_endpoint_url, region="us-east-1")
    catalog = json.loads(older_store.get(CATALOG_KEY))
    catalog["objects"]["lake/_staging/"] = {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0, "source_version": "x"}
    older_store.client.put_object(Bucket=older_store.bucket, Key=f"{older_store.prefix}/lake/_staging/", Body=b"")
    older_store.put(CATALOG_KEY, json.dumps(catalog).encode())
    assert restore(s3_settings.replace(store_uri=f"file://{tmp_path / 'from-older'}"), older)["objects"] == 2


def test_backup_and_restore_stream_objects_larger_than_the_jobs_memory(local_settings, tmp_path):
    """The backup CronJob has a 1 GiB memory limit and copied each object whole, twice (the bytes,
    then the read-back): a 500 MB scan, or the index.faiss of bge-large over 250k chunks (1 GB),
    got it OOM-killed every night."""
    size = 256 * 1024 * 1024
    store = Lake.open(local_settings).store
    store.put("raw/notes.txt", b"Small notes.")
    with Path(store.url("raw/scan.pdf")).open("wb") as handle:
        handle.truncate(size)  # sparse: no disk, but every byte read is memory touched
    zeros = hashlib.sha256()
    for _ in range(size // (1 << 20)):
        zeros.update(bytes(1 << 20))

    before = reset_peak_rss()
    backed_up = backup(local_settings, f"file://{tmp_path / 'backup'}")
    restored = restore(local_settings.replace(store_uri=f"file://{tmp_path / 'restored'}"),
                       f"file://{tmp_path / 'backup'}")
    grew = peak_rss() - before
    assert grew < 64 * 1024 * 1024, f"copying {size} bytes raised the peak RSS by {grew} bytes"
    assert backed_up["copied"] == restored["objects"] == 2
    catalog = json.loads((tmp_path / "backup" / CATALOG_KEY).read_bytes())
    assert catalog["objects"]["raw/scan.pdf"]["sha256"] == zeros.hexdigest()
    assert catalog["objects"]["raw/scan.pdf"]["size"] == size
    assert (tmp_path / "restored" / "raw" / "scan.pdf").stat().st_size == size


@pytest.mark.parametrize("where", ["store/backup", "store/raw/backup", "."])
def test_a_backup_inside_the_store_or_around_it_is_refused_and_writes_nothing(local_settings, tmp_path, where):
    """Under raw/ the pipeline would index the backup's copies as documents (and each backup
    would copy the last); anywhere inside the store, losing the store loses the backup too."""
    store = Lake.open(local_settings).store
    store.put("raw/a.txt", b"alpha")
    target = tmp_path / where
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(BackupError, match="overlaps the store .* choose a bucket or directory outside it"):
        backup(local_settings, f"file://{target}")
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_a_backup_beside_the_store_is_allowed(local_settings, tmp_path):
    """A sibling whose name merely starts like the store's ("store-backup") is not inside it."""
    Lake.open(local_settings).store.put("raw/a.txt", b"alpha")
    assert backup(local_settings, f"file://{tmp_path / 'store-backup'}")["copied"] == 1
    assert open_store(f"file://{tmp_path / 'store-backup'}").get("raw/a.txt") == b"alpha"


def test_on_s3_the_stores_bucket_root_is_refused_and_a_sibling_prefix_is_not(s3_settings):
    bucket = s3_settings.store_uri.removeprefix("s3://").split("/")[0]  # the store is s3://BUCKET/lake-root
    Lake.open(s3_settings).store.put("raw/a.txt", b"alpha")
    with pytest.raises(BackupError, match="overlaps the store"):
        backup(s3_settings, f"s3://{bucket}")
    with pytest.raises(BackupError, match="overlaps the store"):
        backup(s3_settings, f"{s3_settings.store_uri}/index/backup")
    assert backup(s3_settings, f"s3://{bucket}/lake-root-backup")["copied"] == 1


def test_an_empty_store_does_not_replace_a_backup_of_a_full_one(local_settings, tmp_path):
    """A backup run against a store that holds nothing (a mistyped LAKERAG_STORE_URI, a store not
    mounted) replaced the catalog with an empty one: the backup then restored nothing."""
    Lake.open(local_settings).store.put("raw/a.txt", b"alpha")
    target = f"file://{tmp_path / 'backup'}"
    assert backup(local_settings, target)["copied"] == 1
    catalog = (tmp_path / "backup" / CATALOG_KEY).read_bytes()
    empty = local_settings.replace(store_uri=f"file://{tmp_path / 'not-the-store'}")
    with pytest.raises(BackupError, match=r"holds nothing, but the backup at .* holds 1 object.*LAKERAG_STORE_URI"):
        backup(empty, target)
    assert (tmp_path / "backup" / CATALOG_KEY).read_bytes() == catalog
    restored = local_settings.replace(store_uri=f"file://{tmp_path / 'restored'}")
    assert restore(restored, target)["objects"] == 1
    # A new store's first backup, with nothing in it yet, is no error, but says what to check.
    first = backup(empty, f"file://{tmp_path / 'first-backup'}")
    assert first["objects"] == 0 and "LAKERAG_STORE_URI" in first["warning"]


def test_a_plain_path_as_destination_is_answered_with_the_uri_it_means(local_settings, tmp_path):
    Lake.open(local_settings).store.put("raw/a.txt", b"alpha")
    with pytest.raises(StoreError, match=f"use file://{tmp_path}/backup for that directory"):
        backup(local_settings, str(tmp_path / "backup"))
    assert not (tmp_path / "backup").exists()


def test_an_index_published_while_the_backup_runs_leaves_current_naming_a_version_in_the_backup(
        local_settings, tmp_path, monkeypatch):
    """A backup read index/CURRENT when it came to copy it, last, but listed the versions first: a
    publish in between (the DAG's index task beside the nightly backup) left the backup's CURRENT
    naming a version it did not hold, and the restored store served no index."""
    import lakerag.backup as backup_module

    store = Lake.open(local_settings).store

    def publish(version: str) -> None:
        store.put(f"index/{version}/index.faiss", version.encode() * 100)
        store.put(f"index/{version}/manifest.json", json.dumps({"version": version}).encode())
        store.put("index/CURRENT", version.encode())

    store.put("raw/a.txt", b"alpha")
    publish("v1")
    listed = backup_module._snapshot

    def listed_then_published(source):
        found = listed(source)
        publish("v2")
        return found

    target = f"file://{tmp_path / 'backup'}"
    monkeypatch.setattr(backup_module, "_snapshot", listed_then_published)
    backup(local_settings, target)
    monkeypatch.setattr(backup_module, "_snapshot", listed)

    restored = open_store(f"file://{tmp_path / 'restored'}")
    restore(local_settings.replace(store_uri=restored.uri), target)
    assert restored.get("index/CURRENT") == b"v1"
    assert restored.get("index/v1/manifest.json")
    # The next backup, incremental, takes the new version and the CURRENT naming it.
    assert backup(local_settings, target)["copied"] == 3
    catalog = json.loads((tmp_path / "backup" / CATALOG_KEY).read_bytes())
    assert {"index/v2/manifest.json", "index/CURRENT"} <= set(catalog["objects"])
    assert (tmp_path / "backup" / "index" / "CURRENT").read_bytes() == b"v2"


def test_a_current_naming_a_version_the_backup_lacks_is_copied_as_it_is_and_said(local_settings, tmp_path, caplog):
    store = Lake.open(local_settings).store
    store.put("raw/a.txt", b"alpha")
    store.put("index/CURRENT", b"v9")  # its version pruned, or lost before the backup
    assert backup(local_settings, f"file://{tmp_path / 'backup'}")["copied"] == 2
    assert (tmp_path / "backup" / "index" / "CURRENT").read_bytes() == b"v9"
    assert "index/CURRENT names v9, whose manifest.json is not in this backup" in caplog.text


def test_a_delta_checkpoint_written_while_the_backup_runs_leaves_the_restored_table_readable(
        local_settings, tmp_path, monkeypatch):
    """_delta_log/_last_checkpoint is rewritten in place: read when copied, it could name a checkpoint
    written after the listing, and every reader of the restored table then failed ("Had a
    _last_checkpoint hint but didn't find any checkpoints"). Readers find checkpoints without it."""
    import deltalake
    import lakerag.backup as backup_module
    import pyarrow as pa

    table = Lake.open(local_settings).store.url("lake/gold")
    for value in range(3):
        deltalake.write_deltalake(table, pa.table({"n": [value]}), mode="append")
    deltalake.DeltaTable(table).create_checkpoint()
    listed = backup_module._snapshot

    def listed_then_checkpointed(source):
        found = listed(source)
        deltalake.write_deltalake(table, pa.table({"n": [3]}), mode="append")
        deltalake.DeltaTable(table).create_checkpoint()
        return found

    monkeypatch.setattr(backup_module, "_snapshot", listed_then_checkpointed)
    backup(local_settings, f"file://{tmp_path / 'backup'}")
    # As an older release took it: with the hint, read when copied.
    hint = "lake/gold/_delta_log/_last_checkpoint"
    older = open_store(f"file://{tmp_path / 'backup'}")
    older.put(hint, Lake.open(local_settings).store.get(hint))
    catalog = json.loads(older.get(CATALOG_KEY))
    catalog["objects"][hint] = {"sha256": hashlib.sha256(older.get(hint)).hexdigest(), "size": 1, "source_version": "x"}
    older.put(CATALOG_KEY, json.dumps(catalog).encode())

    restore(local_settings.replace(store_uri=f"file://{tmp_path / 'restored'}"), f"file://{tmp_path / 'backup'}")
    restored = deltalake.DeltaTable(str(tmp_path / "restored" / "lake" / "gold"))
    assert sorted(restored.to_pyarrow_table()["n"].to_pylist()) == [0, 1, 2]


def test_an_interrupted_restore_resumes_and_never_overwrites_what_it_did_not_write(local_settings, tmp_path,
                                                                                 monkeypatch, caplog):
    """A restore cut off half way (a network blip over a large lake) left a store that was no longer
    empty, and every later restore into it was refused: the user had to find and delete what it had
    copied, or start over in a new bucket."""
    import lakerag.backup as backup_module

    store = Lake.open(local_settings).store
    for name in "abcdef":
        store.put(f"raw/{name}.txt", name.encode() * 10)
    store.put("index/CURRENT", b"v1")
    target = f"file://{tmp_path / 'backup'}"
    assert backup(local_settings, target)["objects"] == 7
    restored = local_settings.replace(store_uri=f"file://{tmp_path / 'restored'}")
    copy, calls = backup_module._copy_verified, []

    def cut_off_after_three(*args, **kwargs):
        calls.append(args[2])
        if len(calls) > 3:
            raise StoreError("connection reset by peer")
        return copy(*args, **kwargs)

    monkeypatch.setattr(backup_module, "_copy_verified", cut_off_after_three)
    with pytest.raises(StoreError):
        restore(restored, target)
    monkeypatch.setattr(backup_module, "_copy_verified", copy)

    resumed = restore(restored, target)
    assert resumed["objects"] == 7 and resumed["resumed"] == 3
    target_store = open_store(restored.store_uri)
    assert {f"raw/{n}.txt": target_store.get(f"raw/{n}.txt") for n in "abcdef"} == \
        {f"raw/{n}.txt": n.encode() * 10 for n in "abcdef"}
    assert target_store.get("index/CURRENT") == b"v1"
    caplog.set_level("INFO", logger="lakerag.backup")
    assert restore(restored, target)["resumed"] == 7  # all there: nothing to copy
    assert "restored 0 objects from" in caplog.text and "(7 were already there)" in caplog.text

    # An object the backup did not write, or one since changed, is never overwritten.
    target_store.put("raw/a.txt", b"edited after the restore")
    with pytest.raises(BackupError, match=r"raw/a.txt exists and is not what this backup holds.*new bucket"):
        restore(restored, target)
    assert target_store.get("raw/a.txt") == b"edited after the restore"
    target_store.put("raw/a.txt", b"a" * 10)
    target_store.put("raw/new.txt", b"uploaded after the restore")
    with pytest.raises(BackupError, match=r"raw/new.txt exists and is not in this backup"):
        restore(restored, target)


def test_an_interrupted_backup_resumes_where_it_stopped(local_settings, tmp_path, monkeypatch):
    """The catalog is written last, so a first backup cut off half way (the CronJob's pod evicted
    over a large lake) started again from nothing, and could keep failing the same way."""
    import lakerag.backup as backup_module

    store = Lake.open(local_settings).store
    for name in "abcdef":
        store.put(f"raw/{name}.txt", name.encode() * 10)
    target = f"file://{tmp_path / 'backup'}"
    copy, copied = backup_module._copy_verified, []

    def cut_off_after(count: int):
        def copy_until_cut_off(source, dest, key, *args, **kwargs):
            if len(copied) == count:
                raise StoreError("connection reset by peer")
            copied.append(key)
            return copy(source, dest, key, *args, **kwargs)
        return copy_until_cut_off

    def progress_records() -> list[list[str]]:
        backed_up = open_store(target)
        return [sorted(json.loads(backed_up.get(info.key))["objects"])
                for info in sorted(backed_up.list(backup_module.PROGRESS_PREFIX), key=lambda info: info.key)]

    monkeypatch.setattr(backup_module, "PROGRESS_EVERY", 2)
    monkeypatch.setattr(backup_module, "_copy_verified", cut_off_after(4))
    with pytest.raises(StoreError):
        backup(local_settings, target)
    assert not open_store(target).exists(CATALOG_KEY)  # no restore from half a backup
    # Each record holds what it adds, so that their bytes grow with the lake, not with its square.
    assert progress_records() == [["raw/a.txt", "raw/b.txt"], ["raw/c.txt", "raw/d.txt"]]
    with pytest.raises(BackupError, match=r"a backup of .* was cut off there after 4 objects: run `lakerag backup"):
        restore(local_settings.replace(store_uri=f"file://{tmp_path / 'too-soon'}"), target)

    store.put("raw/b.txt", b"changed meanwhile")
    monkeypatch.setattr(backup_module, "_copy_verified", cut_off_after(6))  # cut off again: b and e copied
    with pytest.raises(StoreError):
        backup(local_settings, target)
    assert progress_records()[-1] == ["raw/b.txt", "raw/e.txt"] and len(progress_records()) == 3
    monkeypatch.setattr(backup_module, "_copy_verified", copy)
    resumed = backup(local_settings, target)
    assert (resumed["objects"], resumed["copied"]) == (6, 1)  # only f was never copied
    assert progress_records() == []
    restored = local_settings.replace(store_uri=f"file://{tmp_path / 'restored'}")
    assert restore(restored, target)["objects"] == 6
    assert open_store(restored.store_uri).get("raw/b.txt") == b"changed meanwhile"
    for damaged in (b"{", json.dumps({"format": 1, "source": store.uri}).encode()):  # not what a backup writes
        open_store(target).put(f"{backup_module.PROGRESS_PREFIX}000000.json", damaged)
        assert backup(local_settings, target)["copied"] == 0
