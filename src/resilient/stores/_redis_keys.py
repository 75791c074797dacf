"""Where the Redis store keeps things: key names laid out for Redis Cluster.

Every key of one guard shares one hash tag, ``{<namespace>:<guard>}``, so that the one
script that decides for the guard touches keys of one slot; the fleet's keys share
``{<namespace>:fleet}``. Names are escaped so that no name can end the tag early or pass
for another namespace and guard: ``%``, ``{``, ``}`` and ``:`` become ``%25``, ``%7B``,
``%7D`` and ``%3A``.
"""

from __future__ import annotations

__all__ = ["PREFIX", "breaker_keys", "escape", "fleet_keys", "rate_keys", "sequence_keys"]

PREFIX = "resilient"

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ":": "%3A"})


def escape(name: str) -> str:
    """``name`` with the characters that shape a key escaped (an injective mapping)."""
    return name.translate(_ESCAPES)


def _tag(namespace: str, name: str) -> str:
    return f"{PREFIX}:{{{escape(namespace)}:{escape(name)}}}"


def breaker_keys(namespace: str, guard: str) -> list[str]:
    """The breaker's state, trial leases, window buckets and counted replicas."""
    tag = _tag(namespace, guard)
    return [f"{tag}:breaker", f"{tag}:trials", f"{tag}:buckets", f"{tag}:replicas"]


def rate_keys(namespace: str, guard: str) -> list[str]:
    """The rate limit's theoretical arrival time and its users."""
    tag = _tag(namespace, guard)
    return [f"{tag}:rate", f"{tag}:users"]


def fleet_keys(namespace: str) -> list[str]:
    """Publications (expiries), snapshots, the guards acted on, and the actions."""
    tag = f"{PREFIX}:{{{escape(namespace)}:fleet}}"
    return [f"{tag}:published", f"{tag}:snapshots", f"{tag}:acted", f"{tag}:actions"]


def sequence_keys(namespace: str) -> list[str]:
    """The action sequence, the guards acted on, and the actions."""
    tag = f"{PREFIX}:{{{escape(namespace)}:fleet}}"
    return [f"{tag}:sequence", f"{tag}:acted", f"{tag}:actions"]
