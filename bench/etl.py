"""ETL throughput: N and 2N synthetic documents (PDF, TXT, JSON, Markdown, HTML) through
bronze -> silver -> gold on a temporary file:// store, in one Spark session.

Prints docs/s for each size and time(2N)/time(N): 2.0 means the ETL scales linearly with
the corpus (below 2, fixed per-run costs dominate: Spark job scheduling, Delta log reads).
Also times the incremental cases the pipeline is built for: a rerun with no change (the
fixed cost) and one added document on top of 2N. Each document is small (25-60 sentences),
so N must be in the thousands before the per-document work outweighs the fixed cost.

    .venv/bin/python bench/etl.py [--n 1000]   # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lakerag.config import from_env
from lakerag_spark.pipeline import run_etl
from lakerag_spark.session import spark_session

# The tests' real-PDF maker, shared rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.docmaker import make_pdf

WORDS = ["lake", "table", "chunk", "spark", "delta", "merge", "bronze", "silver", "gold", "index", "vector", "query", "answer", "store", "bucket", "object", "version", "commit", "schema", "partition", "stage", "quarantine", "summary", "document", "sentence", "token", "overlap", "window", "cluster", "worker", "driver", "executor", "arrow", "parquet", "batch", "stream", "feed", "change", "record", "field"]


def sentences(rng: random.Random, count: int, doc: int) -> list[str]:
    out = []
    for i in range(count):
        words = rng.choices(WORDS, k=rng.randint(8, 18))
        out.append(f"Document {doc} line {i}: " + " ".join(words).capitalize() + ".")
    return out


def document(i: int) -> tuple[str, bytes]:
    """Document ``i``: one of five types in turn, 25-60 sentences (several chunks each)."""
    rng = random.Random(i)
    lines = sentences(rng, rng.randint(25, 60), i)
    kind = i % 5
    if kind == 0:
        half = len(lines) // 2
        return f"doc-{i:05d}.pdf", make_pdf([" ".join(lines[:half]), " ".join(lines[half:])])
    if kind == 1:
        return f"doc-{i:05d}.txt", "\n\n".join(" ".join(lines[j:j + 5]) for j in range(0, len(lines), 5)).encode()
    if kind == 2:
        body = {"title": f"Record {i}", "sections": [{"heading": f"Part {j}", "text": line}
                                                       for j, line in enumerate(lines)]}
        return f"doc-{i:05d}.json", json.dumps(body).encode()
    if kind == 3:
        return f"doc-{i:05d}.md", (f"# Notes {i}\n\n" + "\n\n".join(f"- **{line}**" for line in lines)).encode()
    paragraphs = "".join(f"<p>{line}</p>" for line in lines)
    return f"doc-{i:05d}.html", f"<html><head><title>Page {i}</title></head><body>{paragraphs}</body></html>".encode()


def fill(root: Path, start: int, count: int) -> None:
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        name, data = document(i)
        (raw / name).write_bytes(data)


def timed_run(root: Path) -> tuple[float, dict]:
    settings = from_env({}, store_uri=f"file://{root}")
    started = time.perf_counter()
    summary = run_etl(settings)
    elapsed = time.perf_counter() - started
    if not summary["ok"]:
        raise SystemExit(f"ETL failed: {summary.get('error')}")
    return elapsed, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="documents in the smaller corpus (default 1000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per size; the fastest counts (default 2)")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = from_env({})
    started = time.perf_counter()
    spark = spark_session(settings, app_name="lakerag-bench-etl")
    cores = spark.sparkContext.defaultParallelism
    print(f"Spark {spark.version} master={settings.spark_master} ({cores} cores), "
          f"session start {time.perf_counter() - started:.1f}s")

    with tempfile.TemporaryDirectory(prefix="lakerag-bench-") as tmp:
        # Warm-up (JVM JIT, Python workers, imports) so N and 2N are measured alike.
        fill(Path(tmp) / "warmup", 0, 50)
        timed_run(Path(tmp) / "warmup")

        sizes = {"N": args.n, "2N": 2 * args.n}
        for label, count in sizes.items():
            fill(Path(tmp) / label, 0, count)
        # Each size runs from an empty lake `--repeats` times, alternating; the best run counts
        # (the machine is shared, so the slower runs measure the neighbours).
        best: dict[str, tuple[float, dict]] = {}
        for _ in range(args.repeats):
            for label in sizes:
                shutil.rmtree(Path(tmp) / label / "lake", ignore_errors=True)
                elapsed, summary = timed_run(Path(tmp) / label)
                if label not in best or elapsed < best[label][0]:
                    best[label] = (elapsed, summary)
        for label, count in sizes.items():
            elapsed, summary = best[label]
            stages = ", ".join(f"{s} {summary['seconds'][s]:.1f}s" for s in ("bronze", "silver", "gold"))
            print(f"{label:>2} = {count:5d} docs: {elapsed:7.1f} s  {count / elapsed:6.2f} docs/s  "
                  f"({stages}; {summary['rows']['gold']} chunks)")
        t_n, t_2n = best["N"][0], best["2N"][0]
        print(f"time(2N)/time(N) = {t_2n / t_n:.2f}   (2.00 = linear; lower = fixed per-run costs dominate)")
        if t_2n > t_n:
            print(f"marginal rate (2N - N docs over the extra time): {args.n / (t_2n - t_n):.1f} docs/s")

        root = Path(tmp) / "2N"
        elapsed, summary = timed_run(root)
        print(f"rerun of 2N, nothing changed: {elapsed:.1f} s = the fixed cost of a run "
              f"(tables committed: {sum(summary.get('committed', {}).values())})")
        fill(root, 2 * args.n, 1)
        elapsed, summary = timed_run(root)
        print(f"one document added to 2N: {elapsed:.1f} s (read {summary['files']['read']} file, "
              f"{elapsed / t_2n * 100:.0f}% of the full 2N run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
