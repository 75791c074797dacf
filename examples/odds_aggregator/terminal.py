"""The match as an operator watches it: a live terminal view, and the totals at the end.

What it shows:

- :class:`LiveView` reads what every guard reports about itself, a
  :class:`resilient.RegistrySnapshot`, once per sampling interval. On a terminal it
  redraws one screen with ``rich`` that fits the terminal, 80 x 24 included: the clock of
  the day with the kick-off and half-time on it, the guards (the least healthy first,
  and when they do not all fit, the healthy rest named on one line), the prices board,
  the feeds' calls (for users + for the cross-check) and the last transitions. Every row
  is one line, cut with an ellipsis: nothing wraps. Wider terminals get each guard's kind
  and health, a progress bar and a note on how each kind counts its calls.
  Anywhere else (CI, ``make demo | tee``, a log file) it prints one line per twelfth of the
  match and one line per transition, so the log stays short enough to read.
- :func:`guard_figures` reads each kind of guard's own statistics into the same columns
  (calls, refused, failed): a feed's breaker counts the calls it let through, its
  bulkhead every attempt and the cross-check's samples too, so the two rows differ.
- :func:`print_summary` prints the run's totals from :func:`~.record.summarize`, beside
  the unprotected run's when there is one (the bad and the old prices apart from the
  fresh ones, each feed's calls for users apart from the cross-check's), then the updates
  refused at the edge.

Times are the clock of the day, minutes and seconds since the start of the pre-match
(:func:`~.scenario.match_clock`), as in the report. Everything printed is read from the
snapshots and the record: nothing is written in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

import resilient

from .record import EntryKind, MatchResult, Sample, summarize
from .scenario import Scenario, match_clock

__all__ = [
    "GuardFigures",
    "LiveView",
    "SummaryRow",
    "day_outline",
    "guard_figures",
    "match_clock",
    "milliseconds",
    "one_line",
    "phase_at",
    "phase_marks",
    "print_summary",
    "rejects_by_count",
    "summary_rows",
]

PROGRESS_LINES = 12
"""Plain mode prints the state of the match this many times, evenly over its duration."""
TRANSITION_LINES_PER_PERIOD = 10
"""Plain mode prints at most this many transitions between two progress lines; the rest
are counted on one line (a bulkhead flapping through the kick-off surge would otherwise
fill the log)."""
RECENT_TRANSITIONS = 6
"""Transitions shown at the bottom of the live screen, when the terminal has room."""
MIN_TRANSITIONS = 3
"""Transitions the live screen shows however short the terminal."""
HEADER_LINES = 2  # the live screen's title and clock, and the phases on the clock
BOARD_LINES = 2  # the prices board, and the feeds' calls
WIDE = 100
"""Columns from which the live screen also shows each guard's kind and health, and a
progress bar."""
CALLS_LEGEND = (
    "calls: each guard counts its own; a breaker the calls it let through to its feed, a "
    "bulkhead every attempt, the cross-check's samples too"
)
"""Shown under the guards when the terminal has a line to spare."""

HEALTH_STYLES = {"healthy": "green", "degraded": "yellow", "unavailable": "bold red"}


# -- what the clock says -------------------------------------------------------------------


def phase_at(scenario: Scenario, at: float) -> str:
    """The name of the phase of ``scenario`` going on at ``at`` (the last one at the end)."""
    for phase in scenario.phases:
        if phase.start <= at < phase.end:
            return phase.name
    return scenario.phases[-1].name if scenario.phases else ""


def one_line(text: str) -> str:
    """``text`` with newlines and other control characters escaped, so that a reason can
    never pass for a line of its own."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- the numbers behind each guard ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuardFigures:
    """What an operator wants to see of one guard, read from its snapshot's statistics.

    Each kind of guard counts its own calls, so the same call shows in several rows, and
    not the same number of times. A feed's **breaker** counts the calls it let through to
    the feed, one per failover attempt on that feed, however often the retry inside it
    tried. The feed's **bulkhead**, inside the retry, counts every attempt it admitted, and
    also the cross-check's samples, which skip the breaker (a flagged feed must still be
    checked): so bet-gamma's bulkhead can show hundreds of calls while its breaker, asked
    only when the feeds before it fail, shows a few dozen.

    Attributes:
        calls: Calls the guard saw, totals since the start: a breaker's calls it let through
            (successes, failures, and those cancelled or ignored), a retry's calls, a
            bulkhead's admitted calls, a budget's measured calls, a cache's answers (fresh,
            stale and missed), a failover's calls. ``None`` for the retry budget, whose
            counts cover only its window (the note gives them).
        refused: Calls it refused without running them: a breaker's or a bulkhead's
            rejections, the retries a retry budget refused. ``None`` for a guard that
            never refuses a call itself (a failover's "refused" counts sources that
            refused one attempt, not calls).
        failed: Calls that failed through it: a breaker's failures, the calls a retry gave
            up on, a budget's bad calls (too slow, failed or refused), a cache's failed
            background refreshes, a failover's calls that no source answered.
        note: The one figure that says most about this kind, in words.
        alarm: The note describes a problem (shown in red on the terminal).
    """

    calls: int | None
    refused: int | None
    failed: int | None
    note: str
    alarm: bool = False


