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
version it reflects (rows' ``gold_version`` and the commit's metadata).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .config import Settings
from .lake import Lake

if TYPE_CHECKING:
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

# Texts handed to one model.encode call; large enough that the per-call overhead
# vanishes, small enough for a lively progress bar.
ENCODE_GROUP = 1024
# Vectors per Delta commit, to bound memory on big corpora; each commit is a
# consistent state, and a rerun continues after the last one.
COMMIT_ROWS = 50_000


def embeddings_schema():
    import pyarrow as pa

    return pa.schema([
        ("chunk_id", pa.string()), ("model", pa.string()), ("dimension", pa.int32()),
        ("vector", pa.list_(pa.float32())), ("gold_version", pa.int64()),
        ("embedded_at", pa.timestamp("us", tz="UTC")),
    ])


def open_table(lake: Lake, name: str) -> DeltaTable | None:
    """The Delta table ``lake/<name>``, or None when it does not exist yet."""
    from deltalake import DeltaTable

    uri, options = lake.table_uri(name), lake.storage_options()
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options)


def read_model_rows(table: DeltaTable, model: str, columns: list[str]):
    """``columns`` of the rows of one model, as an Arrow table with plain string columns.

    Filtered in memory batch by batch: files that delta-rs' MERGE wrote may hold
    string_view columns, which pyarrow dataset filters cannot compare with strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    batches = []
    for batch in table.to_pyarrow_dataset().to_batches(columns=["model", *columns]):
        keep = pc.equal(batch.column("model").cast(pa.string()), model)
        arrays = [_plain(batch.column(name)).filter(keep) for name in columns]
        batches.append(pa.Table.from_arrays(arrays, names=columns))
    if not batches:
        schema = embeddings_schema()
        return pa.Table.from_arrays([pa.array([], schema.field(n).type) for n in columns], names=columns)
    return pa.concat_tables(batches)


def _plain(array):
    import pyarrow as pa

    if array.type == pa.string_view():
        return array.cast(pa.string())
    if pa.types.is_list_view(array.type) or pa.types.is_large_list(array.type):
        return array.cast(pa.list_(array.type.value_type))
    return array


def model_chunk_ids(table: DeltaTable | None, model: str) -> set[str]:
    if table is None:
        return set()
    return set(read_model_rows(table, model, ["chunk_id"]).column("chunk_id").to_pylist())


def run_embed(settings: Settings, full_rebuild: bool = False) -> dict:
    """Encode gold chunks that have no vector of the configured model yet, drop
    vectors of chunks gone from gold; ``full_rebuild`` re-encodes every chunk."""
    started = time.perf_counter()
    lake = Lake.open(settings)
    model = settings.embedding_model
    summary: dict = {"title": "pipeline embed", "ok": True, "model": model, "embedded": 0, "deleted": 0,
                     "unchanged": 0, "committed": False}

    def finish(**fields) -> dict:
        summary.update(fields)
        seconds = time.perf_counter() - started
        summary["seconds"] = round(seconds, 2)
        summary["rate_per_s"] = round(summary["embedded"] / seconds, 1) if summary["embedded"] else 0.0
        lake.write_run_summary("embed", summary)
        return summary

    gold = open_table(lake, "gold")
    if gold is None:
        return finish(note="no gold table yet: run `lakerag pipeline etl` first")
    gold_version = gold.version()
    gold_ids = set(gold.to_pyarrow_table(columns=["chunk_id"]).column("chunk_id").to_pylist())
    embeddings = open_table(lake, "embeddings")
    have = model_chunk_ids(embeddings, model)
    to_embed = gold_ids if full_rebuild else gold_ids - have
    to_delete = have - gold_ids
    summary.update(gold_version=gold_version, unchanged=len(gold_ids) - len(to_embed))
    if not to_embed and not to_delete:
        return finish(embeddings_version=embeddings.version() if embeddings else None,
                      note=f"embeddings of {model} already match gold version {gold_version}")

    ids, texts = _read_texts(gold, None if to_embed == gold_ids else to_embed)
    # Longest first across the whole set, as model.encode does within one call:
    # batches of similar length waste little on padding.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    ids, texts = [ids[i] for i in order], [texts[i] for i in order]

    encode_seconds, dimension, embedder = 0.0, None, None
    if texts:
        from .embedding import ModelUnavailable, load_embedder

        try:
            embedder = load_embedder(settings)
        except ModelUnavailable as exc:
            log.error("%s", exc)
            return finish(ok=False, error=str(exc))
        dimension = embedder.dimension
    if embeddings is None:
        embeddings = _create_table(lake)
    pending_deletes = sorted(to_delete)
    embedded = 0
    from tqdm import tqdm

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
            _merge(embeddings, model, dimension, gold_version, group_ids, vectors, pending_deletes)
            embedded += len(group_ids)
            pending_deletes = []  # deletes go with the first commit
    embeddings = open_table(lake, "embeddings")
    return finish(embedded=embedded, deleted=len(to_delete), committed=True, dimension=dimension,
                  embeddings_version=embeddings.version(), encode_seconds=round(encode_seconds, 2),
                  encode_rate_per_s=round(embedded / encode_seconds, 1) if encode_seconds else 0.0,
                  model_source=embedder.source if embedder else None,
                  model_load_seconds=round(embedder.load_seconds, 2) if embedder else None)


def _read_texts(gold: DeltaTable, wanted: set[str] | None) -> tuple[list[str], list[str]]:
    """(chunk ids, texts) of the wanted chunks (all when None), batch by batch to bound memory."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(sorted(wanted), pa.string()) if wanted is not None else None
    ids: list[str] = []
    texts: list[str] = []
    for batch in gold.to_pyarrow_dataset().to_batches(columns=["chunk_id", "text"]):
        # delta-rs may hand strings back as string_view; compare as plain strings.
        chunk_ids = batch.column("chunk_id").cast(pa.string())
        text = batch.column("text").cast(pa.string())
        if value_set is not None:
            keep = pc.is_in(chunk_ids, value_set=value_set)
            chunk_ids, text = chunk_ids.filter(keep), text.filter(keep)
        ids.extend(chunk_ids.to_pylist())
        texts.extend(t or "" for t in text.to_pylist())
    return ids, texts


