"""Two pipeline runs over one store at once left every bronze, silver and gold row twice and the
index with duplicate chunks: the second run now waits for the first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lakerag.lake.run_lock import pipeline_lock

LAKERAG = str(Path(sys.executable).with_name("lakerag"))


def test_a_second_run_on_the_store_waits_for_the_first_then_runs(tmp_path):
    store = f"file://{tmp_path / 'lake'}"
    env = {**os.environ, "LAKERAG_STORE_URI": store, "LAKERAG_INDEX_DIR": str(tmp_path / "index")}
    with pipeline_lock(store, "the test's run"):
        second = subprocess.Popen([LAKERAG, "pipeline", "index"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert second.poll() is None, second.communicate()  # it waits while the first holds the store
    out, err = second.communicate(timeout=120)
    assert second.returncode in (0, 1), err
    assert f"waiting for the pipeline run in flight on {store} to finish (the test's run, pid {os.getpid()}" in err
    assert "LakeRAG pipeline index:" in out  # then it ran


def test_other_stores_and_a_dead_holder_do_not_block(tmp_path):
    store = f"file://{tmp_path / 'lake'}"
    killed = (f"from lakerag.lake.run_lock import pipeline_lock\nwith pipeline_lock({store!r}, 'killed'):\n"
              "    import os; os._exit(9)")
    holder = subprocess.run([sys.executable, "-c", killed], check=False,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.returncode == 9
    started = time.monotonic()
    with pipeline_lock(store, "after a killed run"), pipeline_lock(f"file://{tmp_path / 'other'}", "another store"):
        pass
    assert time.monotonic() - started < 5


def test_without_a_writable_temp_dir_the_run_goes_ahead_and_says_so(tmp_path, monkeypatch, caplog):
    """A container with a read-only root and no writable /tmp must still run its pipeline."""
    locked_out = tmp_path / "ro"
    locked_out.mkdir()
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(locked_out / "missing"))
    ran = []
    with pipeline_lock(f"file://{tmp_path / 'lake'}", "a run"):
        ran.append(True)
    assert ran == [True]
    assert "running without the store's run lock" in caplog.text