_Stats = Mapping[str, resilient.Statistic]


def _count(stats: _Stats, key: str) -> int | None:
    value = stats.get(key)
    # bool is an int too; a flag is never a count.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(stats: _Stats, key: str) -> float | None:
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _total(*counts: int | None) -> int | None:
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


def milliseconds(seconds: float) -> str:
    """``"183 ms"``, ``"1.2 s"``: a latency as people read it."""
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.0f} ms"


_BREAKER_ENDS = ("successes", "failures", "ignored", "rejected_inner", "cancelled", "late")
"""How a call the breaker let through can end: exactly one of these counts it."""


def _breaker(stats: _Stats) -> GuardFigures:
    # The rates that open the breaker are over its window (the last calls), not the totals.
    window = _count(stats, "window_calls")
    failed, slow = _number(stats, "failure_rate"), _number(stats, "slow_call_rate")
    notes: list[str] = []
    if window and failed is not None:
        notes.append(f"{failed:.0%} of last {window} failed")
        if slow:
            notes.append(f"{slow:.0%} slow")
    retry_after = _number(stats, "retry_after")
    if retry_after is not None:
        notes.append(f"probes in {retry_after:.0f} s")
    return GuardFigures(
        calls=_total(*(_count(stats, end) for end in _BREAKER_ENDS)),
        refused=_count(stats, "rejected"),
        failed=_count(stats, "failures"),
        note=", ".join(notes),
    )


def _retry(stats: _Stats) -> GuardFigures:
    gave_up = [_count(stats, key) for key in stats if key.startswith("gave_up_")]
    retries, recovered = _count(stats, "retries") or 0, _count(stats, "recovered") or 0
    notes = [f"{retries} retries, {recovered} recovered"]
    if refused := _count(stats, "gave_up_budget"):
        notes.append(f"{refused} refused by the budget")
    return GuardFigures(
        calls=_count(stats, "calls"),
        refused=None,
        failed=_total(*gave_up),
        note=", ".join(notes),
    )


def _retry_budget(stats: _Stats) -> GuardFigures:
    # first_attempts and retries cover the budget's window only; throttled is a total.
    available, window = _number(stats, "available"), _number(stats, "window")
    first, retries = _count(stats, "first_attempts") or 0, _count(stats, "retries") or 0
    over = "" if window is None else f"last {window:g} s: "
    return GuardFigures(
        calls=None,
        refused=_count(stats, "throttled"),
        failed=None,
        note=f"{over}{retries} retries for {first} calls, {available or 0:.0f} left",
        alarm=available is not None and available < 1,
    )


def _bulkhead(stats: _Stats) -> GuardFigures:
    running, limit = _count(stats, "running") or 0, _count(stats, "limit") or 0
    return GuardFigures(
        calls=_count(stats, "admitted"),
        refused=_count(stats, "rejected"),
        failed=None,
        note=f"{running}/{limit} running, {_count(stats, 'queued') or 0} queued",
    )


