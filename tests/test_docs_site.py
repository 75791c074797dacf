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


def build(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``out``, as ``make docs`` runs it (not
    with --quiet, which drops warnings before strict mode counts them)."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    built = build(ROOT / "mkdocs.yml", out)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stdout + built.stderr, built.stdout + built.stderr
    return out


def test_the_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The same configuration and flags stop at a link to a page that does not exist."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](missing.md).\n")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:\n")[0]
    (tmp_path / "mkdocs.yml").write_text(config.replace("docs_dir: docs", f"docs_dir: {docs}"))
    built = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    assert "missing.md" in built.stdout + built.stderr


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


@pytest.mark.parametrize("package", sorted(REFERENCE))
def test_the_reference_shows_no_raw_sphinx_markup(site: Path, package: str) -> None:
    """The docstrings' Sphinx roles and ``::`` literal markers are rewritten for the site
    (tools/docs_roles.py), into links where the name has an entry: none is left as text."""
    html = (site / REFERENCE[package] / "index.html").read_text(encoding="utf-8")
    raw = re.findall(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):", html)
    assert raw == []
    assert re.findall(r"::</p>", html) == []


def test_a_role_in_a_docstring_links_to_the_entry_it_names(site: Path) -> None:
    """``:class:`~resilient.Registry``` in ``CircuitBreaker``'s docstring is a link to the
    Registry entry, showing ``Registry``."""
    html = (site / "reference/resilient/index.html").read_text(encoding="utf-8")
    assert re.search(r'<a [^>]*href="#resilient\.Registry"[^>]*>(<code>)?Registry', html)


@pytest.mark.parametrize(
    ("docstring", "rendered"),
    [
        pytest.param(
            "See :class:`~resilient.Registry`.", "See [`Registry`][resilient.Registry].", id="short"
        ),
        pytest.param(
            "See :meth:`resilient.Registry.get`.",
            "See [`resilient.Registry.get()`][resilient.Registry.get].",
            id="method",
        ),
        pytest.param(
            "See :class:`the registry <resilient.Registry>`.",
            "See [`the registry`][resilient.Registry].",
            id="titled",
        ),
        pytest.param("See :func:`~somewhere.else`.", "See `else()`.", id="no-entry-plain-code"),
        pytest.param("Like so::\n\n    x = 1\n", "Like so:\n\n    x = 1\n", id="literal"),
        pytest.param("Text.\n\n::\n\n    x = 1\n", "Text.\n\n\n    x = 1\n", id="bare-literal"),
    ],
)
def test_the_docs_extension_rewrites_roles_and_literal_markers(
    docstring: str, rendered: str
) -> None:
    """tools/docs_roles.py turns a role into a link to the entry it names (or into plain
    code when the name has no entry), and reStructuredText's ``::`` into Markdown."""
    import griffe
    from tools import docs_roles

    public = {"resilient.Registry": "resilient.Registry"}
    public["resilient.Registry.get"] = "resilient.Registry.get"
    assert docs_roles._rewrite(docstring, griffe.Module("x"), public) == rendered
