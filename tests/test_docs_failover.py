"""The examples of docs/failover.md run as written and print what they say."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "failover.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_page_has_its_two_examples() -> None:
    """The page keeps a hedged example and an error-handling one."""
    assert len(BLOCKS) == 2


def test_the_hedged_example_prints_its_lineage(capsys: pytest.CaptureFixture[str]) -> None:
    """beta wins as a hedge at 0.15 s; alpha is cancelled; gamma never starts."""
    exec(compile(BLOCKS[0], str(DOC), "exec"), {"__name__": "docs_failover"})
    assert capsys.readouterr().out.splitlines() == [
        "2.05 beta True 0.15",
        "alpha cancelled 0.0 None",
        "beta answered 0.1 0.05",
    ]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the example uses except*")
def test_the_error_example_prints_notes_and_lineage(capsys: pytest.CaptureFixture[str]) -> None:
    """except* picks out the failure with its note, and the invalid answer with its value."""
    exec(compile(BLOCKS[1], str(DOC), "exec"), {"__name__": "docs_failover"})
    assert capsys.readouterr().out.splitlines() == [
        "[\"source 'alpha', attempt 1\"]",
        "['failed', 'invalid']",
        "-1.0",
        "2",
    ]
