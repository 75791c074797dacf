"""Every Python example on the pattern pages runs as written, and prints what it says."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("chaos.md",)
# Real seconds: only a bound, should an example hang.
BOUND = 120


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


def run(block: str) -> str:
    """The example's output, run as a script of its own with chaos unset in its environment."""
    env = {k: v for k, v in os.environ.items() if k != "RESILIENT_CHAOS"}
    ran = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=BOUND, env=env
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


@pytest.mark.parametrize(
    ("page", "number"),
    [
        pytest.param(page, number, id=f"{page}-{number}")
        for page in PAGES
        for number in range(len(python_blocks(page)))
    ],
)
def test_the_example_runs(page: str, number: int) -> None:
    """The example runs to the end without an error."""
    run(python_blocks(page)[number])


def test_the_outage_example_opens_the_breaker_and_closes_it_after() -> None:
    """The first chaos example prints the breaker's states as its comment says."""
    block = python_blocks("chaos.md")[0]
    printed = ast.literal_eval(run(block))
    comment = ast.literal_eval(block.rsplit("# ", 1)[1])
    assert printed == comment
    assert printed[0] == "open"
    assert printed[-1] == "closed"


def test_the_mix_example_observes_its_configured_rates() -> None:
    """The mix example's timeouts and empty answers come out near 5% and 2%."""
    (block,) = [b for b in python_blocks("chaos.md") if "Mix(" in b]
    first = run(block).splitlines()[0]
    timeouts, empty = (float(x) for x in first.split())
    # 10,000 seeded calls: three standard deviations are 0.65 and 0.42 points.
    assert abs(timeouts - 0.05) < 0.0065
    assert abs(empty - 0.02) < 0.0042
