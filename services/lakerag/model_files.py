"""The files of a model in a local directory, recorded in its ONNX export (``encoder.json``'s
``source_files``), so that a model changed in place after its export (fine-tuned again into the
same directory) is exported again rather than served from the old export, which is keyed by the
model's name (here: its path) only.

Size and modification time are compared first; a file whose stat differs is hashed, so a copy
that kept the content (``cp -r`` without ``-p``) is not taken for a change, and a start where
nothing changed reads no weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

# What decides the vectors: weights, configuration, tokenizer vocabularies.
MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


def local_directory(name: str) -> Path | None:
    """The model's folder when its name is a local directory (which can change in place)."""
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def changed_since_export(name: str, identity: dict) -> str:
    """What changed in the local directory ``name`` since the export ``identity`` describes was
    made from it, in words; empty when nothing did, or when ``name`` is not a local directory."""
    folder = local_directory(name)
    differ = changed(identity.get("source_files"), folder) if folder else []
    return ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")


def describe(folder: Path) -> dict[str, dict]:
    """{relative path: size, mtime_ns, sha256} of the model's files in ``folder``."""
    return {name: {**_stat(path), "sha256": _sha256(path)} for name, path in _model_files(folder).items()}


def changed(recorded: dict[str, dict] | None, folder: Path) -> list[str]:
    """The files added, removed or rewritten with other content since ``recorded``
    (``describe``'s result); empty when nothing changed or nothing was recorded."""
    if not recorded:
        return []  # an export made before sources were recorded: it cannot be checked
    now = _model_files(folder)
    differ = sorted(set(now) ^ set(recorded))
    for name in sorted(set(now) & set(recorded)):
        then = recorded[name]
        if _stat(now[name]) != {k: then.get(k) for k in ("size", "mtime_ns")} and _sha256(now[name]) != then.get("sha256"):
            differ.append(name)
    return differ


def _model_files(folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix in MODEL_SUFFIXES
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)}


def _stat(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
