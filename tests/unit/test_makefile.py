"""The Makefile's newcomer targets, run with stand-in tools on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make not installed")

RECORDER = """#!/bin/sh
echo "${0##*/} $*" >> "$LOG"
"""


def stand_ins(directory: Path, *tools: str) -> dict:
    """A PATH holding only ``tools``, each recording its calls in $LOG, and ``id`` (root)."""
    directory.mkdir()
    for tool in tools:
        (directory / tool).write_text(RECORDER)
        (directory / tool).chmod(0o755)
    (directory / "id").write_text("#!/bin/sh\necho 0\n")
    (directory / "id").chmod(0o755)
    return {**os.environ, "PATH": str(directory), "LOG": str(directory / "calls.log")}


def test_browser_installs_only_what_is_missing(tmp_path):
    # npm already here (NodeSource's nodejs ships it and conflicts with Debian's npm package):
    # asking apt for npm as well failed the whole install on such a machine.
    env = stand_ins(tmp_path / "bin", "apt-get", "npm")
    subprocess.run([MAKE, "-s", "-C", str(REPO), "browser"], env=env, check=True, capture_output=True, text=True)
    installs = [c for c in (tmp_path / "bin" / "calls.log").read_text().splitlines() if " install " in c]
    assert installs == ["apt-get install -y -qq chromium"]


@pytest.mark.parametrize(("env", "args", "store", "port"), [
    ({}, [], "file://./local_data", "8000"),
    ({"LAKERAG_STORE_URI": "file:///tmp/elsewhere", "LAKERAG_PORT": "8125"}, [], "file:///tmp/elsewhere", "8125"),
    ({"LAKERAG_PORT": "8125"}, ["PORT=8123"], "file://./local_data", "8123"),
])
def test_run_takes_the_store_and_port_from_the_environment_or_the_make_line(env, args, store, port):
    base = {k: v for k, v in os.environ.items() if not k.startswith("LAKERAG_")}
    dry = subprocess.run([MAKE, "-n", "-s", "-C", str(REPO), "-o", "install", "run", *args], env={**base, **env},
                         check=True, capture_output=True, text=True).stdout
    [command] = [line for line in dry.splitlines() if "lakerag run" in line]
    assert f"LAKERAG_STORE_URI={store} LAKERAG_PORT={port} " in command and command.endswith("run --samples")
