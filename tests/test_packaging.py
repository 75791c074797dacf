"""Packaging: the installed distribution is the one the README tells a stranger to install."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import resilient

# The name `resilient` on the package index is IBM's SOAR client; ours is distributed as this.
DISTRIBUTION = "resilient-guards"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed() -> metadata.PackageMetadata:
    """The metadata of the installed distribution."""
    return metadata.metadata(DISTRIBUTION)


def test_the_distribution_has_the_version_of_the_package(
    installed: metadata.PackageMetadata,
) -> None:
    """`resilient-guards` is installed, at the version `resilient.__version__` reports."""
    assert installed["Name"] == DISTRIBUTION
    assert installed["Version"] == resilient.__version__


def test_the_readme_installs_the_distribution_by_its_name() -> None:
    """The README's install line names the distribution, not IBM's `resilient`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^pip install (\S+)$", readme, re.MULTILINE) == [DISTRIBUTION]


def test_the_license_is_declared_and_shipped(installed: metadata.PackageMetadata) -> None:
    """The distribution declares MIT and names the LICENSE file, which is the MIT text."""
    assert installed["License-Expression"] == "MIT"
    assert installed.get_all("License-File") == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")


def test_the_version_classifiers_start_at_the_oldest_supported_python(
    installed: metadata.PackageMetadata,
) -> None:
    """Python-version classifiers are listed, the oldest one being requires-python's floor."""
    versions = [
        tuple(int(part) for part in c.rsplit(" ", 1)[1].split("."))
        for c in installed.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert installed["Requires-Python"] == ">=3.10"
    assert min(versions) == (3, 10)
    assert versions == sorted(versions)
