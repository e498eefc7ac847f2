"""Upload benchmark: what POST /documents costs the API process in memory and temp disk.

* ``lakerag serve`` runs as a separate process on loopback over a file:// store, with its
  own TMPDIR (where a spooled upload would land) and the packaged model loaded.
* One 50 MB upload, then 8 concurrent 50 MB uploads: peak RSS growth over the ready
  baseline (polled every 10 ms from /proc), RSS still held 2 s after they finished, and the
  peak size of TMPDIR. Target (issue 13): peak growth <= 64 MB + 8 x part size for 8
  concurrent uploads, nothing held afterwards.
* Bytes the server accepted before answering 401 (no key) / 413 (declared length over the
  limit) to a request that claims 1 GB: counted on the client as bytes sent before the
  answer arrived (kernel socket buffers included, so an upper bound).

Bounded: 9 uploads and 2 refused requests, loopback only; the last line is one JSON object.

    .venv/bin/python bench/uploads.py [--mb 50] [--concurrent 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MB = 1024 * 1024
KEY = "bench-key"
BOUNDARY = "benchboundary"
PART_BYTES = 8 * MB  # store.S3_PART_BYTES: what one streaming upload may hold in memory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def temp_bytes(pid: int, path: Path) -> int:
    """Bytes in ``path``, plus files the process holds open there after unlinking them
    (a SpooledTemporaryFile rolled over to disk has no name left to list)."""
    total = dir_bytes(path)
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        try:
            if os.readlink(fd).startswith(str(path)) and os.readlink(fd).endswith("(deleted)"):
                total += os.stat(fd).st_size
        except OSError:
            pass
    return total


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


class Sampler:
    """Peak RSS of a process and peak size of a directory while a block runs."""

    def __init__(self, pid: int, tmpdir: Path):
        self.pid, self.tmpdir = pid, tmpdir
        self.peak_rss = self.peak_tmp = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss(self.pid))
            self.peak_tmp = max(self.peak_tmp, temp_bytes(self.pid, self.tmpdir))
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def upload(port: int, name: str, size: int) -> int:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("POST", "/documents")
    conn.putheader("X-API-Key", KEY)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    block = (b"lorem ipsum dolor sit amet " * 40000)[:MB]
    sent = 0
    while sent < size:
        piece = block[: min(MB, size - sent)]
        conn.send(piece)
        sent += len(piece)
    conn.send(tail)
    status = conn.getresponse().status
    conn.close()
    return status


def bytes_before_refusal(port: int, headers: str, claimed: int = 1024 * MB) -> tuple[int, str]:
    head = (f"POST /documents HTTP/1.1\r\nHost: bench\r\n{headers}Content-Type: multipart/form-data; "
            f"boundary={BOUNDARY}\r\nContent-Length: {claimed}\r\n\r\n--{BOUNDARY}\r\nContent-Disposition: "
            f"form-data; name=\"file\"; filename=\"big.txt\"\r\n\r\n").encode()
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        block = b"\0" * 65536
        while sent < claimed and not answer:
            sock.settimeout(0.02)
            try:
                answer = sock.recv(4096)
                break
            except TimeoutError:
                pass
            sock.settimeout(5)
            try:
                sent += sock.send(block)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
        if not answer:
            sock.settimeout(10)
            try:
                answer = sock.recv(4096)
            except OSError:
                pass
    return sent, answer.split(b"\r\n", 1)[0].decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--claimed-mb", type=int, default=1024, help="declared size of the refused requests")
    args = parser.parse_args()
    size = args.mb * MB
    work = Path(tempfile.mkdtemp(prefix="lakerag-bench-uploads-"))
    tmpdir = work / "tmp"
    tmpdir.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmpdir), "LAKERAG_STORE_URI": f"file://{work / 'store'}",
           "LAKERAG_INDEX_DIR": str(work / "serving"), "LAKERAG_PORT": str(port), "LAKERAG_API_KEY": KEY,
           "LAKERAG_MAX_UPLOAD_BYTES": str(size + MB), "LAKERAG_LOG_LEVEL": "WARNING",
           "LAKERAG_INDEX_POLL_SECONDS": "3600"}
    server = subprocess.Popen([sys.executable, "-c", "from lakerag.cli import main; raise SystemExit(main(['serve']))"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not become ready: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        time.sleep(1.0)
        base = rss(server.pid)
        with Sampler(server.pid, tmpdir) as one:
            assert upload(port, "one.txt", size) == 201
        time.sleep(2.0)
        after_one = rss(server.pid)
        with Sampler(server.pid, tmpdir) as many, ThreadPoolExecutor(args.concurrent) as pool:
            statuses = list(pool.map(lambda i: upload(port, f"many-{i}.txt", size), range(args.concurrent)))
        assert statuses == [201] * args.concurrent, statuses
        time.sleep(2.0)
        after_many = rss(server.pid)
        claimed = args.claimed_mb * MB
        unauthorised = bytes_before_refusal(port, "", claimed=claimed)
        with Sampler(server.pid, tmpdir) as refused:
            too_large = bytes_before_refusal(port, f"X-API-Key: {KEY}\r\n", claimed=claimed)
    finally:
        server.terminate()
        server.wait(timeout=30)
    target = 64 * MB + args.concurrent * PART_BYTES
    figures = {
        "bench": "uploads", "upload_mb": args.mb, "concurrent": args.concurrent,
        "baseline_rss_mb": round(base / MB, 1),
        "one_peak_rss_growth_mb": round((one.peak_rss - base) / MB, 1),
        "one_peak_tmp_mb": round(one.peak_tmp / MB, 1),
        "many_peak_rss_growth_mb": round((many.peak_rss - base) / MB, 1),
        "many_peak_tmp_mb": round(many.peak_tmp / MB, 1),
        "held_after_one_mb": round((after_one - base) / MB, 1),
        "held_after_many_mb": round((after_many - base) / MB, 1),
        "target_peak_growth_mb": round(target / MB, 1),
        "many_peak_vs_target": round((many.peak_rss - base) / target, 3),
        "bytes_sent_before_401": unauthorised[0], "answer_401": unauthorised[1],
        "bytes_sent_before_413": too_large[0], "answer_413": too_large[1], "claimed_mb": args.claimed_mb,
        "refused_peak_tmp_mb": round(refused.peak_tmp / MB, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
