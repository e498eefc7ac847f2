#!/usr/bin/env python3
"""Bytecode for exactly what an image's entry point imports at start-up (build stages only).

    startup-pyc.py IMAGE DEST [--cache DIR]

runs IMAGE's start-up in a fresh interpreter (bytecode writing off but for ``--cache``), takes the source
files of every module it imported, and compiles each into DEST, mirroring its absolute
path (``DEST/opt/venv/.../__pycache__/x.cpython-311.pyc``):

- ``DEST/deps``: the locked dependencies and the standard library, as unchecked-hash
  pycs. They are valid whatever the files' mtimes, and Python never re-reads the source
  to check them: the lock (and the base image) fix these files, so they cannot change
  under their bytecode.
- ``DEST/project``: LakeRAG's own modules (``lakerag``, ``lakerag_spark``), as
  checked-hash pycs: Python hashes the source on import (cheap, the project is small)
  and ignores a pyc whose source was edited, e.g. code mounted over the image's.

Each part is compiled in its own fresh interpreter from a sorted list with hash
randomisation off, so equal inputs give byte-equal pycs: after a code change that
imports nothing new, ``DEST/deps`` is unchanged and BuildKit reuses the layer that
copies it (its cache key is the content, not the mtimes). Nothing outside the modules
the start-up imports is compiled: bulk ``compileall`` would add ~58 MB to the api
image for modules no process loads at start (images/README.md has the measurement).

``--cache DIR`` (a BuildKit cache mount in the Dockerfiles) keeps work between builds, so a
code change rebuilds faster: the start-up run reads and writes ordinary bytecode under
``DIR/prefix`` (``PYTHONPYCACHEPREFIX``), and each compiled pyc is kept in ``DIR/compiled``
under the hash of its inputs (interpreter, mode, path, source bytes) and copied from there
next time. A file compiled alone in a fresh interpreter gives the same bytes as in a batch,
so the output equals a run without the cache, byte for byte.
"""

from __future__ import annotations

import sys

# Only `sys` at the top: the start-up run records every module imported after the interpreter's
# own start, so this script imports what it needs for its other parts inside them.

PROJECT = ("lakerag", "lakerag_spark")
# The environment the images' runtime stages set, as far as start-up imports depend on it. The
# store is S3, as in a cluster (boto3's client is most of what the first store call imports), at an
# endpoint where nothing listens, tried once; the index and model directories are empty. So the
# warm-up fails at the model and the index, as it must here, after importing what it uses.
RUNTIME_ENV = {"HF_HUB_OFFLINE": "1", "LAKERAG_ENCODER": "onnx", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "LAKERAG_STORE_URI": "s3://startup-pyc/lake",
               "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard",
               "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "startup-pyc", "AWS_SECRET_ACCESS_KEY": "startup-pyc",
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_ALLOW_HTTP": "true",
               "LAKERAG_INDEX_DIR": "/tmp/startup-pyc/index", "LAKERAG_MODEL_CACHE_DIR": "/tmp/startup-pyc/models",
               "HF_HOME": "/tmp/startup-pyc/models"}


def start_api() -> None:
    """`lakerag serve`: the CLI, the app with its routes, uvicorn serving it (protocols, event
    loop, lifespan, the probes and a search answered) and the warm-up thread. A build stage
    has neither a model nor an index, so the warm-up stops at the model: what loading them
    imports (ONNX Runtime, tokenizers, the index modules) is imported here by name."""
    import socket
    import threading
    import time

    import typer
    from lakerag import cli, config
    from lakerag.api import main

    typer.main.get_command(cli.app).make_context("lakerag", ["serve"])
    settings = config.from_env()
    app = main.create_app(settings, watch=False)
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", workers=1, log_level="critical",
                                           server_header=False))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    app.state.lakerag.ready.wait(120)  # the warm-up has given up on the (absent) model
    for request in (b"GET /health", b"GET /ready", b"GET /documents", b"POST /search"):  # raw HTTP: no client library's imports
        with socket.create_connection(listener.getsockname(), timeout=30) as client:
            body = b'{"query": "start-up", "k": 1}' if request.startswith(b"POST") else b""
            client.sendall(request + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: "
                           b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            while client.recv(65536):
                pass
    server.should_exit = True
    thread.join(30)
    # the warm-up's encoder (lakerag.onnx_encoder imports ONNX Runtime and tokenizers when it loads
    # a model) and index loading (FAISS, SQLite, BM25 come with lakerag.index); a search with hits
    # also loads numpy.ma (numpy imports it lazily)
    _import("lakerag.onnx_encoder", "onnxruntime", "tokenizers", "lakerag.index.artifacts", "bm25s", "numpy.ma")


def start_embeddings() -> None:
    """`lakerag pipeline embed` (the default command) and `lakerag pipeline index`: the CLI,
    the jobs, and what they import lazily once they run: the store's run lock, the Delta tables
    read as Arrow and pandas, the ONNX encoder, the progress bar, the S3 store. (A build stage
    has no lake and no model.)"""
    import io

    import typer
    from lakerag import cli

    typer.main.get_command(cli.app).make_context("lakerag", ["pipeline", "embed"])
    _import("lakerag.lake.run_lock", "lakerag.embed_job", "lakerag.index.publish", "lakerag.onnx_encoder",
            "onnxruntime", "tokenizers", "deltalake.fs", "pandas", "pyarrow.dataset", "pyarrow.pandas_compat", "numpy.rec")
    from tqdm.auto import tqdm

    tqdm(total=1, file=io.StringIO()).close()  # its lock comes from multiprocessing
    from lakerag import config
    from lakerag.store import StoreError, store_for

    try:  # the jobs' first store call (boto3's client, then a refused connection)
        store_for(config.from_env()).exists("lake/_runs/embed.json")
    except StoreError:
        pass


def _import(*names: str) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)


