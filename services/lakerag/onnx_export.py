"""``lakerag model export NAME``: a sentence-transformers model -> an ONNX export
that ``onnx_encoder.OnnxEncoder`` serves without torch.

Runs where torch is installed (the dev venv, an image build stage, the
``lakerag/embeddings:*-torch`` variant). The transformer is exported in fp32
with the TorchScript exporter (``dynamo=False``: deterministic and needs no
onnxscript), so two exports of the same weights give the same file and the same
SHA-256. Pooling and normalisation are not in the graph: the encoder reads them
from the sentence-transformers configuration copied next to it. Where ONNX Runtime is
installed, an export is checked before it is installed: it must make sentence-transformers'
own vectors of a few texts, short to truncated, in one padded batch (``check_export``);
``lakerag model check`` runs the same check on an export already installed (``check_installed``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from . import model_files
from .onnx_encoder import (
    ENCODER_FILE,
    ONNX_FILE,
    SAME_VECTORS_COSINE,
    EncoderUnavailable,
    OnnxEncoder,
    export_dir,
    lowest_cosine,
    read_identity,
    read_pooling,
)
from .torch_models import ModelUnavailable, _load_torch_model
from .volume import WRITE_ERRNOS

log = logging.getLogger(__name__)

# Copied as they are: the tokenizer and the sentence-transformers configuration.
CONFIG_FILES = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                "config.json", "tokenizer_config.json", "special_tokens_map.json")
OPSET = 17
# What an export is checked on: a word, a question, accented text and one past any model's
# max_seq_length (truncated), encoded in one batch, so padding and truncation are checked too.
CHECK_TEXTS = ("lake", "How long are incident postmortems kept?",
               "Les frais de déplacement sont remboursés sous 30 jours ; joindre les reçus au-delà de 25 €.",
               " ".join(["The freight manifest lists every pallet, its carrier and its invoice number."] * 60))


def export(name: str, settings, dest: Path | None = None, force: bool = False, quantize: bool = False) -> dict:
    """Export model ``name`` (loaded as ``embedding.load_embedder`` loads it) into
    ``dest`` (default: its place in the model cache); returns the encoder identity.

    Safe to run from several pods on one model cache (the chart runs it in every API pod's
    init container, on a ReadWriteMany volume in production): an export that is there is
    kept (unless ``force``, or it is ``outdated``: made again in its precision); exporters take
    turns on a lock next to the export, so the others wait and reuse the first one's result; the
    export is assembled in a temporary directory and renamed into place, so no reader sees half
    an export, and a complete export is never deleted under a pod that may be loading it."""
    dest = Path(dest) if dest else export_dir(name, settings.model_cache_dir)
    existing = read_identity(dest)
    if existing and not force and not outdated(name, existing, log_it=True):
        log.info("ONNX export of %s already in %s", name, dest)
        return existing
    try:
        return _export_in_turn(name, settings, dest, force, quantize)
    except Exception as exc:
        kept = read_identity(dest)
        # Made again only for speed (the same vectors): a model no longer at hand (offline, only its
        # export on the volume) or a read-only volume must not stop a pod that served it before.
        if force or not existing or not kept or model_files.changed_since_export(name, kept):
            raise
        log.warning("kept the ONNX export of %s in %s as it is (the same vectors, only slower): making it again "
                    "failed: %s", name, dest, exc)
        return kept


def _export_in_turn(name: str, settings, dest: Path, force: bool, quantize: bool) -> dict:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock_path(dest).touch()
    except OSError as exc:
        raise ModelUnavailable(f"cannot write the ONNX export of {name} into {dest.parent} ({exc.strerror}): point "
                               f"LAKERAG_MODEL_CACHE_DIR={settings.model_cache_dir or '(unset)'} at a writable "
                               "directory (the chart's model cache volume), or export it where one is writable "
                               f"(`lakerag model export {name}`)") from None
    with _exclusive(lock_path(dest)):
        existing = read_identity(dest)
        if existing and not force and not outdated(name, existing):
            log.info("ONNX export of %s made by another process in %s", name, dest)
            return existing
        _remove_leftovers(dest)
        # Replacing an outdated export is what was asked, as with --force; int8 was an operator's
        # choice (other vectors than fp32), so an export made again without --force keeps it.
        kept_int8 = bool(existing) and not force and existing.get("precision") == "int8"
        return _export(name, settings, dest, force or existing is not None, quantize or kept_int8)


def lock_path(dest: Path) -> Path:
    """The lock exporters of ``dest`` take turns on (a file next to it, on the same volume)."""
    return dest.parent / f".{dest.name}.lock"


@contextlib.contextmanager
def _exclusive(path: Path):
    """flock on ``path``: released by the kernel when the process dies (an OOMKilled init
    container leaves no stale lock). NFS (EFS) clients carry it to the server as a POSIX lock;
    where a file system ignores locks, ``_install`` still keeps whichever export landed first."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is exporting into %s: waiting for it", path.parent)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(dest: Path) -> None:
    """Temporary directories of exports that were killed (only called under the lock, so none
    of them is being written)."""
    for pattern in (f".{dest.name}.tmp-*", f".{dest.name}.old-*"):
        for stale in dest.parent.glob(pattern):
            log.info("removing %s, left by an export that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _install(tmp: Path, dest: Path, force: bool) -> bool:
    """Rename the finished export ``tmp`` to ``dest``; False (and ``tmp`` removed) when a
    complete export landed there meanwhile and ``force`` is off. An older or incomplete one is
    first renamed aside and deleted only once the new one is in place."""
    if read_identity(dest) is not None and not force:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    aside = None
    if dest.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, aside / dest.name)
    os.rename(tmp, dest)  # fails, rather than merging, if a directory appeared there meanwhile
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return True


