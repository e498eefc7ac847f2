"""bench/search.py end to end on a small index: requests pooled over fresh server + in-process pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "search.py"


@pytest.mark.slow
def test_the_ratio_pools_every_pair_and_the_slowest_start_is_judged(tmp_path):
    # An empty model cache, as on a fresh machine: the bench makes the ONNX export before it times
    # any start (a first start once timed the ~6 s export and read "NOT met").
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(BENCH), "--chunks", "2000", "--requests", "40", "--servers", "2",
                           "--rounds", "1", "--concurrency", "2"], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    figures = json.loads(lines[-1])
    assert figures["servers"] == 2
    export_line = next(i for i, line in enumerate(lines) if line.startswith("no ONNX export of "))
    assert "made it first" in lines[export_line]
    assert (tmp_path / "cache" / "lakerag" / "onnx").is_dir()
    starts = figures["start_to_index_loaded_each_s"]
    assert len(starts) == 2 and figures["start_to_index_loaded_s"] == max(starts)
    # Each start's index sync and load, as its server logged them: which phase made a slow start slow.
    for phase in ("index_sync_each_s", "index_load_each_s"):
        assert len(figures[phase]) == 2
        assert all(seconds is not None and 0 <= seconds < start for seconds, start in zip(figures[phase], starts))
    assert any(line.strip().startswith("of which the index's sync") for line in lines)
    # 20 requests per pair, both pairs pooled, on each path.
    assert any(line.strip().startswith("in-process encode+search") and line.endswith("n=40") for line in lines)
    assert any(line.strip().startswith("HTTP /search, 1 client") and line.endswith("n=40") for line in lines)
    # The bare server answered the same requests: its overhead is part of its latency, and its ratio
    # is taken against the same in-process side.
    assert any(line.strip().startswith("bare HTTP server, same search") and line.endswith("n=40") for line in lines)
    assert 0 < figures["bare_http_overhead_p50_ms"] < figures["bare_http_p50_ms"]
    assert figures["ratio_bare_http_in_process"] == pytest.approx(
        figures["bare_http_p50_ms"] / figures["in_process_p50_ms"], abs=0.002)
    assert figures["ratio_http_in_process"] == pytest.approx(figures["http_p50_ms"] / figures["in_process_p50_ms"],
                                                             abs=0.002)
    # The server's own encode + search, as its responses report it: below the latency, above the overhead.
    assert figures["http_overhead_p50_ms"] < figures["server_compute_p50_ms"] < figures["http_p50_ms"]
    assert any(line.strip().startswith("server encode + search, 1 client: p50") for line in lines)
    # Each side's encode and FAISS search apart (which one moves when a run's ratio does), and each pair's ratio.
    steps = figures["step_p50_ms"]
    assert set(steps) == {"local_encode", "local_faiss", "server_encode", "server_faiss", "bare_encode", "bare_faiss"}
    assert steps["server_encode"] + steps["server_faiss"] < figures["http_p50_ms"]
    # The bare server's own, the same way: a gap both servers share is the machine's, not LakeRAG's.
    assert steps["bare_encode"] + steps["bare_faiss"] < figures["bare_http_p50_ms"]
    assert figures["bare_http_overhead_p50_ms"] < figures["bare_compute_p50_ms"] < figures["bare_http_p50_ms"]
    assert any("the bare server's" in line for line in lines if "server encode + search, 1 client" in line)
    assert 0 < steps["local_encode"] + steps["local_faiss"] < 2 * figures["in_process_p50_ms"]
    assert len(figures["ratio_each_pair"]) == 2
    assert all(pair > 0.5 for pair in figures["ratio_each_pair"])


@pytest.mark.parametrize("arguments", [["--servers", "0"], ["--requests", "20", "--servers", "3"]])
def test_too_few_servers_or_requests_is_a_clear_error(arguments):
    done = subprocess.run([sys.executable, str(BENCH), *arguments], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2
    assert "--requests must be at least --servers x --block" in done.stderr


def test_a_start_whose_index_loads_before_its_model_waits_for_both(tmp_path):
    """/ready answers 503 with the index already loaded while the model still loads: the start is
    timed when both are there (a bench run once crashed on the missing ready time)."""
    import importlib.util
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    bench_search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_search)
    answers = [(503, {"ready": False, "index_loaded": False})] + [(503, {"ready": False, "index_loaded": True})] * 4

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = answers.pop(0) if answers else (200, {"ready": True, "index_loaded": True})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log = tmp_path / "serve.log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = bench_search.wait_until_serving(proc, server.server_address[1], bench_search.time.perf_counter(), log)
    finally:
        proc.kill()
        server.shutdown()
    assert answers == []  # it kept polling through the 503s that had the index but no model
    assert start.ready_s is not None and start.index_s == start.ready_s
    assert (start.sync_s, start.load_s) == (None, None)
