"""Tune before the incident: play simulated traffic and failures through the real guards.

Every guard runs on an injected clock, so a scenario (a workload, the dependencies with
their latency, errors, incidents and capacity, and candidate guard settings) plays hours
of traffic through the same objects a service deploys, in seconds of real time, on an
autojump :class:`~resilient.testing.VirtualClock`. Each variant's result says what users
got (good answers, fallbacks, stale values, errors, latency against a target), what the
dependencies were asked (amplification), and how fast incidents were detected and left.

    result = simulate.run(scenario, seed=7)
    print(result.table())
    result.write_html("tuning.html")

From a shell: ``python -m resilient.simulate path/to/scenario.py`` (see ``--help``).
"""

from resilient._core._public import publish as _publish

from ._dependency import Dependency as Dependency
from ._dependency import Incident as Incident
from ._dependency import Outage as Outage
from ._dependency import SimulatedDependency as SimulatedDependency
from ._dependency import Slowdown as Slowdown
from ._engine import Progress as Progress
from ._engine import run as run
from ._engine import run_variant as run_variant
from ._progress import ProgressBar as ProgressBar
from ._report import chart_svg as chart_svg
from ._results import DependencyLoad as DependencyLoad
from ._results import IncidentReport as IncidentReport
from ._results import KindResult as KindResult
from ._results import Latency as Latency
from ._results import Mark as Mark
from ._results import SimulationResult as SimulationResult
from ._results import Timeline as Timeline
from ._results import VariantResult as VariantResult
from ._scenario import Environment as Environment
from ._scenario import Handler as Handler
from ._scenario import Scenario as Scenario
from ._scenario import ServiceFactory as ServiceFactory
from ._scenario import Variant as Variant
from ._scenario import sweep as sweep
from ._trace import Trace as Trace
from ._trace import TraceFileError as TraceFileError
from ._trace import TraceRecord as TraceRecord
from ._trace import TraceRecorder as TraceRecorder
from ._workload import Arrivals as Arrivals
from ._workload import Constant as Constant
from ._workload import Daily as Daily
from ._workload import Poisson as Poisson
from ._workload import Replay as Replay
from ._workload import Request as Request
from ._workload import Shape as Shape
from ._workload import Spike as Spike

__all__ = [
    "Arrivals",
    "Constant",
    "Daily",
    "Dependency",
    "DependencyLoad",
    "Environment",
    "Handler",
    "Incident",
    "IncidentReport",
    "KindResult",
    "Latency",
    "Mark",
    "Outage",
    "Poisson",
    "Progress",
    "ProgressBar",
    "Replay",
    "Request",
    "Scenario",
    "ServiceFactory",
    "Shape",
    "SimulatedDependency",
    "SimulationResult",
    "Slowdown",
    "Spike",
    "Timeline",
    "Trace",
    "TraceFileError",
    "TraceRecord",
    "TraceRecorder",
    "Variant",
    "VariantResult",
    "chart_svg",
    "run",
    "run_variant",
    "sweep",
]

_publish(globals(), __all__, __name__)
