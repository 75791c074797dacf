"""Every code block in the docs is a test: Python runs and prints what it promises, shell
commands name real things, data parses, and every fence says what it holds.

The pages are found, not listed: every markdown page under docs/ (and any file a page
includes with ``--8<--``), plus README.md.

- ```python runs as a script of its own (a fresh interpreter, the repository root as its
  working directory, ``RESILIENT_CHAOS`` unset). A ``print(...)  # text`` line promises
  that printed line, in order. A block that starts with ``# continues the block above``
  runs after the block above it on the same page, as one script.
- ```python { .no-run } is shown only, and only with a reason in ``NO_RUN``.
- ```sh, ```bash and ```console commands are checked, not run (see ``check_command``).
- ```json, ```toml and ```yaml parse. ```text is shown output. ```mermaid diagrams of
  states are checked against the code by tests/test_docs_diagrams.py.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from _subprocess import same_imports

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Real seconds: only a bound, should an example hang.
BOUND = 120

CONTINUED = "# continues the block above\n"
# A print whose line ends with a comment promises that text, at any indentation (inside
# `with` blocks and `async def main()` too).
# The comment must be on the print's own line, even when the text ends with ")".
PROMISE = re.compile(r"^[ \t]*print\(.*\)[ \t]+# (.*)$", re.M)

SHELL = frozenset({"sh", "bash", "console"})
DATA = frozenset({"json", "toml", "yaml"})
# text: shown output, read by people; mermaid: checked by tests/test_docs_diagrams.py.
LANGUAGES = frozenset({"python", "text", "mermaid"}) | SHELL | DATA
# Options a fence may carry besides its language: .no-run (python only), and the
# site's own title= / hl_lines= / linenums=.
OPTIONS = re.compile(r'^(\.no-run|(title|hl_lines|linenums)="[^"]*")$')

# The blocks shown and never run, by page and first line, each with the reason. A new
# ```python { .no-run } block fails until its reason is written here.
NO_RUN = {
    ("docs/httpx.md", "import resilient.httpx"): (
        "the three-line quick start: it calls a real host, and the rest of the page runs "
        "the same client against a virtual one"
    ),
    ("docs/observability.md", "from opentelemetry import metrics, trace"): (
        "wires the OTLP exporters, a package of their own that we do not depend on, to a "
        "collector on localhost; the page's durations example runs the same SDK wiring "
        "with an in-memory reader"
    ),
    ("docs/migrating/tenacity.md", "# tenacity 9.2"): (
        "tenacity's code, before the move: we do not install tenacity; "
        "tests/test_docs_migrating.py compiles it and checks each name it uses is mapped"
    ),
    ("docs/migrating/pybreaker.md", "# pybreaker 1.4"): (
        "pybreaker's code, before the move: we do not install pybreaker; "
        "tests/test_docs_migrating.py compiles it and checks each name it uses is mapped"
    ),
    ("docs/simulation.md", "workload = simulate.Replay("): (
        "reads the reader's own recorded trace (odds-feed.jsonl); the page's other "
        "examples build traces in memory"
    ),
}

# Distributions other than ours that a page may tell the reader to pip install, each
# with the reason; every other requirement must be resilient-guards.
OTHER_DISTRIBUTIONS = {
    "opentelemetry-sdk": "the OpenTelemetry SDK the telemetry page exports through",
    "opentelemetry-exporter-otlp-proto-grpc": "the OTLP exporter over gRPC, named there",
    "opentelemetry-exporter-otlp-proto-http": "the OTLP exporter over HTTP, named there",
    "uvicorn": "the ASGI server the Starlette recipe serves its app with",
}

# Commands that are neither pip, make nor python, each with why it is not checked
# further. A new program fails until someone decides about it here.
OTHER_COMMANDS = {
    "uvicorn": (
        "serves the reader's own module (the recipe's service.py), which exists only once "
        "the reader writes it; uvicorn itself is in the examples extra"
    ),
    "curl": "an HTTP call to the reader's running service; the page's Python runs the app",
    "promtool": (
        "Prometheus's rule checker, on the page's rule files; tests/test_docs_telemetry.py "
        "runs the same two commands on them"
    ),
}


@dataclass(frozen=True)
class Block:
    """One fenced block: its page (relative to the repository root), the line its fence
    opens on, its language, its options and its text (dedented to the fence)."""

    page: str
    line: int
    language: str
    options: tuple[str, ...]
    text: str

    @property
    def runs(self) -> bool:
        return self.language == "python" and ".no-run" not in self.options

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")


def pages() -> list[str]:
    """Every page the site or the repository shows: docs/**/*.md, the files they
    include, and README.md; relative to the repository root."""
    found = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
    for page in list(found):
        for name in re.findall(r'^--8<-- "([^"]+)"$', page.read_text("utf-8"), re.M):
            if (ROOT / name).suffix == ".md" and ROOT / name not in found:
                found.append(ROOT / name)
    return [page.relative_to(ROOT).as_posix() for page in found]


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def blocks(page: str) -> list[Block]:
    """The fenced blocks of one page, in order."""
    lines = (ROOT / page).read_text("utf-8").splitlines()
    found: list[Block] = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = number + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        body = [_dedent(line, indent) for line in lines[number + 1 : end]]
        language, options = _info(opening["info"])
        found.append(Block(page, number + 1, language, options, "\n".join(body) + "\n"))
        number = end + 1
    return found


def _dedent(line: str, indent: int) -> str:
    """A line of a fence indented by ``indent`` (in a list or an admonition), without it."""
    return line[indent:] if line[:indent].strip() == "" else line.lstrip()


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def _info(info: str) -> tuple[str, tuple[str, ...]]:
    """A fence's language and options: ``python { .no-run }`` is ("python", (".no-run",))."""
    info = info.strip()
    language, _, rest = info.partition(" ")
    if language.startswith("{"):
        language, rest = "", info
    rest = rest.strip()
    if rest.startswith("{") and rest.endswith("}"):
        rest = rest[1:-1]
    options = tuple(shlex.split(rest, posix=False))
    if not language and options and options[0].startswith("."):
        language, options = options[0][1:], options[1:]
    return language, options