def _budget(stats: _Stats) -> GuardFigures:
    p99, target = _number(stats, "p99"), _number(stats, "target")
    # No p99 while the budget's window holds no calls.
    seen = "-" if p99 is None else milliseconds(p99)
    goal = "-" if target is None else milliseconds(target)
    return GuardFigures(
        calls=_count(stats, "calls_total"),
        refused=None,
        failed=_count(stats, "bad_calls_total"),  # too slow, failed or refused
        note=f"p99 {seen} / {goal}",
        alarm=p99 is not None and target is not None and p99 > target,
    )


def _cache(stats: _Stats) -> GuardFigures:
    stale, on_error = _count(stats, "stale_served") or 0, _count(stats, "stale_on_error") or 0
    return GuardFigures(
        # Every answer is a hit (fresh), a miss (fetched, or joined a fetch) or served
        # stale while one refresh runs; stale_on_error answers are misses whose fetch failed.
        calls=_total(_count(stats, "hits"), _count(stats, "misses"), _count(stats, "stale_served")),
        refused=None,
        failed=_count(stats, "refresh_failures"),
        note=f"{stale} stale while refreshing, {on_error} on error",
    )


def _failover(stats: _Stats) -> GuardFigures:
    hedges, won = _count(stats, "hedges") or 0, _count(stats, "hedge_wins") or 0
    return GuardFigures(
        calls=_count(stats, "calls"),
        refused=None,
        failed=_count(stats, "exhausted"),
        note=(
            f"{_count(stats, 'failovers') or 0} failovers, {_count(stats, 'skipped') or 0} "
            f"skipped, {hedges} hedges ({won} won)"
        ),
    )


# Each kind of guard counts different things (see its ``snapshot().statistics`` and
# docs/state-model.md): here is where they are read into the same few columns.
_FIGURES: dict[str, Callable[[_Stats], GuardFigures]] = {
    "circuit_breaker": _breaker,
    "retry": _retry,
    "retry_budget": _retry_budget,
    "bulkhead": _bulkhead,
    "budget": _budget,
    "cache": _cache,
    "failover": _failover,
}


def guard_figures(guard: resilient.GuardSnapshot) -> GuardFigures:
    """The calls, refusals and failures of ``guard``, and its telling figure."""
    read = _FIGURES.get(guard.kind)
    if read is None:  # a degraded-mode switch, a pipeline: their state says it all
        return GuardFigures(
            calls=_count(guard.statistics, "calls"), refused=None, failed=None, note=""
        )
    return read(guard.statistics)


# -- the live view -------------------------------------------------------------------------


def _transition_key(transition: resilient.Transition) -> tuple[str, str, str, str]:
    return (transition.guard, transition.old_state, transition.new_state, transition.reason)


