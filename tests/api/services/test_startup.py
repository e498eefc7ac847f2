"""Start-up checks name the variable to fix; the environment report has what the original logged."""

from __future__ import annotations

import pytest
from lakerag import config
from lakerag.api.services import startup


def test_problems_name_the_variable(tmp_path):
    good = config.Settings(index_dir=str(tmp_path / "index"))
    assert startup.problems(good) == []
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cases = {
        "AWS_REGION": {"store_uri": "s3://bucket/x"},
        "LAKERAG_INDEX_DIR": {"index_dir": str(blocked / "sub")},
    }
    for variable, change in cases.items():
        found = startup.problems(good.replace(**change))
        assert len(found) == 1 and variable in found[0], (variable, found)


def test_values_the_api_cannot_use_are_refused_when_settings_are_built():
    # These used to be start-up checks; config.Settings refuses them for every entry point.
    cases = {
        "LAKERAG_INDEX_POLL_SECONDS": {"LAKERAG_INDEX_POLL_SECONDS": "0"},
        "LAKERAG_LLM_TIMEOUT_SECONDS": {"LAKERAG_LLM_TIMEOUT_SECONDS": "-1"},
        "LAKERAG_GEMINI_BASE_URL": {"LAKERAG_GEMINI_BASE_URL": "localhost:8080", "GEMINI_API_KEY": "k"},
        "GEMINI_API_KEY is not": {"LAKERAG_GEMINI_BASE_URL": "http://localhost:8080"},
        "LAKERAG_MIN_SCORE": {"LAKERAG_MIN_SCORE": "1.5"},
    }
    for variable, env in cases.items():
        with pytest.raises(config.ConfigError, match=variable):
            config.from_env(env)


def test_environment_report(caplog):
    caplog.set_level("INFO", logger="lakerag.startup")
    facts = startup.log_environment(config.Settings())
    assert facts["python"].startswith("CPython 3.11") and facts["cpu_quota"] >= 1
    assert facts["memory_total"].endswith("GiB")
    assert "CPU quota" in caplog.text and "memory limit" in caplog.text and "all-MiniLM-L6-v2" in caplog.text
