"""Shared fixtures: a real S3 API (moto server) and settings pointing at temp stores."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from lakerag import config

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "services" / "lakerag" / "samples"

# Tests never reach a model hub or real AWS.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


# `python -c THIS LIMIT COMMAND...`: COMMAND with writes past LIMIT bytes refused by the kernel (EFBIG;
# SIGXFSZ ignored, which exec keeps), as a full or size-limited volume refuses them (ENOSPC).
_WITH_FILE_SIZE_LIMIT = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
os.execv(sys.argv[2], sys.argv[2:])
"""


def lakerag_with_file_size_limit(limit: int) -> list[str]:
    """The argv prefix of a `lakerag` process that cannot write a file past ``limit`` bytes."""
    return [sys.executable, "-c", _WITH_FILE_SIZE_LIMIT, str(limit), str(Path(sys.executable).with_name("lakerag"))]


def reset_peak_rss() -> int:
    """Reset this process's peak resident set size (VmHWM, Linux); return its RSS now, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_bytes("VmRSS")


def peak_rss() -> int:
    """This process's peak resident set size since the last ``reset_peak_rss``, in bytes."""
    return _proc_status_bytes("VmHWM")


def _proc_status_bytes(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024


@contextmanager
def read_only(directory: Path):
    """``directory`` unwritable while the block runs: a read-only bind mount as root (root ignores
    file modes), its write bits otherwise. Skips the test where root cannot mount."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    if subprocess.run(["mount", "--bind", directory, directory], check=False, capture_output=True).returncode:
        pytest.skip("root here cannot bind-mount (no CAP_SYS_ADMIN)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", directory], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", directory], check=True)


@contextmanager
def serve_with_file_size_limit(settings: config.Settings, tmp_path: Path, limit: int):
    """`lakerag serve` on ``settings``' store as its own process whose volumes refuse files past
    ``limit`` bytes; yields its base URL once /ready says ready."""
    import httpx

    port = free_port()
    env = {**os.environ, "LAKERAG_STORE_URI": settings.store_uri, "LAKERAG_INDEX_DIR": settings.index_dir,
           "LAKERAG_PORT": str(port)}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*lakerag_with_file_size_limit(limit), "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{base}/ready", timeout=5).json()["ready"]
        except httpx.TransportError:
            return False

    try:
        assert wait_until(ready, timeout=120), log.read_text()[-3000:]
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until(condition, timeout: float = 30.0) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (checked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server on a free loopback port for the whole session."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    """AWS_* variables for the moto server, and a fresh bucket; returns the bucket name."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    bucket = f"lakerag-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def local_settings(tmp_path):
    """Settings for a fresh file:// store in a temp dir."""
    return config.from_env({}, store_uri=f"file://{tmp_path / 'store'}", index_dir=str(tmp_path / "serving"))


@pytest.fixture
def s3_settings(s3_env, moto_endpoint, tmp_path):
    """Settings for a fresh bucket on the moto server."""
    return config.from_env({}, store_uri=f"s3://{s3_env}/lake-root", aws_endpoint_url=moto_endpoint,
                           aws_region="us-east-1", index_dir=str(tmp_path / "serving"))


def as_legacy_version(path: Path) -> Path:
    """Turn a version directory into what releases before chunks.sqlite published: the same
    chunk rows as chunks.parquet (the old writer's schema) and no chunks.hits, the manifest
    listing that instead."""
    import hashlib
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from lakerag.index.artifacts import CHUNK_COLUMNS
    from lakerag.index.rows import ChunkRows

    columns = ChunkRows.open(path / "chunks.sqlite").columns()
    types = {"chunk_index": pa.int32(), "page": pa.int32()}
    table = pa.table({name: pa.array(columns[name], type=types.get(name, pa.string())) for name in CHUNK_COLUMNS})
    pq.write_table(table, path / "chunks.parquet")
    (path / "chunks.sqlite").unlink()
    (path / "chunks.hits").unlink()
    (path / ".verified.json").unlink(missing_ok=True)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["chunks.sqlite"], manifest["files"]["chunks.hits"]
    manifest["files"]["chunks.parquet"] = hashlib.sha256((path / "chunks.parquet").read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return path
