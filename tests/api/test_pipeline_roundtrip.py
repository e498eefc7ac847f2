"""Upload through the API -> the real pipeline (Spark ETL, embeddings, index) -> search finds the
document; delete -> pipeline -> gone. GET /documents follows each file through the pipeline."""

from __future__ import annotations

import os
import sys

import pytest
from lakerag.lake import doc_id_for
from lakerag.pipeline import run_all

VOLCANO = ("Basaltic lava flows are fluid and travel far from the vent of a shield volcano. Explosive eruptions "
           "come from viscous magma rich in silica and dissolved gas, and pyroclastic flows race down the slopes.")
BEES = "# Bees\n\nHoney bees tell each other the direction of flowers with a waggle dance inside the hive."
QUESTION = "What kind of magma causes explosive volcanic eruptions?"


@pytest.fixture(autouse=True)
def spark_python(monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", sys.executable))
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable))


def states(api) -> dict[str, dict]:
    return {d["key"]: d for d in api.client.get("/documents").json()["documents"]}


def test_upload_pipeline_search_then_delete_pipeline_gone(local_settings, start_api):
    with start_api(local_settings, api_key="k") as api:
        headers = {"X-API-Key": "k"}
        for name, data in (("volcano.txt", VOLCANO.encode()), ("bees.md", BEES.encode()),
                           ("broken.pdf", b"%PDF-1.7 this is not really a pdf")):
            response = api.client.post("/documents", files={"file": (name, data)}, headers=headers)
            assert response.status_code == 201, response.text
        assert {d["state"] for d in states(api).values()} == {"landed"}

        summary = run_all(local_settings)
        assert summary["ok"], summary
        assert api.client.post("/admin/reload", headers=headers).json()["changed"] is True
        body = api.client.post("/search", json={"query": QUESTION}).json()
        assert body["matched"] and body["hits"][0]["source"] == "raw/volcano.txt"
        docs = states(api)
        assert docs["raw/volcano.txt"]["state"] == "indexed" and docs["raw/volcano.txt"]["chunks"] >= 1
        assert docs["raw/bees.md"]["state"] == "indexed"
        assert docs["raw/broken.pdf"]["state"] == "quarantined" and docs["raw/broken.pdf"]["reason"]

        response = api.client.delete(f"/documents/{doc_id_for('raw/volcano.txt')}", headers=headers)
        assert response.status_code == 200
        summary = run_all(local_settings)
        assert summary["ok"], summary
        assert api.client.post("/admin/reload", headers=headers).json()["changed"] is True
        body = api.client.post("/search", json={"query": QUESTION}).json()
        assert all(h["source"] != "raw/volcano.txt" for h in body["hits"])
        assert "raw/volcano.txt" not in states(api)
        index = api.client.get("/index").json()
        assert index["reloads"] == 2 and index["vectors"] >= 1


@pytest.mark.parametrize("directory", ["my lake ü", "lake[1] {a}", "lake:2024 #1"])
def test_a_store_path_with_spaces_accents_or_glob_characters_runs_and_serves(tmp_path, local_settings, start_api,
                                                                            directory):
    """delta-rs names a table's files percent-encoded (my%20lake%20%C3%BC), and Spark takes [ ] { } as a
    glob: either way it found no file, and every pipeline run failed with PATH_NOT_FOUND. (A "%41" in the
    path, which delta-rs decodes, is refused by config: tests/unit/test_config.py.)"""
    settings = local_settings.replace(store_uri=f"file://{tmp_path / directory}")
    with start_api(settings, api_key="k") as api:
        headers = {"X-API-Key": "k"}
        for name, data in (("volcano.txt", VOLCANO.encode()), ("bees.md", BEES.encode())):
            assert api.client.post("/documents", files={"file": (name, data)}, headers=headers).status_code == 201
        assert run_all(settings)["ok"]
        api.client.post("/documents", files={"file": ("bees.md", BEES.encode() + b" Drones do not.")},
                        headers=headers)
        summary = run_all(settings)  # reads the tables the first run wrote
        assert summary["ok"] and summary["etl"]["files.changed"] == 1, summary
        assert api.client.post("/admin/reload", headers=headers).json()["changed"] is True
        body = api.client.post("/search", json={"query": QUESTION}).json()
        assert body["matched"] and body["hits"][0]["source"] == "raw/volcano.txt"
        assert {d["state"] for d in states(api).values()} == {"indexed"}
