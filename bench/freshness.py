"""Freshness benchmark: upload -> first /search hit, and delete -> gone, on `lakerag run`.

``lakerag run`` (the embedded default: serve + watch raw/) runs as a separate process over
a temp file:// store seeded with a few documents. Each change is one small text document
holding a unique made-up word; the clock starts before POST /documents (or DELETE) and
stops at the first /search response whose hits include (or no longer include) that
document. /search is polled every 0.1 s over HTTP, as a user would.

* sequential: ``--changes`` single-document uploads, each followed by its delete;
* bursts: ``--bursts`` times, 5 concurrent uploads, then their 5 concurrent deletes.

Target: p95 <= 20 s for uploads and deletes on this machine. The ratio line compares
p50 with the pipeline's own run time (etl + embed + index from lake/_runs/) of the last
run: what the watcher, the API reload and the polling add on top of the work itself.
Last line: one JSON object with upload_p50_s, upload_p95_s, delete_p50_s, delete_p95_s.

    .venv/bin/python bench/freshness.py [--changes 20] [--bursts 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TARGET_P95_S = 20.0
POLL_S = 0.1
SEED = {
    "bread.txt": "Sourdough bread rises with wild yeast and lactic acid bacteria kept alive in a starter.",
    "rail.md": "# Night trains\n\nSleeper trains connect Vienna with Hamburg; couchettes hold six berths.",
    "bees.txt": "Honey bees tell each other the direction of flowers with a waggle dance inside the hive.",
}
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "shu"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def made_up_word(i: int) -> str:
    """A word no seed document or other change holds, so a hit on it is this document's."""
    digits = f"{i:04d}"
    return "fresh" + "".join(SYLLABLES[int(d)] for d in digits)


