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
* BM25 alone: ``bm25s`` straight over the corpus texts, cut into the same terms
  as the served index (``lakerag.terms``).
* Targets: served hybrid minus dense and minus lexical per query with its paired
  standard error (hybrid >= the better of the two - 1 s.e.), and on known-item
  queries (rare codes and names, in any alphabet, drawn from the corpus)
  hybrid success@1 within 0.05 of the better mode. A figure that cannot be
  judged (e.g. no rare name in the corpus) prints n/a.
* Fusion variants: weighted reciprocal-rank fusion and convex combinations of
  min-max-normalised scores, computed here from the API's own dense and lexical
  top-50 lists (what hybrid mode fuses); the first row re-fuses them with the
  per-query weights the API reported and must reproduce the served hybrid.

The last line is one JSON object with the figures.

Metrics: nDCG@10 (gain 2^rel - 1, graded qrels) and recall@10 (rel > 0), over
the queries with at least one relevant document. The chunk size is raised so
that each corpus entry is one chunk (printed and checked). The relevance
cut-offs are off for the server (LAKERAG_MIN_SCORE=0, LAKERAG_RELATIVE_SCORE=0):
this measures ranking, not the out-of-context decision.

    .venv/bin/python bench/retrieval.py --dataset ../shared/bench-data/msmarco
    # one encoder against another (docs/retrieval.md): the limit only, in minutes
    .venv/bin/python bench/retrieval.py --dataset ../shared/bench-data/msmarco --limit-only --encoder torch
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


