"""Sentence embeddings with ONNX Runtime + ``tokenizers``: no torch at serving time.

An exported model directory (``lakerag model export``, see ``onnx_export.py``)
holds ``model.onnx`` (the transformer, fp32), the model's ``tokenizer.json`` and
the sentence-transformers configuration it came with: ``modules.json`` says
whether a ``Normalize`` module follows the pooling, ``<pooling dir>/config.json``
how tokens are pooled, ``sentence_bert_config.json`` the maximum sequence length
and ``config_sentence_transformers.json`` the model's own prompts. ``encoder.json``
names the model and the SHA-256 of ``model.onnx``: the index manifest records it,
so the API can refuse an index built by another encoder.

Exports live in the model cache: ``<LAKERAG_MODEL_CACHE_DIR>/onnx/<name with / as
-->/`` (default cache ``~/.cache/lakerag``). Images built with ``BAKE_MODEL=packaged``
carry the default model's export under ``/opt/lakerag/models`` (read-only, outside
the cache volume that would hide it); an export in the cache wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ONNX_FILE = "model.onnx"
ENCODER_FILE = "encoder.json"
POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "lasttoken")
NEW_POOLING_NAMES = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens"}  # sentence-transformers 6
BAKED_ROOT = Path("/opt/lakerag/models")
SPIN_MICROSECONDS = 50  # how long an idle ONNX Runtime worker spins before it sleeps (OnnxEncoder)
SORT_WINDOW_BATCHES = 32  # batches whose texts are tokenized together and ordered by token count
# Issue 11's bar for "the same vectors": an ONNX export against sentence-transformers. An int8
# export (0.93 on the sample chunks) or another model falls far below it.
SAME_VECTORS_COSINE = 0.9999


def lowest_cosine(stored: np.ndarray, remade: np.ndarray) -> float:
    """The lowest cosine between each stored vector and the same text's vector made again."""
    cosines = np.sum(stored * remade, axis=1) / (np.linalg.norm(stored, axis=1) * np.linalg.norm(remade, axis=1))
    return float(np.min(cosines))


class EncoderUnavailable(RuntimeError):
    """No usable ONNX export; the message says how to make one."""


def cache_root(model_cache_dir: str = "") -> Path:
    if model_cache_dir:
        return Path(model_cache_dir).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakerag"


def export_dir(name: str, model_cache_dir: str = "", root: Path | None = None) -> Path:
    """Where the ONNX export of model ``name`` lives in the cache (or under ``root``)."""
    slug = name.strip().rstrip("/").replace("\\", "/").replace("/", "--").lstrip(".-") or "model"
    return (root or cache_root(model_cache_dir)) / "onnx" / slug


def find_export(name: str, model_cache_dir: str = "") -> Path:
    """The export to load: the cache's, else one baked into the image; the cache's
    place (where `lakerag model export` writes) when there is none."""
    cached = export_dir(name, model_cache_dir)
    baked = export_dir(name, root=BAKED_ROOT)
    return baked if read_identity(cached) is None and read_identity(baked) is not None else cached


