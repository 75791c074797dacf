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
PAGES = (
    "asgi.md",
    "cache.md",
    "chaos.md",
    "failover.md",
    "httpx.md",
    "recipes/starlette.md",
    "simulation.md",
    "testing.md",
)
# A block fenced as ```python runs; one fenced as ```python { .no-run } (it would call a real
# host) is shown only.
# Real seconds: only a bound, should an example hang.
BOUND = 120


CONTINUED = "# continues the block above\n"
# A print whose line ends with a comment promises that text, at any indentation (inside
# `with` blocks and `async def main()` too).
PROMISE = re.compile(r"^[ \t]*print\(.*\)\s+# (.*)$", re.M)


def python_blocks(page: str) -> list[str]:
    """The page's runnable examples; a block that starts with ``CONTINUED`` runs after the
    block above it, as one script."""
    blocks: list[str] = []
    for block in re.findall(r"```python\n(.*?)```", (DOCS / page).read_text("utf-8"), re.S):
        if block.startswith(CONTINUED) and blocks:
            block = blocks[-1] + "\n" + block.removeprefix(CONTINUED)
        blocks.append(block)
    return blocks


def run(block: str) -> list[str]:
    """The lines the example prints, run as a script of its own, with chaos unset in its
    environment."""
    env = {k: v for k, v in os.environ.items() if k != "RESILIENT_CHAOS"}
    ran = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=BOUND, env=env
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.splitlines()


@pytest.mark.parametrize(
    ("page", "number"),
    [
        pytest.param(page, number, id=f"{page}-{number}")
        for page in PAGES
        for number in range(len(python_blocks(page)))
    ],
)
def test_the_example_runs_and_prints_what_its_comments_say(page: str, number: int) -> None:
    """The example runs to the end; each ``print(...)  # text`` line printed that text."""
    block = python_blocks(page)[number]
    if "except*" in block and sys.version_info < (3, 11):
        pytest.skip("the example uses except*, new in Python 3.11")
    printed = run(block)
    promised = PROMISE.findall(block)
    if promised:
        assert printed == promised


def test_the_outage_example_opens_the_breaker_and_closes_it_after() -> None:
    """The first chaos example prints the breaker's states as its comment says."""
    block = python_blocks("chaos.md")[0]
    (printed,) = run(block)
    states = ast.literal_eval(printed)
    assert states == ast.literal_eval(block.rsplit("# ", 1)[1])
    assert states[0] == "open"
    assert states[-1] == "closed"


def test_the_mix_example_observes_its_configured_rates() -> None:
    """The mix example's timeouts and empty answers come out near 5% and 2%."""
    (block,) = [b for b in python_blocks("chaos.md") if "Mix(" in b]
    timeouts, empty = (float(x) for x in run(block)[0].split())
    # 10,000 seeded calls: three standard deviations are 0.65 and 0.42 points.
    assert abs(timeouts - 0.05) < 0.0065
    assert abs(empty - 0.02) < 0.0042


def test_the_hedged_failover_example_prints_its_lineage() -> None:
    """beta wins as a hedge at 0.15 s; alpha is cancelled; gamma never starts."""
    assert run(python_blocks("failover.md")[0]) == [
        "2.05 beta True 0.15",
        "alpha cancelled 0.0 None",
        "beta answered 0.1 0.05",
    ]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the example uses except*")
def test_the_failover_error_example_prints_notes_and_lineage() -> None:
    """except* picks out the failure with its note, and the invalid answer with its value."""
    assert run(python_blocks("failover.md")[1]) == [
        "[\"failover 'odds': source 'alpha', attempt 1\"]",
        "['failed', 'invalid']",
        "-1.0",
        "2",
    ]


def test_every_commented_print_is_a_promise_whatever_its_indentation() -> None:
    """Prints at column 0, in a ``with`` block and in ``async def main()`` are all read,
    in the order they appear; a print without a comment promises nothing."""
    block = (
        "print(1)  # 1\n"
        "with open(__file__):\n"
        "    print(2)  # 2\n"
        "async def main():\n"
        "        print(3)    # 3\n"
        "print(4)\n"
    )
    assert PROMISE.findall(block) == ["1", "2", "3"]
