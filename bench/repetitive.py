"""A degenerate document costs its distinct content (issue 13, item 7).

The document: one line, one sentence repeated to ``--mb`` megabytes. Its sentences run on in
lower case ("... threshold. the pump ..."), so no dot ends a sentence: the whole line is one
over-long sentence, cut into token pieces and windows that repeat.

* Chunking (``lakerag.text``, what bronze's chunk cap and gold run per document): seconds to
  chunk the document and a quarter of it. time(full)/time(quarter) is 4 when chunking is
  linear (16 when quadratic, as it was). Target: <= 6.
* End to end on a file:// store, one warm Spark session (a throwaway run first) and the
  packaged model loaded once: ETL + embed of the repetitive document, then of a small
  document holding just its distinct content (the same sentence 50 times). Reports the
  chunks and vectors each produced and repetitive/small seconds. Target: <= 3 (the repetitive
  file costs about what its distinct content costs, plus reading a megabyte).

    .venv/bin/python bench/repetitive.py [--mb 1] [--chunking-only]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCE = "the pump restarts when the pressure drops below the threshold. "


def repetitive_text(mb: float) -> str:
    return SENTENCE * int(mb * 1024 * 1024 / len(SENTENCE))


def time_chunking(text: str, chunk_tokens: int, overlap: int) -> tuple[float, int, int]:
    from lakerag.text import chunk_pages, distinct

    started = time.perf_counter()
    chunks = chunk_pages([text], chunk_tokens, overlap)
    kept = distinct(chunks)
    return time.perf_counter() - started, len(chunks), len(kept)


def end_to_end(spark, settings, name: str, data: bytes) -> dict:
    """ETL + embed of one document on a fresh store; seconds and what each stage produced."""
    from lakerag.embed_job import run_embed
    from lakerag_spark.pipeline import run_etl

    with tempfile.TemporaryDirectory(prefix="bench-repetitive-") as root:
        (Path(root) / "raw").mkdir()
        (Path(root) / "raw" / name).write_bytes(data)
        store = settings.replace(store_uri=f"file://{root}")
        started = time.perf_counter()
        etl = run_etl(store, spark=spark)
        etl_seconds = time.perf_counter() - started
        embed = run_embed(store)
        total = time.perf_counter() - started
    assert etl["ok"] and embed["ok"], (etl.get("error"), embed)
    return {"bytes": len(data), "etl_s": round(etl_seconds, 2), "embed_s": round(total - etl_seconds, 2),
            "total_s": round(total, 2), "gold_chunks": etl["rows"]["gold"], "embedded": embed["embedded"],
            "quarantined": etl["files"]["quarantined"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--chunking-only", action="store_true")
    args = parser.parse_args()

    from lakerag.config import from_env

    settings = from_env({}, spark_master="local[2]")
    text = repetitive_text(args.mb)
    quarter_s, _, _ = time_chunking(text[:len(text) // 4], settings.chunk_tokens, settings.chunk_overlap_tokens)
    full_s, windows, kept = time_chunking(text, settings.chunk_tokens, settings.chunk_overlap_tokens)
    result = {"mb": args.mb, "chunk_full_s": round(full_s, 3), "chunk_quarter_s": round(quarter_s, 3),
              "chunking_ratio": round(full_s / quarter_s, 2), "chunking_ratio_target": 6,
              "windows": windows, "distinct_chunks": kept}
    print(f"chunking {args.mb} MB: {full_s:.2f} s ({windows} windows, {kept} distinct); a quarter: {quarter_s:.2f} s")

    if not args.chunking_only:
        from lakerag.embedding import load_embedder
        from lakerag_spark.session import spark_session

        load_embedder(settings)  # the model loads once, outside the timings
        spark = spark_session(settings, app_name="bench-repetitive")
        end_to_end(spark, settings, "warm-up.txt", (SENTENCE * 5).encode())
        small = end_to_end(spark, settings, "distinct.txt", (SENTENCE * 50).encode())
        big = end_to_end(spark, settings, "repetitive.txt", text.encode())
        spark.stop()
        result.update({"distinct_doc": small, "repetitive_doc": big,
                       "e2e_ratio": round(big["total_s"] / small["total_s"], 2), "e2e_ratio_target": 3})
        print(f"ETL + embed: repetitive {big['total_s']} s ({big['gold_chunks']} chunks), "
              f"its distinct content {small['total_s']} s ({small['gold_chunks']} chunks)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