def fmt(value) -> str:
    """A figure to 3 places, or n/a when it cannot be judged (no queries of that kind)."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


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


# Codes: ABC-123, B12X, INC-2291. Names in any alphabet: Jean-Luc, Oyelaran-Fitzgibbon, Dahl-Madsen,
# Ångström-Øberg, and single capitalised words with a non-ASCII letter (Kędzierska, Þorvaldsson).
CODE = re.compile(r"\b[A-Z]{1,6}-?\d{2,}[A-Za-z0-9-]*\b")
WORDS = re.compile(r"(?<![\w-])[^\W\d_]+(?:-[^\W\d_]+)*(?![\w-])")


def is_name(word: str) -> bool:
    """Capitalised (each hyphen-joined part: Upper + lower letters), and either hyphenated or
    holding a non-ASCII letter, so it is rare enough to be a known-item query."""
    parts = word.split("-")
    if not all(len(p) >= 2 and p[0].isupper() and p[1:].islower() for p in parts):
        return False
    return len(parts) > 1 or (len(word) >= 5 and not word.isascii())


def identifiers_in(text: str) -> list[str]:
    return CODE.findall(text) + [w for w in WORDS.findall(text) if is_name(w)]


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
        for match in identifiers_in(body):
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
    """Every query in every mode at k=10 (runs: mode -> qid -> corpus ids), the dense and
    lexical top-50 lists hybrid fuses (lists: mode -> qid -> [(corpus id, score)]) and the
    weights the served hybrid used for each query (lists["weights"]: qid -> fusion)."""
    runs: dict[str, dict[str, list[str]]] = {}
    weights: dict[str, dict] = {}
    for mode in ("dense", "lexical", "hybrid"):
        runs[mode] = {}
        for qid, text in texts.items():
            response = client.post("/search", json={"query": text, "k": K, "mode": mode})
            response.raise_for_status()
            body = response.json()
            if body["mode"] != mode:
                raise SystemExit(f"asked for {mode}, the API answered {body['mode']}: {body.get('note')}")
            runs[mode][qid] = first_per_doc(doc_of_key[h["source"]] for h in body["hits"])
            if mode == "hybrid":
                weights[qid] = body.get("fusion") or {}
    lists: dict[str, dict] = {"dense": {}, "lexical": {}}
    for mode in ("dense", "lexical"):
        for qid, text in texts.items():
            body = client.post("/search", json={"query": text, "k": DEPTH, "mode": mode}).json()
            lists[mode][qid] = [(doc_of_key[h["source"]], h["score"]) for h in body["hits"]]
    lists["weights"] = weights
    return runs, lists


def fusion_variants(lists) -> dict[str, dict[str, list[str]]]:
    """Each RRF and convex variant applied to the same dense and lexical candidate lists."""
    from lakerag.search.fusion import convex, weighted_rrf

    def fuse(method) -> dict[str, list[str]]:
        return {q: first_per_doc(doc for doc, _ in method(lists["dense"][q], lists["lexical"][q]))
                for q in lists["dense"]}

    variants = {"adaptive: the API's per-query weights": {
        q: first_per_doc(doc for doc, _ in weighted_rrf(
            {"d": [x for x, _ in lists["dense"][q]], "l": [x for x, _ in lists["lexical"][q]]},
            {"d": lists["weights"][q].get("dense_weight", 1.0), "l": lists["weights"][q].get("lexical_weight", 0.3)},
            lists["weights"][q].get("rrf_k", 60.0)))
        for q in lists["dense"]}}
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

def limit_run(settings, corpus, queries, qrels):
    """The limit: the model of ``settings`` encodes the corpus texts and the queries directly,
    exact inner-product search. Returns (embedder, query id -> top-K corpus ids, seconds)."""
    import numpy as np
    from lakerag.embedding import cap_threads, load_embedder

    embedder = load_embedder(settings)
    cap_threads()
    started = time.perf_counter()
    ids, qids = list(corpus), list(qrels)
    corpus_vectors = embedder.encode_passages([passage(*corpus[d]) for d in ids])
    query_vectors = embedder.encode_queries([queries[q] for q in qids])
    seconds = time.perf_counter() - started
    top = np.argsort(-(query_vectors @ corpus_vectors.T), axis=1)[:, :K]
    return embedder, {q: [ids[j] for j in row] for q, row in zip(qids, top)}, seconds


def limit_only(args, corpus, queries, qrels) -> int:
    """--limit-only: the encoder's own nDCG@10 (e.g. ONNX vs torch vs int8), no pipeline, no server.
    With one chunk per entry the pipeline's dense mode equals it (dense / limit 1.000 in docs/retrieval.md)."""
    from lakerag import config

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKERAG_", "GEMINI_"))}
    env.update({"LAKERAG_ENCODER": args.encoder, "HF_HUB_OFFLINE": "1"})
    if args.model_cache_dir:
        env["LAKERAG_MODEL_CACHE_DIR"] = str(Path(args.model_cache_dir).resolve())
    embedder, limit, seconds = limit_run(config.from_env(env), corpus, queries, qrels)
    ndcg, recall = evaluate(limit, qrels)
    figures = {"dataset": str(args.dataset), "queries": len(qrels), "limit_only": True,
               "encoder": {k: embedder.encoder.get(k) for k in ("runtime", "name", "sha256")},
               "ndcg_limit": round(ndcg, 4), "recall_limit": round(recall, 4), "encode_seconds": round(seconds, 1)}
    print(f"limit ({figures['encoder']['runtime']}, {figures['encoder'].get('sha256') or '-'}): nDCG@10 {ndcg:.4f}, "
          f"recall@10 {recall:.4f}; encoding {len(corpus)} entries + {len(qrels)} queries {seconds:.0f} s")
    print(json.dumps(figures))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, type=Path, help="BEIR layout: corpus.jsonl, queries.jsonl, "
                                                                    "qrels/test.tsv")
    parser.add_argument("--keep", action="store_true", help="keep the temp store and print where it is")
    parser.add_argument("--encoder", choices=("auto", "onnx", "torch"), default="auto",
                        help="LAKERAG_ENCODER of the pipeline, the API and the limit (e.g. onnx vs torch)")
    parser.add_argument("--model-cache-dir", default="", help="LAKERAG_MODEL_CACHE_DIR, e.g. one holding an "
                                                              "int8 export (`lakerag model export --int8`)")
    parser.add_argument("--limit-only", action="store_true", help="only the limit (the encoder's own nDCG@10): "
                                                                      "compare encoders in minutes, not the pipeline")
    args = parser.parse_args()
    if args.limit_only:
        return limit_only(args, *load_dataset(args.dataset))

    import bm25s
    import httpx
    import numpy as np
    from lakerag import config
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
                    "HF_HUB_OFFLINE": "1", "PYSPARK_PYTHON": os.environ["PYSPARK_PYTHON"],
                    "LAKERAG_ENCODER": args.encoder})
        if args.model_cache_dir:
            env["LAKERAG_MODEL_CACHE_DIR"] = str(Path(args.model_cache_dir).resolve())
        settings = config.from_env(env)

        # 1. The real pipeline.
        started = time.perf_counter()
        summary = run_all(settings)
        pipeline_s = time.perf_counter() - started
        if not summary["ok"]:
            raise SystemExit(f"pipeline failed: {json.dumps(summary, default=str)[:3000]}")
        from lakerag.index.publish import load_current
        from lakerag.store import store_for

        served = load_current(store_for(settings), tmp / "check")
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
        embedder, limit, limit_encode_s = limit_run(settings, corpus, queries, qrels)
        qids = list(qrels)

        # 4. BM25 alone, straight from bm25s, cut into terms as the served index is.
        from lakerag.index.lexical import terms

        retriever = bm25s.BM25()
        retriever.index([terms(passage(*corpus[d])) or [""] for d in ids], show_progress=False)
        bm25_alone = {}
        for q in qids:
            scores = retriever.get_scores(terms(queries[q])) if terms(queries[q]) else np.zeros(len(ids))
            best = [j for j in np.argsort(-scores, kind="stable")[:K] if scores[j] > 0]
            bm25_alone[q] = [ids[j] for j in best]

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
        ratio = dense_ndcg / limit_ndcg if limit_ndcg else float("nan")
        print(f"\npipeline dense - limit per query: {limit_diff:+.4f} ± {limit_se:.4f} (s.e.)")
        print(f"ratio pipeline dense / limit (nDCG@10): {fmt(ratio)}  (target >= 0.98); "
              f"recall@10 ratio {fmt(dense_recall / limit_recall if limit_recall else None)}")

        # The targets: hybrid vs each of its parts.
        figures = {"dataset": str(args.dataset), "queries": len(qrels), "known_item_queries": len(identifiers),
                   "dense_over_limit": round(ratio, 4), "ndcg_limit": round(limit_ndcg, 4),
                   "encoder": {k: embedder.encoder.get(k) for k in ("runtime", "name", "sha256")}}
        print("\nserved hybrid minus each mode, nDCG@10 per query (± paired s.e.):")
        for mode in ("dense", "lexical"):
            diff, se = paired_difference(runs["hybrid"], runs[mode], qrels)
            figures[f"ndcg_{mode}"] = round(evaluate(runs[mode], qrels)[0], 4)
            figures[f"hybrid_minus_{mode}"], figures[f"hybrid_minus_{mode}_se"] = round(diff, 4), round(se, 4)
            print(f"  hybrid - {mode:8} {diff:+.4f} ± {se:.4f}")
        figures["ndcg_hybrid"] = round(evaluate(runs["hybrid"], qrels)[0], 4)
        best_mode = max(("dense", "lexical"), key=lambda m: figures[f"ndcg_{m}"])
        ok_ndcg = figures[f"hybrid_minus_{best_mode}"] >= -figures[f"hybrid_minus_{best_mode}_se"]
        figures["ndcg_target_met"] = ok_ndcg
        print(f"  target hybrid >= max(dense, lexical) - 1 s.e. (best: {best_mode}): {'met' if ok_ndcg else 'MISSED'}")
        success = {mode: known_item(id_runs[mode], id_qrels)[0] if identifiers else None
                   for mode in ("dense", "lexical", "hybrid")}
        figures.update({f"success1_{mode}": None if v is None else round(v, 4) for mode, v in success.items()})
        if identifiers:
            better = max(success["dense"], success["lexical"])
            figures["success1_target_met"] = success["hybrid"] >= better - 0.05
            print(f"  known-item success@1: dense {fmt(success['dense'])}, lexical {fmt(success['lexical'])}, hybrid "
                  f"{fmt(success['hybrid'])}; target within 0.05 of the better: "
                  f"{'met' if figures['success1_target_met'] else 'MISSED'}")
        else:
            figures["success1_target_met"] = None
            print("  known-item success@1: n/a (no rare code or name found in this corpus)")

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
            hit1, mrr = known_item(id_run, id_qrels) if identifiers else (None, None)
            print(f"  {name:42} {n:8.3f} {r:10.3f} {diff:+9.3f} ± {se:.3f}   {fmt(hit1):>9} {fmt(mrr):>7}")
        key = "adaptive: the API's per-query weights"
        same = sum(variants[key][q][:K] == runs["hybrid"][q][:K] for q in qids) + \
            sum(id_variants[key][q][:K] == id_runs["hybrid"][q][:K] for q in identifiers)
        print(f"\nserved hybrid vs the '{key}' row: identical top-{K} for {same}/{len(qids) + len(identifiers)} "
              "queries")
        figures["seconds"] = round(time.perf_counter() - began, 1)
        print(f"total {time.perf_counter() - began:.0f} s")
        print(json.dumps(figures))
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