STARTS = {"api": start_api, "embeddings": start_embeddings}


def imported_files(image: str, cache: str | None = None) -> list[str]:
    """Source files of the modules IMAGE's start-up imports (run in a fresh interpreter)."""
    import json
    import os
    import subprocess

    env = {**os.environ, **RUNTIME_ENV}
    if cache:  # the start-up's own imports: ordinary bytecode kept under the cache, not in the tree
        env.pop("PYTHONDONTWRITEBYTECODE")
        env["PYTHONPYCACHEPREFIX"] = os.path.join(cache, "prefix")
    probe = subprocess.run([sys.executable, __file__, "--start", image], capture_output=True, text=True,
                           env=env, check=False, timeout=300)
    if probe.returncode != 0:
        raise SystemExit(f"the start-up of {image} failed:\n{probe.stderr[-4000:]}")
    return json.loads(probe.stdout.splitlines()[-1])


def compile_files(files: list[str], dest: str, mode: str, cache: str | None = None) -> int:
    """Compile ``files`` (sorted, in a fresh interpreter) to DEST + their cache path; returns bytes written."""
    import os
    import subprocess

    if not files:
        return 0
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)  # it would move cache_from_source's paths
    result = subprocess.run([sys.executable, __file__, "--compile", mode, dest, *([cache] if cache else [])],
                            check=False, text=True, input="\n".join(sorted(files)), capture_output=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"compiling {len(files)} files failed:\n{result.stderr[-4000:]}")
    return int(result.stdout.strip() or 0)


def _compile_stdin(mode: str, dest: str, cache: str | None) -> None:
    import hashlib
    import os
    import py_compile
    import shutil
    from importlib.util import MAGIC_NUMBER, cache_from_source
    from pathlib import Path

    invalidation = py_compile.PycInvalidationMode[mode.upper().replace("-", "_")]
    total = 0
    for line in sys.stdin.read().splitlines():
        source = Path(line)
        target = Path(dest) / cache_from_source(str(source)).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        kept = None
        if cache:  # everything the pyc's bytes depend on
            key = hashlib.sha256(b"\0".join([MAGIC_NUMBER, sys.version.encode(), mode.encode(),
                                              line.encode(), source.read_bytes()])).hexdigest()
            kept = Path(cache) / "compiled" / key[:2] / f"{key}.pyc"
        if kept is not None and kept.is_file():
            shutil.copyfile(kept, target)
        else:
            py_compile.compile(str(source), cfile=str(target), dfile=str(source), doraise=True,
                               invalidation_mode=invalidation)
            if kept is not None:  # written whole, then renamed: a concurrent build never reads half a file
                kept.parent.mkdir(parents=True, exist_ok=True)
                partial = kept.with_suffix(f".{os.getpid()}.tmp")
                shutil.copyfile(target, partial)
                os.replace(partial, kept)
        total += target.stat().st_size
    print(total)


def _record_compiled() -> set[str]:
    """Every source file the import system compiles from now on: the modules whose pyc Python
    would write, including those whose import then fails (an optional dependency missing)."""
    from importlib.machinery import SourceFileLoader

    compiled: set[str] = set()
    get_code = SourceFileLoader.get_code

    def recording_get_code(self, fullname):
        compiled.add(self.path)
        return get_code(self, fullname)

    SourceFileLoader.get_code = recording_get_code
    return compiled


def main(argv: list[str]) -> int:
    if argv[:1] == ["--start"]:
        # The start-up recorded is the ONNX one: the api and embeddings images have no torch. With
        # torch installed (the api-torch variant, a dev venv) the warm-up would export the model
        # here instead of giving up on it; the variant compiles torch's modules at run time.
        for name in ("torch", "transformers", "sentence_transformers"):
            sys.modules[name] = None
        compiled = _record_compiled()
        before = {m.__spec__.origin for m in list(sys.modules.values()) if getattr(m, "__spec__", None)}
        STARTS[argv[1]]()
        # the interpreter's own start-up modules (encodings, site, os, ...): every process has them
        compiled |= {origin for origin in before if origin and origin.endswith(".py")}
        import json

        print(json.dumps(sorted(compiled)), flush=True)
        import os

        os._exit(0)  # as `lakerag serve` ends: no teardown under the threads the start-up left
    if argv[:1] == ["--compile"]:
        _compile_stdin(argv[1], argv[2], argv[3] if len(argv) > 3 else None)
        return 0
    import sysconfig
    from pathlib import Path

    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--cache"):
        raise SystemExit("usage: startup-pyc.py IMAGE DEST [--cache DIR]")
    image, dest = argv[0], Path(argv[1])
    cache = argv[3] if len(argv) == 4 else None
    site = Path(sysconfig.get_paths()["purelib"])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    project, deps = [], []
    for name in imported_files(image, cache):
        path = Path(name)
        if path.is_relative_to(site):
            (project if path.relative_to(site).parts[0] in PROJECT else deps).append(name)
        elif path.is_relative_to(stdlib):
            deps.append(name)
    deps_bytes = compile_files(deps, str(dest / "deps"), "unchecked-hash", cache)
    project_bytes = compile_files(project, str(dest / "project"), "checked-hash", cache)
    print(f"{image}: start-up imports {len(deps)} dependency/stdlib modules ({deps_bytes} bytes of pyc) "
          f"and {len(project)} project modules ({project_bytes} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
