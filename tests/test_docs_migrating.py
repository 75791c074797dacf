"""The migration guides cannot drift: their tables name real parameters, their "before" code
uses only names the tables map."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import resilient
import resilient.stores
import resilient.testing

DOCS = Path(__file__).resolve().parent.parent / "docs" / "migrating"
PEERS = ("tenacity", "pybreaker")

# Every public name a guide may use on our side of a table.
OURS: dict[str, Any] = {
    name: getattr(module, name)
    for module in (resilient, resilient.stores, resilient.testing)
    for name in module.__all__
}

BEFORE_BLOCK = re.compile(r"```python \{ \.no-run \}\n(.*?)```", re.S)
CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    """One row of a guide's parameter map: the peer's cell and ours."""

    peer: str
    ours: str


def page(peer: str) -> str:
    return (DOCS / f"{peer}.md").read_text(encoding="utf-8")


def table_rows(text: str) -> list[Row]:
    """The rows of the table under "## Parameter map", header and rule left out."""
    section = text.split("## Parameter map", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append(Row(peer=cells[0], ours=cells[1]))
    return rows


def before_blocks(text: str) -> list[str]:
    return BEFORE_BLOCK.findall(text)


def expressions(cell: str) -> Iterator[tuple[str, ast.expr]]:
    """Each `code` span of a cell, parsed as a Python expression (… is a placeholder)."""
    for span in CODE.findall(cell):
        yield span, ast.parse(span.replace("…", "..."), mode="eval").body


def _parameters(target: Any) -> tuple[set[str], int, bool]:
    """Keyword names, how many positional arguments, and whether **kwargs is accepted."""
    parameters = list(inspect.signature(target).parameters.values())
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    return names, positional, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _has_attribute(owner: Any, name: str) -> bool:
    """A class attribute, or an instance attribute its constructor or annotations set."""
    if hasattr(owner, name):
        return True
    if isinstance(owner, type):
        if name in inspect.signature(owner).parameters:
            return True
        return any(name in getattr(klass, "__annotations__", {}) for klass in owner.__mro__)
    return False


def _resolve(node: ast.expr) -> tuple[str, Any] | None:
    """`Name` or `Name.attr` of one of our public names, with the object it names."""
    if isinstance(node, ast.Name) and node.id in OURS:
        return node.id, OURS[node.id]
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in OURS
    ):
        owner = OURS[node.value.id]
        return f"{node.value.id}.{node.attr}", getattr(owner, node.attr, None)
    return None


def problems_in_our_cell(cell: str) -> list[str]:
    """What in our side of a row names no real class, keyword parameter or attribute."""
    if cell == "none":
        return []
    problems = []
    named = 0
    for span, tree in expressions(cell):
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id[:1].isupper() and node.id not in OURS:
                problems.append(f"`{span}`: resilient has no public name {node.id!r}")
            if isinstance(node, ast.Name) and node.id in OURS:
                named += 1
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in OURS
                and not _has_attribute(OURS[node.value.id], node.attr)
            ):
                problems.append(f"`{span}`: {node.value.id} has no attribute {node.attr!r}")
            if isinstance(node, ast.Call):
                resolved = _resolve(node.func)
                if resolved is None or resolved[1] is None:
                    continue
                label, target = resolved
                names, positional, open_ended = _parameters(target)
                for keyword in node.keywords:
                    if keyword.arg is not None and keyword.arg not in names and not open_ended:
                        problems.append(f"`{span}`: {label} has no parameter {keyword.arg!r}")
                if len(node.args) > positional:
                    problems.append(
                        f"`{span}`: {label} takes {positional} positional arguments, "
                        f"not {len(node.args)}"
                    )
    if not named:
        problems.append(f"{cell!r} names nothing of resilient's (write `none` if so)")
    return problems


def peer_names_in_table(rows: list[Row]) -> set[str]:
    """Every name the peer's column mentions: functions, classes, keywords, attributes."""
    names: set[str] = set()
    for row in rows:
        for _, tree in expressions(row.peer):
            for node in ast.walk(tree):
                if isinstance(node, ast.Name):
                    names.add(node.id)
                elif isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.keyword) and node.arg is not None:
                    names.add(node.arg)
    return names


def peer_names_used(block: str, peer: str) -> set[str]:
    """The peer's names a block uses: imported from it, read from the module, keywords
    passed to them, attributes of objects they built, and hooks of subclasses of them."""
    tree = ast.parse(block)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == peer:
            imported.update(alias.name for alias in node.names)

    def is_peer(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in imported
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == peer
        )

    used = set(imported)
    built: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_peer(node):
            used.add(node.attr)
        if isinstance(node, ast.Call) and is_peer(node.func):
            used.update(keyword.arg for keyword in node.keywords if keyword.arg is not None)
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and is_peer(node.value.func)
        ):
            built.update(target.id for target in node.targets if isinstance(target, ast.Name))
        if isinstance(node, ast.ClassDef) and any(is_peer(base) for base in node.bases):
            used.update(item.name for item in node.body if isinstance(item, ast.FunctionDef))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in built
        ):
            used.add(node.attr)
    return used


