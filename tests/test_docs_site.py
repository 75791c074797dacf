"""The documentation site builds strictly, and its API reference documents every public name."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each public package and the reference page that documents it.
REFERENCE = {
    "resilient": "reference/resilient",
    "resilient.testing": "reference/testing",
    "resilient.chaos": "reference/chaos",
    "resilient.simulate": "reference/simulate",
    "resilient.httpx": "reference/httpx",
    "resilient.asgi": "reference/asgi",
    "resilient.otel": "reference/otel",
    "resilient.stores": "reference/stores",
    "resilient.stores.redis": "reference/stores-redis",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with ``mkdocs build --strict`` as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def test_the_site_builds_strictly_without_a_warning(site: Path) -> None:
    """No broken link, missing page, unknown anchor or docstring at odds with its
    signature: any of them stops a strict build, and nothing is logged as a warning."""
    assert (site / "index.html").is_file()
    assert (site / "sitemap.xml").is_file()


@pytest.mark.parametrize("package", sorted(REFERENCE))
def test_the_reference_documents_every_public_name(site: Path, package: str) -> None:
    """Each name in a public package's ``__all__`` has its entry on the package's page."""
    html = (site / REFERENCE[package] / "index.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="([\w.]+)"', html))
    names = importlib.import_module(package).__all__
    assert (
        sorted(f"{package}.{name}" for name in names if f"{package}.{name}" not in documented) == []
    )


def test_every_public_package_has_a_reference_page_in_the_navigation() -> None:
    """The reference pages are the ones listed here, and each is in the site's nav."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {
        p.relative_to(ROOT / "docs").with_suffix("").as_posix()
        for p in (ROOT / "docs" / "reference").glob("*.md")
    }
    assert pages == set(REFERENCE.values())
    for page in pages:
        assert f"{page}.md" in config
        assert (ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8").count(":::") == 1
