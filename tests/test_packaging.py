"""Packaging: the installed distribution is the one the README tells a stranger to install."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import resilient
from _install import installed_from_wheel
from _subprocess import same_imports

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


# What the package may import when it is imported: the standard library, itself, and the
# runtime dependencies pyproject.toml declares. exceptiongroup is the backport anyio
# itself requires below Python 3.11, imported only there.
DECLARED = {"typing_extensions", "anyio", "opentelemetry", "exceptiongroup"}


def _top_level_imports(path: Path) -> set[str]:
    """The top-level packages a module imports when it is imported (not inside functions,
    nor under ``if TYPE_CHECKING:``)."""
    import ast

    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


@pytest.mark.parametrize(
    "module",
    sorted(p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")),
)
def test_importing_the_package_needs_only_its_declared_dependencies(module: str) -> None:
    """No module imports, at import time, a package that a plain install does not bring
    (sniffio, trio, httpx, ...): optional ones are imported where they are used."""
    import sys

    # The pytest plugin is loaded by pytest itself, through its entry point; the httpx
    # integration is imported only by those who installed the [httpx] extra, the Redis
    # store only by those who installed the [redis] extra.
    allowed = set(DECLARED)
    if module == "resilient/testing/_plugin.py":
        allowed.add("pytest")
    if module.startswith("resilient/httpx/"):
        allowed.add("httpx")
    if module == "resilient/stores/redis.py" or module.startswith("resilient/stores/_redis_"):
        allowed.add("redis")
    outside = {
        name
        for name in _top_level_imports(ROOT / "src" / module)
        if name not in sys.stdlib_module_names and name != "resilient" and name not in allowed
    }
    assert not outside, f"{module} imports {sorted(outside)} at import time"


def test_importing_resilient_does_not_import_httpx() -> None:
    """`import resilient` leaves httpx alone; only `import resilient.httpx` brings it in."""
    import subprocess
    import sys

    code = (
        "import sys, resilient; assert 'httpx' not in sys.modules, 'httpx imported'; "
        "import resilient.httpx; assert 'httpx' in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=same_imports(examples=False),
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(
    not installed_from_wheel(),
    reason="resilient is this checkout (editable); `make test` runs the suite on the wheel",
)
def test_the_installed_wheel_holds_every_file_of_the_source_tree() -> None:
    """Every module, script and marker file under src/resilient is in the installed wheel,
    and the wheel holds nothing else there."""
    source = {
        path.relative_to(ROOT / "src").as_posix()
        for path in (ROOT / "src" / "resilient").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    shipped = {
        str(file)
        for file in metadata.files(DISTRIBUTION) or []
        if str(file).startswith("resilient/") and "__pycache__" not in str(file)
    }
    assert shipped == source


def test_the_version_is_written_once() -> None:
    """pyproject.toml takes the version from ``__version__`` and states none of its own."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.MULTILINE)
    assert not re.search(r"^version\s*=", pyproject, re.MULTILINE)
    assert re.search(
        r'^\[tool\.hatch\.version\]\npath = "src/resilient/__init__\.py"$', pyproject, re.MULTILINE
    )


def test_the_changelog_has_a_dated_section_for_this_version() -> None:
    """A release version has its own ``## [X.Y.Z] - YYYY-MM-DD`` section below Unreleased."""
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, re.MULTILINE)
    assert sections[0] == ("Unreleased", "")
    if ".dev" not in resilient.__version__:
        dated = dict(sections[1:])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", dated.get(resilient.__version__, ""))
