"""Fixtures for `make e2e`: a Docker engine, the four images built once per session,
and a report (sizes, build times, context size) printed at the end and written to
.e2e/report.json."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "images"))
import harness
from harness import IMAGES, REPORT


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def docker():
    harness.WORK.mkdir(exist_ok=True)
    engine = harness.ensure_engine(harness.WORK / "dockerd.log")
    REPORT["docker_engine"] = "started by e2e" if engine.started else "already running"
    try:
        yield engine
    finally:
        engine.cleanup()
        harness.stop_engine(engine)


@pytest.fixture(scope="session")
def build_env(docker) -> dict:
    """What images/build.sh gets: the Makefile's settings, the base that exists here, the
    packaged model baked in (nothing can be downloaded in these containers)."""
    wanted = os.environ.get("BASE_IMAGE", "python:3.11-slim-bookworm")
    started = time.monotonic()
    base = harness.ensure_base(docker, wanted, harness.WORK / "standin.log")
    REPORT["base_image"] = base
    REPORT["base_image_seconds"] = round(time.monotonic() - started, 1)  # stand-in made here, if needed
    env = {"BASE_IMAGE": base, "BAKE_MODEL": "packaged",
           "IMAGE_TAG": os.environ.get("IMAGE_TAG", "0.1.0"), "REGISTRY": os.environ.get("REGISTRY", "")}
    for name in ("CA_BUNDLE", "WHEELHOUSE", "TORCH_INDEX_URL", "PIP_INDEX_URL"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@pytest.fixture(scope="session")
def images(docker, build_env) -> dict[str, str]:
    """image name -> tag, built one at a time (2 cores); timings and sizes go to the report."""
    tags = {}
    REPORT["build_seconds"] = {}
    for image in IMAGES:
        seconds = harness.build(docker, [image], build_env, harness.WORK / f"build-{image}.log")
        tags[image] = f"{build_env['REGISTRY']}lakerag/{image}:{build_env['IMAGE_TAG']}"
        REPORT["build_seconds"][image] = round(seconds, 1)
    REPORT["image_bytes"] = {image: docker.inspect(tag)["Size"] for image, tag in tags.items()}
    return tags


@pytest.fixture
def empty_store(moto_endpoint) -> str:
    """A first install's store: an empty bucket on the moto server."""
    import boto3

    bucket = f"lakerag-chart-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lakerag"


@pytest.fixture(scope="session")
def api_image(docker, build_env) -> str:
    """Only the api image, for tests that need no other (after `images`, the build is all cache)."""
    harness.build(docker, ["api"], build_env, harness.WORK / "build-api.log")
    return f"{build_env['REGISTRY']}lakerag/api:{build_env['IMAGE_TAG']}"


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    harness.WORK.mkdir(exist_ok=True)
    (harness.WORK / "report.json").write_text(json.dumps(REPORT, indent=2))
    write = terminalreporter.write_line
    terminalreporter.section("LakeRAG images")
    for key, value in REPORT.items():
        if key == "image_bytes":
            for image, size in value.items():
                write(f"  size {image:11} {size / 1e6:8.1f} MB ({size} bytes)")
        else:
            write(f"  {key}: {value}")
