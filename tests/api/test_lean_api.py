"""The API process carries only what it serves: `lakerag serve` (and `lakerag index sync --once`, its
init container) run with pyarrow, pandas and deltalake made unimportable, as in the api image, and
serve a published index: search with filters, summaries, GET /documents. A version published as
chunks.parquet by an older release is refused there with what to run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import as_legacy_version, free_port
from lakerag.lake import DOCUMENTS_KEY, doc_id_for
from lakerag.store import open_store

from .conftest import publish

BLOCKED = ("pyarrow", "pandas", "deltalake", "pyspark", "torch")
# Run first in the child: any import of a blocked package (or of its submodules) fails.
BLOCKER = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ImportError(name + " is blocked: the API must serve without it")
sys.meta_path.insert(0, Blocked())
"""


def lakerag_without_lake_libraries(args: list[str], env: dict, **popen) -> subprocess.Popen:
    code = BLOCKER + f"from lakerag.cli import main\nsys.exit(main({args!r}))\n"
    return subprocess.Popen([sys.executable, "-c", code], env=env, **popen)


def env_for(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKERAG_", "GEMINI_"))}
    env.update({"LAKERAG_STORE_URI": settings.store_uri, "LAKERAG_INDEX_DIR": settings.index_dir,
                "LAKERAG_ENCODER": "onnx", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def test_the_blocker_blocks():
    result = subprocess.run([sys.executable, "-c", BLOCKER + "import pyarrow.parquet"], check=False,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "pyarrow is blocked" in result.stderr


def test_serve_without_pyarrow_pandas_deltalake(local_settings, sample_index, sample_docs, embedder, tmp_path):
    store = open_store(local_settings.store_uri)
    for name, data in sample_docs.items():
        store.put(f"raw/{name}", data)
    store.put("raw/new.txt", b"uploaded after the last pipeline run")
    listed = {o.key: o.version for o in store.list("raw/")}
    # What the last ETL run wrote (tables.write_document_status): every sample file extracted.
    status = {"format": 1, "extracted": [[f"raw/{n}", listed[f"raw/{n}"]] for n in sample_docs], "quarantined": [],
              "documents": {doc_id_for(f"raw/{n}"): {"chunks": 1, "title": n} for n in sample_docs}}
    store.put(DOCUMENTS_KEY, json.dumps(status).encode())
    version = publish(local_settings, sample_index)
    env = env_for(local_settings)

    sync = lakerag_without_lake_libraries(["index", "sync", "--once"], env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
    out, _ = sync.communicate(timeout=120)
    assert sync.returncode == 0 and f"index {version} synced" in out, out

    port = free_port()
    env["LAKERAG_PORT"] = str(port)
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        server = lakerag_without_lake_libraries(["serve"], env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/ready", timeout=2).json().get("index_loaded"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as client:
            body = client.post("/search", json={"query": "What is the hotel limit per night on business travel?",
                                                "k": 3}).json()
            assert body["matched"] and body["index_version"] == version and len(body["hits"]) == 3, body
            hit = body["hits"][0]
            assert hit["source"].startswith("raw/") and hit["text"] and hit["chunk_id"]

            filtered = client.post("/search", json={"query": "travel", "k": 50, "source_prefix": hit["source"]}).json()
            assert filtered["hits"] and {h["source"] for h in filtered["hits"]} == {hit["source"]}

            summary = client.post("/summarize", json={"doc_id": hit["doc_id"]})
            assert summary.status_code == 200 and summary.json()["summary"], summary.text

            listing = client.get("/documents").json()
            states = {d["key"]: d for d in listing["documents"]}
            assert states["raw/new.txt"]["state"] == "landed"
            served = {h["source"] for h in client.post("/search", json={"query": "policy", "k": 50}).json()["hits"]}
            assert served and all(states[key]["state"] == "indexed" and states[key]["chunks"] >= 1 for key in served)
            assert listing["index_version"] == version
        assert " is blocked" not in log.read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_a_chunks_parquet_version_is_refused_with_what_to_run(local_settings, sample_index, tmp_path):
    import shutil

    old = shutil.copytree(sample_index, tmp_path / "old")
    as_legacy_version(Path(old))
    code = BLOCKER + f"""
from lakerag.index.artifacts import IndexRejected, load_index_dir
try:
    load_index_dir({str(old)!r})
except IndexRejected as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "chunks.parquet" in result.stdout and "`lakerag pipeline index`" in result.stdout, result.stdout


def test_start_up_imports_no_torch_when_encoding_with_onnx(local_settings, embedder):
    """torch is installed here (dev venv), as it is not in the image: warm-up must not import it
    (only to cap its threads it cost seconds of start-up)."""
    code = """
import sys
from lakerag import config
from lakerag.api.deps import AppState
from lakerag.api.main import warm_up
from lakerag.api.metrics import Metrics
state = AppState(settings=config.from_env(), metrics=Metrics())
warm_up(state, watch=False)
print(state.embedder.encoder["runtime"], "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                            env=env_for(local_settings))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnx", "False"], result.stdout


@pytest.mark.parametrize("runtime, torch_imported", [("onnx", "False"), ("torch", "True")])
def test_search_thread_settings_import_torch_only_when_it_encodes(runtime, torch_imported):
    """The settings the API and bench/search.py's in-process path share (`cap_search_threads`): one
    FAISS thread per query, and torch imported (and capped) only when it encodes; the bench used to
    import it with ONNX, unlike the API."""
    code = ("import sys, types, faiss\n"
            "from lakerag.api.main import cap_search_threads\n"
            f"cap_search_threads(types.SimpleNamespace(encoder={{'runtime': {runtime!r}}}))\n"
            "print('torch' in sys.modules, faiss.omp_get_max_threads(), "
            "sys.modules['torch'].get_num_threads() if 'torch' in sys.modules else '-')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKERAG_", "GEMINI_", "OMP_"))}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [torch_imported, "1", "1" if runtime == "torch" else "-"]