@pytest.mark.parametrize("peer", PEERS)
def test_each_row_names_a_real_class_keyword_parameter_or_attribute_of_ours(peer: str) -> None:
    """Our side of every row names a public class with that keyword, or a real attribute."""
    rows = table_rows(page(peer))
    assert len(rows) >= 15
    problems = [problem for row in rows for problem in problems_in_our_cell(row.ours)]
    assert problems == []


@pytest.mark.parametrize("peer", PEERS)
def test_each_before_block_compiles_and_says_which_version_it_is_written_for(peer: str) -> None:
    """Every "before" block compiles and starts with `# <peer> X.Y`, one version a page."""
    blocks = before_blocks(page(peer))
    assert len(blocks) >= 3
    versions = set()
    for number, block in enumerate(blocks):
        compile(block, f"{peer}.md before-block {number}", "exec")
        first_line = block.splitlines()[0]
        match = re.fullmatch(rf"# {peer} (\d+\.\d+)", first_line)
        assert match is not None, first_line
        versions.add(match[1])
    assert len(versions) == 1


@pytest.mark.parametrize("peer", PEERS)
def test_each_peer_name_a_before_block_uses_is_mapped_in_the_table(peer: str) -> None:
    """A reader who meets a name in the "before" code finds its row in the table."""
    text = page(peer)
    listed = peer_names_in_table(table_rows(text))
    unlisted = {
        number: sorted(peer_names_used(block, peer) - listed)
        for number, block in enumerate(before_blocks(text))
    }
    assert {number: names for number, names in unlisted.items() if names} == {}


@pytest.mark.parametrize(
    ("peer", "names"),
    [
        pytest.param(
            "tenacity",
            {
                "stop_after_attempt",
                "wait_exponential",
                "retry_if_exception_type",
                "before_sleep",
                "reraise",
                "stop_after_delay",
                "wait_random_exponential",
                "retry_if_result",
                "AsyncRetrying",
            },
            id="tenacity",
        ),
        pytest.param(
            "pybreaker",
            {
                "fail_max",
                "reset_timeout",
                "exclude",
                "success_threshold",
                "listeners",
                "CircuitRedisStorage",
                "state",
                "current_state",
            },
            id="pybreaker",
        ),
    ],
)
def test_the_table_maps_the_names_users_migrate_from(peer: str, names: set[str]) -> None:
    """The parameters people come looking for keep their rows."""
    assert names - peer_names_in_table(table_rows(page(peer))) == set()


def test_a_misspelt_keyword_parameter_on_our_side_is_reported() -> None:
    """A typo in a keyword of ours fails the table check, naming the class and the keyword."""
    assert problems_in_our_cell("`CircuitBreaker(open_durration=…)`") == [
        "`CircuitBreaker(open_durration=…)`: CircuitBreaker has no parameter 'open_durration'"
    ]


def test_a_misspelt_class_or_attribute_on_our_side_is_reported() -> None:
    """A class that does not exist, or an attribute it lacks, fails the table check."""
    assert problems_in_our_cell("`Retry(attempts=…)`, `RetryExhaustedError.last_reslt`") == [
        "`RetryExhaustedError.last_reslt`: RetryExhaustedError has no attribute 'last_reslt'"
    ]
    assert problems_in_our_cell("`CircuitBreakr.state`") == [
        "`CircuitBreakr.state`: resilient has no public name 'CircuitBreakr'",
        "'`CircuitBreakr.state`' names nothing of resilient's (write `none` if so)",
    ]


def test_a_misspelt_peer_name_in_a_before_block_is_found_unmapped() -> None:
    """A "before" block that uses a name the table does not list is caught, keyword too."""
    block = (
        "# tenacity 9.2\n"
        "from tenacity import retry, stop_after_atempt\n"
        "@retry(stop=stop_after_atempt(3), rerase=True)\n"
        "def f() -> None: ...\n"
    )
    listed = peer_names_in_table(table_rows(page("tenacity")))
    assert peer_names_used(block, "tenacity") - listed == {"stop_after_atempt", "rerase"}


def test_attributes_of_a_peer_object_and_hooks_of_a_peer_subclass_count_as_used() -> None:
    """`breaker.current_state` and a listener's `state_change` are the peer's names too."""
    block = (
        "import pybreaker\n"
        "class Log(pybreaker.CircuitBreakerListener):\n"
        "    def state_change(self, cb, old, new): ...\n"
        "breaker = pybreaker.CircuitBreaker(fail_max=2)\n"
        "print(breaker.current_state)\n"
    )
    assert peer_names_used(block, "pybreaker") == {
        "CircuitBreakerListener",
        "state_change",
        "CircuitBreaker",
        "fail_max",
        "current_state",
    }
