"""Which encoder made an index's vectors, and whether a process may serve it.

The manifest of every published index records ``encoder``: the runtime (``onnx``
or ``torch``), the model name and, for ONNX, the SHA-256 of ``model.onnx``. A
process that embeds queries with another encoder would search vectors it did not
make, so the API refuses such an index and says what to set.
"""

from __future__ import annotations

from .config import Settings
from .embedding import resolve_encoder
from .index.artifacts import IndexRejected
from .onnx_encoder import read_identity


def identity_for(settings: Settings) -> dict:
    """The encoder ``load_embedder(settings)`` uses in this environment, resolved the same way
    (an ONNX export is made when it would be) but without loading the model."""
    choice, where = resolve_encoder(settings)
    if choice == "torch":
        return {"runtime": "torch", "name": settings.embedding_model}
    found = read_identity(where)
    return {"runtime": "onnx", "name": found["name"], "sha256": found["sha256"]}


def describe(encoder: dict) -> str:
    sha = f" (model.onnx sha256 {encoder['sha256'][:12]}…)" if encoder.get("sha256") else ""
    return f"{encoder.get('runtime')} {encoder.get('name')}{sha}"


def same_encoder(a: dict, b: dict) -> bool:
    """Whether vectors made by encoder ``a`` are the vectors ``b`` makes: the same runtime and,
    for ONNX, the same model file."""
    return a.get("runtime") == b.get("runtime") and a.get("sha256") == b.get("sha256")


def check_encoder(manifest: dict, loaded: dict) -> None:
    """Raise IndexRejected when ``manifest`` was built by another encoder than ``loaded``.
    Indexes from before encoders were recorded carry none and are accepted."""
    built = manifest.get("encoder")
    if not built or not loaded or same_encoder(built, loaded):
        return
    if built.get("runtime") == "onnx":
        fix = (f"set LAKERAG_ENCODER=onnx and LAKERAG_MODEL_CACHE_DIR to the model cache the embeddings job used "
               f"(it holds the export with that sha256; `lakerag model export {built.get('name')}` makes it)")
    else:
        fix = "set LAKERAG_ENCODER=torch (needs the torch variant of the image)"
    raise IndexRejected(
        f"index {manifest.get('version')} was built by encoder {describe(built)}, but this process loaded "
        f"{describe(loaded)}: its query vectors would not match. Either {fix}, or rebuild the index with this "
        "process's encoder (`lakerag pipeline embed`, which embeds every chunk again for a new encoder, then "
        "`lakerag pipeline index`)")