ALL = [block for page in pages() for block in blocks(page)]


def python_blocks(page: str) -> list[str]:
    """The page's runnable examples, as scripts; a block that starts with ``CONTINUED``
    runs after the block above it, as one script."""
    scripts: list[str] = []
    for block in ALL:
        if block.page == page and block.runs:
            text = block.text
            if text.startswith(CONTINUED) and scripts:
                text = scripts[-1] + "\n" + text.removeprefix(CONTINUED)
            scripts.append(text)
    return scripts


def _params(kinds: frozenset[str]) -> list[object]:
    """One ``pytest.param`` per block of these languages, with the id ``page-number``
    (numbered within its page among blocks of the same test)."""
    params: list[object] = []
    counts: dict[str, int] = {}
    for block in ALL:
        if block.language in kinds and (block.language != "python" or block.runs):
            number = counts.get(block.page, 0)
            counts[block.page] = number + 1
            params.append(pytest.param(block.page, number, id=f"{block.page}-{number}"))
    return params


def _of(kinds: frozenset[str], page: str, number: int) -> Block:
    return [
        b
        for b in ALL
        if b.page == page and b.language in kinds and (b.language != "python" or b.runs)
    ][number]


def run(script: str) -> list[str]:
    """The lines the script prints, run in a fresh interpreter from the repository root,
    with chaos unset and the same import path as these tests."""
    env = {k: v for k, v in same_imports().items() if k != "RESILIENT_CHAOS"}
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=BOUND,
        env=env,
        cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.splitlines()


# -- python ------------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "number"), _params(frozenset({"python"})))
def test_the_example_runs_and_prints_what_its_comments_say(page: str, number: int) -> None:
    """The example runs to the end; each ``print(...)  # text`` line printed that text."""
    script = python_blocks(page)[number]
    if "except*" in script and sys.version_info < (3, 11):
        pytest.skip("the example uses except*, new in Python 3.11")
    printed = run(script)
    promised = PROMISE.findall(script)
    if promised:
        assert printed == promised


def test_every_block_shown_and_not_run_has_its_reason() -> None:
    """The ```python { .no-run } blocks are exactly those NO_RUN gives a reason for."""
    shown = {(b.page, b.first_line) for b in ALL if b.language == "python" and not b.runs}
    listed = {(page, start) for page, start in NO_RUN}
    matched = {
        key for key in listed if any(p == key[0] and line.startswith(key[1]) for p, line in shown)
    }
    unlisted = sorted(
        (page, line)
        for page, line in shown
        if not any(page == p and line.startswith(s) for p, s in listed)
    )
    assert unlisted == [], "give each no-run block its reason in NO_RUN, or make it run"
    assert matched == listed, f"NO_RUN names blocks no page has: {sorted(listed - matched)}"


# -- fences ------------------------------------------------------------------------------


def test_every_fence_names_a_language_this_test_checks() -> None:
    """No block slips through unchecked: each fence names a known language, and only
    known options (.no-run on python alone)."""
    problems = [
        f"{b.page}:{b.line}: language {b.language!r}" for b in ALL if b.language not in LANGUAGES
    ] + [
        f"{b.page}:{b.line}: option {option!r}"
        for b in ALL
        for option in b.options
        if not OPTIONS.match(option) or (option == ".no-run" and b.language != "python")
    ]
    assert problems == []


