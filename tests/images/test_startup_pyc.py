"""images/startup-pyc.py run here, in the dev venv (no Docker): it compiles what the API's
start-up imports and nothing else, as valid hash-based pycs, byte-identical from one run to
the next (which is what lets BuildKit reuse the images' dependency-bytecode layer after a code
change). `tests/e2e/test_images.py` checks the same in the built images."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "images" / "startup-pyc.py"
SITE = Path(sysconfig.get_paths()["purelib"])
STDLIB = Path(sysconfig.get_paths()["stdlib"])

pytestmark = pytest.mark.slow  # three start-ups of the API, ~15 s


def _run(dest: Path, *extra: str) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "api", str(dest), *extra], capture_output=True, text=True,
                            timeout=600, check=False, env={**os.environ})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "api: start-up imports" in result.stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache) -> list[Path]:
    """Without a cache, then with an empty cache (as a first build), then with it filled (a rebuild)."""
    found = []
    for name, extra in (("plain", ()), ("cache-empty", ("--cache", str(cache))), ("cache-filled", ("--cache", str(cache)))):
        dest = tmp_path_factory.mktemp(name)
        _run(dest, *extra)
        found.append(dest)
    return found


def _pyc(dest: Path, source: Path) -> Path:
    return dest / "deps" / importlib.util.cache_from_source(str(source)).lstrip("/")


def test_runs_write_byte_identical_pycs_with_or_without_the_cache(runs, cache):
    plain, *cached = ({p.relative_to(run): p.read_bytes() for p in run.rglob("*.pyc")} for run in runs)
    assert len(plain) > 300, len(plain)
    for other in cached:
        assert plain.keys() == other.keys()
        assert [name for name in plain if plain[name] != other[name]] == []
    # the cache holds what the next build reuses: every pyc compiled, the start-up's own bytecode
    assert sum(1 for _ in (cache / "compiled").rglob("*.pyc")) == len(plain)
    assert any((cache / "prefix").rglob("*.pyc"))


def test_a_cached_pyc_is_used_only_for_the_same_source(tmp_path, cache):
    """An edited file is compiled again, not served from the cache (its key holds the source)."""
    source = tmp_path / "module.py"
    compiled = tmp_path / "out" / importlib.util.cache_from_source(str(source)).lstrip("/")

    def compile_with_cache(text: str) -> bytes:
        source.write_text(text)
        subprocess.run([sys.executable, str(SCRIPT), "--compile", "checked-hash", str(tmp_path / "out"), str(cache)],
                       input=str(source), text=True, check=True, capture_output=True)
        return compiled.read_bytes()

    first = compile_with_cache("ANSWER = 41\n")
    assert compile_with_cache("ANSWER = 41\n") == first
    edited = compile_with_cache("ANSWER = 42\n")
    assert edited[8:16] == importlib.util.source_hash(b"ANSWER = 42\n") and edited != first


def test_what_the_start_up_imports_is_compiled_and_nothing_else(runs):
    dest = runs[0]
    imported = [SITE / "fastapi" / "applications.py", SITE / "uvicorn" / "server.py", SITE / "numpy" / "__init__.py",
                STDLIB / "json" / "decoder.py", STDLIB / "asyncio" / "base_events.py"]
    for source in imported:
        assert _pyc(dest, source).is_file(), source
    # present in this venv, never imported by `lakerag serve`
    unused = [SITE / "fastapi" / "testclient.py", SITE / "pyspark" / "sql" / "session.py", STDLIB / "smtplib.py",
              STDLIB / "unittest" / "mock.py"]
    unused = [source for source in unused if source.is_file()]
    assert len(unused) >= 3
    for source in unused:
        assert not _pyc(dest, source).exists(), source
    assert not [p for p in dest.rglob("*.pyc") if "/torch/" in p.as_posix() or "/tests/" in p.as_posix()]
    every_py = sum(1 for _ in SITE.rglob("*.py"))
    assert sum(1 for _ in (dest / "deps").rglob("*.pyc")) < every_py / 5  # not bulk


def test_pycs_are_unchecked_hash_based_and_match_their_sources(runs):
    dest = runs[0] / "deps"
    pycs = sorted(dest.rglob("*.pyc"))
    for pyc in pycs:
        data = pyc.read_bytes()
        source = Path(importlib.util.source_from_cache("/" + pyc.relative_to(dest).as_posix()))
        assert data[:4] == importlib.util.MAGIC_NUMBER, pyc
        assert int.from_bytes(data[4:8], "little") == 0b01, f"{pyc}: not an unchecked hash-based pyc"
        assert data[8:16] == importlib.util.source_hash(source.read_bytes()), f"{pyc}: stale for {source}"