def _export(name: str, settings, dest: Path, force: bool, quantize: bool) -> dict:
    started = time.perf_counter()
    model, source = _load_torch_model(name, settings)
    folder = _model_folder(model, settings)
    # Written next to the destination, then renamed: a reader never sees half an export.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        for filename in CONFIG_FILES:
            if (folder / filename).is_file():
                shutil.copy2(folder / filename, tmp / filename)
        pooling_dirs = [m["path"] for m in json.loads((folder / "modules.json").read_text())
                        if m.get("type", "").endswith(".Pooling")]
        for sub in pooling_dirs:
            shutil.copytree(folder / sub, tmp / sub)
        if not (tmp / "tokenizer.json").is_file():
            model.tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        read_pooling(tmp)  # fail now, not at serving time, on a pooling the encoder lacks
        attention = _export_transformer(model, tmp / ONNX_FILE)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(tmp / ONNX_FILE, tmp / "model.int8.onnx", weight_type=QuantType.QInt8)
            os.replace(tmp / "model.int8.onnx", tmp / ONNX_FILE)
        import torch

        identity = {
            "name": name,
            "runtime": "onnx",
            "precision": "int8" if quantize else "fp32",
            "sha256": _sha256(tmp / ONNX_FILE),
            "dimension": int(_dimension(model)),
            "max_seq_length": int(model.max_seq_length),
            "pad_token": model.tokenizer.pad_token,
            "pad_id": int(model.tokenizer.pad_token_id),
            "exported_from": source,
            "exported_with": f"torch {torch.__version__}, opset {OPSET}, {attention} attention",
        }
        if folder := model_files.local_directory(name):
            identity["source_files"] = model_files.describe(folder)
        (tmp / ENCODER_FILE).write_text(json.dumps(identity, indent=2))
        if checked := check_export(name, model, tmp, quantize):
            identity["checked"] = checked
            (tmp / ENCODER_FILE).write_text(json.dumps(identity, indent=2))
        tmp.chmod(0o755)  # mkdtemp makes it 0700: other users (an image's non-root user) must read it
        installed = _install(tmp, dest, force)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:  # the cache's volume, not the model
            raise ModelUnavailable(
                f"cannot write the ONNX export of {name} into {dest.parent} ({exc.strerror}): free or enlarge that "
                f"volume (LAKERAG_MODEL_CACHE_DIR={settings.model_cache_dir or '(unset)'}: the chart's model cache), "
                "or point LAKERAG_MODEL_CACHE_DIR at one with room") from exc
        raise
    if not installed:
        log.info("ONNX export of %s landed in %s meanwhile: kept it, dropped this one", name, dest)
        return read_identity(dest)
    log.info("exported %s to %s (%s, sha256 %s) in %.1fs", name, dest, identity["precision"],
             identity["sha256"][:12], time.perf_counter() - started)
    return identity