def _create_table(lake: Lake) -> DeltaTable:
    from deltalake import DeltaTable

    return DeltaTable.create(lake.table_uri("embeddings"), embeddings_schema(), mode="ignore",
                             storage_options=lake.storage_options(), name="embeddings",
                             description="chunk vectors keyed by (model, chunk_id)")


def _merge(table: DeltaTable, model: str, dimension: int | None, gold_version: int, ids: list[str],
           vectors: list, deletes: list[str]) -> None:
    """One MERGE: upsert the new vectors and delete the vectors of removed chunks."""
    import numpy as np
    import pyarrow as pa
    from deltalake import CommitProperties

    matrix = np.concatenate(vectors) if vectors else np.zeros((0, dimension or 0), np.float32)
    now = datetime.now(UTC)
    rows = len(ids) + len(deletes)
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * matrix.shape[1], type=pa.int32())
    vector_column = pa.concat_arrays([pa.ListArray.from_arrays(offsets, flat),
                                      pa.nulls(len(deletes), pa.list_(pa.float32()))])
    source = pa.Table.from_arrays(
        [pa.array(ids + deletes, pa.string()), pa.array([model] * rows, pa.string()),
         pa.array([dimension or 0] * rows, pa.int32()), vector_column,
         pa.array([gold_version] * rows, pa.int64()), pa.array([now] * rows, pa.timestamp("us", tz="UTC")),
         pa.array(["upsert"] * len(ids) + ["delete"] * len(deletes), pa.string())],
        schema=embeddings_schema().append(pa.field("op", pa.string())))
    columns = {name: f"s.{name}" for name in embeddings_schema().names}
    metadata = {"lakerag.model": model, "lakerag.gold_version": str(gold_version)}
    (table.merge(source, predicate="t.model = s.model AND t.chunk_id = s.chunk_id", source_alias="s",
                 target_alias="t", commit_properties=CommitProperties(custom_metadata=metadata))
     .when_matched_delete(predicate="s.op = 'delete'")
     .when_matched_update(updates=columns, predicate="s.op = 'upsert'")
     .when_not_matched_insert(updates=columns, predicate="s.op = 'upsert'")
     .execute())
    log.info("embeddings: %d vectors of %s merged, %d deleted (gold version %d)", len(ids), model, len(deletes),
             gold_version)
