"""Per-call cost of a retry policy, side by side with tenacity, stamina and backoff.

Run with ``make bench`` (which installs the peers into .venv) or directly:

    python benchmarks/bench_retry.py [--quick]

Two paths, each the best of several rounds:

- success: the function succeeds at once (the cost every call pays);
- one failure: the function fails once, then succeeds, with a zero wait.

Every library is configured to retry on ValueError, at most 3 attempts, no wait, and with
its logging and instrumentation off (stamina's retry hooks, backoff's loggers), so that
what is measured is the retry machinery itself.
"""

from __future__ import annotations

import argparse
import sys

from _harness import ROUNDS, per_call_ns
from _peers import Decorator, backoff_decorator, stamina_decorator, tenacity_decorator, work

import resilient


class Flaky:
    """Fails every other call: each call through a retry is one failure, one success."""

    __qualname__ = "Flaky"
    __name__ = "Flaky"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls % 2:
            raise ValueError("odds feed hiccup")
        return 1


def resilient_decorator() -> Decorator:
    return resilient.Retry(
        attempts=3, on=ValueError, backoff=resilient.NoWait(), registry=resilient.Registry()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 2_000 if args.quick else 10_000

    decorators: dict[str, Decorator | None] = {
        "resilient": resilient_decorator(),
        "tenacity": tenacity_decorator(),
        "stamina": stamina_decorator(),
        "backoff": backoff_decorator(),
    }
    missing = [name for name, made in decorators.items() if made is None]
    print(f"Python {sys.version.split()[0]}, {calls} calls per round, best of {ROUNDS} rounds")
    if missing:
        print(f"not installed, skipped: {', '.join(missing)} (make bench installs them)")

    results: dict[str, tuple[float, float]] = {}
    for name, decorate in decorators.items():
        if decorate is None:
            continue
        success = per_call_ns(decorate(work), calls)
        flaky = Flaky()
        one_failure = per_call_ns(decorate(flaky), calls // 5)
        assert flaky.calls == 2 * (calls // 5) * ROUNDS, f"{name} did not retry as configured"
        results[name] = (success, one_failure)

    print(f"\n{'library':<14}{'success ns/call':>18}{'one failure ns/call':>22}")
    for name, (success, one_failure) in results.items():
        print(f"{name:<14}{success:>18.0f}{one_failure:>22.0f}")

    peers = [name for name in results if name != "resilient"]
    if peers:
        ours = results["resilient"]
        print("\nratio of resilient's cost to the peer's (targets vs the fastest: success")
        print("<= 0.20, one failure <= 0.33)")
        print(f"{'peer':<14}{'success':>18}{'one failure':>22}")
        for peer in peers:
            print(
                f"{peer:<14}{ours[0] / results[peer][0]:>18.2f}{ours[1] / results[peer][1]:>22.2f}"
            )
        fastest_success = min(peers, key=lambda p: results[p][0])
        fastest_failure = min(peers, key=lambda p: results[p][1])
        print(
            f"\nfastest peer on success: {fastest_success} "
            f"({ours[0] / results[fastest_success][0]:.2f}); "
            f"on one failure: {fastest_failure} "
            f"({ours[1] / results[fastest_failure][1]:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
