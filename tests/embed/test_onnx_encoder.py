"""The ONNX encoder: an export of the packaged MiniLM gives sentence-transformers'
vectors without torch, the index records which encoder built it, and the API
refuses an index another encoder built."""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np
import pytest
from conftest import SAMPLES
from lakerag import config
from lakerag.embedding import Embedder, ModelUnavailable, load_embedder, prefixes_for
from lakerag.encoder_identity import check_encoder, identity_for
from lakerag.index.artifacts import IndexRejected, sha256_file
from lakerag.onnx_encoder import EncoderUnavailable, export_dir, pool, read_pooling

QUERIES = [q["question"] for q in json.loads((SAMPLES / "questions.json").read_text())]


@pytest.fixture(scope="module")
def sample_chunk_texts() -> list[str]:
    """The sample documents cut into chunks as the pipeline cuts them."""
    from api.conftest import sample_chunks

    docs = {p.name: p.read_bytes() for p in sorted((SAMPLES / "docs").iterdir()) if p.is_file()}
    return sample_chunks(docs)["text"].tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The packaged model exported once into a fresh model cache (takes ~25 s)."""
    from lakerag.onnx_export import export

    cache = tmp_path_factory.mktemp("models")
    settings = config.from_env({}, model_cache_dir=str(cache), encoder="onnx")
    identity = export(config.PACKAGED_MODEL, settings)
    return settings, identity


@pytest.mark.slow
def test_export_is_complete_and_named_by_its_checksum(exported):
    settings, identity = exported
    folder = export_dir(config.PACKAGED_MODEL, settings.model_cache_dir)
    assert {p.name for p in folder.iterdir()} >= {"1_Pooling", "encoder.json", "model.onnx", "modules.json",
                                                  "tokenizer.json", "sentence_bert_config.json"}
    assert identity["sha256"] == sha256_file(folder / "model.onnx")
    # readable by other users: an image bakes it as root and serves it as UID 10001
    assert all(p.stat().st_mode & 0o004 for p in [folder, *folder.rglob("*")])
    assert folder.stat().st_mode & 0o001
    assert identity["dimension"] == 384 and identity["precision"] == "fp32"
    assert read_pooling(folder) == ("mean_tokens", True)
    assert identity_for(settings) == {"runtime": "onnx", "name": config.PACKAGED_MODEL, "sha256": identity["sha256"]}


@pytest.mark.slow
def test_index_job_in_a_fresh_cache_names_the_encoder_the_embed_job_used(exported, tmp_path):
    """The DAG's embed and publish_index pods each start with an empty model cache: the publisher
    recorded "torch" while the embed pod had encoded with an ONNX export it made, so the API
    refused every index the DAG published."""
    _, identity = exported  # the embed pod: auto made and used this export
    publish_pod = config.from_env({}, model_cache_dir=str(tmp_path / "empty-cache"))  # encoder: auto
    assert identity_for(publish_pod) == {"runtime": "onnx", "name": config.PACKAGED_MODEL,
                                         "sha256": identity["sha256"]}


@pytest.mark.slow
def test_onnx_vectors_match_sentence_transformers(exported, sample_chunk_texts):
    settings, identity = exported
    onnx = load_embedder(settings)
    torch = load_embedder(settings.replace(encoder="torch"))
    assert onnx.encoder == {"runtime": "onnx", "name": config.PACKAGED_MODEL, "sha256": identity["sha256"]}
    assert torch.encoder["runtime"] == "torch" and type(onnx.model).__name__ == "OnnxEncoder"
    for encode in ("encode_passages", "encode_queries"):
        texts = sample_chunk_texts if encode == "encode_passages" else QUERIES
        a, b = getattr(onnx, encode)(texts), getattr(torch, encode)(texts)
        assert a.shape == b.shape == (len(texts), 384) and a.dtype == np.float32
        cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.9999, (encode, float(cosine.min()))
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_query_prefixes_are_kept(exported):
    settings, _ = exported
    onnx = load_embedder(settings)
    prefixed = Embedder(name="BAAI/bge-small-en-v1.5", dimension=384, source="test", load_seconds=0,
                        model=onnx.model, query_prefix=prefixes_for("BAAI/bge-small-en-v1.5")[0])
    query = "how long are logs kept?"
    assert np.allclose(prefixed.encode_queries([query])[0], onnx.encode_passages([prefixed.query_prefix + query])[0])
    assert not np.allclose(prefixed.encode_queries([query])[0], onnx.encode_queries([query])[0])


def test_onnx_without_an_export_or_torch_says_what_to_run(tmp_path, monkeypatch):
    from lakerag import embedding

    monkeypatch.setattr(embedding, "_torch_available", lambda: False)
    settings = config.from_env({}, model_cache_dir=str(tmp_path), encoder="onnx")
    with pytest.raises(ModelUnavailable) as error:
        load_embedder(settings)
    message = str(error.value)
    assert "lakerag model export sentence-transformers/all-MiniLM-L6-v2" in message
    assert str(tmp_path) in message and "LAKERAG_ENCODER=torch" in message


def test_an_index_of_another_encoder_is_refused_with_what_to_set():
    onnx = {"runtime": "onnx", "name": config.PACKAGED_MODEL, "sha256": "a" * 64}
    check_encoder({"version": "v1", "encoder": dict(onnx)}, onnx)
    check_encoder({"version": "v0"}, onnx)  # built before encoders were recorded
    with pytest.raises(IndexRejected) as other_export:
        check_encoder({"version": "v2", "encoder": {**onnx, "sha256": "b" * 64}}, onnx)
    assert "LAKERAG_MODEL_CACHE_DIR" in str(other_export.value) and "bbbbbbbbbbbb" in str(other_export.value)
    with pytest.raises(IndexRejected) as torch_built:
        check_encoder({"version": "v3", "encoder": {"runtime": "torch", "name": config.PACKAGED_MODEL}}, onnx)
    assert "LAKERAG_ENCODER=torch" in str(torch_built.value)


def test_pooling_modes_match_sentence_transformers_definitions():
    tokens = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    assert np.allclose(pool(tokens, mask, "cls_token"), tokens[:, 0])
    assert np.allclose(pool(tokens, mask, "mean_tokens"), [[1, 2], [8, 9]])
    assert np.allclose(pool(tokens, mask, "max_tokens"), [[2, 3], [10, 11]])
    assert np.allclose(pool(tokens, mask, "lasttoken"), [[2, 3], [10, 11]])


def test_pooling_and_normalisation_come_from_the_model_config(tmp_path):
    (tmp_path / "pool").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "pool" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8,
                                                               "pooling_mode_cls_token": True}))
    assert read_pooling(tmp_path) == ("cls_token", False)
    (tmp_path / "pool" / "config.json").write_text(json.dumps({"pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(EncoderUnavailable, match="LAKERAG_ENCODER=torch"):
        read_pooling(tmp_path)


@pytest.mark.parametrize(("saved", "expected"), [
    ({"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": True}, "mean_tokens"),
    ({"pooling_mode": "cls"}, "cls_token"), ({"pooling_mode": ["max"]}, "max_tokens"),
    ({"pooling_mode": "lasttoken"}, "lasttoken"), ({"pooling_mode": "weightedmean"}, None),
    ({"pooling_mode": ["cls", "mean"]}, None), ({"pooling_mode": "mean", "include_prompt": False}, None),
    ({"pooling_mode_mean_tokens": True, "include_prompt": False}, None),
])
def test_pooling_configs_as_sentence_transformers_6_saves_them(tmp_path, saved, expected):
    """A model saved by sentence-transformers 6 (a fine-tuned one, say) writes one `pooling_mode`
    key: its ONNX export failed with "pooling ... is not supported" even for plain mean pooling."""
    (tmp_path / "pool").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (tmp_path / "pool" / "config.json").write_text(json.dumps(saved))
    if expected is None:
        with pytest.raises(EncoderUnavailable, match="LAKERAG_ENCODER=torch"):
            read_pooling(tmp_path)
    else:
        assert read_pooling(tmp_path) == (expected, True)


def _threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def _cpu_seconds(threads: set[str]) -> float:
    """CPU time the given threads of this process have run (Linux schedstat, nanoseconds)."""
    total = 0
    for tid in threads:
        with open(f"/proc/self/task/{tid}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total / 1e9


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="per-thread CPU time from Linux /proc")
def test_idle_intra_op_threads_stop_spinning_soon_after_a_run(exported):
    """A worker that spins on after a run holds a core: in the API it slowed the FAISS search and
    the event loop that follow each encode (bench/search.py). ONNX Runtime's default spin burnt
    ~41 ms of CPU in the 100 ms after one query's encode here; the bounded spin ~0.1-0.3 ms."""
    from lakerag.onnx_encoder import OnnxEncoder, find_export

    settings, _ = exported
    before_session = _threads()
    encoder = OnnxEncoder(find_export(config.PACKAGED_MODEL, settings.model_cache_dir), threads=2)
    assert encoder.session.get_session_options().intra_op_num_threads == 2
    for _ in range(3):
        encoder.encode(["warm the session up"])
    pool = _threads() - before_session  # the session's worker threads (other tests' threads not counted)
    assert pool, "a 2-thread session runs one worker thread beside the caller"
    idle_cpu = []
    for _ in range(5):
        encoder.encode(["which carrier handles the pallet invoices"])
        before = _cpu_seconds(pool)
        time.sleep(0.1)
        idle_cpu.append(_cpu_seconds(pool) - before)
    assert statistics.median(idle_cpu) < 0.01, idle_cpu


