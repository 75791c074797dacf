"""The Redis store: guards that share their state across the replicas of a service.

Install the ``redis`` extra (``pip install 'resilient-guards[redis]'``) and give shared
guards a :class:`RedisStore`. Every decision is one Lua script, run atomically by Redis on
Redis's clock (``TIME``); see :mod:`resilient._core._store` for the protocol and
:class:`resilient.stores.MemoryStore` for the decisions, which both stores make alike.

Keys live under ``resilient:{<namespace>:<guard>}:...`` (one hash tag per guard, so that
each script touches one Redis Cluster slot) and ``resilient:{<namespace>:fleet}:...``.
Values are plain text: hashes with a layout version ``v`` = 1, numbers as decimal
strings, snapshots as the JSON given. A guard's keys expire a day after its last report;
operator actions are kept until deleted.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar, cast

import anyio
import anyio.to_thread
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from resilient._core._detached import current_library
from resilient._core._errors import ConfigurationError, format_seconds
from resilient._core._fork import track
from resilient._core._store import (
    FLEET_ACTIONS,
    REPLICA_HORIZON,
    BreakerReport,
    BreakerRules,
    BreakerView,
    FleetAction,
    RateView,
    StoreError,
    StoreValueError,
    check_action,
    check_report,
)
from resilient._core._validate import check_name, to_seconds
from resilient.stores import _redis_clients, _redis_keys
from resilient.stores._redis_scripts import (
    ACT,
    BREAKER,
    FLEET,
    PUBLISH,
    RATE,
    Attempt,
    Script,
    Unsent,
)

if TYPE_CHECKING:
    import trio

__all__ = ["DEFAULT_DEADLINE", "GUARD_EXPIRY", "TRIO_THREADS", "RedisStore"]

DEFAULT_DEADLINE = 0.005
"""Seconds one round trip to Redis may take before it counts as a store fault."""

GUARD_EXPIRY = 86400.0
"""Seconds a guard's keys are kept after its last report (plus any open time left)."""

TRIO_THREADS = 8
"""Worker threads one store may use at once in one trio run (its round trips under trio
are sync calls in worker threads, taken from a limiter of the store's own)."""

_T = TypeVar("_T")

_ERROR_MARK = "RESILIENT "  # how the scripts start the error replies about bad values
# What Redis adds to an error a script raises: which script, and where in it.
_SCRIPT_SUFFIX = re.compile(r"\s*script: [0-9a-f]{40}, on @user_script:\d+\.?$")


class _Malformed(Exception):
    """A reply of a shape the store did not ask for."""


