"""Index scaling benchmark: flat, HNSW and the IVF index `lakerag pipeline index` builds
above LAKERAG_IVF_THRESHOLD, on 1M synthetic 384-d vectors, measured in one run.

Data: clustered synthetic unit vectors, not uniform noise (uniform noise in 384-d has no
near neighbours, which flatters no index and resembles no embedding model): ``topics``
random directions, ``n / 500`` sub-topic centres scattered around them, and each vector
a sub-topic centre plus isotropic noise of the same norm, L2-normalised. Queries are 1000
held-out vectors from the same distribution (not in the index); truth is exact
inner-product top-10 (``faiss.knn``).

For each index: build seconds, bytes per vector (serialised size / n), single-query
p50/p99 ms (one query at a time, FAISS threads as the API runs them: 1 per process), and
recall@10 against the truth. HNSW (M=32, efConstruction=200, as the pipeline builds it)
is built on ``--hnsw-n`` vectors only by default: at 1M its build takes far longer than a
shared 2-core machine allows; its build time is extrapolated to n (n·log n) and labelled so.
The IVF index is ``build_ivf`` itself (lists, k-means sample, SQ8-or-Flat, nprobe chosen
for recall@10 >= 0.95 on sampled indexed vectors). Last line: one JSON object.

    nice .venv/bin/python bench/index_scale.py [--n 1000000] [--hnsw-n 100000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import faiss
import numpy as np
from lakerag.index.artifacts import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, RECALL_TARGET, build_ivf

DIMENSION = 384
K = 10


def unit(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def clustered_vectors(count: int, rng: np.random.Generator, topics: int = 50) -> np.ndarray:
    subtopics = max(1, count // 500)
    noise = 1 / math.sqrt(DIMENSION)  # a noise row has norm ~1, like a centre
    topic_centres = unit(rng.standard_normal((topics, DIMENSION), dtype=np.float32))
    centres = unit(topic_centres[rng.integers(0, topics, subtopics)]
                   + rng.standard_normal((subtopics, DIMENSION), dtype=np.float32) * noise)
    out = np.empty((count, DIMENSION), np.float32)
    for start in range(0, count, 100_000):  # in blocks: the noise matrix is the size of the block
        end = min(count, start + 100_000)
        block = centres[rng.integers(0, subtopics, end - start)]
        block += rng.standard_normal((end - start, DIMENSION), dtype=np.float32) * noise
        out[start:end] = unit(block)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist())) / truth.size


def measure(name: str, index: faiss.Index, build_seconds: float, queries: np.ndarray, truth: np.ndarray,
            latency_queries: int, **extra) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".faiss") as handle:
        faiss.write_index(index, handle.name)
        size = os.path.getsize(handle.name)
    _, found = index.search(queries, K)
    faiss.omp_set_num_threads(1)  # the API searches one query per request on one thread
    latencies = []
    for row in queries[:latency_queries]:
        started = time.perf_counter()
        index.search(row[None, :], K)
        latencies.append((time.perf_counter() - started) * 1000)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    result = {"index": name, "vectors": int(index.ntotal), "build_s": round(build_seconds, 1),
              "bytes_per_vector": round(size / index.ntotal, 1), "p50_ms": round(float(np.percentile(latencies, 50)), 3),
              "p99_ms": round(float(np.percentile(latencies, 99)), 3), "recall_at_10": round(recall(found, truth), 4),
              **extra}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--hnsw-n", type=int, default=100_000, help="vectors HNSW is built on (0: skip HNSW)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    data = clustered_vectors(args.n + args.queries, rng)
    queries, vectors = data[:args.queries].copy(), data[args.queries:]
    del data
    print(f"# {args.n} clustered {DIMENSION}-d vectors in {time.perf_counter() - started:.1f} s; "
          f"{faiss.omp_get_max_threads()} FAISS threads", flush=True)
    scores, truth = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"# held-out queries: mean top-1 cosine {scores[:, 0].mean():.3f}, top-10 {scores[:, -1].mean():.3f}",
          flush=True)
    results = []

    started = time.perf_counter()
    flat = faiss.IndexFlatIP(DIMENSION)
    flat.add(vectors)
    results.append(measure("flat", flat, time.perf_counter() - started, queries, truth, args.latency_queries))
    del flat

    if args.hnsw_n:
        subset = vectors[:args.hnsw_n]
        _, subset_truth = faiss.knn(queries, subset, K, metric=faiss.METRIC_INNER_PRODUCT)
        started = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(DIMENSION, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.add(subset)
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        seconds = time.perf_counter() - started
        scale = args.n * math.log(args.n) / (args.hnsw_n * math.log(args.hnsw_n))
        results.append(measure("hnsw", hnsw, seconds, queries, subset_truth, args.latency_queries,
                               build_s_extrapolated_to_n=round(seconds * scale, 0)))
        del hnsw

    started = time.perf_counter()
    ivf, info = build_ivf(vectors, RECALL_TARGET)
    ivf_result = measure("ivf", ivf, time.perf_counter() - started, queries, truth, args.latency_queries,
                         ivf=info["ivf"], recall_at_10_indexed_sample=info["recall_at_10"])
    results.append(ivf_result)
    print(json.dumps({"n": args.n, "dimension": DIMENSION, "recall_at_10": ivf_result["recall_at_10"],
                      "p50_ms": ivf_result["p50_ms"], "p99_ms": ivf_result["p99_ms"],
                      "bytes_per_vector": ivf_result["bytes_per_vector"], "build_s": ivf_result["build_s"],
                      "ivf": info["ivf"], "hnsw_n": args.hnsw_n,
                      "compared": {r["index"]: {k: r[k] for k in ("vectors", "build_s", "bytes_per_vector", "p50_ms",
                                                                   "recall_at_10")} for r in results}}))


if __name__ == "__main__":
    main()
