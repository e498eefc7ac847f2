"""Embeddings benchmark: two ratios, each measured within this one run.

1. Throughput: the embeddings job's rate (chunks/s over the whole job: gold
   read, encode, Delta MERGE) against raw ``model.encode`` on the same gold
   texts with the same batch size, each job run paired with the raw passes
   just before and after it (median over rounds). Target >= 0.9. Reported in
   wall-clock time and in this process's CPU time (all threads), which other
   processes' load on a shared machine disturbs far less.
   The job encodes with ONNX Runtime when an export is there (LAKERAG_ENCODER=auto);
   raw passes of the same texts through sentence-transformers/torch give the
   ONNX-vs-torch throughput ratio (>= 1.0: the job can drop torch) and the job's
   rate against torch's raw encode (issue 11's "job / raw", target >= 1.0).
2. Incremental cost: embed + index after adding 1% new documents to a
   2,000-document corpus, against the full embed + index run. Target <= 10%.

The corpus goes through the real Spark ETL (raw files -> gold) when
``lakerag_spark`` is importable, else gold rows are written directly with
delta-rs (``--corpus direct``). Documents are short (about one chunk each) so
the full run takes a few minutes on two cores.

    .venv/bin/python bench/embed.py [--docs 2000] [--corpus etl|direct]

``--spark``: the distributed embeddings job (``lakerag pipeline embed --spark``) on Spark
local[1] and local[2], each in its own process (a fresh session; executors warmed on a small
store first so model loading is not timed), and the single-process job, all re-embedding the
same gold (``--docs`` one-chunk memos written directly) with full_rebuild. Prints chunks/s of
each and local[2]/local[1] (target >= 1.6 on 2 cores) and local[2]/single-process.

    nice .venv/bin/python bench/embed.py --spark [--docs 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.embed.gold: the direct gold writer the tests use
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

SUBJECTS = ["The warehouse in Lyon", "Our billing team", "The night shift", "A regional carrier", "The audit committee",
            "Customer support", "The Rotterdam terminal", "Fleet maintenance", "The pricing desk", "A new supplier"]
VERBS = ["reported", "reviewed", "delayed", "approved", "rescheduled", "flagged", "measured", "consolidated"]
OBJECTS = ["pallet damage on inbound trucks", "the fuel surcharge for December", "customs paperwork for reefers",
           "overtime hours in the cold store", "late invoices from subcontractors", "tyre wear on the city vans",
           "a dispute about demurrage fees", "the forklift battery replacement plan", "carbon reporting per lane",
           "missing proof-of-delivery scans"]


def document(n: int, rng: random.Random) -> str:
    """A short memo (~35 words): one gold chunk with the default chunk size."""
    sentences = [f"Memo {n}."]
    for _ in range(2):
        sentences.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
                         f"on day {rng.randint(1, 365)} with reference {rng.randint(1000, 99999)}.")
    return " ".join(sentences)


def corpus(start: int, count: int) -> dict[str, str]:
    rng = random.Random(start)
    return {f"raw/memo-{n:05d}.txt": document(n, rng) for n in range(start, start + count)}


def load_corpus(settings, docs: dict[str, str], mode: str, state: dict) -> float:
    """Put ``docs`` into gold (adding to what is there); return the seconds it took."""
    from lakerag.lake import Lake

    lake = Lake.open(settings)
    started = time.perf_counter()
    if mode == "etl":
        from lakerag_spark.pipeline import run_etl

        for key, text in docs.items():
            lake.store.put(key, text.encode())
        summary = run_etl(settings)
        if not summary["ok"]:
            raise SystemExit(f"ETL failed: {summary.get('error')}")
    else:
        from tests.embed.gold import write_gold

        state.update({key: [text] for key, text in docs.items()})
        write_gold(lake, state)
    return time.perf_counter() - started


def gold_texts(settings) -> list[str]:
    from lakerag.lake import Lake, tables

    return [str(t) for t in tables.read_arrow(Lake.open(settings), "gold", ["text"]).column("text").to_pylist()]


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def raw_encode(embedder, texts: list[str], batch_size: int) -> tuple[float, float]:
    _, wall, cpu = timed(embedder.model.encode, texts, batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)
    return wall, cpu


def spark_one(master: str, store: Path) -> int:
    """--spark-one MASTER STORE: warm the executors, then time one full re-embed of STORE."""
    from lakerag import config
    from lakerag.lake import Lake
    from lakerag_spark.embed import run_embed_spark
    from lakerag_spark.session import spark_session

    from tests.embed.gold import write_gold

    settings = config.from_env(os.environ, store_uri=f"file://{store}", spark_master=master)
    spark = spark_session(settings, app_name="lakerag-bench-embed")
    warm = config.from_env(os.environ, store_uri=f"file://{store}-warm-{master[6:-1]}", spark_master=master)
    write_gold(Lake.open(warm), {k: [t] for k, t in corpus(10**6, 8 * spark.sparkContext.defaultParallelism).items()})
    run_embed_spark(spark, warm)
    summary, wall, _ = timed(run_embed_spark, spark, settings, full_rebuild=True)
    if not summary["ok"]:
        raise SystemExit(f"spark embed failed: {summary}")
    print(json.dumps({"master": master, "embedded": summary["embedded"], "seconds": round(wall, 2)}))
    return 0


def spark_bench(docs: int) -> int:
    import subprocess

    from lakerag import config
    from lakerag.embed_job import run_embed
    from lakerag.embedding import load_embedder
    from lakerag.lake import Lake

    from tests.embed.gold import write_gold

    workdir = Path(tempfile.mkdtemp(prefix="lakerag-bench-embed-spark-"))
    store = workdir / "store"
    settings = config.from_env(os.environ, store_uri=f"file://{store}")
    write_gold(Lake.open(settings), {k: [t] for k, t in corpus(0, docs).items()})
    load_embedder(settings)  # outside the timing, like the executors' warm-up
    run_embed(settings)
    summary, wall, _ = timed(run_embed, settings, full_rebuild=True)
    rates = {"single": summary["embedded"] / wall}
    print(f"single process: {summary['embedded']} chunks in {wall:.1f} s = {rates['single']:.1f} chunks/s", flush=True)
    for master in ("local[1]", "local[2]"):
        done = subprocess.run([sys.executable, __file__, "--spark-one", master, str(store)], check=False,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{master} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rates[master] = result["embedded"] / result["seconds"]
        print(f"spark {master}: {result['embedded']} chunks in {result['seconds']:.1f} s = {rates[master]:.1f} "
              f"chunks/s", flush=True)
    figures = {"docs": docs, "rates_per_s": {k: round(v, 1) for k, v in rates.items()},
               "local2_vs_local1": round(rates["local[2]"] / rates["local[1]"], 3),
               "local2_vs_single": round(rates["local[2]"] / rates["single"], 3)}
    print(f"local[2]/local[1] = {figures['local2_vs_local1']} (target >= 1.6); "
          f"local[2]/single process = {figures['local2_vs_single']}")
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--spark-one":
        return spark_one(sys.argv[2], Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--new-fraction", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3, help="job runs, each between two raw encode passes")
    try:
        import lakerag_spark.pipeline  # noqa: F401

        default_mode = "etl"
    except ImportError:
        default_mode = "direct"
    parser.add_argument("--corpus", choices=["etl", "direct"], default=default_mode)
    parser.add_argument("--spark", action="store_true", help="the Spark embeddings job: local[1] vs local[2]")
    args = parser.parse_args()
    if args.spark:
        return spark_bench(args.docs if args.docs != 2000 else 1500)

    from lakerag import config
    from lakerag.embed_job import run_embed
    from lakerag.embedding import cpu_quota, load_embedder
    from lakerag.index.publish import run_index

    workdir = Path(tempfile.mkdtemp(prefix="lakerag-bench-embed-"))
    settings = config.from_env(os.environ, store_uri=f"file://{workdir / 'store'}", index_dir=str(workdir / "idx"))
    embedder = load_embedder(settings)  # once, outside every timing
    print(f"model {embedder.name} from {embedder.source} ({embedder.load_seconds:.1f}s), "
          f"{cpu_quota()} CPUs, corpus via {args.corpus}, store {workdir}", flush=True)
    state: dict = {}
    etl_full = load_corpus(settings, corpus(0, args.docs), args.corpus, state)
    texts = gold_texts(settings)
    print(f"gold: {len(texts)} chunks from {args.docs} documents ({etl_full:.1f}s)", flush=True)

    # Shared machines are noisy: alternate raw passes with job runs (each on a fresh
    # copy of the gold-only store) and compare every job run with the raw passes
    # right before and after it.
    pristine = workdir / "pristine"
    shutil.copytree(workdir / "store", pristine)
    embedder.model.encode(texts[:64], batch_size=settings.embed_batch_size)  # warm-up
    raw = [raw_encode(embedder, texts, settings.embed_batch_size)]
    jobs = []
    for round_ in range(args.rounds):
        store = workdir / ("store" if round_ == 0 else f"round-{round_}")
        if round_:
            shutil.copytree(pristine, store)
        summary, wall, cpu = timed(run_embed, settings.replace(store_uri=f"file://{store}"))
        assert summary["embedded"] == len(texts), summary
        jobs.append((wall, cpu, summary))
        raw.append(raw_encode(embedder, texts, settings.embed_batch_size))
    # Rate ratio = raw seconds / job seconds for the same texts; each job run against
    # the mean of the raw passes just before and after it.
    wall_ratios = [(raw[i][0] + raw[i + 1][0]) / 2 / job[0] for i, job in enumerate(jobs)]
    cpu_ratios = [(raw[i][1] + raw[i + 1][1]) / 2 / job[1] for i, job in enumerate(jobs)]
    raw_rate = len(texts) * len(raw) / sum(r[0] for r in raw)
    job_rate = len(texts) * len(jobs) / sum(job[0] for job in jobs)
    # The same texts through sentence-transformers (torch), alternating with ONNX passes.
    onnx_vs_torch, torch_walls = [], []
    if embedder.encoder.get("runtime") == "onnx":
        torch_embedder = load_embedder(settings.replace(encoder="torch"))
        torch_embedder.model.encode(texts[:64], batch_size=settings.embed_batch_size)  # warm-up
        for _ in range(2):
            torch_wall, _ = raw_encode(torch_embedder, texts, settings.embed_batch_size)
            onnx_wall, _ = raw_encode(embedder, texts, settings.embed_batch_size)
            onnx_vs_torch.append(torch_wall / onnx_wall)
            torch_walls.append(torch_wall)
    # Issue 11's "job / raw": the whole job on ONNX against the raw torch encode it replaces.
    job_vs_raw_torch = job_rate / (len(texts) * len(torch_walls) / sum(torch_walls)) if torch_walls else None
    full_embed = jobs[0][2]
    full_index = run_index(settings)
    assert full_index["published"]

    new_docs = max(1, round(args.docs * args.new_fraction))
    etl_incremental = load_corpus(settings, corpus(args.docs, new_docs), args.corpus, state)
    incremental_embed = run_embed(settings)
    incremental_index = run_index(settings)
    full = full_embed["seconds"] + full_index["seconds"]
    incremental = incremental_embed["seconds"] + incremental_index["seconds"]

    results = {
        "chunks": len(texts),
        "encoder": embedder.encoder.get("runtime"),
        "onnx_vs_torch_rate_ratios": [round(r, 3) for r in onnx_vs_torch],
        "onnx_vs_torch_rate_ratio": round(statistics.median(onnx_vs_torch), 3) if onnx_vs_torch else None,
        "job_vs_raw_torch_rate_ratio": round(job_vs_raw_torch, 3) if job_vs_raw_torch is not None else None,
        "raw_encode_rate_per_s": round(raw_rate, 1),
        "raw_encode_wall_seconds": [round(r[0], 2) for r in raw],
        "raw_encode_cpu_seconds": [round(r[1], 2) for r in raw],
        "job_rate_per_s": round(job_rate, 1),
        "job_wall_seconds": [round(job[0], 2) for job in jobs],
        "job_cpu_seconds": [round(job[1], 2) for job in jobs],
        "job_encode_seconds": [job[2]["encode_seconds"] for job in jobs],
        "rate_ratios_wall": [round(r, 3) for r in wall_ratios],
        "rate_ratios_cpu": [round(r, 3) for r in cpu_ratios],
        "rate_ratio_wall": round(statistics.median(wall_ratios), 3),
        "rate_ratio_cpu": round(statistics.median(cpu_ratios), 3),
        "full_embed_seconds": full_embed["seconds"],
        "full_index_seconds": full_index["seconds"],
        "new_documents": new_docs,
        "incremental_embedded": incremental_embed["embedded"],
        "incremental_embed_seconds": incremental_embed["seconds"],
        "incremental_index_seconds": incremental_index["seconds"],
        "incremental_ratio": round(incremental / full, 3),
        "incremental_embed_ratio": round(incremental_embed["seconds"] / full_embed["seconds"], 3),
        "etl_seconds_full_and_incremental": [round(etl_full, 1), round(etl_incremental, 1)],
    }
    print()
    print(f"throughput   raw model.encode {raw_rate:6.1f} chunks/s, embeddings job {job_rate:6.1f} chunks/s (wall)")
    print(f"             rate ratio, median of {len(jobs)} paired runs: wall {results['rate_ratio_wall']:.3f}, "
          f"CPU time {results['rate_ratio_cpu']:.3f}  (target >= 0.9)")
    if onnx_vs_torch:
        print(f"encoder      ONNX Runtime vs sentence-transformers/torch throughput: "
              f"{results['onnx_vs_torch_rate_ratio']:.3f}x  (>= 1.0: the embeddings image drops torch)")
        print(f"             embeddings job (ONNX) vs raw sentence-transformers/torch model.encode: "
              f"{results['job_vs_raw_torch_rate_ratio']:.3f}x  (target >= 1.0)")
    print(f"incremental  +{new_docs} docs ({incremental_embed['embedded']} chunks): embed+index {incremental:.2f}s vs "
          f"full {full:.2f}s   ratio {results['incremental_ratio']:.3f}  (target <= 0.10)")
    # Each target this run missed, by name (a miss of the job / torch ratio printed "target missed (wall clock)").
    missed = [name for name, met in (("job_vs_raw_wall >= 0.9", results["rate_ratio_wall"] >= 0.9),
                                     ("incremental <= 0.10", results["incremental_ratio"] <= 0.10),
                                     ("job_vs_raw_torch >= 1.0", job_vs_raw_torch is None or job_vs_raw_torch >= 1.0))
              if not met]
    if missed == ["job_vs_raw_wall >= 0.9"] and results["rate_ratio_cpu"] >= 0.9:
        print("wall-clock rate ratio below target but CPU-time ratio meets it: other processes' load "
              "(see the spread of raw passes) dominates the wall-clock comparison")
    print("targets met" if not missed else f"target missed: {', '.join(missed)}")
    ok = not missed
    print(json.dumps({**results, "met": ok, "missed": missed}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
