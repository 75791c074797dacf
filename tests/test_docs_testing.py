"""The examples in docs/testing.md run as written: a user learns the clock from them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
# Real seconds: only a bound should pytest hang in the child process.
BOUND = 120


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_match_day_example_prints_what_the_page_says() -> None:
    """The three-feeds example ends at 1.0 s with the 0.5 s feed first, as printed there."""
    (script,) = [block for block in python_blocks() if "def match_day" in block]
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=BOUND, check=True
    )
    assert ran.stdout == "('news', 0.5) [('odds', 1.0), ('scores', 1.0)]\n"


def test_the_pytest_examples_pass_as_a_users_test_suite(tmp_path: Path) -> None:
    """The page's tests, with its conftest.py, pass under pytest in a project of their own."""
    blocks = python_blocks()
    (conftest,) = [block for block in blocks if "def anyio_backend" in block]
    tests = [block for block in blocks if "def test_" in block]
    assert len(tests) >= 3
    (tmp_path / "conftest.py").write_text(conftest, encoding="utf-8")
    for number, block in enumerate(tests):
        (tmp_path / f"test_example_{number}.py").write_text(
            # The fixtures example reuses flaky_feed from the first one.
            block if "def flaky_feed" in block else f"{_flaky_feed()}\n{block}",
            encoding="utf-8",
        )
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=BOUND,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert " passed" in ran.stdout


def _flaky_feed() -> str:
    return 'def flaky_feed() -> float:\n    raise ConnectionError("feed unreachable")\n'
