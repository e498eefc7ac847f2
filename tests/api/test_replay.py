"""Lineage in /search, /answer, /summarize, and replay with as_of: real pipeline (Spark, Delta,
the packaged model, FAISS) and the API under uvicorn."""

from __future__ import annotations

import hashlib

from lakerag.index.diff import diff_versions
from lakerag.index.publish import prune, published_versions
from lakerag.lake import Lake, doc_id_for, tables
from lakerag.pipeline import run_all

from .conftest import publish

VOLCANO = ("Basaltic lava flows are fluid and travel far from the vent of a shield volcano. Explosive eruptions "
           "come from viscous magma rich in silica and dissolved gas.")
VOLCANO_V2 = ("Explosive eruptions come from viscous magma rich in silica. Calderas form when the magma chamber "
              "empties and the summit collapses into it.")
BEES = "# Bees\n\nHoney bees tell each other the direction of flowers with a waggle dance inside the hive."
QUESTION = "What kind of magma causes explosive volcanic eruptions?"




def table_version(lake: Lake, name: str) -> int:
    return tables.version(lake, name)


def test_lineage_and_byte_identical_replay_across_versions_and_restarts(local_settings, start_api):
    lake = Lake.open(local_settings)
    lake.store.put("raw/volcano.txt", VOLCANO.encode())
    lake.store.put("raw/bees.md", BEES.encode())
    assert run_all(local_settings)["ok"]
    first_version = published_versions(Lake.open(local_settings).store)[-1]
    listing = {info.key: info.version for info in lake.store.list("raw/")}
    gold_v1, embeddings_v1 = table_version(lake, "gold"), table_version(lake, "embeddings")

    with start_api(local_settings) as api:
        search = api.client.post("/search", json={"query": QUESTION}).json()
        lineage = search["lineage"]
        assert lineage == {"index_version": first_version, "model": search["model"], "gold_version": gold_v1,
                           "embeddings_version": embeddings_v1, "created_at": lineage["created_at"],
                           "replayed": False}
        top = search["hits"][0]
        assert top["source"] == "raw/volcano.txt" and top["source_version"] == listing["raw/volcano.txt"]
        assert top["content_hash"] == hashlib.sha256(VOLCANO.encode()).hexdigest()
        first_answer = api.client.post("/answer", json={"question": QUESTION}).content
        summary = api.client.post("/summarize", json={"doc_id": doc_id_for("raw/bees.md")}).json()
        assert summary["lineage"]["gold_version"] == gold_v1
        assert summary["chunks"][0]["content_hash"] == hashlib.sha256(BEES.encode()).hexdigest()

        lake.store.put("raw/volcano.txt", VOLCANO_V2.encode())  # a new version of the document
        assert run_all(local_settings)["ok"]
        second_version = published_versions(Lake.open(local_settings).store)[-1]
        assert second_version != first_version
        assert api.client.post("/admin/reload").json()["version"] == second_version
        now = api.client.post("/answer", json={"question": QUESTION}).json()
        assert now["lineage"]["index_version"] == second_version and now["lineage"]["gold_version"] > gold_v1
        assert now["chunks"][0]["content_hash"] == hashlib.sha256(VOLCANO_V2.encode()).hexdigest()

        replayed = api.client.post("/answer", json={"question": QUESTION, "as_of": first_version})
        assert replayed.status_code == 200
        body = replayed.json()
        assert body["lineage"]["replayed"] and body["lineage"]["gold_version"] == gold_v1
        assert body["chunks"][0]["content_hash"] == hashlib.sha256(VOLCANO.encode()).hexdigest()
        assert replayed.content == first_answer.replace(b'"replayed":false', b'"replayed":true')
        replayed_search = api.client.post("/search", json={"query": QUESTION, "as_of": first_version}).json()
        assert [h["chunk_id"] for h in replayed_search["hits"]] == [h["chunk_id"] for h in search["hits"]]

    with start_api(local_settings) as restarted:  # a new process state: nothing cached
        again = restarted.client.post("/answer", json={"question": QUESTION, "as_of": first_version})
        assert again.content == replayed.content

        diff = diff_versions(lake.store, first_version, second_version)
        assert diff["documents"] == {"added": [], "removed": [], "changed": ["raw/volcano.txt"], "unchanged": 1}
        assert diff["chunks"]["changed"] >= 1 and diff["chunks"]["unchanged"] >= 1

        assert prune(lake.store, keep=1) == [first_version]
        restarted.state.retained = None  # drop the loaded copy: the store no longer has the version
        gone = restarted.client.post("/search", json={"query": QUESTION, "as_of": first_version})
        assert gone.status_code == 404 and first_version in gone.json()["detail"]
        assert second_version in gone.json()["detail"]  # says what is retained


