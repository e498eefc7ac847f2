"""The committed per-image locks (images/locks/*.txt, `images/lock.sh`) against
pyproject.toml: every requirement of an image is pinned to a version it allows,
every pin carries hashes, and torch stays out of the runtime images. A dependency
edited in pyproject.toml without re-locking fails here, in seconds."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "images" / "locks"
sys.path.insert(0, str(REPO / "images"))
from constraints import VENVS, constraints, drift, read_lock, venv_constraints
from pyproject_deps import requirement_sets

SETS = requirement_sets(tomllib.loads((REPO / "pyproject.toml").read_text()))
TORCH = {"torch", "transformers", "sentence-transformers"}


@pytest.mark.parametrize("lock", sorted(SETS))
def test_lock_satisfies_pyproject(lock):
    path = LOCKS / lock
    assert path.is_file(), f"{path} is missing: run images/lock.sh"
    pins = read_lock(path)
    for requirement in SETS[lock]:
        req = Requirement(requirement)
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} does not pin {req.name} (pyproject.toml needs it): run images/lock.sh"
        assert req.specifier.contains(Version(pins[name][0]), prereleases=True), (
            f"{lock} pins {req.name}=={pins[name][0]}, pyproject.toml asks {requirement}: run images/lock.sh")


@pytest.mark.parametrize("lock", sorted(SETS))
def test_every_pin_has_hashes(lock):
    pins = read_lock(LOCKS / lock)
    assert pins
    assert not [name for name, (_, hashes) in pins.items() if not hashes], f"{lock}: pins without --hash"


def test_torch_only_in_the_export_stage():
    for lock in SETS:
        found = TORCH & set(read_lock(LOCKS / lock))
        assert found == (TORCH if lock == "export.txt" else set()), (lock, found)
    assert read_lock(LOCKS / "export.txt")["torch"][0].startswith("2.13.0")


def test_the_image_that_extracts_documents_reads_aes_encrypted_pdfs():
    """Bronze runs in the spark image; without cryptography pypdf cannot open an AES PDF that has no
    user password (an edit-restricted export from Word or Acrobat), and quarantined it as corrupt
    while `make run` (whose venv has cryptography by other paths) indexed it."""
    assert "cryptography" in read_lock(LOCKS / "spark.txt")


def test_no_stale_locks():
    assert {p.name for p in LOCKS.glob("*.txt")} == set(SETS), "a lock no image uses: remove it"


def test_read_lock_sees_a_version_pyproject_does_not_allow(tmp_path):
    (tmp_path / "x.txt").write_text("numpy==1.20.0 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    version = read_lock(tmp_path / "x.txt")["numpy"][0]
    assert not Requirement("numpy>=1.26").specifier.contains(Version(version))


def test_the_torch_variant_can_stack_the_export_lock_on_the_api_lock():
    """`images/build.sh api-torch` installs export.txt over api.txt with --no-deps: a package
    both pin must have one version, else the variant would run with a mixed set."""
    api, export = read_lock(LOCKS / "api.txt"), read_lock(LOCKS / "export.txt")
    differ = {name: (api[name][0], export[name][0]) for name in set(api) & set(export)
              if api[name][0] != export[name][0]}
    assert not differ, f"api.txt and export.txt pin these differently (api, export): {differ}; " \
                       "re-lock both with images/lock.sh api export"


@pytest.mark.parametrize("venv", sorted(VENVS))
def test_the_venvs_constraints_agree_with_their_locks(venv):
    """`make install` and `make airflow-env` install with constraints from these locks: a package
    two of them pin differently would make pip refuse the install."""
    pins = venv_constraints(venv)
    assert pins and all("+" not in version for version in pins.values())
    locks, prefix = VENVS[venv]
    for lock in locks:
        for name, (version, _) in read_lock(LOCKS / lock).items():
            if name.startswith(prefix):
                assert pins[name] == version.split("+")[0], (lock, name)
    if venv == "airflow":  # Airflow's own packages only (botocore refuses the lock's python-dateutil)
        assert {"apache-airflow", "apache-airflow-providers-cncf-kubernetes"} <= set(pins)
        assert "python-dateutil" not in pins


def test_constraints_refuse_two_versions_of_one_package(tmp_path):
    for name, version in (("a.txt", "2.4.6"), ("b.txt", "2.5.0")):
        (tmp_path / name).write_text(f"numpy=={version} \\\n    --hash=sha256:{'a' * 64}\n")
    with pytest.raises(ValueError, match=r"a\.txt pins numpy==2\.4\.6 but b\.txt pins numpy==2\.5\.0"):
        constraints([tmp_path / "a.txt", tmp_path / "b.txt"])


def test_this_venv_runs_the_versions_the_images_ship():
    """The tests and benches run on the images' versions (`make install` installs with
    constraints from their locks), not on whatever PyPI released since the last re-lock."""
    differ = drift("dev")
    assert not differ, f"installed vs locked: {differ}; recreate the venv: rm -rf .venv && make install"
