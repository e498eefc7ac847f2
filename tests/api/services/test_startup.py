"""Start-up checks name the variable to fix; the environment report has what the original logged."""

from __future__ import annotations

import dataclasses

from lakerag import config
from lakerag.api.services import startup


def test_problems_name_the_variable(tmp_path):
    good = config.Settings(index_dir=str(tmp_path / "index"))
    assert startup.problems(good) == []
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cases = {
        "LAKERAG_INDEX_POLL_SECONDS": {"index_poll_seconds": 0},
        "LAKERAG_LLM_TIMEOUT_SECONDS": {"llm_timeout_seconds": -1},
        "LAKERAG_GEMINI_BASE_URL": {"gemini_base_url": "localhost:8080", "gemini_api_key": "k"},
        "GEMINI_API_KEY": {"gemini_base_url": "http://localhost:8080"},
        "LAKERAG_MIN_SCORE": {"min_score": 1.5},
        "AWS_REGION": {"store_uri": "s3://bucket/x"},
        "LAKERAG_INDEX_DIR": {"index_dir": str(blocked / "sub")},
    }
    for variable, change in cases.items():
        found = startup.problems(dataclasses.replace(good, **change))
        assert len(found) == 1 and variable in found[0], (variable, found)


def test_environment_report(caplog):
    caplog.set_level("INFO", logger="lakerag.startup")
    facts = startup.log_environment(config.Settings())
    assert facts["python"].startswith("CPython 3.11") and facts["cpu_quota"] >= 1
    assert facts["memory_total"].endswith("GiB")
    assert "CPU quota" in caplog.text and "memory limit" in caplog.text and "all-MiniLM-L6-v2" in caplog.text