def check_export(name: str, model, export: Path, quantized: bool) -> dict | None:
    """How the export's vectors of CHECK_TEXTS compare with sentence-transformers' (``model``):
    {"texts": N, "lowest_cosine": x}. An fp32 export below SAME_VECTORS_COSINE is refused
    (ModelUnavailable: nothing is installed); an int8 one is recorded as it is (opt-in, lossy).
    None where ONNX Runtime is not installed (an image's export stage, which bakes the packaged
    model that the test suite checks)."""
    try:
        lowest = _lowest_cosine_of(model, export)
    except ImportError:
        log.info("ONNX export of %s not checked against sentence-transformers: no ONNX Runtime here", name)
        return None
    except EncoderUnavailable as exc:
        raise ModelUnavailable(f"the ONNX export of {name} cannot be loaded by ONNX Runtime ({exc}): "
                               "not installed") from exc
    if lowest < SAME_VECTORS_COSINE and not quantized:
        raise ModelUnavailable(
            f"the ONNX export of {name} makes other vectors than sentence-transformers (lowest cosine {lowest:.4f} "
            f"over {len(CHECK_TEXTS)} texts, below {SAME_VECTORS_COSINE}): not installed, and any export already "
            "there is kept. Serve this model with torch (LAKERAG_ENCODER=torch, the api-torch image) and report it")
    return {"texts": len(CHECK_TEXTS), "lowest_cosine": round(lowest, 6)}


def check_installed(name: str, settings, dest: Path | None = None) -> dict:
    """``check_export`` for an export already installed in ``dest`` (default: its place in the
    model cache), such as one made before exports were checked or by an image's export stage;
    changes nothing. Returns its identity's name, precision and sha256, where it is, the check's
    figures and ``same_vectors``. ModelUnavailable when there is no export or nothing to check it with."""
    dest = Path(dest) if dest else export_dir(name, settings.model_cache_dir)
    identity = read_identity(dest)
    if identity is None:
        raise ModelUnavailable(f"no ONNX export of {name} in {dest}: `lakerag model export {name}` makes one "
                               "(checked before it is installed)")
    model, _ = _load_torch_model(name, settings)
    try:
        lowest = _lowest_cosine_of(model, dest)
    except ImportError:
        raise ModelUnavailable("checking an ONNX export needs ONNX Runtime beside torch (a dev venv, the "
                               "api-torch image)") from None
    except EncoderUnavailable as exc:
        raise ModelUnavailable(f"ONNX Runtime cannot load the export of {name} in {dest} ({exc}): make it again "
                               f"(`lakerag model export {name} --force`)") from exc
    return {"name": identity.get("name"), "dest": str(dest), "precision": identity.get("precision", "fp32"),
            "sha256": identity.get("sha256"), "texts": len(CHECK_TEXTS), "lowest_cosine": round(lowest, 6),
            "same_vectors": lowest >= SAME_VECTORS_COSINE}


