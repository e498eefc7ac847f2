"""`lakerag pipeline embed`: keep the ``embeddings`` Delta table in sync with gold.

What changed is found by comparing snapshots: the chunk ids in gold now against
the ids that already have a vector of the configured model. A chunk id hashes
the chunk's text, so a changed chunk is a new id plus a deleted one, and the
difference is exactly the work to do. This needs no saved cursor, survives an
interrupted run (the next run picks up what is still missing), and is immune to
gold being rewritten or vacuumed, which a change-data-feed cursor is not.
Reading two id columns is cheap next to encoding; only new chunks are encoded.

Rows are keyed by (model, chunk_id): another model gets its own rows and never
touches, or mixes with, the vectors of the first. Each commit records the gold
version it reflects (rows' ``gold_version`` and the commit's metadata). When the encoder
differs from the one that made a model's vectors (an export of other bytes after an upgrade,
torch for ONNX), a few stored vectors are made again: the same vectors keep every row, other
ones have every chunk embedded again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from .config import Settings
from .embedding import ModelUnavailable, load_embedder
from .encoder_identity import CHECKED_CHUNKS, UNFINISHED, describe, identity_for, same_encoder
from .lake import Lake, summarises_a_crash, tables
from .onnx_encoder import SAME_VECTORS_COSINE, lowest_cosine

log = logging.getLogger(__name__)

# Texts handed to one model.encode call; large enough that the per-call overhead
# vanishes, small enough for a lively progress bar.
ENCODE_GROUP = 1024
# Vectors per Delta commit, to bound memory on big corpora; each commit is a
# consistent state, and a rerun continues after the last one.
COMMIT_ROWS = 50_000


@dataclass
class EmbedPlan:
    """What an embeddings run has to do (shared by this job and `embed --spark`) and its
    summary; ``done`` holds the finished summary when there is nothing to do."""

    lake: Lake
    summary: dict
    started: float
    gold: tables.Snapshot | None = None
    gold_version: int | None = None
    gold_ids: set = field(default_factory=set)
    have: set = field(default_factory=set)
    to_embed: set = field(default_factory=set)
    to_delete: set = field(default_factory=set)
    done: dict | None = None
    encoder: dict | None = None  # what this run encodes with (None: not known here)

    @classmethod
    def make(cls, lake: Lake, model: str, full_rebuild: bool, title: str, encoder: dict | None = None,
             remake: Callable[[list[str]], np.ndarray] | None = None) -> EmbedPlan:
        """``remake`` encodes passages with this run's encoder, to tell whether it makes the stored
        vectors of another (None: it cannot be told, and a changed encoder embeds every chunk again)."""
        plan = cls(lake, {"title": title, "ok": True, "model": model, "embedded": 0, "deleted": 0, "unchanged": 0,
                          "committed": False}, time.perf_counter(), encoder=encoder)
        lake.mark_run_started("embed")  # its summary clears this; status reports a killed run
        plan.gold = tables.snapshot(lake, "gold")
        if plan.gold is None:
            plan.done = plan.finish(note="no gold table yet: run `lakerag pipeline etl` first")
            return plan
        plan.gold_version = plan.gold.version
        gold_ids = plan.gold.arrow(["chunk_id"]).column("chunk_id").to_pylist()
        plan.gold_ids = set(gold_ids)
        if len(plan.gold_ids) < len(gold_ids):  # each is embedded once all the same
            log.warning("gold holds %d extra row(s) of chunks it already has (pipeline runs that overlapped): "
                        "`lakerag pipeline run --full-rebuild` repairs it", len(gold_ids) - len(plan.gold_ids))
        embeddings = tables.snapshot(lake, "embeddings")
        plan.have = _drop_repeated_vectors(lake, embeddings, model)
        # Vectors another encoder made would be served with this encoder's name on them: unless this
        # encoder makes them again (an export of other bytes, torch for ONNX), every chunk is embedded again.
        made_by = _made_by(lake, model) if plan.have else None
        changed = _encoder_change(made_by, encoder)
        if changed:
            plan.summary["encoder_changed"] = changed
            same = "" if made_by.get("runtime") == UNFINISHED else \
                _same_vectors(embeddings, plan.gold, model, plan.have & plan.gold_ids, remake)
            if same:
                log.warning("the embeddings of %s were made by another encoder (%s), whose vectors this one makes "
                            "again (%s): keeping them", model, changed, same)
                plan.summary["same_vectors"] = same
                changed = ""
            else:
                log.warning("the embeddings of %s were made by another encoder (%s): embedding every chunk again",
                            model, changed)
                lake.write_embeddings_encoder(model, {"runtime": UNFINISHED, "name": model, "encoder": encoder})
        plan.to_embed = plan.gold_ids if full_rebuild or changed else plan.gold_ids - plan.have
        plan.to_delete = plan.have - plan.gold_ids
        plan.summary.update(gold_version=plan.gold_version, unchanged=len(plan.gold_ids) - len(plan.to_embed))
        if not plan.to_embed and not plan.to_delete:
            plan.done = plan.finish(embeddings_version=embeddings.version if embeddings else None,
                                    note=f"embeddings of {model} already match gold version {plan.gold_version}")
        return plan

    def finish(self, **fields) -> dict:
        self.summary.update(fields)
        if self.summary["ok"] and self.encoder:  # every vector of the model is now this encoder's
            self.lake.write_embeddings_encoder(self.summary["model"], self.encoder)
        seconds = time.perf_counter() - self.started
        self.summary["seconds"] = round(seconds, 2)
        embedded = self.summary["embedded"]
        self.summary["rate_per_s"] = round(embedded / seconds, 1) if embedded else 0.0
        self.lake.write_run_summary("embed", self.summary)
        return self.summary


def current_encoder(settings: Settings) -> dict | None:
    """The encoder a run with ``settings`` encodes with; None when it cannot be told here (no
    export and no torch: the model's load says so, if there is anything to embed)."""
    try:
        return identity_for(settings)
    except ModelUnavailable:
        return None


def _made_by(lake: Lake, model: str) -> dict | None:
    """The encoder that made the vectors of ``model``. Lakes embedded before that was recorded: the
    served index's encoder, when it is of ``model``."""
    made_by = lake.read_embeddings_encoder(model)
    if made_by is None:
        from .index.publish import served_manifest

        made_by = (served_manifest(lake.store, model) or {}).get("encoder")
    return made_by or None


def _encoder_change(made_by: dict | None, encoder: dict | None) -> str:
    """"A -> B" when the vectors were made by another encoder than ``encoder``, else ""."""
    if encoder is None or not made_by or same_encoder(made_by, encoder):
        return ""
    if made_by.get("runtime") == UNFINISHED:
        return f"a run that embedded every chunk again with {describe(made_by.get('encoder') or {})} did not " \
               f"finish -> {describe(encoder)}"
    return f"{describe(made_by)} -> {describe(encoder)}"


def _same_vectors(embeddings: tables.Snapshot, gold: tables.Snapshot, model: str, kept: set[str],
                  remake: Callable[[list[str]], np.ndarray] | None) -> str:
    """"lowest cosine … over N chunks" when ``remake`` makes the stored vectors of ``model`` again
    (issue 11's bar, as the API checks a served index), else "". The first stored rows are enough:
    every vector of a finished run was made by one encoder (UNFINISHED marks the other case)."""
    if remake is None or not kept:
        return ""
    ids, stored = [], []
    for part in embeddings.batches(["model", "chunk_id", "vector"]):
        part = part.filter(pc.equal(part.column("model"), model))
        chunk_ids = part.column("chunk_id").to_pylist()
        rows = [i for i, chunk_id in enumerate(chunk_ids) if chunk_id in kept][:CHECKED_CHUNKS - len(ids)]
        ids += [chunk_ids[i] for i in rows]
        stored += part.column("vector").take(rows).to_pylist()
        if len(ids) == CHECKED_CHUNKS:
            break
    texts = dict(zip(*_read_texts(gold, set(ids)), strict=True))
    try:
        lowest = lowest_cosine(np.array(stored, np.float32), remake([texts[chunk_id] for chunk_id in ids]))
    except Exception as exc:  # noqa: BLE001 - cannot be told: embedding every chunk again is always safe
        log.warning("could not make %d stored vectors of %s again to compare them: %s", len(ids), model, exc)
        return ""
    if lowest < SAME_VECTORS_COSINE:
        log.info("this encoder's vectors of %d stored chunks of %s differ: lowest cosine %.4f", len(ids), model, lowest)
        return ""
    return f"lowest cosine {lowest:.6f} over {len(ids)} of its chunks"


def _drop_repeated_vectors(lake: Lake, embeddings: tables.Snapshot | None, model: str) -> set[str]:
    """The chunk ids with a vector of ``model``, less those held more than once (runs that
    overlapped, before the run lock): their rows are deleted, so this run embeds them again,
    once, and the MERGE meets one row per id."""
    ids = tables.model_rows(embeddings, model, ["chunk_id"]).column("chunk_id").to_pylist()
    have = set(ids)
    if len(have) < len(ids):
        repeated = sorted(chunk_id for chunk_id, count in Counter(ids).items() if count > 1)
        log.warning("embeddings hold more than one vector for %d chunk id(s) of %s (pipeline runs that "
                    "overlapped): embedding them again, once", len(repeated), model)
        tables.delete_keys(lake, "embeddings", pa.table({"model": [model] * len(repeated), "chunk_id": repeated}))
        have.difference_update(repeated)
    return have


@summarises_a_crash("embed")
def run_embed(settings: Settings, full_rebuild: bool = False) -> dict:
    """Encode gold chunks that have no vector of the configured model yet, drop
    vectors of chunks gone from gold; ``full_rebuild`` re-encodes every chunk."""
    lake = Lake.open(settings)
    model = settings.embedding_model
    plan = EmbedPlan.make(lake, model, full_rebuild, "pipeline embed", encoder=current_encoder(settings),
                          remake=lambda texts: load_embedder(settings).encode_passages(texts))  # loaded once
    if plan.done is not None:
        return plan.done
    finish, gold, to_embed, to_delete = plan.finish, plan.gold, plan.to_embed, plan.to_delete
    gold_version, gold_ids = plan.gold_version, plan.gold_ids

    ids, texts = _read_texts(gold, None if to_embed == gold_ids else to_embed)
    # Longest first across the whole set, as model.encode does within one call:
    # batches of similar length waste little on padding.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    ids, texts = [ids[i] for i in order], [texts[i] for i in order]

    encode_seconds, dimension, embedder = 0.0, None, None
    if texts:
        try:
            embedder = load_embedder(settings)
        except ModelUnavailable as exc:
            log.error("%s", exc)
            return finish(ok=False, error=str(exc))
        dimension = embedder.dimension
    pending_deletes = sorted(to_delete)
    embedded = 0
    with tqdm(total=len(texts), unit="chunk", desc=f"embed {model}", mininterval=2.0,
              disable=not texts) as bar:
        for start in range(0, max(len(texts), 1), COMMIT_ROWS):
            group_ids, group_texts = ids[start:start + COMMIT_ROWS], texts[start:start + COMMIT_ROWS]
            vectors = []
            began = time.perf_counter()
            for offset in range(0, len(group_texts), ENCODE_GROUP):
                part = group_texts[offset:offset + ENCODE_GROUP]
                vectors.append(embedder.encode_passages(part))
                bar.update(len(part))
            encode_seconds += time.perf_counter() - began
            _merge(lake, model, dimension, gold_version, group_ids, vectors, pending_deletes)
            embedded += len(group_ids)
            pending_deletes = []  # deletes go with the first commit
    return finish(embedded=embedded, deleted=len(to_delete), committed=True, dimension=dimension,
                  embeddings_version=tables.version(lake, "embeddings"), encode_seconds=round(encode_seconds, 2),
                  encode_rate_per_s=round(embedded / encode_seconds, 1) if encode_seconds else 0.0,
                  model_source=embedder.source if embedder else None,
                  model_load_seconds=round(embedder.load_seconds, 2) if embedder else None)


def _read_texts(gold: tables.Snapshot, wanted: set[str] | None) -> tuple[list[str], list[str]]:
    """(chunk ids, texts) of the wanted chunks (all when None), each once (gold may hold one twice:
    see _drop_repeated_vectors), batch by batch to bound memory."""
    value_set = pa.array(sorted(wanted), pa.string()) if wanted is not None else None
    texts: dict[str, str] = {}
    for batch in gold.batches(["chunk_id", "text"]):
        if value_set is not None:
            batch = batch.filter(pc.is_in(batch.column("chunk_id"), value_set=value_set))
        texts.update(zip(batch.column("chunk_id").to_pylist(), (t or "" for t in batch.column("text").to_pylist())))
    return list(texts), list(texts.values())


def _merge(lake: Lake, model: str, dimension: int | None, gold_version: int, ids: list[str],
           vectors: list, deletes: list[str]) -> None:
    """One MERGE: upsert the new vectors and delete the vectors of removed chunks."""
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, dimension or 0), np.float32)
    now = datetime.now(UTC)
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * matrix.shape[1], type=pa.int32())
    upserts = pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.array([model] * len(ids), pa.string()),
         pa.array([dimension or 0] * len(ids), pa.int32()), pa.ListArray.from_arrays(offsets, flat),
         pa.array([gold_version] * len(ids), pa.int64()),
         pa.array([now] * len(ids), pa.timestamp("us", tz="UTC"))],
        schema=tables.SCHEMAS["embeddings"])
    removed = pa.table({"model": pa.array([model] * len(deletes), pa.string()),
                        "chunk_id": pa.array(deletes, pa.string())})
    metadata = {"lakerag.model": model, "lakerag.gold_version": str(gold_version)}
    tables.merge(lake, "embeddings", upserts, removed, metadata=metadata)
    log.info("embeddings: %d vectors of %s merged, %d deleted (gold version %d)", len(ids), model, len(deletes),
             gold_version)