@pytest.mark.slow
def test_the_export_computes_attention_in_its_eager_form(exported):
    """transformers' SDPA attention exported as MatMul/Softmax with NaN guards (6 IsNaN, 669 nodes),
    which ONNX Runtime ran 5-30% slower than the eager form (516 nodes) for the same vectors; the
    vectors themselves are checked against torch above."""
    import onnx

    settings, identity = exported
    graph = onnx.load(str(export_dir(config.PACKAGED_MODEL, settings.model_cache_dir) / "model.onnx")).graph
    assert not [node.name for node in graph.node if node.op_type == "IsNaN"]
    assert identity["exported_with"].endswith("eager attention")


@pytest.mark.slow
def test_batches_are_cut_by_token_count_not_characters(exported):
    """Sorted by characters (as sentence-transformers sorts), a long text of common words shares a
    batch with a short one of rare words and is padded to its token count: the bench's memos ran
    at 1.12x their tokens, and ONNX Runtime behind torch."""
    from lakerag.onnx_encoder import OnnxEncoder, find_export

    settings, _ = exported
    encoder = OnnxEncoder(find_export(config.PACKAGED_MODEL, settings.model_cache_dir))
    texts = ["the cat sat on the mat and the dog ran to the park with the ball",  # 64 chars, 18 tokens
             "Pfeiffer-Wuzzlequist kvetched: xylophagous zugzwang",  # 51 chars, 23 tokens
             "we go to the shop now and then",  # 30 chars, 10 tokens
             "zqxj vwkp qzxv jjkq xqzv wpqk"]  # 29 chars, 24 tokens
    session, shapes = encoder.session, []

    class Recording:
        def run(self, outputs, feed):
            shapes.append(feed["input_ids"].shape)
            return session.run(outputs, feed)

    encoder.session = Recording()
    together = encoder.encode(texts, batch_size=2)
    assert shapes == [(2, 24), (2, 18)]  # by characters: (2, 23) and (2, 24)
    alone = np.vstack([encoder.encode([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.slow
def test_the_export_names_the_attention_it_exported(tmp_path, monkeypatch):
    """encoder.json said "eager attention" even where this transformers could not switch to it."""
    from lakerag.embedding import _load_torch_model
    from lakerag.onnx_export import _export_transformer
    from transformers import PreTrainedModel

    model, _ = _load_torch_model(config.PACKAGED_MODEL, config.from_env({}))
    assert _export_transformer(model, tmp_path / "eager.onnx") == "eager"
    monkeypatch.delattr(PreTrainedModel, "set_attn_implementation")
    assert _export_transformer(model, tmp_path / "sdpa.onnx") == "sdpa"
