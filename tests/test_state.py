"""Specification of the shared state values: Health, GuardSnapshot, Transition."""

from __future__ import annotations

import dataclasses
import json

import pytest

from resilient import GuardSnapshot, Health, Transition
from resilient._core._state import worst


def test_health_orders_by_severity() -> None:
    """HEALTHY < DEGRADED < UNAVAILABLE, whatever the alphabet says."""
    assert Health.HEALTHY < Health.DEGRADED < Health.UNAVAILABLE
    assert Health.UNAVAILABLE > Health.DEGRADED >= Health.DEGRADED
    assert Health.HEALTHY <= Health.HEALTHY
    assert sorted([Health.UNAVAILABLE, Health.HEALTHY, Health.DEGRADED]) == [
        Health.HEALTHY,
        Health.DEGRADED,
        Health.UNAVAILABLE,
    ]
    assert [h.rank for h in Health] == [0, 1, 2]


def test_health_does_not_compare_with_strings() -> None:
    """Ordering a Health against a plain string is a TypeError, not an alphabetical answer."""
    with pytest.raises(TypeError):
        assert Health.DEGRADED < "healthy"  # type: ignore[operator]


def test_health_serialises_as_its_name() -> None:
    """Health values are lower-case strings, and a value turns back into its Health."""
    assert json.dumps(Health.DEGRADED.value) == '"degraded"'
    assert Health("unavailable") is Health.UNAVAILABLE
    assert str(Health.HEALTHY) == "healthy"


@pytest.mark.parametrize(
    ("healths", "expected"),
    [
        pytest.param([], Health.HEALTHY, id="none-is-healthy"),
        pytest.param([Health.DEGRADED, Health.HEALTHY], Health.DEGRADED, id="degraded"),
        pytest.param(
            [Health.HEALTHY, Health.UNAVAILABLE, Health.DEGRADED], Health.UNAVAILABLE, id="worst"
        ),
    ],
)
def test_worst_picks_the_most_severe(healths: list[Health], expected: Health) -> None:
    """worst() is the most severe health of a collection."""
    assert worst(healths) is expected


def snapshot() -> GuardSnapshot:
    return GuardSnapshot(
        name="feed",
        kind="circuit_breaker",
        state="open",
        health=Health.UNAVAILABLE,
        since=1.0,
        since_wall=2.0,
        reason="r",
        statistics={"failures": 3},
    )


def test_snapshots_are_frozen_and_slotted() -> None:
    """A GuardSnapshot cannot be modified, nor can its statistics."""
    value = snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.state = "closed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        value.statistics["failures"] = 0  # type: ignore[index]
    assert not hasattr(value, "__dict__")


def test_snapshot_statistics_are_copied() -> None:
    """Changing the dict a snapshot was built from does not change the snapshot."""
    stats = {"failures": 3}
    value = GuardSnapshot("feed", "k", "open", Health.HEALTHY, 0.0, 0.0, None, stats)
    stats["failures"] = 99
    assert value.statistics["failures"] == 3


def test_transition_round_trips_through_json() -> None:
    """A Transition's dict is JSON-able and keeps every field."""
    transition = Transition(
        guard="feed",
        kind="circuit_breaker",
        old_state="closed",
        new_state="open",
        old_health=Health.HEALTHY,
        new_health=Health.UNAVAILABLE,
        reason="failure rate 62% >= 50% over last 20 calls",
        at=12.5,
        at_wall=1_767_225_612.5,
    )
    data = json.loads(json.dumps(transition.to_dict()))
    assert data == {
        "guard": "feed",
        "kind": "circuit_breaker",
        "old_state": "closed",
        "new_state": "open",
        "old_health": "healthy",
        "new_health": "unavailable",
        "reason": "failure rate 62% >= 50% over last 20 calls",
        "at": 12.5,
        "at_wall": 1_767_225_612.5,
        "runbook": None,
        "lineage": {},
    }
    assert Transition.from_dict(data) == transition
    with pytest.raises(dataclasses.FrozenInstanceError):
        transition.reason = "x"  # type: ignore[misc]


def test_snapshot_dict_is_json() -> None:
    """GuardSnapshot.to_dict() is plain JSON."""
    data = json.loads(json.dumps(snapshot().to_dict()))
    assert data["health"] == "unavailable"
    assert data["statistics"] == {"failures": 3}