class RedisStore:
    """Shared state for guards across a fleet of replicas, kept in Redis.

    The store never uses the clients it is given: it reads their connection settings
    (host, port or socket path, database, credentials, TLS) and makes clients of its own
    whose socket timeout is ``deadline``, with retries and health checks off. So a sync
    call takes at most about ``deadline`` per socket operation (connecting, sending,
    reading; one call is a connect on first use, then one round trip, or two when Redis
    lost its script cache), counted from when the host name is resolved: name
    resolution (DNS) is outside every socket timeout, and a slow resolver holds a sync
    call for as long as it takes. For a hard bound give an IP address, or a host name in
    ``/etc/hosts``. An async call is bounded as a whole by ``deadline``: on asyncio a
    command cut short drops its connection (redis-py never reuses a connection whose
    reply is still due); under trio the sync call runs in a worker thread, which is left
    to finish on its own when the deadline passes. Those threads come from a limiter of
    the store's own (:data:`TRIO_THREADS` per trio run), so the application's own
    ``to_thread`` work cannot make a round trip wait for a thread.

    Under asyncio the store keeps one client per running event loop (asyncio clients
    belong to their loop) and closes it when the loop shuts down its async generators
    (``asyncio.run`` does). A forked child makes new clients: it never uses a connection
    of its parent.

    A store made with ``async_client`` alone serves async callers on asyncio; a sync
    call, or any call under trio, raises :class:`~resilient.ConfigurationError` asking
    for a sync client: that is a setup error, not a store fault. Without
    ``async_client``, async callers on asyncio connect with ``client``'s settings, so a
    setting that only sync connections take (an OCSP check) is refused here, when the
    store is made.

    Every fault (Redis unreachable, slower than ``deadline``, answering an error or a
    reply of the wrong shape) raises :class:`~resilient.stores.StoreError` and nothing
    else; its ``maybe_applied`` is ``False`` only when the request surely never reached
    Redis (the connection was refused or timed out, or a sync write failed, leaving the
    command incomplete), and ``True`` once it may have (no answer within ``deadline``,
    the connection lost while waiting for the answer). A value of one guard that the
    store cannot read raises :class:`~resilient.stores.StoreValueError` naming its key;
    nothing was applied. An operator's ``close`` or ``reset`` of a shared breaker
    rewrites its keys without checking them, which repairs such a value: the breaker is
    closed, with its epoch grown from the stored one when that reads as a number, or
    fresh (1) when it does not, as after its keys expire.

    Args:
        client: A ``redis.Redis`` to take the connection settings from.
        namespace: Keeps this service's keys apart from others' in one Redis.
        async_client: A ``redis.asyncio.Redis`` to take the settings of async calls from
            (``client``'s if omitted).
        deadline: Seconds one round trip may take (5 ms by default).
        name: The store's name in errors and the registry; ``"redis:<namespace>"`` by
            default. Two stores of one namespace on two Redis servers (a cache Redis
            and a rate-limit Redis) must be given distinct names: a registry takes one
            store per name.

    Raises:
        ConfigurationError: No client, a client of another kind, a setting the store's
            connections cannot take, or a bad namespace, deadline or name.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        namespace: str,
        async_client: redis.asyncio.Redis | None = None,
        deadline: float | timedelta = DEFAULT_DEADLINE,
        name: str | None = None,
    ) -> None:
        self._namespace = check_name(namespace, "namespace")
        self._deadline = to_seconds(deadline, "deadline", allow_zero=False)
        self._name = f"redis:{namespace}" if name is None else check_name(name, "name")
        if client is None and async_client is None:
            raise ConfigurationError(
                "RedisStore needs a client: pass client=redis.Redis(...), "
                "async_client=redis.asyncio.Redis(...), or use RedisStore.from_url(url, ...)"
            )
        sync_settings = (
            None
            if client is None
            else _redis_clients.settings_of(client, "client", asynchronous=False)
        )
        async_settings = (
            sync_settings
            if async_client is None
            else _redis_clients.settings_of(async_client, "async_client", asynchronous=True)
        )
        # Both flavours are checked now: a setting one cannot take is a setup error here,
        # never one that a guarded call meets later.
        self._sync_connector = (
            None
            if sync_settings is None
            else _redis_clients.connector(sync_settings, asynchronous=False)
        )
        self._async_connector = (
            None
            if async_settings is None
            else _redis_clients.connector(async_settings, asynchronous=True)
        )
        self._lock = threading.Lock()
        self._sync = (
            None
            if self._sync_connector is None
            else _redis_clients.sync_client(self._sync_connector, self._deadline)
        )
        self._loops: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._trio_threads: trio.lowlevel.RunVar[anyio.CapacityLimiter] | None = None
        # Clients of a parent process, kept (never used, never closed) in a forked child:
        # closing them there could shut down connections the parent still uses.
        self._inherited: list[object] = []
        track(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str,
        deadline: float | timedelta = DEFAULT_DEADLINE,
        name: str | None = None,
    ) -> RedisStore:
        """A store for the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``),
        for sync and async callers alike.

        Raises:
            ConfigurationError: The URL cannot be read, sets an option that only sync
                connections take, or a bad namespace, deadline or name.
        """
        if not isinstance(url, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(f"url must be a string (got {type(url).__name__})")
        try:
            # Only its settings are read: it makes no connection.
            settings_client: redis.Redis = redis.Redis.from_url(url)  # pyright: ignore[reportUnknownMemberType]
        except ValueError as error:
            raise ConfigurationError(f"url must be a Redis URL ({error}; got {url!r})") from None
        try:
            return cls(settings_client, namespace=namespace, deadline=deadline, name=name)
        except _redis_clients.UnsupportedOption as error:
            raise ConfigurationError(
                f"url {url!r} sets {error.option}, which the {error.flavour} connections of "
                "the store cannot take, and a store made by from_url serves async callers "
                "too; make it from clients instead: RedisStore(redis.Redis.from_url(url), "
                "async_client=redis.asyncio.Redis(...), namespace=...)"
            ) from None

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._inherited.append((self._sync, self._loops))
        self._loops = {}
        if self._sync_connector is not None:
            self._sync = _redis_clients.sync_client(self._sync_connector, self._deadline)

    @property
    def name(self) -> str:
        """The store's name: ``"redis:<namespace>"`` unless given."""
        return self._name

    @property
    def namespace(self) -> str:
        """The namespace the store's keys live under."""
        return self._namespace

    @property
    def deadline(self) -> float:
        """Seconds one round trip may take before it counts as a fault."""
        return self._deadline

    def __repr__(self) -> str:
        return f"<RedisStore {self._name!r}>"

    def close(self) -> None:
        """Close the store's sync connections (never the clients it was given).

        The store stays usable: a later call connects again. Async connections close
        with their event loop, or with :meth:`aclose` on it.
        """
        if self._sync is not None:
            self._sync.connection_pool.disconnect()

    async def aclose(self) -> None:
        """Close the store's connections for the running event loop."""
        if current_library() != "asyncio":
            return
        with self._lock:
            entry = self._loops.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.close()

    # -- circuit breakers ----------------------------------------------------------------

    def breaker(self, guard: str, rules: BreakerRules, report: BreakerReport) -> BreakerView:
        """Apply a report to the shared breaker ``guard`` and answer its state."""
        args = _breaker_args(rules, report)
        what = f"breaker {guard!r}"
        reply = self._run(BREAKER, _redis_keys.breaker_keys(self._namespace, guard), args, what)
        return self._read(_breaker_view, reply, what)

    async def breaker_async(
        self, guard: str, rules: BreakerRules, report: BreakerReport
    ) -> BreakerView:
        """The async twin of :meth:`breaker`."""
        args = _breaker_args(rules, report)
        what = f"breaker {guard!r}"
        keys = _redis_keys.breaker_keys(self._namespace, guard)
        reply = await self._run_async(BREAKER, keys, args, what)
        return self._read(_breaker_view, reply, what)

    # -- rate limits ---------------------------------------------------------------------

    def acquire(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        """Take one turn of the shared rate limit ``guard`` (GCRA), if one is free."""
        args = _rate_args(replica, interval, tolerance, count)
        what = f"rate limit {guard!r}"
        reply = self._run(RATE, _redis_keys.rate_keys(self._namespace, guard), args, what)
        return self._read(_rate_view, reply, what)

    async def acquire_async(
        self, guard: str, replica: str, interval: float, tolerance: float, *, count: bool
    ) -> RateView:
        """The async twin of :meth:`acquire`."""
        args = _rate_args(replica, interval, tolerance, count)
        what = f"rate limit {guard!r}"
        keys = _redis_keys.rate_keys(self._namespace, guard)
        reply = await self._run_async(RATE, keys, args, what)
        return self._read(_rate_view, reply, what)

    # -- the fleet -----------------------------------------------------------------------

    def publish(self, replica: str, document: str, ttl: float, since: int) -> list[FleetAction]:
        """Publish a replica's snapshot for ``ttl`` seconds; answer the newer actions."""
        args = _publish_args(replica, document, ttl, since)
        keys = _redis_keys.fleet_keys(self._namespace)
        reply = self._run(PUBLISH, keys, args, "publish")
        return self._read(_actions, reply, "publish")

    async def publish_async(
        self, replica: str, document: str, ttl: float, since: int
    ) -> list[FleetAction]:
        """The async twin of :meth:`publish`."""
        args = _publish_args(replica, document, ttl, since)
        keys = _redis_keys.fleet_keys(self._namespace)
        reply = await self._run_async(PUBLISH, keys, args, "publish")
        return self._read(_actions, reply, "publish")

    def fleet(self) -> dict[str, str]:
        """The snapshots of every replica whose publication has not expired."""
        keys = _redis_keys.fleet_keys(self._namespace)[:2]
        reply = self._run(FLEET, keys, [], "fleet")
        return self._read(_snapshots, reply, "fleet")

    async def fleet_async(self) -> dict[str, str]:
        """The async twin of :meth:`fleet`."""
        keys = _redis_keys.fleet_keys(self._namespace)[:2]
        reply = await self._run_async(FLEET, keys, [], "fleet")
        return self._read(_snapshots, reply, "fleet")

    def act(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        """Record an operator action for every replica to apply."""
        check_action(action, FLEET_ACTIONS)
        what = f"action on {guard!r}"
        keys = _redis_keys.sequence_keys(self._namespace)
        reply = self._run(ACT, keys, [guard, action, reason, replica], what)
        sequence = self._read(_integer, reply, what)
        return FleetAction(sequence, guard, action, reason, replica)

    async def act_async(self, guard: str, action: str, reason: str, replica: str) -> FleetAction:
        """The async twin of :meth:`act`."""
        check_action(action, FLEET_ACTIONS)
        what = f"action on {guard!r}"
        keys = _redis_keys.sequence_keys(self._namespace)
        reply = await self._run_async(ACT, keys, [guard, action, reason, replica], what)
        sequence = self._read(_integer, reply, what)
        return FleetAction(sequence, guard, action, reason, replica)

    # -- round trips ---------------------------------------------------------------------

    def _sync_client(self) -> redis.Redis:
        client = self._sync
        if client is None:
            raise ConfigurationError(
                f"store {self._name!r} was given only async_client, which serves async "
                "callers on asyncio; for sync calls (and under trio, which runs them in a "
                "worker thread) pass client=redis.Redis(...) as well"
            )
        return client

    def _run(
        self,
        script: Script,
        keys: list[str],
        args: list[str],
        what: str,
        attempt: Attempt | None = None,
    ) -> object:
        client = self._sync_client()
        try:
            return script.run(client, keys, args, attempt or Attempt())
        except Unsent as unsent:
            raise self._fault(unsent.error, what, maybe_applied=False) from unsent.error
        except Exception as error:  # whatever the client raises is a store fault
            raise self._fault(error, what) from error

    async def _run_async(
        self, script: Script, keys: list[str], args: list[str], what: str
    ) -> object:
        attempt = Attempt()
        if current_library() != "asyncio":
            self._sync_client()  # a setup error is raised here, not in the thread
            try:
                with anyio.fail_after(self._deadline):
                    # Left to finish in its thread when the deadline passes: the sync
                    # client's own socket timeout ends it soon after.
                    return await anyio.to_thread.run_sync(
                        self._run,
                        script,
                        keys,
                        args,
                        what,
                        attempt,
                        abandon_on_cancel=True,
                        limiter=self._trio_limiter(),
                    )
            except TimeoutError:
                raise self._late(what, maybe_applied=attempt.abandon()) from None
            finally:
                # A thread left behind (deadline or the caller's cancellation) that has
                # not written its command yet never writes it.
                attempt.abandon()
        async_client = await self._async_client()
        try:
            with anyio.fail_after(self._deadline):
                try:
                    return await script.run_async(async_client, keys, args, attempt)
                except Unsent as unsent:
                    raise self._fault(unsent.error, what, maybe_applied=False) from unsent.error
                except Exception as error:  # whatever the client raises is a store fault
                    raise self._fault(error, what) from error
        except TimeoutError:
            raise self._late(what, maybe_applied=attempt.abandon()) from None

    def _trio_limiter(self) -> anyio.CapacityLimiter:
        """The store's own worker threads in this trio run.

        Its own, so that the application's ``to_thread`` work, which shares anyio's
        default limiter, never makes a round trip wait for a thread; one per run, since
        trio gives a token back only within the run that lent it: a thread abandoned as
        its run ended would hold a token of a limiter kept across runs for good.
        """
        import trio

        with self._lock:
            if self._trio_threads is None:
                self._trio_threads = trio.lowlevel.RunVar("resilient-redis-threads")
            threads = self._trio_threads
        try:
            return threads.get()
        except LookupError:  # the first round trip of this run
            limiter = anyio.CapacityLimiter(TRIO_THREADS)
            threads.set(limiter)
            return limiter

    async def _async_client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(loop)
        if entry is not None:
            return entry.client
        made = self._async_connector
        if made is None:  # pragma: no cover - a store always has one kind of client
            raise ConfigurationError(f"store {self._name!r} has no client")
        entry = _LoopClient(_redis_clients.async_client(made, self._deadline))
        with self._lock:
            for old in [old for old in self._loops if old.is_closed()]:
                # A loop closed without shutting down its async generators; its
                # connections cannot be closed any more.
                self._inherited.append(self._loops.pop(old))
            self._loops[loop] = entry
        await entry.start(lambda: self._forget(loop, entry))
        return entry.client

    def _forget(self, loop: asyncio.AbstractEventLoop, entry: _LoopClient) -> None:
        with self._lock:
            if self._loops.get(loop) is entry:
                del self._loops[loop]

    def _late(self, what: str, *, maybe_applied: bool) -> StoreError:
        return StoreError(
            self._name,
            f"{what}: Redis did not answer within {format_seconds(self._deadline)} s",
            maybe_applied=maybe_applied,
        )

    def _fault(self, error: Exception, what: str, *, maybe_applied: bool = True) -> StoreError:
        if isinstance(error, StoreError):
            return error
        text = str(error)
        if isinstance(error, ResponseError):
            text = _SCRIPT_SUFFIX.sub("", text)
        if isinstance(error, ResponseError) and text.startswith(_ERROR_MARK):
            # The script checked the value before it wrote anything: nothing applied.
            return StoreValueError(self._name, f"{what}: {text[len(_ERROR_MARK) :]}")
        if isinstance(error, ResponseError):
            problem = f"{what}: Redis answered an error: {text}"
        elif isinstance(error, RedisTimeoutError):
            problem = (
                f"{what}: Redis did not answer within {format_seconds(self._deadline)} s ({text})"
            )
        elif isinstance(error, RedisConnectionError):
            problem = f"{what}: cannot reach Redis ({text})"
        else:
            problem = f"{what}: {type(error).__name__}: {text}"
        return StoreError(self._name, problem, maybe_applied=maybe_applied)

    def _read(self, parse: Callable[[object], _T], reply: object, what: str) -> _T:
        try:
            return parse(reply)
        except (_Malformed, TypeError, ValueError, UnicodeDecodeError):
            shown = repr(reply)
            if len(shown) > 200:
                shown = shown[:197] + "..."
            raise StoreError(
                self._name, f"{what}: Redis answered {shown}, a reply of the wrong shape"
            ) from None


class _LoopClient:
    """The asyncio client of one event loop, closed when the loop shuts down."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._closer: AsyncGenerator[None, None] | None = None

    async def start(self, forget: Callable[[], None]) -> None:
        # An async generator started on the loop is one the loop finalizes when it shuts
        # down its async generators (asyncio.run does, after the last task): the one hook
        # asyncio offers at a loop's end.
        async def closer() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                forget()
                await self.close()

        self._closer = closer()
        await self._closer.__anext__()

    async def close(self) -> None:
        await self.client.aclose()


# -- arguments -----------------------------------------------------------------------------


def _number(value: float) -> str:
    return repr(float(value))


def _optional(value: object) -> str:
    """``""`` for ``None``, else ``"="`` and the value: the scripts tell them apart."""
    return "" if value is None else f"={value}"


def _breaker_args(rules: BreakerRules, report: BreakerReport) -> list[str]:
    check_report(report)
    slow = rules.slow_call_rate_threshold
    return [
        _number(rules.window),
        str(int(rules.buckets)),
        str(int(rules.minimum_calls)),
        str(int(rules.minimum_replicas)),
        _number(rules.failure_rate_threshold),
        _optional(None if slow is None else _number(slow)),
        _number(rules.open_duration),
        _number(rules.open_duration_max),
        _number(rules.open_duration_multiplier),
        str(int(rules.half_open_calls)),
        _number(rules.trial_lease),
        _number(GUARD_EXPIRY),
        report.replica,
        str(int(report.epoch)),
        str(int(report.successes)),
        str(int(report.failures)),
        str(int(report.slow)),
        _optional(report.last_failure),
        "1" if report.trial else "0",
        _optional(None if report.trial_token is None else int(report.trial_token)),
        _optional(report.trial_outcome),
        _optional(report.action),
        _optional(report.reason),
    ]


def _rate_args(replica: str, interval: float, tolerance: float, count: bool) -> list[str]:
    return [
        replica,
        _number(interval),
        _number(tolerance),
        "1" if count else "0",
        _number(REPLICA_HORIZON),
    ]


def _publish_args(replica: str, document: str, ttl: float, since: int) -> list[str]:
    return [replica, document, _number(ttl), str(int(since)), _number(GUARD_EXPIRY)]


# -- replies -------------------------------------------------------------------------------


def _items(reply: object) -> list[object]:
    if not isinstance(reply, list):
        raise _Malformed
    return cast("list[object]", reply)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise _Malformed


def _maybe_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Malformed


def _float(value: object) -> float:
    number = float(_text(value))
    if number != number or number in (float("inf"), float("-inf")):
        raise _Malformed
    return number


def _breaker_view(answer: object) -> BreakerView:
    reply = _items(answer)
    if len(reply) != 14:
        raise _Malformed
    moved = _integer(reply[4])
    if moved not in (0, 1):
        raise _Malformed
    return BreakerView(
        state=_text(reply[0]),
        epoch=_integer(reply[1]),
        reason=_maybe_text(reply[2]),
        by=_maybe_text(reply[3]),
        moved=moved == 1,
        retry_after=None if reply[5] is None else _float(reply[5]),
        token=None if reply[6] is None else _integer(reply[6]),
        late=_integer(reply[7]),
        window_calls=_integer(reply[8]),
        window_failures=_integer(reply[9]),
        window_slow=_integer(reply[10]),
        replicas=_integer(reply[11]),
        open_duration=_float(reply[12]),
        consecutive_opens=_integer(reply[13]),
    )


def _rate_view(answer: object) -> RateView:
    reply = _items(answer)
    if len(reply) != 3:
        raise _Malformed
    admitted = _integer(reply[0])
    if admitted not in (0, 1):
        raise _Malformed
    return RateView(
        admitted=admitted == 1, retry_after=_float(reply[1]), replicas=_integer(reply[2])
    )


def _actions(answer: object) -> list[FleetAction]:
    reply = _items(answer)
    if len(reply) % 5:
        raise _Malformed
    return [
        FleetAction(
            sequence=_integer(reply[i]),
            guard=_text(reply[i + 1]),
            action=_text(reply[i + 2]),
            reason=_text(reply[i + 3]),
            by=_text(reply[i + 4]),
        )
        for i in range(0, len(reply), 5)
    ]


def _snapshots(answer: object) -> dict[str, str]:
    reply = _items(answer)
    if len(reply) % 2:
        raise _Malformed
    return {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply), 2)}