class LiveView:
    """The match as it plays, redrawn per sample on a terminal, a few lines elsewhere.

    Use it as a context manager around the run, and pass :meth:`update` as the run's
    ``on_sample`` callback::

        with LiveView(scenario) as view:
            result = play(scenario, seed=seed, on_sample=view.update)

    Args:
        scenario: The match being played (its duration, phases and markets).
        console: Where to draw; ``None`` for standard output. A console that is not a
            terminal (``console.is_terminal`` false) gets plain lines.
    """

    def __init__(self, scenario: Scenario, console: Console | None = None) -> None:
        self._scenario = scenario
        self._console = console if console is not None else Console()
        self._live: Live | None = None
        self._interactive = self._console.is_terminal
        # Plain mode: the next progress mark, the requests since the last progress line,
        # what is held back from the flood, and which transitions were printed already.
        self._period = scenario.duration / PROGRESS_LINES
        self._next_mark = self._period
        self._requests = 0
        self._lines_left = TRANSITION_LINES_PER_PERIOD
        self._held: Counter[str] = Counter()
        self._printed_until = -math.inf
        self._printed_at_boundary: Counter[tuple[str, str, str, str]] = Counter()
        self._last: tuple[Sample, resilient.RegistrySnapshot] | None = None
        self._last_printed: Sample | None = None

    def __enter__(self) -> LiveView:
        if self._interactive:
            self._live = Live(
                Text(f"{self._scenario.name}: waiting for the first sample"),
                console=self._console,
                auto_refresh=False,  # one redraw per sample, from update()
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        else:
            scenario = self._scenario
            self._print(
                f"{scenario.name}: {day_outline(scenario)}; {len(scenario.markets)} markets; "
                f"the clock is mm:ss of the day: {phase_marks(scenario)}"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._last is not None and self._last[0] is not self._last_printed:
            self._progress(*self._last)  # the end of the match, when no mark fell on it

    def update(self, sample: Sample, snapshot: resilient.RegistrySnapshot) -> None:
        """Show the service as ``sample`` and ``snapshot`` saw it at the end of an interval."""
        self._last = (sample, snapshot)
        if self._live is not None:
            self._live.update(self._screen(sample, snapshot), refresh=True)
            return
        self._requests += sample.requests
        self._print_new_transitions(sample, snapshot)
        if sample.at >= self._next_mark - 1e-9:
            self._progress(sample, snapshot)
            while self._next_mark <= sample.at + 1e-9:
                self._next_mark += self._period

    # -- plain lines ----------------------------------------------------------------------

    def _print(self, line: str) -> None:
        # No markup (a name may hold "[...]"), no highlighting, and no wrapping: one line
        # of output per line of the log.
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _progress(self, sample: Sample, snapshot: resilient.RegistrySnapshot) -> None:
        self._flush_held()
        scenario = self._scenario
        self._print(
            f"{match_clock(sample.at)} {phase_at(scenario, sample.at)} | prices: "
            f"{sample.fresh} fresh, {sample.stale} stale, {sample.suspended} suspended | "
            f"{self._requests} requests | {_worst(snapshot)}"
        )
        self._requests = 0
        self._lines_left = TRANSITION_LINES_PER_PERIOD
        self._last_printed = sample

    def _flush_held(self) -> None:
        if self._held:
            total = sum(self._held.values())
            by_guard = ", ".join(f"{one_line(name)} {n}" for name, n in self._held.most_common())
            self._print(f"  ... and {total} more transitions ({by_guard})")
            self._held.clear()

    def _print_new_transitions(self, sample: Sample, snapshot: resilient.RegistrySnapshot) -> None:
        # The snapshot's clock may not start where the run does: read transitions' times
        # relative to the sample's.
        offset = snapshot.at - sample.at
        for transition in self._unseen(snapshot.trail):
            if self._lines_left > 0:
                self._lines_left -= 1
                self._print(
                    f"  {match_clock(transition.at - offset)}  {one_line(transition.guard)}: "
                    f"{transition.old_state} -> {transition.new_state} "
                    f"({transition.new_health.value}): {one_line(transition.reason)}"
                )
            else:
                self._held[transition.guard] += 1

    def _unseen(self, trail: Sequence[resilient.Transition]) -> list[resilient.Transition]:
        """The transitions of ``trail`` not printed yet.

        The trail is in time order but keeps only recent transitions, so transitions are
        told apart by time: everything after the newest one printed is new, and at that
        very instant (several guards may move at one virtual instant) the count of each
        already printed is remembered.
        """
        unseen: list[resilient.Transition] = []
        seen_at_boundary: Counter[tuple[str, str, str, str]] = Counter()
        for transition in trail:
            if transition.at < self._printed_until:
                continue
            if transition.at == self._printed_until:
                key = _transition_key(transition)
                seen_at_boundary[key] += 1
                if seen_at_boundary[key] <= self._printed_at_boundary[key]:
                    continue
            unseen.append(transition)
        if trail:
            newest = trail[-1].at
            self._printed_until = newest
            self._printed_at_boundary = Counter(_transition_key(t) for t in trail if t.at == newest)
        return unseen

    # -- the live screen ------------------------------------------------------------------

    def _screen(self, sample: Sample, snapshot: resilient.RegistrySnapshot) -> RenderableType:
        # Read the size at every redraw: the terminal may have been resized.
        width, height = self._console.size
        fits = _fit(height, guards=len(snapshot.guards), transitions=len(snapshot.trail))
        wide = width >= WIDE
        parts: list[RenderableType] = [
            *self._header(sample, wide),
            _guards_table(snapshot, fits.guard_lines, wide),
        ]
        if fits.legend:
            parts.append(_line(CALLS_LEGEND, "dim"))
        parts.extend(_prices_board(sample))
        parts.append(_recent_transitions(sample, snapshot, fits.transitions))
        return Group(*parts)

    def _header(self, sample: Sample, wide: bool) -> list[RenderableType]:
        scenario = self._scenario
        grid = Table.grid(padding=(0, 2), expand=wide)
        for _ in range(3):
            grid.add_column(no_wrap=True, overflow="ellipsis")
        cells: list[RenderableType] = [
            Text(scenario.name, style="bold"),
            Text(f"{match_clock(sample.at)} / {match_clock(scenario.duration)} of the day"),
            Text(phase_at(scenario, sample.at), style="cyan"),
        ]
        if wide:  # a bar needs room to say anything
            grid.add_column(ratio=1)
            cells.append(ProgressBar(total=scenario.duration, completed=sample.at))
        grid.add_row(*cells)
        return [grid, _line(f"(mm:ss of the day) {phase_marks(scenario)}", "dim")]


@dataclass(frozen=True, slots=True)
class _Fit:
    """How the live screen shares the terminal's lines."""

    guard_lines: int  # rows under the guards' header, a summary line included
    transitions: int
    legend: bool


def _fit(height: int, *, guards: int, transitions: int) -> _Fit:
    """Share ``height`` lines: the header, the board and the last transitions always
    (at least :data:`MIN_TRANSITIONS` of them), the guards in what is left."""
    # Fixed: the header, the guards' column names, the board, the transitions' title.
    room = max(1, height - HEADER_LINES - 1 - BOARD_LINES - 1)
    shown = min(RECENT_TRANSITIONS, transitions, max(MIN_TRANSITIONS, room // 4))
    guard_lines = max(1, room - shown)
    return _Fit(
        guard_lines=min(guards, guard_lines),
        transitions=shown,
        legend=guard_lines > guards,
    )


def _line(text: str, style: str = "") -> Text:
    """One line of the screen: cut with an ellipsis, never wrapped."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def day_outline(scenario: Scenario) -> str:
    """``"115:00 of the day: pre-match, first half, half-time, second half"``: what the
    clock of the run covers."""
    phases = ", ".join(phase.name for phase in scenario.phases)
    return f"{match_clock(scenario.duration)} of the day" + (f": {phases}" if phases else "")


def phase_marks(scenario: Scenario) -> str:
    """``"kick-off 10:00 · half-time 55:00 · second half 70:00"``: when each phase after
    the first starts, on the clock of the day (the clock every view shows)."""
    marks = [
        f"{'kick-off' if phase.start == scenario.kickoff else phase.name} "
        f"{match_clock(phase.start)}"
        for phase in scenario.phases
        if phase.start > 0
    ]
    if not any(phase.start == scenario.kickoff for phase in scenario.phases):
        marks.insert(0, f"kick-off {match_clock(scenario.kickoff)}")
    return " · ".join(marks)


def _worst(snapshot: resilient.RegistrySnapshot) -> str:
    """``"worst: beta-breaker open (unavailable)"``, or that all guards are healthy."""
    worst = max(snapshot.guards, key=lambda guard: guard.health, default=None)
    if worst is None or worst.health is resilient.Health.HEALTHY:
        return "all guards healthy"
    return f"worst: {one_line(worst.name)} {worst.state} ({worst.health.value})"


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _worst_first(guards: Sequence[resilient.GuardSnapshot]) -> list[resilient.GuardSnapshot]:
    """``guards`` with the least healthy first; in registry order otherwise."""
    return sorted(guards, key=lambda guard: guard.health, reverse=True)


def _guards_table(snapshot: resilient.RegistrySnapshot, lines: int, wide: bool) -> RenderableType:
    """One row per guard, the least healthy first; when ``lines`` cannot hold them all,
    the last line names the rest."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), expand=True, header_style="bold")
    names = [one_line(guard.name) for guard in snapshot.guards]
    table.add_column(
        "guards", no_wrap=True, overflow="ellipsis", max_width=max(map(len, names), default=6)
    )
    if wide:
        table.add_column("kind", no_wrap=True)
    table.add_column("state", no_wrap=True, overflow="ellipsis")
    if wide:
        table.add_column("health", no_wrap=True)
    for header in ("calls", "refused", "failed"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True, overflow="ellipsis", ratio=1)
    ordered = _worst_first(snapshot.guards)
    rows = ordered if len(ordered) <= lines else ordered[: lines - 1]
    for guard in rows:
        figures = guard_figures(guard)
        health = guard.health.value
        style = HEALTH_STYLES.get(health, "")
        cells: list[RenderableType] = [Text(one_line(guard.name))]
        if wide:
            cells.append(Text(guard.kind.replace("_", " ")))
        cells.append(Text(guard.state, style=style))
        if wide:
            cells.append(Text(health, style=style))
        cells += [_cell(figures.calls), _cell(figures.refused), _cell(figures.failed)]
        cells.append(Text(figures.note, style="bold red" if figures.alarm else "dim"))
        table.add_row(*cells)
    rest = ordered[len(rows) :]
    return Group(table, _rest(rest)) if rest else table


def _rest(guards: Sequence[resilient.GuardSnapshot]) -> Text:
    """``"+ 4 healthy: a, b, c, d"``: the guards left out, on one line."""
    unhealthy = sum(guard.health is not resilient.Health.HEALTHY for guard in guards)
    what = "healthy" if not unhealthy else f"more ({unhealthy} unhealthy)"
    names = ", ".join(one_line(guard.name) for guard in guards)
    return Text(f"+ {len(guards)} {what}: {names}", style="dim", no_wrap=True, overflow="ellipsis")


def _prices_board(sample: Sample) -> list[RenderableType]:
    board = Text(no_wrap=True, overflow="ellipsis")
    board.append("prices ", style="bold")
    board.append(f"{sample.fresh} fresh", style="green")
    board.append("  ")
    board.append(f"{sample.stale} stale", style="yellow")
    board.append("  ")
    board.append(f"{sample.suspended} suspended", style="red" if sample.suspended else "")
    board.append(f" · {sample.requests} requests")
    if sample.request_latency is not None:
        board.append(f", p99 {milliseconds(sample.request_latency.p99)}")
    if sample.publish_latency is not None:
        board.append(f" · publish p99 {milliseconds(sample.publish_latency.p99)}")
    feeds = "  ".join(
        f"{one_line(name)} {calls - sample.check_calls.get(name, 0)}+"
        f"{sample.check_calls.get(name, 0)}"
        for name, calls in sample.feed_calls.items()
    )
    return [board, _line(f"feed calls for users+cross-check  {feeds}", "dim")]


def _recent_transitions(
    sample: Sample, snapshot: resilient.RegistrySnapshot, count: int
) -> RenderableType:
    offset = snapshot.at - sample.at
    recent = snapshot.trail[-count:] if count > 0 else ()
    table = Table(
        title="recent transitions" if recent else "recent transitions: none yet",
        title_justify="left",
        title_style="bold",
        box=None,
        pad_edge=False,
        padding=(0, 1),
        show_header=False,
        expand=True,
    )
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column(no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for transition in recent:
        style = HEALTH_STYLES.get(transition.new_health.value, "")
        table.add_row(
            match_clock(transition.at - offset),
            Text(one_line(transition.guard)),
            Text(f"{transition.old_state} -> {transition.new_state}", style=style),
            Text(one_line(transition.reason)),
        )
    return table


# -- the totals ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One row of the totals, as printed and as the report's comparison shows it.

    Attributes:
        key: A stable name for the row (``"errors"``, ``"calls-beta"``), for the report's
            ``data-metric`` attributes and for tests.
        label: What the row counts, in words.
        protected: The value in the run through the guards.
        unprotected: The value in the unprotected run; ``None`` without one.
    """

    key: str
    label: str
    protected: str
    unprotected: str | None


def _incidents(result: MatchResult) -> str:
    kinds = Counter(entry.kind for entry in result.audit)
    return (
        f"{kinds[EntryKind.TRANSITION]} transitions, {kinds[EntryKind.SUSPENDED]} suspensions, "
        f"{kinds[EntryKind.RESUMED]} resumptions"
    )


_TOTALS = {
    "requests": "requests answered",
    "fresh": "answers fresh and valid",
    "stale": "answers stale (flagged with their age)",
    "suspended": "answers: market suspended",
    "errors": "errors users saw",
    "bad_published": "bad prices published (malformed or implausible)",
    "old_published_as_fresh": "old prices shown as fresh",
}


def _troubled(result: MatchResult) -> list[str]:
    """The feeds of ``result`` that have troubles planned, in feed order."""
    planned = {trouble.feed for trouble in result.scenario.troubles}
    return [feed for feed in result.feeds if feed in planned]


def _labels(result: MatchResult) -> dict[str, str]:
    labels = {**_TOTALS, "request_p99": "request p99"}
    for feed in result.feeds:
        name = one_line(feed)
        labels[f"user-calls-{feed}"] = f"calls to {name} for users"
        labels[f"check-calls-{feed}"] = f"calls to {name} for the cross-check"
    for feed in _troubled(result):
        labels[f"trouble-calls-{feed}"] = f"calls to {one_line(feed)} for users during its troubles"
    labels["incidents"] = "incidents in the audit trail"
    return labels


def _values(result: MatchResult) -> dict[str, str]:
    summary = summarize(result)
    values = {key: str(getattr(summary, key)) for key in _TOTALS}
    values["request_p99"] = milliseconds(summary.request_p99)
    for feed, load in result.feeds.items():
        values[f"user-calls-{feed}"] = str(summary.user_calls[feed])
        values[f"check-calls-{feed}"] = str(load.checks)
    for feed, calls in summary.calls_in_trouble.items():
        values[f"trouble-calls-{feed}"] = str(calls)
    values["incidents"] = str(len(result.audit))
    return values


def summary_rows(result: MatchResult, unprotected: MatchResult | None) -> list[SummaryRow]:
    """The totals of ``result`` from :func:`~.record.summarize`, beside those of
    ``unprotected`` when given: answers (the bad and the old prices apart from the fresh),
    latency, the calls each feed received for users and for the cross-check (and for users
    during its troubles), and the incidents."""
    ours = _values(result)
    theirs = None if unprotected is None else _values(unprotected)
    return [
        SummaryRow(key, label, ours[key], None if theirs is None else theirs.get(key, "-"))
        for key, label in _labels(result).items()
    ]


def rejects_by_count(result: MatchResult) -> list[tuple[str, str, int]]:
    """``(feed, reason, updates)`` of every update refused at the edge, per feed in feed
    order, the most frequent reason first."""
    return [
        (feed, reason, count)
        for feed, reasons in result.rejects.items()
        for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    ]


def print_summary(
    result: MatchResult, unprotected: MatchResult | None, console: Console | None = None
) -> None:
    """Print the totals of ``result``, beside those of ``unprotected`` when given, the
    updates refused at the edge per feed and reason, and the incidents count."""
    console = console if console is not None else Console()
    table = Table(
        title=f"{result.scenario.name}: seed {result.seed}",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("")
    table.add_column(result.label, justify="right")
    if unprotected is not None:
        table.add_column(unprotected.label, justify="right")
    for row in summary_rows(result, unprotected):
        cells = [Text(row.label), Text(row.protected)]
        if row.unprotected is not None:
            cells.append(Text(row.unprotected))
        table.add_row(*cells)
    console.print(table)

    rejects = Table(title="updates refused at the edge", box=box.SIMPLE_HEAD, title_justify="left")
    rejects.add_column("feed")
    rejects.add_column("reason")
    rejects.add_column("updates", justify="right")
    for feed, reason, count in rejects_by_count(result):
        rejects.add_row(Text(one_line(feed)), Text(one_line(reason)), str(count))
    if rejects.row_count:
        console.print(rejects)
    else:
        console.print("no updates refused at the edge", markup=False, highlight=False)
    console.print(f"incidents: {_incidents(result)}", markup=False, highlight=False)
