"""``python -m resilient.simulate``: loading a scenario, running it, writing the results."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resilient import ConfigurationError
from resilient.simulate import ProgressBar, Scenario
from resilient.simulate._cli import load_scenario, main

SCENARIO_FILE = textwrap.dedent(
    """
    from resilient import CircuitBreaker
    from resilient.chaos import Fixed, Window
    from resilient.simulate import Dependency, Outage, Poisson, Scenario, Variant


    def service(env):
        feed = env.dependency("feed")
        breaker = CircuitBreaker("feed", registry=env.registry)

        @breaker
        async def handle(request):
            return await feed()

        return handle


    SCENARIO = Scenario(
        "cli check",
        duration="20s",
        workload=Poisson(20),
        dependencies=[
            Dependency("feed", latency=Fixed("10ms"), incidents=[Outage(Window(5, 10))])
        ],
        service=service,
        variants=[Variant("one"), Variant("two")],
    )


    def shorter():
        return SCENARIO.replace(duration="5s")


    NOT_A_SCENARIO = 42
    """
)


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "check_scenario.py"
    path.write_text(SCENARIO_FILE)
    return path


def test_a_file_path_loads_its_scenario(scenario_file: Path) -> None:
    """A .py path loads the module and returns its SCENARIO."""
    scenario = load_scenario(str(scenario_file))
    assert isinstance(scenario, Scenario)
    assert scenario.name == "cli check"


def test_a_name_after_a_colon_picks_another_attribute_or_calls_a_function(
    scenario_file: Path,
) -> None:
    """``file.py:NAME`` reads NAME; a function there is called for the scenario."""
    assert load_scenario(f"{scenario_file}:SCENARIO").duration == 20.0
    assert load_scenario(f"{scenario_file}:shorter").duration == 5.0


def test_a_module_name_is_imported(scenario_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An importable module name loads as well as a path does."""
    monkeypatch.syspath_prepend(str(scenario_file.parent))
    assert load_scenario("check_scenario").name == "cli check"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        pytest.param("{dir}/missing.py", "is not a file", id="missing-file"),
        pytest.param("{file}:ELSEWHERE", "defines no 'ELSEWHERE'", id="missing-name"),
        pytest.param("{file}:NOT_A_SCENARIO", "must be a Scenario", id="not-a-scenario"),
        pytest.param("no_such_module_here", "importable module", id="missing-module"),
    ],
)
def test_what_cannot_be_loaded_is_a_configuration_error_saying_why(
    scenario_file: Path, spec: str, says: str
) -> None:
    """Missing files, names and modules, and non-scenarios are refused, saying which."""
    with pytest.raises(ConfigurationError, match=says):
        load_scenario(spec.format(dir=scenario_file.parent, file=scenario_file))


def test_the_command_prints_the_table_and_writes_json_and_html(
    scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json holds every variant's numbers; --html is written; both are announced."""
    report, numbers = tmp_path / "report.html", tmp_path / "numbers.json"
    status = main(
        [str(scenario_file), "--seed", "3", "--html", str(report), "--json", str(numbers)]
    )
    assert status == 0
    data = json.loads(numbers.read_text())
    assert data["seed"] == 3
    assert [variant["name"] for variant in data["variants"]] == ["one", "two"]
    assert data["variants"][0]["requests"] > 0
    assert report.read_text().startswith("<!")
    printed = capsys.readouterr().out
    assert f"Wrote {report}" in printed
    assert f"Wrote {numbers}" in printed


def test_duration_and_variant_options_narrow_the_run(scenario_file: Path, tmp_path: Path) -> None:
    """--duration replaces the scenario's; --variant keeps only the named variants."""
    numbers = tmp_path / "numbers.json"
    main([str(scenario_file), "--duration", "2s", "--variant", "two", "--json", str(numbers)])
    data = json.loads(numbers.read_text())
    assert data["duration"] == 2.0
    assert [variant["name"] for variant in data["variants"]] == ["two"]


def test_an_unknown_variant_is_a_usage_error_naming_it(
    scenario_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--variant nope exits with status 2 and names the variants there are."""
    with pytest.raises(SystemExit) as exit_:
        main([str(scenario_file), "--variant", "nope"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "'nope'" in error
    assert "'one'" in error


def test_an_unwritable_path_fails_the_command_but_writes_the_other_file(
    scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --html path that is a folder cannot be written: reported, status 1; the --json
    still lands."""
    numbers = tmp_path / "numbers.json"
    folder = tmp_path / "taken"
    folder.mkdir()
    status = main(
        [
            str(scenario_file),
            "--html",
            str(folder),
            "--json",
            str(numbers),
            "--duration",
            "1s",
        ]
    )
    assert status == 1
    assert "cannot write" in capsys.readouterr().err
    assert json.loads(numbers.read_text())["duration"] == 1.0


def test_python_dash_m_runs_the_command(scenario_file: Path) -> None:
    """``python -m resilient.simulate FILE`` runs as a program and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "resilient.simulate", str(scenario_file), "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cli check" in done.stdout


def test_the_progress_bar_writes_one_line_per_variant_off_a_terminal() -> None:
    """Off a terminal only each variant's final line is written, with its real time."""
    out = io.StringIO()
    bar = ProgressBar(out, interactive=False)
    for done in (0.0, 5.0, 10.0):
        bar("one", done, 10.0)
    bar("two", 10.0, 10.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("one: [")
    assert "100% of 10 s simulated" in lines[0]
    assert "s real" in lines[0]
    assert lines[1].startswith("two: [")


def test_the_progress_bar_redraws_in_place_on_a_terminal() -> None:
    """On a terminal a bar is redrawn with a carriage return and ends with a newline."""
    out = io.StringIO()
    bar = ProgressBar(out, interactive=True)
    bar("one", 0.0, 3600.0)
    bar("one", 3600.0, 3600.0)
    written = out.getvalue()
    assert written.count("\r") == 2
    assert "of 1 h simulated" in written
    assert written.endswith("real\n")


@pytest.mark.parametrize(
    ("given", "seconds"),
    [pytest.param("7", 7.0, id="bare-seconds"), pytest.param("0.5m", 30.0, id="with-a-unit")],
)
def test_duration_takes_seconds_bare_or_with_a_unit(
    scenario_file: Path, tmp_path: Path, given: str, seconds: float
) -> None:
    """--duration 7 is seven seconds, as --duration 7s would be."""
    numbers = tmp_path / "numbers.json"
    main([str(scenario_file), "--duration", given, "--json", str(numbers), "--no-progress"])
    assert json.loads(numbers.read_text())["duration"] == seconds


def test_a_shorter_duration_says_which_incidents_it_leaves_out(
    scenario_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outage that starts after the new end is not played, and the command says so."""
    main([str(scenario_file), "--duration", "4s", "--no-progress"])
    assert "note: the feed outage at 0:05 starts after the 0:04" in capsys.readouterr().err


def test_an_output_folder_that_does_not_exist_is_refused_before_the_run(
    scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--html into a missing folder is a usage error at once, not after the run."""
    with pytest.raises(SystemExit) as exit_:
        main([str(scenario_file), "--html", str(tmp_path / "missing" / "r.html")])
    assert exit_.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


def test_several_variants_are_ranked_by_their_good_answers(
    scenario_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With more than one variant, a line ranks them by the share of ok answers."""
    main([str(scenario_file), "--duration", "2s", "--no-progress"])
    ranking = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Ranked")]
    assert len(ranking) == 1
    assert "'one'" in ranking[0]
    assert "'two'" in ranking[0]
