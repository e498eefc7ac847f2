"""Property-based API suite: schemathesis generates requests from the app's own OpenAPI
(valid and invalid data, every operation including the writes, on a throwaway store) and
runs all its checks on each response: no 5xx, documented status codes, content types,
headers and bodies that conform to the schema. Examples per operation are bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lakerag import config

from .conftest import RunningApi, publish

EXAMPLES = 40  # per operation and phase: the whole run takes ~1-2 min here
# An upload's accepted types and size are decided by the file name and bytes, which OpenAPI cannot
# express for a multipart file: there a schema-valid request may get its documented 400/413/415.
CONFIG = """
[[operations]]
include-path = "/documents"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "415", "429"]
"""


@pytest.mark.slow
def test_every_operation_answers_within_its_schema(tmp_path, sample_index, embedder):
    settings = config.from_env({}, store_uri=f"file://{tmp_path / 'store'}", index_dir=str(tmp_path / "serving"),
                               max_upload_bytes=64 * 1024)
    publish(settings, sample_index)
    cli = Path(sys.executable).with_name("schemathesis")
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    with RunningApi(settings, embedder=embedder) as api:
        run = subprocess.run([str(cli), "--no-color", "run", f"{api.url}/openapi.json", "--checks", "all",
                              "--mode", "all", "--max-examples", str(EXAMPLES), "--generation-deterministic",
                              "--suppress-health-check", "all", "--request-timeout", "60"],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
