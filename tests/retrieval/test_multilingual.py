"""Hybrid search over HTTP on Arabic, Chinese and English documents (real model, real BM25,
real uvicorn, default settings): the English model cannot read Arabic or Chinese, so the
adaptive rule answers those queries in BM25's order, and a one-character Chinese query
has a term to find."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import publish

BENCH_DATA = Path(__file__).resolve().parents[2] / "bench" / "data"
CHINESE = {
    "zh-water.txt": "水是生命之源。长江是中国最长的河流，全长六千三百公里。",
    "zh-beijing.txt": "北京是中国的首都，故宫位于北京市中心，是明清两代的皇宫。",
    "zh-tea.txt": "龙井茶产于杭州西湖附近，是中国著名的绿茶。",
}


def bench_docs(name: str, ids: list[str]) -> dict[str, bytes]:
    rows = [json.loads(line) for line in (BENCH_DATA / name / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return {f"{name}-{r['_id']}.txt": f"{r['title']}\n\n{r['text']}".encode() for r in rows if r["_id"] in ids}


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder):
    from api.conftest import RunningApi, sample_chunks, write_index
    from lakerag import config

    docs = {**bench_docs("arabic", ["a06", "a07", "a08", "a13", "a14", "a21", "a28", "a30"]),
            **bench_docs("entities-en", ["e01", "e02", "e12", "e13", "e36", "e37"]),
            **{name: text.encode() for name, text in CHINESE.items()}}
    root = tmp_path_factory.mktemp("multilingual")
    settings = config.Settings().replace(store_uri=f"file://{root / 'store'}",
                                   index_dir=str(root / "serving"))
    assert settings.search_mode == "hybrid" and settings.fusion == "adaptive"
    publish(settings, write_index(root / "v1", embedder, sample_chunks(docs), "20260101T000000Z-multi"))
    with RunningApi(settings, embedder=embedder) as running:
        yield running


def post(api, query: str, **body) -> dict:
    response = api.client.post("/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("query,source", [
    ("مؤلف كتاب القانون في الطب", "raw/arabic-a13.txt"),  # Ibn Sina's Canon of Medicine
    ("متى اكتمل بناء السد العالي", "raw/arabic-a07.txt"),  # when was the High Dam finished
    ("هل يخزن سنام الجمل الماء", "raw/arabic-a21.txt"),  # does the camel's hump store water
])
def test_arabic_question_is_answered_in_bm25_order_with_default_cut_offs(api, query, source):
    body = post(api, query, k=3)
    assert body["matched"] is True, body["reason"]
    assert body["fusion"]["coverage"] < 0.5 and body["fusion"]["dense_weight"] == 0.0
    assert body["fusion"]["lexical_weight"] == 1.0
    top = body["hits"][0]
    assert top["source"] == source and top["lexical_rank"] == 1
    assert body["hits"] == sorted(body["hits"], key=lambda h: h["lexical_rank"] or 10**6)


def test_a_single_chinese_character_finds_its_document(api):
    body = post(api, "水", k=3, mode="lexical")
    assert [h["source"] for h in body["hits"]] == ["raw/zh-water.txt"]
    hybrid = post(api, "故宫", k=3)
    assert hybrid["matched"] is True and hybrid["hits"][0]["source"] == "raw/zh-beijing.txt"


def test_english_question_leans_on_dense_and_a_bare_name_on_bm25(api):
    body = post(api, "scientist who surveyed deep-water coral destroyed by trawlers off northern Norway", k=3)
    assert body["fusion"]["dense_weight"] == 1.0 and body["fusion"]["lexical_weight"] == 0.1
    assert body["hits"][0]["source"] == "raw/entities-en-e01.txt"
    name = post(api, "Jóhann Þorvaldsson", k=3)
    assert name["fusion"]["identifier"] == 1.0 and name["fusion"]["lexical_match"] == 1.0
    assert name["fusion"]["lexical_weight"] == 1.0
    assert name["hits"][0]["source"] == "raw/entities-en-e36.txt"


def test_fixed_fusion_is_still_available(api, start_api):
    with start_api(api.settings, fusion="fixed") as fixed:
        body = post(fixed, "Jóhann Þorvaldsson", k=3)
    assert body["fusion"] == {"dense_weight": 1.0, "lexical_weight": 0.3, "rrf_k": 60.0, "rule": "fixed"}


def test_word_pieces_read_both_encoders_tokenizers(embedder):
    """The torch encoder's transformers tokenizer and the ONNX encoder's tokenizers.Tokenizer
    (the same tokenizer.json) cut a query into the same pieces."""
    from lakerag.adaptive import tokenizer_coverage, word_pieces
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    own = embedder.model.tokenizer
    if hasattr(own, "tokenize"):
        hf, fast = own, Tokenizer.from_str(own.backend_tokenizer.to_str())
    else:
        hf, fast = PreTrainedTokenizerFast(tokenizer_object=own, unk_token="[UNK]"), own
    for tokenizer in (hf, fast):
        pieces, unknown = word_pieces(tokenizer)
        assert unknown == "[UNK]"
        assert pieces("北京是中国的首都") == ["北", "京", "[UNK]", "中", "国", "的", "[UNK]", "都"]
        assert tokenizer_coverage(pieces("ما هي عاصمة المملكة"), unknown) == 0.0
        assert tokenizer_coverage(pieces("what is the capital of france"), unknown) == 1.0
    assert word_pieces(object()) == (None, "")
