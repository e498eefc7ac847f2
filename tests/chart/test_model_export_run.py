"""The model-export init container's exact command, run for real: argv, environment (the rendered
ConfigMap through envFrom, then the container's env) and the model-cache mount as the chart
renders them, with the mount's path replaced by a directory here, in this venv's torch. Two pods
starting together, then a restart, then the API container's settings finding the export.
Without Docker (make e2e builds the variant image and runs `lakerag model export` in it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lakerag import config
from lakerag.embedding import resolve_encoder
from lakerag.onnx_encoder import read_identity

from .helm import REPO, cpu, env_of, find, pod_spec, render

MOUNT = "/var/cache/lakerag/models"


def rendered_pod():
    objects = render(sets=("api.modelExport.enabled=true", "airflow.pipeline.modelCacheClaim=lakerag-api-model-cache"))
    spec = pod_spec(find(objects, "Deployment", "lakerag-api"))
    config_map = find(objects, "ConfigMap", "lakerag-config")["data"]
    init = {c["name"]: c for c in spec["initContainers"]}
    return init["model-export"], spec["containers"][0], config_map


def container_env(container: dict, config_map: dict, cache: Path) -> dict[str, str]:
    """What the kubelet gives the container: envFrom first, env over it; the mount path → ``cache``."""
    env = dict(config_map)
    for name, item in env_of(container).items():
        if "value" in item:
            env[name] = item["value"].replace(MOUNT, str(cache))
        elif "resourceFieldRef" in item.get("valueFrom", {}):  # limits.cpu, rounded up to whole cores
            ref = item["valueFrom"]["resourceFieldRef"]
            assert ref["containerName"] == container["name"]
            env[name] = str(math.ceil(cpu(container["resources"]["limits"]["cpu"])))
        elif "secretKeyRef" in item.get("valueFrom", {}):  # set in the pod; its value does not matter here
            env[name] = "from-a-secret"
    assert all(m["mountPath"] != MOUNT or m["name"] == "model-cache" for m in container["volumeMounts"])
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(cwd),
            "PYTHONPATH": os.environ.get("PYTHONPATH", f"{REPO / 'services'}"),
            # Tests never download: the packaged model loads from its package.
            "HF_HUB_OFFLINE": "1"}
    return subprocess.run(argv, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.mark.slow
def test_the_rendered_export_runs_once_for_two_pods_and_a_restart_and_the_api_finds_it(tmp_path):
    export, api, config_map = rendered_pod()
    cache = tmp_path / "model-cache"  # the PVC
    cache.mkdir()
    env = container_env(export, config_map, cache)
    assert env["LAKERAG_MODEL_CACHE_DIR"] == env["HF_HOME"] == str(cache)
    argv = export["command"] + export["args"]
    assert argv == ["lakerag", "model", "export", config.PACKAGED_MODEL]

    with ThreadPoolExecutor(2) as pool:  # two API pods scheduled at once on one claim
        first, second = pool.map(lambda _: run(argv, env, tmp_path), range(2))
    for result in (first, second):
        assert result.returncode == 0, result.stderr[-3000:]
    identities = [json.loads(r.stdout) for r in (first, second)]
    assert identities[0] == identities[1]
    logs = [r.stderr for r in (first, second)]
    assert sum("lakerag.onnx_export: exported" in log for log in logs) == 1, logs  # one export, not two
    exports = cache / "onnx"
    folder = exports / "sentence-transformers--all-MiniLM-L6-v2"
    assert read_identity(folder) == identities[0]
    assert sorted(p.name for p in exports.iterdir() if p.is_dir()) == [folder.name]  # no temporary dirs left
    before = (folder / "model.onnx").stat()

    restart = run(argv, env, tmp_path)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert json.loads(restart.stdout) == identities[0]
    assert "already in" in restart.stderr and "exported" not in restart.stderr.replace("ONNX export of", "")
    after = (folder / "model.onnx").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # The API container, same claim: its settings resolve to ONNX over that very export.
    settings = config.from_env(container_env(api, config_map, cache))
    assert settings.model_cache_dir == str(cache) and settings.embedding_model == config.PACKAGED_MODEL
    assert resolve_encoder(settings) == ("onnx", folder)