def test_replay_keeps_at_most_the_configured_number_of_versions_loaded(local_settings, sample_index,
                                                                       sample_index_v2, sample_vectors, embedder,
                                                                       start_api, tmp_path):
    from .conftest import write_index

    chunks, vectors = sample_vectors
    third = write_index(tmp_path / "v3", embedder, chunks.head(5), "20260103T000000Z-samples3", vectors=vectors[:5])
    first, second = publish(local_settings, sample_index), publish(local_settings, sample_index_v2)
    served = publish(local_settings, third)
    replay_dir = tmp_path / "serving" / "replay"
    with start_api(local_settings, replay_cache_versions=1) as api:
        assert api.state.index.version == served
        body = api.client.post("/search", json={"query": "travel approval", "as_of": first}).json()
        assert body["lineage"]["index_version"] == first and body["lineage"]["replayed"]
        assert body["hits"][0]["source_version"] is None  # built before lineage columns: null, not an error
        assert api.state.retained.versions == [first]
        body = api.client.post("/answer", json={"question": "travel approval", "as_of": second}).json()
        assert body["lineage"]["index_version"] == second
        assert api.state.retained.versions == [second]  # the least recently used one went
        assert sorted(p.name for p in replay_dir.iterdir() if not p.name.startswith(".")) == [second]
        assert api.client.post("/search", json={"query": "travel", "as_of": served}).json()["lineage"][
            "replayed"] is False  # the served version itself: no second copy
        assert api.state.retained.versions == [second]
        for bad in ("../CURRENT", "2026-12-02T00:29:00Z"):  # a path, a time: the message says what as_of names
            refused = api.client.post("/search", json={"query": "travel", "as_of": bad})
            assert refused.status_code == 422 and "must name an index version" in refused.text
        missing = api.client.post("/summarize", json={"query": "travel", "as_of": "20250101T000000Z-deadbeef"})
        assert missing.status_code == 404 and "not retained" in missing.json()["detail"]


def test_a_replay_the_index_volume_cannot_hold_is_a_507_that_says_so(local_settings, sample_index, sample_vectors,
                                                                    embedder, tmp_path):
    """A replay (as_of an older version) that did not fit the index volume answered 500."""
    import httpx
    from conftest import serve_with_file_size_limit

    from .conftest import write_index

    chunks, vectors = sample_vectors
    small = write_index(tmp_path / "small", embedder, chunks.head(3), "20260103T000000Z-samples3", vectors=vectors[:3])
    older = publish(local_settings, sample_index)
    publish(local_settings, small)
    limit = max(p.stat().st_size for p in small.iterdir()) + 1  # the served version fits, the older one does not
    assert max(p.stat().st_size for p in sample_index.iterdir()) > limit
    with serve_with_file_size_limit(local_settings, tmp_path, limit) as base:
        replay = httpx.post(f"{base}/search", json={"query": "travel approval", "as_of": older}, timeout=60)
        assert replay.status_code == 507, replay.text
        detail = replay.json()["detail"]
        assert detail.startswith(f"index version {older} cannot be replayed: the local directory ") and \
            "(File too large)" in detail and "LAKERAG_INDEX_DIR" in detail, detail
        assert httpx.post(f"{base}/search", json={"query": "travel approval"}, timeout=60).status_code == 200
