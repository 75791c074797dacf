"""The incident playbooks (docs/playbooks/) cite only names that exist, have every section
an operator looks for, and are what the example apps' runbook links point at."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from opentelemetry.metrics import MeterProvider

from resilient import Registry
from resilient.otel import instrument

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "docs" / "playbooks"
OTEL = ROOT / "src" / "resilient" / "otel.py"
EXAMPLES = ROOT / "examples"

# The pages issue 18 asks for; each may be joined by more.
REQUIRED_PAGES = (
    "dependency-down.md",
    "dependency-slow.md",
    "retry-storm.md",
    "load-shedding.md",
    "stale-fallbacks.md",
    "redis-unreachable.md",
    "flapping.md",
)
# Every playbook answers these, in this order, each under a heading of its own.
SECTIONS = (
    "How it shows in metrics",
    "How it shows in logs",
    "How it shows in the snapshot and /health",
    "What the library already does",
    "What to check and do",
    "How to confirm recovery",
)
# Where a cited class is looked up: the public modules.
MODULES = (
    "resilient",
    "resilient.asgi",
    "resilient.otel",
    "resilient.testing",
    "resilient.stores",
    "resilient.stores.redis",
)
# The link form of every runbook in the examples: the playbook's path in the repository.
RUNBOOK_LINK = re.compile(r"docs/playbooks/[\w.-]*")
CONTINUED = "# continues the block above\n"
PROMISE = re.compile(r"^[ \t]*print\(.*\)\s+# (.*)$", re.M)


def playbooks() -> list[Path]:
    return sorted(page for page in PLAYBOOKS.glob("*.md") if page.name != "index.md")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks: what the page says, not what it runs."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def cited(text: str) -> list[str]:
    """Every name written in backticks in the prose of ``text``."""
    return re.findall(r"`([^`\n]+)`", prose(text))


def headings(text: str) -> list[str]:
    return re.findall(r"^##\s+(.+?)\s*$", prose(text), re.M)


def slug(heading: str) -> str:
    """The anchor mkdocs' toc extension gives a heading (its default slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


# -- what the code has --------------------------------------------------------------------


class _Meter:
    """A meter that only writes down the names of the instruments made on it."""

    def __init__(self, names: set[str]) -> None:
        self._names = names

    def __getattr__(self, method: str) -> Any:
        if not method.startswith("create_"):
            raise AttributeError(method)

        def create(name: str, *args: object, **kwargs: object) -> object:
            self._names.add(name)
            return _Instrument()

        return create


class _Instrument:
    def __getattr__(self, method: str) -> Any:
        return lambda *args, **kwargs: None


class _MeterProvider:
    def __init__(self) -> None:
        self.names: set[str] = set()

    def get_meter(self, *args: object, **kwargs: object) -> _Meter:
        return _Meter(self.names)


def metric_names() -> set[str]:
    """The names of the instruments resilient.otel makes, as it makes them."""
    provider = _MeterProvider()
    # Duck-typed: instrument() only asks a provider for get_meter().
    instrument(Registry(), meter_provider=cast(MeterProvider, provider)).stop()
    return provider.names


def telemetry_words() -> set[str]:
    """Every ``resilient.*`` string in otel.py: attribute keys and span event names."""
    tree = ast.parse(OTEL.read_text("utf-8"))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("resilient.")
    }


def is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def exists(reference: str) -> bool:
    try:
        resolve(reference)
    except AttributeError:
        return False
    return True


def resolve(reference: str) -> object:
    """The object a reference such as ``CircuitBreaker.force_open`` or
    ``resilient.asgi.HealthApp.drain`` names; ``AttributeError`` if there is none."""
    parts = reference.removesuffix("()").split(".")
    scopes: list[ModuleType] = []
    if parts[0] == "resilient":
        # The longest importable module prefix: resilient.stores.redis.RedisStore.
        for end in range(len(parts), 0, -1):
            name = ".".join(parts[:end])
            if is_module(name):
                scopes = [importlib.import_module(name)]
                parts = parts[end:]
                break
    else:
        scopes = [importlib.import_module(name) for name in (*MODULES, "builtins")]
    for scope in scopes:
        found: object = scope
        try:
            for part in parts:
                found = getattr(found, part)
        except AttributeError:
            continue
        return found
    raise AttributeError(f"{reference!r} names nothing in {', '.join(MODULES)}")


