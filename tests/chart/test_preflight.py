"""charts/preflight.py: `make deploy` stops before building when the profile cannot fit the node."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helm import KIND_VALUES, REPO, SMALL_VALUES, helm_binary, render_profile
from .kind_nodes import stand_in_kubectl
from .test_workloads import peak_requests

sys.path.insert(0, str(REPO / "charts"))
import preflight

SMALL_FIX = 'make deploy HELM_VALUES="charts/lakerag/values-kind.yaml charts/lakerag/values-small.yaml"'


def run_preflight(kubectl, *values) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "charts" / "preflight.py"), "--context", "kind-lakerag",
                           "--namespace", "lakerag", "--helm", str(helm_binary()), "--kubectl", str(kubectl),
                           *map(str, values)], capture_output=True, text=True, check=False)


def test_kind_profile_does_not_fit_a_2_cpu_node_and_says_what_to_do(tmp_path):
    result = run_preflight(stand_in_kubectl(tmp_path, "2", "8Gi"), KIND_VALUES)
    assert result.returncode == 1, result.stdout + result.stderr
    # Both figures: the profile's requests and the worker's room (2 CPUs less kindnet and coredns).
    assert "requests 2.80 CPU / 9.00 GiB" in result.stderr
    assert "have 1.80 CPU / 7.88 GiB free" in result.stderr
    assert "does not fit" in result.stderr and SMALL_FIX in result.stderr
    assert "give Docker more CPUs / memory" in result.stderr and "PREFLIGHT=0" in result.stderr


def test_small_profile_fits_a_2_cpu_8_gib_node(tmp_path):
    """values-small.yaml's promise, by the preflight's own arithmetic."""
    assert SMALL_VALUES.exists()
    result = run_preflight(stand_in_kubectl(tmp_path, "2", "8Gi"), KIND_VALUES, SMALL_VALUES)
    assert result.returncode == 0, result.stderr
    assert "requests 0.70 CPU / 6.69 GiB" in result.stdout and "fits" in result.stdout


@pytest.mark.parametrize(("cpu", "memory", "fits"), [("8", "12Gi", True), ("2800m", "9Gi", False)])
def test_kind_profile_on_bigger_nodes(tmp_path, cpu, memory, fits):
    result = run_preflight(stand_in_kubectl(tmp_path, cpu, memory), KIND_VALUES)
    assert (result.returncode == 0) == fits, result.stdout + result.stderr


def test_no_cluster_fails_with_the_way_to_create_it(tmp_path):
    kubectl = tmp_path / "kubectl"
    kubectl.write_text('#!/bin/sh\necho "context was not found for specified context: kind-lakerag" >&2\nexit 1\n')
    kubectl.chmod(0o755)
    result = run_preflight(kubectl, KIND_VALUES)
    assert result.returncode != 0
    assert "context was not found" in result.stderr and "make kind-up" in result.stderr


@pytest.mark.parametrize("profile", ["kind", "small"])
def test_preflight_asks_at_least_what_the_fit_tests_count(profile):
    """Never more lenient than test_workloads.py's sums, which say which machine each profile fits."""
    steady, peak = preflight.needed(render_profile(profile))
    want_cpu, want_memory, _ = peak_requests(profile)
    assert steady[0] + peak[0] >= want_cpu - 1e-9
    assert steady[1] + peak[1] >= want_memory