def _lowest_cosine_of(model, export: Path) -> float:
    """The lowest cosine between the export's vectors of CHECK_TEXTS and sentence-transformers' own
    (``model``), encoded in one batch. ImportError without ONNX Runtime; EncoderUnavailable when it
    cannot load the export."""
    encoder = OnnxEncoder(export)
    texts = list(CHECK_TEXTS)
    theirs = np.asarray(model.encode(texts, normalize_embeddings=True, show_progress_bar=False), dtype=np.float32)
    # model.encode puts a model's default prompt (if it names one) before each text; the encoder
    # serving the export is given its prompts by the caller (embedding.Embedder).
    default = getattr(model, "default_prompt_name", None)
    prompt = (getattr(model, "prompts", None) or {}).get(default, "") if default else ""
    return lowest_cosine(theirs, encoder.encode([prompt + text for text in texts]))


def outdated(name: str, identity: dict, log_it: bool = False) -> str:
    """Why the export ``identity`` describes is made again without --force, in words; empty to keep it."""
    if differ := model_files.changed_since_export(name, identity):
        reason = f"the model in {name} changed since its ONNX export ({differ})"
    elif attention := slower_attention(identity):
        reason = (f"it computes {attention} attention, which ONNX Runtime runs 5-30% slower than the eager "
                  "form exported now, for the same vectors")
    else:
        return ""
    if log_it:
        log.info("exporting %s again: %s", name, reason)
    return reason


def slower_attention(identity: dict) -> str:
    """The attention an export computes (as ``exported_with`` names it; SDPA before it was named) when
    this exporter would write the eager form instead (as ``_export_transformer`` does), else empty.
    Read before transformers is looked for, so an eager export never looks. An export made again
    keeps the same vectors: a served index stays served and the embeddings job keeps its rows."""
    made_with = identity.get("exported_with", "").rsplit(", ", 1)[-1]
    attention = made_with.removesuffix(" attention") if made_with.endswith(" attention") else "sdpa"
    if attention == "eager":
        return ""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # no exporter here: served as it is
        return ""
    return attention if hasattr(PreTrainedModel, "set_attn_implementation") else ""


def _model_folder(model, settings) -> Path:
    """The directory the SentenceTransformer was loaded from (a package, a local
    directory or a hub-cache snapshot): its configuration files are copied."""
    path = Path(getattr(model[0].auto_model.config, "_name_or_path", "") or ".")
    if (path / "modules.json").is_file():
        return path
    from huggingface_hub import snapshot_download  # loaded by hub name: its snapshot in the cache

    return Path(snapshot_download(str(path), cache_dir=settings.model_cache_dir or None, local_files_only=True))


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _dimension(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return get()


def _export_transformer(model, target: Path) -> str:
    """Export the model's transformer (token embeddings out) to ``target``; returns the form of
    attention it exported ("eager" unless this transformers cannot switch to it)."""
    import torch

    transformer = model[0].auto_model.eval()
    sample = model.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs, strict=True))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    # transformers computes attention with SDPA, which the TorchScript exporter writes as MatMul and
    # Softmax with NaN guards: ONNX Runtime ran that 5-30% slower than the eager attention it
    # exports instead, for the same vectors (images/README.md).
    attention = getattr(transformer.config, "_attn_implementation", None)
    eager = attention not in (None, "eager") and hasattr(transformer, "set_attn_implementation")
    if eager:
        transformer.set_attn_implementation("eager")
    try:
        # The tracer warns that a traced branch on shapes "might not generalize to other inputs" and that
        # negative indices would be wrong; check_export encodes other shapes against the model itself.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
            torch.onnx.export(TokenEmbeddings(transformer), tuple(sample[n] for n in names), str(target),
                              input_names=names, output_names=["token_embeddings"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
    finally:
        if eager:  # the model may go on encoding with torch in this process
            transformer.set_attn_implementation(attention)
    return "eager" if eager or attention in (None, "eager") else attention