# A telemetry name: resilient.calls, resilient.guard.state, resilient.outcome.
TELEMETRY = re.compile(r"resilient(\.[a-z][a-z0-9_]*)+")
# A class, or a member of one: CircuitBreaker.force_open, resilient.asgi.HealthApp.drain().
PYTHON_NAME = re.compile(r"(resilient(\.[a-z_]+)*\.)?[A-Z]\w*(\.\w+)*(\(\))?")


def references(text: str) -> Iterator[str]:
    for name in cited(text):
        if TELEMETRY.fullmatch(name) or PYTHON_NAME.fullmatch(name):
            yield name


# -- the pages ----------------------------------------------------------------------------


def test_every_required_playbook_is_there_with_an_index() -> None:
    """docs/playbooks/ holds an index and a page for each failure issue 18 names."""
    assert (PLAYBOOKS / "index.md").is_file()
    missing = [name for name in REQUIRED_PAGES if not (PLAYBOOKS / name).is_file()]
    assert not missing


def test_the_index_links_every_playbook() -> None:
    """The index links each playbook page, so none is reachable only by searching."""
    index = (PLAYBOOKS / "index.md").read_text("utf-8")
    linked = set(re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", index))
    assert {page.name for page in playbooks()} <= linked


@pytest.mark.parametrize("page", REQUIRED_PAGES)
def test_a_playbook_has_every_section_in_order(page: str) -> None:
    """Metrics, logs, snapshot, what the library does, what to do, recovery: each a
    heading of its own, in that order."""
    found = headings((PLAYBOOKS / page).read_text("utf-8"))
    assert [h for h in found if h in SECTIONS] == list(SECTIONS)


@pytest.mark.parametrize("page", REQUIRED_PAGES)
def test_a_playbook_cites_metrics_in_its_metrics_section(page: str) -> None:
    """The metrics section names at least one instrument resilient.otel makes."""
    text = prose((PLAYBOOKS / page).read_text("utf-8"))
    section = text.split("## How it shows in metrics", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`([^`\n]+)`", section)) & metric_names()


def test_the_telemetry_names_the_check_knows_come_from_otel() -> None:
    """The instruments are read from resilient.otel itself (known ones are among them),
    its attributes and span events from its source, and a misspelt name is neither."""
    names = metric_names()
    assert {"resilient.calls", "resilient.guard.state", "resilient.transitions"} <= names
    assert "resilient.call.duration" in names
    assert {"resilient.outcome", "resilient.refusal"} <= telemetry_words()
    typo = "resilient.guard.states"
    assert typo not in names | telemetry_words()
    assert not exists(typo)


@pytest.mark.parametrize("page", ["index.md", *REQUIRED_PAGES])
def test_every_telemetry_name_a_playbook_cites_exists(page: str) -> None:
    """A `resilient.x.y` in backticks is an instrument, an attribute or span event of
    resilient.otel, or a module or function (`resilient.otel.instrument`)."""
    known = metric_names() | telemetry_words()
    text = (PLAYBOOKS / page).read_text("utf-8")
    unknown = [
        name
        for name in references(text)
        if TELEMETRY.fullmatch(name) and name not in known and not exists(name)
    ]
    assert not unknown


@pytest.mark.parametrize("page", ["index.md", *REQUIRED_PAGES])
def test_every_class_and_method_a_playbook_cites_exists(page: str) -> None:
    """A `CircuitBreaker.force_open` or `resilient.asgi.HealthApp` in backticks names
    something that exists."""
    text = (PLAYBOOKS / page).read_text("utf-8")
    unknown = [
        name for name in references(text) if not TELEMETRY.fullmatch(name) and not exists(name)
    ]
    assert not unknown


@pytest.mark.parametrize(
    ("reference", "found"),
    [
        pytest.param("CircuitBreaker.force_open", True, id="method"),
        pytest.param("resilient.asgi.HealthApp.drain()", True, id="module-path"),
        pytest.param("Fleet.force_degraded", True, id="fleet"),
        pytest.param("CircuitBreaker.force_opne", False, id="typo-method"),
        pytest.param("CircuitBraker", False, id="typo-class"),
        pytest.param("resilient.asgi.HealthAp", False, id="typo-in-module"),
    ],
)
def test_the_name_check_tells_a_real_name_from_a_typo(reference: str, found: bool) -> None:
    """exists() finds real names and refuses misspelt ones."""
    assert exists(reference) is found


def test_the_reference_finder_sees_names_in_prose_only() -> None:
    """Backticked names in prose are checked; code blocks (run on their own) are not."""
    text = "Call `CircuitBreaker.force_open`, watch `resilient.calls`.\n```python\n`Nope`\n```\n"
    assert list(references(text)) == ["CircuitBreaker.force_open", "resilient.calls"]


def python_blocks(page: Path) -> list[str]:
    blocks: list[str] = []
    for block in re.findall(r"```python\n(.*?)```", page.read_text("utf-8"), re.S):
        if block.startswith(CONTINUED) and blocks:
            block = blocks[-1] + "\n" + block.removeprefix(CONTINUED)
        blocks.append(block)
    return blocks


@pytest.mark.parametrize(
    "page", sorted(p.name for p in PLAYBOOKS.glob("*.md") if p.stem != "index")
)
def test_every_playbook_has_a_rehearsal_that_promises_what_it_prints(page: str) -> None:
    """Each playbook ends in at least one ```python rehearsal whose prints promise their
    output; tests/test_docs_examples.py runs it and holds it to those promises."""
    blocks = python_blocks(PLAYBOOKS / page)
    assert blocks
    assert all(PROMISE.findall(block) for block in blocks)


# -- the examples' runbook links ----------------------------------------------------------


def runbook_links() -> dict[str, list[str]]:
    """Every playbook link written in the example apps' code, by file."""
    found: dict[str, list[str]] = {}
    for source in sorted(EXAMPLES.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for link in RUNBOOK_LINK.findall(node.value):
                    found.setdefault(str(source.relative_to(ROOT)), []).append(link)
    return found


def link_resolves(link: str) -> bool:
    """Whether ``docs/playbooks/page.md`` (with an optional ``#anchor``) is a playbook
    page, and the anchor one of its headings."""
    path, _, anchor = link.partition("#")
    page = ROOT / path
    if page.parent != PLAYBOOKS or not page.is_file():
        return False
    text = page.read_text("utf-8")
    return not anchor or anchor in {slug(h) for h in re.findall(r"^#+\s+(.+?)\s*$", text, re.M)}


def test_each_example_app_links_its_guards_to_a_playbook() -> None:
    """The gateway's health app, and the odds and kick-off budgets, carry playbook links."""
    files = set(runbook_links())
    assert {
        "examples/http_gateway/gateway.py",
        "examples/odds_aggregator/service.py",
        "examples/kickoff_spike/service.py",
    } <= files


def test_every_runbook_link_in_the_examples_resolves_to_a_playbook() -> None:
    """Each docs/playbooks/... link in the examples names a page (and heading) that exists."""
    broken = [
        (source, link)
        for source, links in runbook_links().items()
        for link in links
        if not link_resolves(link)
    ]
    assert not broken


@pytest.mark.parametrize(
    ("link", "resolves"),
    [
        pytest.param("docs/playbooks/dependency-down.md", True, id="page"),
        pytest.param("docs/playbooks/dependency-down.md#what-to-check-and-do", True, id="anchor"),
        pytest.param("docs/playbooks/dependency-dwon.md", False, id="typo-page"),
        pytest.param("docs/playbooks/dependency-down.md#no-such-heading", False, id="typo-anchor"),
        pytest.param("docs/dependency-down.md", False, id="outside-playbooks"),
    ],
)
def test_the_link_check_tells_a_playbook_from_a_typo(link: str, resolves: bool) -> None:
    """link_resolves() accepts real pages and headings, and refuses anything else."""
    assert link_resolves(link) is resolves


def test_the_examples_runbooks_are_the_links_their_guards_carry() -> None:
    """The constants the examples pass as runbook= are playbook links that resolve."""
    from examples.http_gateway import gateway
    from examples.kickoff_spike import service as kickoff
    from examples.odds_aggregator import service as odds

    for link in (
        kickoff.RUNBOOK,
        kickoff.BULKHEAD_RUNBOOK,
        odds.RUNBOOK,
        odds.FEED_DOWN_RUNBOOK,
        odds.FEED_BUSY_RUNBOOK,
        odds.RETRIES_RUNBOOK,
        odds.STALE_RUNBOOK,
        gateway.PARTNER_DOWN_RUNBOOK,
        gateway.PARTNER_BUSY_RUNBOOK,
    ):
        assert link_resolves(link), link
