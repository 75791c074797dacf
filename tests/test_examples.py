"""The example apps as a whole: each runs as ``python -m examples.<name>``, and teaches
only the public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from _subprocess import same_imports

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("odds_aggregator", "kickoff_spike", "http_gateway", "tuning")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports from, with its line, names included for ``from x
    import y`` (as ``x.y``), relative imports left out."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def test_every_example_is_a_package_run_with_python_dash_m() -> None:
    """Each example is a package with a __main__, and nothing else lives beside them."""
    packages = sorted(
        p.name for p in (ROOT / "examples").iterdir() if p.is_dir() and p.name != "__pycache__"
    )
    assert packages == sorted(EXAMPLES)
    for name in EXAMPLES:
        assert (ROOT / "examples" / name / "__main__.py").is_file()
    loose = sorted(p.name for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")
    assert loose == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_example_uses_only_the_public_api(name: str) -> None:
    """No example imports a private module or name of resilient: users copy from them."""
    private = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "examples" / name).rglob("*.py"))
        for line, module in _imports(path)
        if module.startswith("resilient")
        and any(part.startswith("_") for part in module.split("."))
    ]
    assert private == []


def test_the_check_for_private_imports_finds_them(tmp_path: Path) -> None:
    """The import reader sees plain, from- and name-level private imports."""
    source = tmp_path / "sample.py"
    source.write_text(
        "import resilient._core\n"
        "from resilient import _breaker\n"
        "from resilient.chaos import Chaos\n"
    )
    assert _imports(source) == [
        (1, "resilient._core"),
        (2, "resilient"),
        (2, "resilient._breaker"),
        (3, "resilient.chaos"),
        (3, "resilient.chaos.Chaos"),
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_example_explains_itself_with_help(name: str) -> None:
    """``python -m examples.<name> --help`` prints its usage and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{name}", "--help"],
        cwd=ROOT,
        env=same_imports(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m examples.")
