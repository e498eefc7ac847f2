"""Which encoder made an index's vectors, and whether a process may serve it.

The manifest of every published index records ``encoder``: the runtime (``onnx`` or ``torch``),
the model name and, for ONNX, the SHA-256 of ``model.onnx``. A process that embeds queries with
another encoder would search vectors it did not make. The recorded encoder decides when it is
the one this process loaded. When it is another (an export of other bytes after an image
upgrade, torch for ONNX), the API encodes a few of the index's own chunks again: the index is
served when every vector comes back the same, and refused otherwise, saying what to set.
"""

from __future__ import annotations

import logging

import numpy as np

from .config import Settings
from .embedding import resolve_encoder
from .index.artifacts import IndexRejected
from .onnx_encoder import SAME_VECTORS_COSINE, lowest_cosine, read_identity

log = logging.getLogger(__name__)
CHECKED_CHUNKS = 8
# The runtime recorded as a model's encoder (lake/_runs/encoders.json) while an embed run embeds
# every chunk again for another encoder: until it finishes, the table holds vectors of both.
UNFINISHED = "unfinished"


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
        "process's encoder (`lakerag pipeline embed`, which embeds every chunk again for an encoder that "
        "makes other vectors, then `lakerag pipeline index`)")


def check_served_encoder(index, embedder) -> None:
    """Raise IndexRejected unless ``embedder`` makes the vectors of ``index`` (a LoadedIndex), and
    say in ``index.encoder_check`` how that was decided.

    Only an index whose recorded encoder differs costs anything: ``CHECKED_CHUNKS`` of its chunks,
    spread over its rows, encoded again and compared with their stored vectors."""
    built, loaded = index.manifest.get("encoder"), embedder.encoder
    try:
        check_encoder(index.manifest, loaded)
    except IndexRejected as refused:
        compared = remade_cosine(index, embedder)
        if isinstance(compared, str):
            raise IndexRejected(f"{refused}. Its vectors cannot be read back to compare them with this "
                                f"encoder's ({compared})") from None
        lowest, count = compared
        if lowest < SAME_VECTORS_COSINE:
            raise IndexRejected(f"{refused}. This encoder's vectors of {count} of its chunks differ from the stored "
                                f"ones: lowest cosine {lowest:.4f}, below {SAME_VECTORS_COSINE}") from None
        index.encoder_check = (f"built by {describe(built)}; this process's {describe(loaded)} makes the same "
                               f"vectors (lowest cosine {lowest:.6f} over {count} of its chunks)")
        log.warning("index %s: %s", index.version, index.encoder_check)
        return
    index.encoder_check = ("built before encoders were recorded" if not built else
                           "not checked: this process's encoder has no identity" if not loaded else
                           "built by this encoder")


def remade_cosine(index, embedder) -> tuple[float, int] | str:
    """(the lowest cosine between stored and re-encoded vectors, how many chunks were compared), or
    why the stored vectors cannot be compared (IVF keeps 8-bit codes, not the vectors)."""
    count = index.index.ntotal
    if count == 0:
        return "the index holds no vectors"
    rows = np.unique(np.linspace(0, count - 1, min(CHECKED_CHUNKS, count)).round().astype(np.int64))
    try:
        stored = np.vstack([index.index.reconstruct(int(row)) for row in rows])
    except RuntimeError as exc:
        return f"{type(index.index).__name__}: {str(exc).strip().rsplit(': ', 1)[-1]}"
    return lowest_cosine(stored, embedder.encode_passages(index.chunk_rows.texts(rows))), len(rows)
