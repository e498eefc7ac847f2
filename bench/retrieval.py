"""Retrieval quality end to end on a BEIR-layout dataset, against its limit, in one run.

* Pipeline: every corpus entry becomes a document in a fresh ``file://`` store
  (``raw/<id>.txt|.json|.md`` in turn: title + text), the real pipeline runs
  (``lakerag.pipeline.run_all``: Spark ETL -> embeddings -> index with its BM25
  part), ``lakerag serve`` starts as its own process under uvicorn, and every
  query goes to ``POST /search`` over HTTP in each mode (dense, lexical,
  hybrid). Hits map back to corpus ids through their raw key (chunks of one
  document collapse onto its best rank).
* Limit: the same model encodes the corpus texts (title + text) and the queries
  directly; exact inner-product search. Ratio pipeline dense / limit (target >= 0.98).
* BM25 alone: ``bm25s`` straight over the corpus texts (English stopwords).
* Fusion variants: weighted reciprocal-rank fusion and convex combinations of
  min-max-normalised scores, computed here from the API's own dense and lexical
  top-50 lists (what hybrid mode fuses), so the served default is chosen from
  measurements; the row equal to the served default must reproduce the API's
  hybrid figure.

Metrics: nDCG@10 (gain 2^rel - 1, graded qrels) and recall@10 (rel > 0), over
the queries with at least one relevant document. The chunk size is raised so
that each corpus entry is one chunk (printed and checked). The relevance
cut-offs are off for the server (LAKERAG_MIN_SCORE=0, LAKERAG_RELATIVE_SCORE=0):
this measures ranking, not the out-of-context decision.

    .venv/bin/python bench/retrieval.py --dataset ../shared/bench-data/msmarco
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "services"), str(REPO / "spark-jobs")]
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

K = 10
DEPTH = 50  # the API's fusion depth for k=10 (max(50, 5k)) and its largest k
EXTENSIONS = ("txt", "json", "md")
RRF_VARIANTS = [(w, k) for k in (60, 10) for w in (1.0, 0.5, 0.3, 0.2, 0.1)]
CONVEX_VARIANTS = (0.9, 0.8, 0.7, 0.5)


# --- dataset ------------------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {corpus id: grade}; a header line (non-numeric grade) is skipped."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3:
                continue
            try:
                grade = int(row[2])
            except ValueError:
                continue  # header
            qrels.setdefault(row[0], {})[row[1]] = grade
    return qrels


def load_dataset(root: Path):
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        if not (root / name).is_file():
            raise SystemExit(f"{root} is not a BEIR-layout dataset: {name} is missing "
                             "(need corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    corpus = {str(d["_id"]): (d.get("title") or "", d.get("text") or "") for d in read_jsonl(root / "corpus.jsonl")}
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(root / "queries.jsonl")}
    qrels = read_qrels(root / "qrels" / "test.tsv")
    judged = {q: rels for q, rels in qrels.items() if q in queries and any(g > 0 for g in rels.values())}
    return corpus, queries, judged


def passage(title: str, text: str) -> str:
    return f"{title}\n\n{text}" if title.strip() else text


def file_names(ids: list[str]) -> dict[str, str]:
    """corpus id -> raw key: the id made file-safe (collisions get a counter), extensions in turn."""
    names, used = {}, set()
    for i, doc in enumerate(ids):
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", doc)[:120] or "doc"
        candidate, n = stem, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{stem}~{n}"
        used.add(candidate.lower())
        names[doc] = f"raw/{candidate}.{EXTENSIONS[i % len(EXTENSIONS)]}"
    return names


def document_bytes(key: str, title: str, text: str) -> bytes:
    if key.endswith(".json"):
        return json.dumps({"title": title, "text": text} if title.strip() else {"text": text},
                          ensure_ascii=False).encode()
    if key.endswith(".md"):
        return (f"# {title}\n\n{text}" if title.strip() else text).encode()
    return passage(title, text).encode()


# --- metrics ------------------------------------------------------------------------------------------------

def ndcg_at(ranked: list[str], grades: dict[str, int], k: int = K) -> float:
    dcg = sum((2 ** grades.get(doc, 0) - 1) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], grades: dict[str, int], k: int = K) -> float:
    relevant = {doc for doc, g in grades.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant)


def evaluate(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> tuple[float, float]:
    ndcg = [ndcg_at(runs.get(q, []), grades) for q, grades in qrels.items()]
    recall = [recall_at(runs.get(q, []), grades) for q, grades in qrels.items()]
    return sum(ndcg) / len(ndcg), sum(recall) / len(recall)


def paired_difference(run: dict[str, list[str]], base: dict[str, list[str]],
                      qrels: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Mean per-query nDCG@10 difference run - base and its standard error (the noise
    a difference must clear: about 2 standard errors)."""
    diffs = [ndcg_at(run.get(q, []), g) - ndcg_at(base.get(q, []), g) for q, g in qrels.items()]
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return mean, float("nan")
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(variance / len(diffs))


