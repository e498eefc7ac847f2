"""pyproject.toml builds without setuptools' deprecation warnings: its table-form `license` was
deprecated ("by 2027-Feb-18 ... your builds will no longer be supported"), printed twice on each
`make install`, and building the images' project wheel would have stopped then."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution
from setuptools.warnings import SetuptoolsDeprecationWarning

REPO = Path(__file__).resolve().parents[2]


def test_the_project_metadata_applies_without_deprecation_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught
            if issubclass(w.category, (DeprecationWarning, SetuptoolsDeprecationWarning))] == []
    assert distribution.get_name() == "lakerag"


def test_images_build_the_wheel_with_a_setuptools_that_reads_it():
    """The SPDX `license` string needs setuptools 77; each image's build venv installs its own."""
    required = re.search(r'requires = \["setuptools>=([\d.]+)"\]', (REPO / "pyproject.toml").read_text()).group(1)
    for dockerfile in sorted((REPO / "images").glob("*/Dockerfile")):
        pins = re.findall(r'"setuptools>=([\d.]+)"', dockerfile.read_text())
        assert all(pin == required for pin in pins), (dockerfile, pins)