def test_a_fence_with_options_is_read_as_its_language_and_options() -> None:
    """Both ways of writing attributes give the same language and options; no language
    is the empty one, which the check above refuses."""
    assert _info("python { .no-run }") == ("python", (".no-run",))
    assert _info("{ .python .no-run }") == ("python", (".no-run",))
    assert _info('python title="app.py"') == ("python", ('title="app.py"',))
    assert _info("") == ("", ())


# -- data --------------------------------------------------------------------------------


def _toml(text: str) -> dict[str, Any]:
    """The TOML text, parsed (tomllib is new in Python 3.11: older ones skip)."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is new in Python 3.11")
    loaded: dict[str, Any] = importlib.import_module("tomllib").loads(text)
    return loaded


PARSERS = {"json": json.loads, "toml": _toml, "yaml": yaml.safe_load}


@pytest.mark.parametrize(("page", "number"), _params(DATA))
def test_the_data_block_parses(page: str, number: int) -> None:
    """A ```json, ```toml or ```yaml block is valid as its language."""
    block = _of(DATA, page, number)
    assert PARSERS[block.language](block.text) is not None


# -- shell -------------------------------------------------------------------------------


def commands(block: Block) -> list[list[str]]:
    """The commands of a shell block, as words: comments dropped, continued lines joined,
    a console's output lines (those without ``$ ``) left out, and && ; | split apart."""
    lines = block.text.replace("\\\n", " ").splitlines()
    if block.language == "console":
        lines = [line.removeprefix("$ ") for line in lines if line.startswith("$ ")]
    found: list[list[str]] = []
    for line in lines:
        words: list[str] = []
        for word in shlex.split(line, comments=True):
            if word in {"&&", "||", ";", "|"}:
                found.append(words)
                words = []
            else:
                words.append(word)
        found.append(words)
    return [words for words in found if words]


def _declared_extras() -> set[str]:
    project = _toml((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    return set(project["optional-dependencies"])


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text("utf-8")
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))


def check_command(words: list[str]) -> list[str]:
    """What is wrong with one command (nothing, if it names real things):

    - ``pip install R...``: each R is resilient-guards, with extras pyproject.toml
      declares, or a distribution OTHER_DISTRIBUTIONS gives a reason for;
    - ``make T...``: each T is a target of the Makefile;
    - ``python -m M ...``: M is importable (the repository root on the path, so
      ``examples.*`` too) and runnable; ``python FILE ...``: FILE exists; either way
      each ``--option`` is one the module's or the file's source names, and each ``.py``
      argument exists;
    - anything else: a program OTHER_COMMANDS gives a reason for.
    Leading ``NAME=value`` environment settings are skipped.
    """
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words = words[1:]
    program, args = Path(words[0]).name, words[1:]
    if program in {"python", "python3"} and args[:2] == ["-m", "pip"]:
        program, args = "pip", args[2:]
    if program in {"pip", "pip3"}:
        return _check_pip(args)
    if program == "make":
        targets = _make_targets()
        return [
            f"make: no target {t!r}" for t in args if not t.startswith("-") and t not in targets
        ]
    if program in {"python", "python3"}:
        return _check_python(args)
    if program in OTHER_COMMANDS:
        return []
    return [f"{program}: a command nobody checks; check it or give it a reason in OTHER_COMMANDS"]


def _check_pip(args: list[str]) -> list[str]:
    if args[:1] != ["install"]:
        return [f"pip {' '.join(args)}: only pip install is checked"]
    problems = []
    for arg in args[1:]:
        if arg.startswith("-"):
            problems.append(f"pip install {arg}: an option nobody checks")
            continue
        try:
            requirement = Requirement(arg)
        except InvalidRequirement:
            problems.append(f"pip install {arg}: not a requirement")
            continue
        name = canonicalize_name(requirement.name)
        if name == "resilient-guards":
            unknown = requirement.extras - _declared_extras()
            problems += [f"pip install {arg}: no extra {extra!r}" for extra in sorted(unknown)]
        elif name not in OTHER_DISTRIBUTIONS:
            problems.append(f"pip install {arg}: not ours; give it a reason in OTHER_DISTRIBUTIONS")
    return problems


def _check_python(args: list[str]) -> list[str]:
    if args[:1] == ["-m"] and len(args) > 1:
        module, rest = args[1], args[2:]
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            return [f"python -m {module}: no such module"]
        if spec.submodule_search_locations is not None:
            if importlib.util.find_spec(f"{module}.__main__") is None:
                return [f"python -m {module}: a package without __main__"]
            sources = list(Path(spec.origin).parent.rglob("*.py"))
        else:
            sources = [Path(spec.origin)]
    elif args and not args[0].startswith("-"):
        script, rest = ROOT / args[0], args[1:]
        if not script.is_file():
            return [f"python {args[0]}: no such file"]
        sources = [script]
    else:
        return [f"python {' '.join(args)}: neither -m MODULE nor a file"]
    text = "\n".join(source.read_text("utf-8") for source in sources)
    problems = [
        f"python {' '.join(args[:2])}: no option {arg.split('=')[0]!r}"
        for arg in rest
        if arg.startswith("--") and f'"{arg.split("=")[0]}"' not in text
    ]
    return problems + [
        f"python {' '.join(args[:2])}: no file {arg!r}"
        for arg in rest
        if arg.endswith(".py") and not (ROOT / arg).is_file()
    ]


@pytest.mark.parametrize(("page", "number"), _params(SHELL))
def test_the_shell_block_names_real_things(page: str, number: int) -> None:
    """Every command of the block installs our distribution, makes a real target, runs a
    real module or file, or is a program with a reason not to be checked."""
    block = _of(SHELL, page, number)
    found = commands(block)
    assert found, "a shell block with no command"
    assert [problem for words in found for problem in check_command(words)] == []


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        pytest.param("pip install 'resilient-guards[redis]'", None, id="our-extra"),
        pytest.param("pip install 'resilient-guards[mongo]'", "no extra 'mongo'", id="no-extra"),
        pytest.param("pip install tenacity", "not ours", id="not-ours"),
        pytest.param("make docs", None, id="target"),
        pytest.param("make deploy", "no target 'deploy'", id="no-target"),
        pytest.param("python -m examples.tuning", None, id="example-module"),
        pytest.param("python -m examples.nowhere", "no such module", id="no-module"),
        pytest.param("python -m resilient.testing", "without __main__", id="not-runnable"),
        pytest.param(
            "python -m examples.odds_aggregator --fast", "no option '--fast'", id="option"
        ),
        pytest.param("python benchmarks/nowhere.py", "no such file", id="no-file"),
        pytest.param("PORT=1 uvicorn service:app", None, id="reasoned-program"),
        pytest.param("rm -rf /", "a command nobody checks", id="unchecked-program"),
    ],
)
def test_a_command_is_checked_against_the_repository(command: str, problem: str | None) -> None:
    """The command check accepts what exists and names what does not."""
    problems = check_command(shlex.split(command))
    if problem is None:
        assert problems == []
    else:
        (only,) = problems
        assert problem in only


def test_a_console_block_checks_its_commands_and_not_its_output() -> None:
    """Only ``$ `` lines are commands; comments and continued lines are read as a shell would."""
    block = Block("x.md", 1, "console", (), "$ make \\\n  docs  # site\nmake: done\n$ a && b\n")
    assert commands(block) == [["make", "docs"], ["a"], ["b"]]


# -- pages' own examples, read more closely ----------------------------------------------


def test_the_outage_example_opens_the_breaker_and_closes_it_after() -> None:
    """The first chaos example prints the breaker's states as its comment says."""
    script = python_blocks("docs/chaos.md")[0]
    (printed,) = run(script)
    states = ast.literal_eval(printed)
    assert states == ast.literal_eval(script.rsplit("# ", 1)[1])
    assert states[0] == "open"
    assert states[-1] == "closed"


def test_the_mix_example_observes_its_configured_rates() -> None:
    """The mix example's timeouts and empty answers come out near 5% and 2%."""
    (script,) = [s for s in python_blocks("docs/chaos.md") if "Mix(" in s]
    timeouts, empty = (float(x) for x in run(script)[0].split())
    # 10,000 seeded calls: three standard deviations are 0.65 and 0.42 points.
    assert abs(timeouts - 0.05) < 0.0065
    assert abs(empty - 0.02) < 0.0042


def test_the_hedged_failover_example_prints_its_lineage() -> None:
    """beta wins as a hedge at 0.15 s; alpha is cancelled; gamma never starts."""
    assert run(python_blocks("docs/failover.md")[0]) == [
        "2.05 beta True 0.15",
        "alpha cancelled 0.0 None",
        "beta answered 0.1 0.05",
    ]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the example uses except*")
def test_the_failover_error_example_prints_notes_and_lineage() -> None:
    """except* picks out the failure with its note, and the invalid answer with its value."""
    assert run(python_blocks("docs/failover.md")[1]) == [
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
        "print(5)  # 5 (five)\n"
        "    # a comment on the next line promises nothing\n"
    )
    assert PROMISE.findall(block) == ["1", "2", "3", "5 (five)"]


def test_the_pages_are_found_not_listed() -> None:
    """Pages in subfolders, the README, and the changelog the site includes are all read."""
    found = pages()
    assert {"README.md", "docs/recipes/starlette.md", "CHANGELOG.md"} <= set(found)
