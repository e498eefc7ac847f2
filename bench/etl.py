"""ETL throughput: N and 2N synthetic documents (PDF, TXT, JSON, Markdown, HTML) through
bronze -> silver -> gold on a temporary file:// store, in one Spark session.

Prints docs/s for each size and time(2N)/time(N): 2.0 means the ETL scales linearly with
the corpus (below 2, fixed per-run costs dominate: Spark job scheduling, Delta log reads).
Also times the incremental cases the pipeline is built for: a rerun with no change (the
fixed cost) and one added document on top of 2N. Each document is small (25-60 sentences),
so N must be in the thousands before the per-document work outweighs the fixed cost.

    .venv/bin/python bench/etl.py [--n 1000]   # about 4 minutes on 2 cores

``--scale`` instead runs N and 4N (default N = 2500) each in its own driver process (a
fresh Spark session, a 50-document warm-up, then the timed run) and reports the driver's
peak RSS for each (the Python process that runs the job: ``ru_maxrss``; in local mode the
JVM also runs the executors' tasks, so its peak is printed apart), time(4N)/time(N) and the
marginal docs/s. Targets: driver RSS ratio <= 1.3 while the data grows 4x, time ratio <= 4.4.

    nice .venv/bin/python bench/etl.py --scale [--n 2500]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
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


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory of this process (or of ``pid``, from /proc) in MiB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(root: Path) -> int:
    """--one ROOT: a fresh driver process: warm up, run the ETL over ROOT, print one JSON line."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = spark_session(from_env({}), app_name="lakerag-bench-etl-scale")
    fill(root.parent / f"warmup-{root.name}", 10**6, 50)
    timed_run(root.parent / f"warmup-{root.name}")
    elapsed, summary = timed_run(root)
    gateway = getattr(spark.sparkContext._gateway, "proc", None)
    print(json.dumps({"seconds": round(elapsed, 2), "driver_rss_mb": round(peak_rss_mb(), 1),
                      "jvm_rss_mb": round(peak_rss_mb(gateway.pid), 1) if gateway else None,
                      "chunks": summary["rows"]["gold"], "stages": {s: summary["seconds"][s]
                                                                    for s in ("bronze", "silver", "gold")}}))
    return 0


def scale(n: int) -> int:
    results = {}
    with tempfile.TemporaryDirectory(prefix="lakerag-bench-scale-") as tmp:
        for label, count in (("N", n), ("4N", 4 * n)):
            root = Path(tmp) / label
            fill(root, 0, count)
            done = subprocess.run([sys.executable, __file__, "--one", str(root)], check=False, capture_output=True,
                                  text=True)
            if done.returncode:
                raise SystemExit(f"{label} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[label] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[label]
            print(f"{label:>2} = {count:6d} docs ({r['chunks']} chunks): {r['seconds']:7.1f} s "
                  f"{count / r['seconds']:6.1f} docs/s  driver peak RSS {r['driver_rss_mb']:.0f} MiB  "
                  f"JVM peak RSS {r['jvm_rss_mb']:.0f} MiB  stages {r['stages']}", flush=True)
    small, big = results["N"], results["4N"]
    figures = {"n": n, "driver_rss_mb": {"N": small["driver_rss_mb"], "4N": big["driver_rss_mb"]},
               "driver_rss_ratio": round(big["driver_rss_mb"] / small["driver_rss_mb"], 3),
               "jvm_rss_ratio": round(big["jvm_rss_mb"] / small["jvm_rss_mb"], 3)
               if small["jvm_rss_mb"] and big["jvm_rss_mb"] else None,
               "seconds": {"N": small["seconds"], "4N": big["seconds"]},
               "time_ratio": round(big["seconds"] / small["seconds"], 3),
               "marginal_docs_per_s": round(3 * n / (big["seconds"] - small["seconds"]), 1)
               if big["seconds"] > small["seconds"] else None,
               "chunks": {"N": small["chunks"], "4N": big["chunks"]}}
    print(f"driver peak RSS 4N/N = {figures['driver_rss_ratio']} (target <= 1.3); "
          f"time(4N)/time(N) = {figures['time_ratio']} (target <= 4.4); "
          f"marginal {figures['marginal_docs_per_s']} docs/s")
    print(json.dumps(figures))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="documents in the smaller corpus (default 1000; "
                        "2500 with --scale)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per size; the fastest counts (default 2)")
    parser.add_argument("--scale", action="store_true", help="N and 4N in separate driver processes: peak RSS")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_run(args.one)
    if args.scale:
        return scale(args.n or 2500)
    args.n = args.n or 1000
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