def first_per_doc(ids) -> list[str]:
    """Corpus ids in ranking order, each once (a document's best chunk decides)."""
    seen, out = set(), []
    for doc in ids:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def known_item(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> tuple[float, float]:
    """(success@1, MRR@10) for binary relevance."""
    success, rr = [], []
    for q, grades in qrels.items():
        ranked = runs.get(q, [])[:K]
        ranks = [i for i, doc in enumerate(ranked, start=1) if doc in grades]
        success.append(1.0 if ranks and ranks[0] == 1 else 0.0)
        rr.append(1.0 / ranks[0] if ranks else 0.0)
    return sum(success) / max(len(success), 1), sum(rr) / max(len(rr), 1)


# Codes and names: ABC-123, B12X, INC-2291, Jean-Luc, Oyelaran-Fitzgibbon.
IDENTIFIER = re.compile(r"\b(?:[A-Z]{1,6}-?\d{2,}[A-Za-z0-9-]*|[A-Z][a-z]+(?:-[A-Z][a-z]+)+)\b")


def identifier_queries(corpus: dict[str, tuple[str, str]], count: int = 100, seed: int = 0):
    """Known-item queries: rare codes and names sampled (seeded) from the corpus texts. Each
    query's relevant entries are those whose BM25 terms include all of the query's terms
    (at most 3, so the query really is rare)."""
    import random

    from lakerag.index.lexical import terms

    postings: dict[str, set[str]] = {}
    found: dict[str, str] = {}
    for doc, (title, text) in corpus.items():
        body = passage(title, text)
        for term in set(terms(body)):
            postings.setdefault(term, set()).add(doc)
        for match in IDENTIFIER.findall(body):
            found.setdefault(match, doc)
    queries = {}
    for surface in sorted(found):
        wanted = set(terms(surface))
        if not wanted:
            continue
        holders = set.intersection(*(postings.get(t, set()) for t in wanted))
        if 1 <= len(holders) <= 3:
            queries[surface] = holders
    picked = random.Random(seed).sample(sorted(queries), min(count, len(queries)))
    return {f"id-{i}": (surface, queries[surface]) for i, surface in enumerate(picked)}


def query_api(client, texts: dict[str, str], doc_of_key: dict[str, str]):
    """Every query in every mode at k=10 (runs: mode -> qid -> corpus ids), and the dense and
    lexical top-50 lists hybrid fuses (lists: mode -> qid -> [(corpus id, score)])."""
    runs: dict[str, dict[str, list[str]]] = {}
    for mode in ("dense", "lexical", "hybrid"):
        runs[mode] = {}
        for qid, text in texts.items():
            response = client.post("/search", json={"query": text, "k": K, "mode": mode})
            response.raise_for_status()
            body = response.json()
            if body["mode"] != mode:
                raise SystemExit(f"asked for {mode}, the API answered {body['mode']}: {body.get('note')}")
            runs[mode][qid] = first_per_doc(doc_of_key[h["source"]] for h in body["hits"])
    lists: dict[str, dict[str, list[tuple[str, float]]]] = {"dense": {}, "lexical": {}}
    for mode, found in lists.items():
        for qid, text in texts.items():
            body = client.post("/search", json={"query": text, "k": DEPTH, "mode": mode}).json()
            found[qid] = [(doc_of_key[h["source"]], h["score"]) for h in body["hits"]]
    return runs, lists


def fusion_variants(lists) -> dict[str, dict[str, list[str]]]:
    """Each RRF and convex variant applied to the same dense and lexical candidate lists."""
    from lakerag.fusion import convex, weighted_rrf

    def fuse(method) -> dict[str, list[str]]:
        return {q: first_per_doc(doc for doc, _ in method(lists["dense"][q], lists["lexical"][q]))
                for q in lists["dense"]}

    variants = {}
    for w, k in RRF_VARIANTS:
        variants[f"rrf dense 1.0 lexical {w} k {k}"] = fuse(
            lambda d, lx, w=w, k=k: weighted_rrf({"d": [x for x, _ in d], "l": [x for x, _ in lx]},
                                                 {"d": 1.0, "l": w}, k))
    for alpha in CONVEX_VARIANTS:
        variants[f"convex min-max alpha(dense) {alpha}"] = fuse(lambda d, lx, a=alpha: convex(dict(d), dict(lx), a))
    return variants


# --- server -------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict, port: int) -> subprocess.Popen:
    import httpx

    lakerag = Path(sys.executable).with_name("lakerag")
    command = [str(lakerag), "serve"] if lakerag.exists() else [sys.executable, "-m", "lakerag.cli", "serve"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"lakerag serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).json()
            if body.get("index_loaded"):
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit("lakerag serve did not load the index within 600 s")


# --- the run ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, type=Path, help="BEIR layout: corpus.jsonl, queries.jsonl, "
                                                                    "qrels/test.tsv")
    parser.add_argument("--keep", action="store_true", help="keep the temp store and print where it is")
    args = parser.parse_args()

    import bm25s
    import httpx
    import numpy as np
    from lakerag import config
    from lakerag.embedding import cap_threads, load_embedder
    from lakerag.pipeline import run_all
    from lakerag.text import count_tokens

    began = time.perf_counter()
    corpus, queries, qrels = load_dataset(args.dataset)
    ids = list(corpus)
    keys = file_names(ids)
    doc_of_key = {key: doc for doc, key in keys.items()}
    longest = max(count_tokens(passage(*corpus[d])) for d in ids)
    defaults = config.Settings()
    chunk_tokens = max(defaults.chunk_tokens, longest + 32)
    print(f"dataset {args.dataset}: {len(ids)} corpus entries, {len(qrels)} judged queries "
          f"(of {len(queries)}); raw files {', '.join(EXTENSIONS)} in turn")
    print(f"chunk size {chunk_tokens} tokens (longest entry {longest} tokens, title + text): one chunk per entry")

    tmp = Path(tempfile.mkdtemp(prefix="lakerag-bench-retrieval-"))
    try:
        store, serving = tmp / "store", tmp / "serving"
        for doc in ids:
            path = store / keys[doc]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(document_bytes(keys[doc], *corpus[doc]))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKERAG_", "GEMINI_"))}
        env.update({"LAKERAG_STORE_URI": f"file://{store}", "LAKERAG_INDEX_DIR": str(serving),
                    "LAKERAG_CHUNK_TOKENS": str(chunk_tokens), "LAKERAG_LOG_LEVEL": "WARNING",
                    "HF_HUB_OFFLINE": "1", "PYSPARK_PYTHON": os.environ["PYSPARK_PYTHON"]})
        settings = config.from_env(env)

        # 1. The real pipeline.
        started = time.perf_counter()
        summary = run_all(settings)
        pipeline_s = time.perf_counter() - started
        if not summary["ok"]:
            raise SystemExit(f"pipeline failed: {json.dumps(summary, default=str)[:3000]}")
        from lakerag.index.publish import load_current
        from lakerag.store import open_store

        served = load_current(open_store(settings.store_uri), tmp / "check")
        per_doc = served.chunks.groupby("source").size()
        print(f"pipeline: {pipeline_s:.0f} s (etl {summary['etl'].get('seconds.total', '?')} s, embed "
              f"{summary['embed'].get('seconds', '?')} s, index {summary['index'].get('seconds', '?')} s); "
              f"{served.vector_count} chunks from {len(per_doc)} documents, {int((per_doc > 1).sum())} documents "
              f"in more than one chunk; index {served.version} ({served.manifest['index_type']}, lexical "
              f"{'yes' if served.lexical else 'no'})")
        missing = len(ids) - len(per_doc)
        if missing:
            by_bytes: dict[bytes, list[str]] = {}
            for doc in ids:
                by_bytes.setdefault(document_bytes(keys[doc], *corpus[doc]), []).append(doc)
            twins = [group for group in by_bytes.values() if len(group) > 1]
            print(f"  note: {missing} corpus entries produced no chunk; {sum(len(g) - 1 for g in twins)} of them are "
                  f"byte-identical to another entry's file, kept once by silver's dedupe: {twins[:5]}")

        # 2. The API over HTTP, every query in every mode; also known-item identifier queries.
        identifiers = identifier_queries(corpus)
        port = free_port()
        env.update({"LAKERAG_PORT": str(port), "LAKERAG_HOST": "127.0.0.1", "LAKERAG_MIN_SCORE": "0",
                    "LAKERAG_RELATIVE_SCORE": "0", "LAKERAG_SEARCH_MODE": "hybrid"})
        started = time.perf_counter()
        proc = start_server(env, port)
        start_s = time.perf_counter() - started
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                started = time.perf_counter()
                runs, lists = query_api(client, {q: queries[q] for q in qrels}, doc_of_key)
                id_runs, id_lists = query_api(client, {q: text for q, (text, _) in identifiers.items()},
                                              doc_of_key)
                http_s = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

        # 3. The limit: the same model over the corpus texts, exact search.
        embedder = load_embedder(settings)
        cap_threads()
        started = time.perf_counter()
        corpus_vectors = embedder.encode_passages([passage(*corpus[d]) for d in ids])
        qids = list(qrels)
        query_vectors = embedder.encode_queries([queries[q] for q in qids])
        limit_encode_s = time.perf_counter() - started
        top = np.argsort(-(query_vectors @ corpus_vectors.T), axis=1)[:, :K]
        limit = {q: [ids[j] for j in row] for q, row in zip(qids, top)}

        # 4. BM25 alone, straight from bm25s.
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize([passage(*corpus[d]) for d in ids], stopwords="en", show_progress=False),
                        show_progress=False)
        found, _ = retriever.retrieve(bm25s.tokenize([queries[q] for q in qids], stopwords="en",
                                                     show_progress=False), k=K, show_progress=False)
        bm25_alone = {q: [ids[j] for j in row] for q, row in zip(qids, found)}

        # 5. Fusion variants over the API's own candidate lists.
        variants = fusion_variants(lists)
        id_variants = fusion_variants(id_lists)
        id_qrels = {q: {doc: 1 for doc in relevant} for q, (_, relevant) in identifiers.items()}

        # Report.
        dense_ndcg, dense_recall = evaluate(runs["dense"], qrels)
        limit_ndcg, limit_recall = evaluate(limit, qrels)
        print(f"API: start -> index loaded {start_s:.1f} s; {(len(qrels) + len(identifiers)) * 5} /search requests "
              f"in {http_s:.1f} s; "
              f"limit encode {limit_encode_s:.0f} s")
        print(f"\n{'run':44} {'nDCG@10':>8} {'recall@10':>10}")
        for name, run in [("pipeline /search mode=dense", runs["dense"]),
                          ("pipeline /search mode=lexical", runs["lexical"]),
                          ("pipeline /search mode=hybrid (served default)", runs["hybrid"]),
                          ("limit: exact dense over corpus texts", limit),
                          ("BM25 alone (bm25s over corpus texts)", bm25_alone)]:
            n, r = evaluate(run, qrels)
            print(f"{name:44} {n:8.3f} {r:10.3f}")
        limit_diff, limit_se = paired_difference(runs["dense"], limit, qrels)
        print(f"\npipeline dense - limit per query: {limit_diff:+.4f} ± {limit_se:.4f} (s.e.)")
        print(f"ratio pipeline dense / limit (nDCG@10): {dense_ndcg / limit_ndcg:.3f}  (target >= 0.98); "
              f"recall@10 ratio {dense_recall / limit_recall if limit_recall else float('nan'):.3f}")
        print(f"\nfusion variants over the API's dense and lexical top-{DEPTH} lists. Left: the dataset's queries; "
              f"right: {len(identifiers)} known-item queries, each a rare code or name from the corpus "
              "(relevant: the entries holding all its terms)")
        print(f"  {'':42} {'nDCG@10':>8} {'recall@10':>10} {'vs dense ± s.e.':>16}   {'success@1':>9} {'MRR@10':>7}")
        rows = [("/search mode=dense", runs["dense"], id_runs["dense"]),
                ("/search mode=lexical", runs["lexical"], id_runs["lexical"]),
                ("/search mode=hybrid (served default)", runs["hybrid"], id_runs["hybrid"])]
        rows += [(name, run, id_variants[name]) for name, run in variants.items()]
        for name, run, id_run in rows:
            n, r = evaluate(run, qrels)
            diff, se = paired_difference(run, runs["dense"], qrels)
            success, mrr = known_item(id_run, id_qrels)
            print(f"  {name:42} {n:8.3f} {r:10.3f} {diff:+9.3f} ± {se:.3f}   {success:9.3f} {mrr:7.3f}")
        default = config.Settings()
        key = f"rrf dense 1.0 lexical {default.fusion_lexical_weight} k {default.fusion_rrf_k:g}"
        if default.fusion_dense_weight == 1.0 and key in variants:
            same = sum(variants[key][q][:K] == runs["hybrid"][q][:K] for q in qids) + \
                sum(id_variants[key][q][:K] == id_runs["hybrid"][q][:K] for q in identifiers)
            print(f"\nserved hybrid vs the '{key}' row: identical top-{K} for {same}/{len(qids) + len(identifiers)} "
                  "queries")
        print(f"total {time.perf_counter() - began:.0f} s")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
