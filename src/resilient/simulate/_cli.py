"""The command line: load a scenario, run its variants, print and write what they did."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from resilient._core._errors import ConfigurationError
from resilient._core._validate import to_seconds

from ._engine import marks_of, run
from ._progress import ProgressBar
from ._report import _clock
from ._results import SimulationResult
from ._scenario import Scenario

__all__ = ["load_scenario", "main"]

DEFAULT_ATTRIBUTE = "SCENARIO"
"""The name a scenario file or module defines its scenario under, unless told otherwise."""


def load_scenario(spec: str) -> Scenario:
    """The scenario that ``spec`` names: ``path/to/file.py`` or ``package.module``,
    optionally followed by ``:NAME`` (default ``SCENARIO``). ``NAME`` may also be a
    function of no arguments that returns the scenario.

    Raises:
        ConfigurationError: The file or module cannot be found or loaded, it has no such
            name, or the name is not a scenario.
    """
    where, _, attribute = spec.partition(":")
    attribute = attribute or DEFAULT_ATTRIBUTE
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise ConfigurationError(
                f"SCENARIO {where!r} is neither a .py file nor an importable module ({error})"
            ) from error
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            f"{where} defines no {attribute!r}: name the scenario {DEFAULT_ATTRIBUTE} there, "
            f"or say which name as {where}:NAME"
        ) from None
    if callable(found) and not isinstance(found, Scenario):
        found = found()
    if not isinstance(found, Scenario):
        raise ConfigurationError(
            f"{where}:{attribute} must be a Scenario, or a function returning one (got {found!r})"
        )
    return found


def _load_file(path: Path) -> object:
    if not path.is_file():
        raise ConfigurationError(f"SCENARIO {str(path)!r} is not a file")
    name = f"_resilient_scenario_{path.stem}"
    loader = importlib.util.spec_from_file_location(name, path)
    if loader is None or loader.loader is None:
        raise ConfigurationError(f"SCENARIO {str(path)!r} cannot be loaded as Python")
    module = importlib.util.module_from_spec(loader)
    # Registered before it runs, as an import would: dataclasses and pickling look it up.
    sys.modules[name] = module
    # Its own folder first, as `python file.py` would: a scenario may import its neighbours.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        loader.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _duration(text: str) -> float:
    """``--duration``: seconds as a bare number, or with a unit (``90s``, ``10m``)."""
    try:
        seconds: object = float(text)
    except ValueError:
        seconds = text
    return to_seconds(seconds, "--duration", allow_zero=False)


def _left_out(scenario: Scenario, duration: float) -> list[str]:
    """What a shorter duration leaves out of ``scenario``: the spikes and incidents that
    start at or after it."""
    return [
        f"the {mark.label} at {_clock(mark.start)} starts after the {_clock(duration)} the "
        "run now lasts: it is not played"
        for mark in marks_of(scenario)
        if mark.start >= duration
    ]


def _ranking(result: SimulationResult) -> str:
    """One line ranking the variants by their good answers (the primary's, within the
    target when there is one)."""
    if result.target is not None:
        score = {v.name: v.latency.within_target or 0.0 for v in result.variants}
        what = f"ok within {result.target * 1000:g} ms"
    else:
        score = {v.name: v.share(v.ok) if v.requests else 0.0 for v in result.variants}
        what = "ok"
    ranked = sorted(result.variants, key=lambda v: -score[v.name])
    return f"Ranked by {what}: " + ", ".join(
        f"{variant.name!r} {score[variant.name]:.1%}" for variant in ranked
    )


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    command_line = argparse.ArgumentParser(
        prog="python -m resilient.simulate",
        description="Play simulated traffic and failures through the real guards of each "
        "variant of a scenario, on virtual time, and compare what users got and what the "
        "dependencies were asked.",
    )
    command_line.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="a .py file or an importable module defining SCENARIO; ':NAME' picks "
        "another name (a Scenario, or a function returning one)",
    )
    command_line.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the run (default 0)"
    )
    command_line.add_argument(
        "--variant",
        action="append",
        metavar="NAME",
        help="run only this variant (repeat for several; default: all)",
    )
    command_line.add_argument(
        "--duration",
        metavar="DURATION",
        help="simulate this long instead: seconds, or with a unit, such as 90, 90s or 10m",
    )
    command_line.add_argument(
        "--html", type=Path, metavar="PATH", help="write the HTML report with charts here"
    )
    command_line.add_argument(
        "--json", type=Path, metavar="PATH", help="write every number as JSON here"
    )
    command_line.add_argument(
        "--no-progress", action="store_true", help="do not show the progress bar"
    )
    return command_line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    command_line = parser()
    options = command_line.parse_args(argv)
    for path, option in ((options.html, "--html"), (options.json, "--json")):
        if path is not None and not path.parent.is_dir():
            command_line.error(
                f"argument {option}: {str(path.parent)!r} is not a directory: make it first, "
                "so that the run's results have somewhere to go"
            )
    try:
        scenario = load_scenario(options.scenario)
        if options.duration is not None:
            shorter = scenario.replace(duration=_duration(options.duration))
            for note in _left_out(scenario, shorter.duration):
                print(f"note: {note}", file=sys.stderr)
            scenario = shorter
        result = run(
            scenario,
            seed=options.seed,
            variants=options.variant,
            progress=None if options.no_progress else ProgressBar(),
        )
    except ConfigurationError as error:
        command_line.error(str(error))
    print(result.table())
    if len(result.variants) > 1:
        print(_ranking(result))
    # Every file is tried: one unwritable path does not lose the other.
    status = 0
    for path, write in (
        (options.html, lambda target: result.write_html(target)),
        (options.json, lambda target: target.write_text(json.dumps(result.to_dict(), indent=1))),
    ):
        if path is None:
            continue
        try:
            write(path)
        except OSError as error:
            print(f"cannot write {str(path)!r}: {error.strerror or error}", file=sys.stderr)
            status = 1
        else:
            print(f"Wrote {path}")
    return status