def document(i: int) -> tuple[str, bytes]:
    word = made_up_word(i)
    text = (f"The {word} protocol describes how a {word} courier hands parcels to the next station. "
            f"Every {word} parcel is logged with its weight and destination.")
    return f"change-{i:04d}.txt", text.encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    def __init__(self, base: str):
        self.client = httpx.Client(base_url=base, timeout=30)

    def sources(self, word: str) -> set[str]:
        response = self.client.post("/search", json={"query": f"{word} parcel courier", "k": 10, "mode": "lexical"})
        return {hit["source"] for hit in response.json().get("hits", [])} if response.status_code == 200 else set()

    def wait_for(self, word: str, key: str, present: bool, started: float, timeout: float = 300.0) -> float:
        while time.perf_counter() - started < timeout:
            if (key in self.sources(word)) == present:
                return time.perf_counter() - started
            time.sleep(POLL_S)
        raise TimeoutError(f"{key} still {'absent' if present else 'present'} after {timeout}s")

    def upload(self, i: int) -> float:
        name, data = document(i)
        started = time.perf_counter()
        response = self.client.post("/documents", files={"file": (name, data)})
        response.raise_for_status()
        return self.wait_for(made_up_word(i), f"raw/{name}", True, started)

    def delete(self, i: int, doc_id: str) -> float:
        name, _ = document(i)
        started = time.perf_counter()
        self.client.delete(f"/documents/{doc_id}").raise_for_status()
        return self.wait_for(made_up_word(i), f"raw/{name}", False, started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=20, help="sequential single-document uploads (and deletes)")
    parser.add_argument("--bursts", type=int, default=4, help="bursts of 5 concurrent uploads (and deletes)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
    from lakerag.lake import doc_id_for

    tmp = Path(tempfile.mkdtemp(prefix="lakerag-freshness-"))
    store = tmp / "store"
    (store / "raw").mkdir(parents=True)
    for name, text in SEED.items():
        (store / "raw" / name).write_text(text)
    port = free_port()
    env = {**os.environ, "LAKERAG_STORE_URI": f"file://{store}", "LAKERAG_INDEX_DIR": str(tmp / "serving"),
           "LAKERAG_PORT": str(port), "LAKERAG_INDEX_POLL_SECONDS": "3600",  # the in-process notify reloads
           "LAKERAG_WATCH_POLL_SECONDS": os.environ.get("LAKERAG_WATCH_POLL_SECONDS", "0.5"),
           "LAKERAG_WATCH_DEBOUNCE_SECONDS": os.environ.get("LAKERAG_WATCH_DEBOUNCE_SECONDS", "0.3")}
    started = time.perf_counter()
    log = open(tmp / "lakerag-run.log", "w")  # noqa: SIM115 - outlives the server process; closed in finally
    proc = subprocess.Popen([sys.executable, "-m", "lakerag.cli", "run"], env=env, stdout=log, stderr=log)
    api = Api(f"http://127.0.0.1:{port}")
    uploads: dict[str, list[float]] = {"sequential": [], "burst": []}
    deletes: dict[str, list[float]] = {"sequential": [], "burst": []}
    try:
        while True:
            try:
                if api.client.get("/index").json().get("loaded"):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"lakerag run exited with {proc.returncode}; see {tmp / 'lakerag-run.log'}")
            time.sleep(0.5)
        print(f"lakerag run serving the seed index after {time.perf_counter() - started:.1f}s", flush=True)
        for i in range(args.changes):
            uploads["sequential"].append(api.upload(i))
            deletes["sequential"].append(api.delete(i, doc_id_for(f"raw/{document(i)[0]}")))
            print(f"change {i + 1}/{args.changes}: upload {uploads['sequential'][-1]:.2f}s, "
                  f"delete {deletes['sequential'][-1]:.2f}s", flush=True)
        with ThreadPoolExecutor(5) as pool:
            for b in range(args.bursts):
                ids = [1000 + 5 * b + j for j in range(5)]
                uploads["burst"].extend(pool.map(api.upload, ids))
                deletes["burst"].extend(pool.map(lambda i: api.delete(i, doc_id_for(f"raw/{document(i)[0]}")), ids))
                print(f"burst {b + 1}/{args.bursts}: uploads max {max(uploads['burst'][-5:]):.2f}s, deletes max "
                      f"{max(deletes['burst'][-5:]):.2f}s", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    runs = {stage: json.loads((store / "lake" / "_runs" / f"{stage}.json").read_text())
            for stage in ("etl", "embed", "index")}
    pipeline_s = runs["etl"]["seconds"]["total"] + runs["embed"]["seconds"] + runs["index"]["seconds"]
    all_up = uploads["sequential"] + uploads["burst"]
    all_down = deletes["sequential"] + deletes["burst"]
    figures = {
        "changes": args.changes, "bursts_of_5": args.bursts,
        "upload_p50_s": round(percentile(all_up, 0.5), 2), "upload_p95_s": round(percentile(all_up, 0.95), 2),
        "delete_p50_s": round(percentile(all_down, 0.5), 2), "delete_p95_s": round(percentile(all_down, 0.95), 2),
    }
    for kind in ("sequential", "burst"):
        if uploads[kind]:
            figures[f"{kind}_upload_p50_s"] = round(percentile(uploads[kind], 0.5), 2)
            figures[f"{kind}_upload_p95_s"] = round(percentile(uploads[kind], 0.95), 2)
            figures[f"{kind}_delete_p50_s"] = round(percentile(deletes[kind], 0.5), 2)
            figures[f"{kind}_delete_p95_s"] = round(percentile(deletes[kind], 0.95), 2)
    figures.update(
        last_run_pipeline_s=round(pipeline_s, 2), last_run_etl_s=runs["etl"]["seconds"]["total"],
        last_run_embed_s=runs["embed"]["seconds"], last_run_index_s=runs["index"]["seconds"],
        upload_p50_over_pipeline=round(figures["upload_p50_s"] / pipeline_s, 2) if pipeline_s else None,
        target_p95_s=TARGET_P95_S,
        upload_p95_within_target=figures["upload_p95_s"] <= TARGET_P95_S,
        delete_p95_within_target=figures["delete_p95_s"] <= TARGET_P95_S,
        cpus=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 1),
    )
    print(f"upload -> searchable: p50 {figures['upload_p50_s']}s p95 {figures['upload_p95_s']}s; delete -> gone: "
          f"p50 {figures['delete_p50_s']}s p95 {figures['delete_p95_s']}s (target p95 <= {TARGET_P95_S}s); "
          f"p50 / last pipeline run ({pipeline_s:.1f}s) = {figures['upload_p50_over_pipeline']}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