def read_identity(path: Path) -> dict | None:
    """``encoder.json`` of an export directory, or None when there is no complete export."""
    try:
        identity = json.loads((Path(path) / ENCODER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return identity if (Path(path) / ONNX_FILE).is_file() else None


def read_pooling(path: Path) -> tuple[str, bool]:
    """(pooling mode, normalise?) from a sentence-transformers model directory's
    ``modules.json`` and its pooling module's ``config.json``."""
    path = Path(path)
    modules = json.loads((path / "modules.json").read_text())
    pooling = [m for m in modules if m.get("type", "").endswith(".Pooling")]
    if len(pooling) != 1:
        raise EncoderUnavailable(f"{path / 'modules.json'} names {len(pooling)} Pooling modules; need exactly one")
    config = json.loads((path / pooling[0].get("path", "") / "config.json").read_text())
    modes = _pooling_modes(config)
    # include_prompt false: the prompt's tokens are left out of the pooling, which this encoder does not do.
    if len(modes) != 1 or modes[0] not in POOLING_MODES or config.get("include_prompt") is False:
        raise EncoderUnavailable(f"pooling {config} is not supported by the ONNX encoder (one of "
                                 f"{', '.join(POOLING_MODES)}, prompt included); use LAKERAG_ENCODER=torch for "
                                 "this model")
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    return modes[0], normalize


def _pooling_modes(config: dict) -> list[str]:
    """The pooling modes a Pooling config turns on, in the legacy names (``pooling_mode_<name>``
    flags); sentence-transformers 6 saves one ``pooling_mode`` key (a name or a list) instead."""
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        return [NEW_POOLING_NAMES.get(m, m) for m in ([mode] if isinstance(mode, str) else mode)]
    return [key.removeprefix("pooling_mode_") for key, on in config.items() if key.startswith("pooling_mode_") and on]


class OnnxEncoder:
    """Encodes like ``SentenceTransformer.encode``: same tokenisation (strip,
    truncate to the model's max_seq_length), same pooling, L2-normalised. Batches
    are cut by token count, which only an encoder that tokenizes first can do."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime
        from tokenizers import Tokenizer

        self.path = Path(path)
        identity = read_identity(self.path)
        if identity is None:
            raise EncoderUnavailable(f"{self.path} holds no complete ONNX export ({ONNX_FILE} + {ENCODER_FILE})")
        self.identity = identity
        self.pooling, self.normalize = read_pooling(self.path)
        st_config = _json(self.path / "sentence_bert_config.json")
        self.max_length = int(st_config.get("max_seq_length") or identity.get("max_seq_length") or 512)
        self.lower_case = bool(st_config.get("do_lower_case", False))
        self.prompts = _json(self.path / "config_sentence_transformers.json").get("prompts") or {}
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.no_padding()  # each batch is padded to its own longest text (_encode_batch)
        self.pad_id = int(identity.get("pad_id", 0))
        options = onnxruntime.SessionOptions()
        # Idle intra-op threads spin at most SPIN_MICROSECONDS, then sleep. Not sleeping at once: one
        # query's encode hands its worker a piece of work every ~50-100 us, and waking a sleeping
        # thread took 20-35 us each time on a 2-vCPU VM. Not ORT's default spin either: that held a
        # core after each run, slowing the FAISS search and event loop that follow it (and the pod's
        # neighbours). Measured in docs/search-latency.md.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_MICROSECONDS))
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(self.path / ONNX_FILE), options,
                                                    providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dimension = int(identity["dimension"])

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: list[str], batch_size: int = 32, normalize_embeddings: bool = True, **_) -> np.ndarray:
        """Vectors in input order. Batches hold texts of similar token counts: sentence-transformers
        sorts by characters, which padded the bench's memos to 1.12x their tokens (1.006x by tokens):
        bench/embed.py's ONNX / torch rate went from 0.96x to 1.16x (images/README.md)."""
        texts = [str(t).strip() for t in texts]
        if self.lower_case:
            texts = [t.lower() for t in texts]
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # windows of similar texts
        window = batch_size * SORT_WINDOW_BATCHES  # bounds the tokenized texts held at once
        for begin in range(0, len(texts), window):
            picks = order[begin:begin + window]
            encodings = self.tokenizer.encode_batch([texts[i] for i in picks])
            by_tokens = np.argsort([-len(e.ids) for e in encodings], kind="stable")
            for start in range(0, len(picks), batch_size):
                batch = by_tokens[start:start + batch_size]
                out[picks[batch]] = self._encode_batch([encodings[i] for i in batch])
        if normalize_embeddings or self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out

    def _encode_batch(self, encodings: list) -> np.ndarray:
        """Pooled vectors of tokenized texts, padded to the batch's longest."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
            types[row, :len(encoding.ids)] = encoding.type_ids
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = types
        tokens = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
        return pool(tokens, mask, self.pooling)


def pool(tokens: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Token embeddings (batch, seq, dim) -> sentence embeddings (batch, dim), as
    sentence-transformers' Pooling module computes them."""
    if mode == "cls_token":
        return tokens[:, 0]
    weights = mask[..., None].astype(tokens.dtype)
    if mode == "mean_tokens":
        return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    if mode == "max_tokens":
        return np.where(weights > 0, tokens, -1e9).max(axis=1)
    if mode == "lasttoken":
        last = mask.sum(axis=1) - 1
        return tokens[np.arange(len(tokens)), np.maximum(last, 0)]
    raise EncoderUnavailable(f"unknown pooling mode {mode!r}")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
