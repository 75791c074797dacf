"""A cache that keeps answers fresh without stampeding the provider behind it."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Generic, cast

import anyio
from typing_extensions import ParamSpec, TypeVar

from ._core._clock import Clock
from ._core._counter import Counter
from ._core._detached import current_library, event_loop, spawn
from ._core._errors import ConfigurationError, describe_error, format_seconds
from ._core._guard import Guard, registry_and_clock
from ._core._keys import call_key, unhashable_key_error
from ._core._registry import Registry
from ._core._run import is_async_callable
from ._core._state import Health, Statistic
from ._core._validate import Duration, check_count, to_seconds

__all__ = [
    "DEFAULT_CACHE_MAX_ENTRIES",
    "Cache",
    "CacheState",
    "CacheStatus",
    "Cached",
    "Freshness",
]

P = ParamSpec("P")
R = TypeVar("R")
# Any by default, so that ``Cache("odds", ttl=2)`` needs no annotation.
T = TypeVar("T", default=Any)

DEFAULT_CACHE_MAX_ENTRIES = 10_000
"""How many keys a :class:`Cache` keeps unless told otherwise."""

_KEY_SHOWN = 60  # characters of a key's repr in a transition's reason


class CacheState(str, enum.Enum):
    """The states of a :class:`Cache`."""

    NORMAL = "normal"
    """The provider answers (healthy)."""
    SERVING_STALE = "serving_stale"
    """The provider failed: stale values are served in its place (degraded)."""

    def __str__(self) -> str:
        return self.value


class CacheStatus(str, enum.Enum):
    """Where a :class:`Cached` answer came from."""

    FRESH = "fresh"
    """A hit: the value is younger than its ttl."""
    FETCHED = "fetched"
    """The provider was called for this answer, by this caller or one it waited for."""
    STALE = "stale"
    """Past its ttl but within stale_while_revalidate: served at once while one
    background refresh runs."""
    STALE_ON_ERROR = "stale_on_error"
    """The provider failed; the stale value (within stale_if_error) served instead."""

    def __str__(self) -> str:
        return self.value


# Read once: an enum member looked up on its class costs a descriptor call each time.
_FRESH = CacheStatus.FRESH
_FETCHED = CacheStatus.FETCHED
_STALE = CacheStatus.STALE
_STALE_ON_ERROR = CacheStatus.STALE_ON_ERROR


@dataclass(frozen=True, slots=True)
class Cached(Generic[T]):
    """An answer of a :class:`Cache`, with how old it is and where it came from.

    Attributes:
        value: The answer.
        key: The cache key it is stored under.
        age: Seconds since the provider returned the value (0 for a value fetched for
            this answer).
        status: How it was served: fresh, fetched, stale or stale_on_error.
        error: For ``stale_on_error``, the class name of the provider's exception.
    """

    value: T
    key: Hashable
    age: float
    status: CacheStatus
    error: str | None = None


@dataclass(frozen=True, slots=True, init=False)
class Freshness:
    """How long one value stays fresh, and how long it may be served stale after that.

    Attributes:
        ttl: Seconds a value is fresh (> 0).
        stale_while_revalidate: Seconds after ``ttl`` during which the value is served at
            once while one background refresh runs (>= 0).
        stale_if_error: Seconds after ``ttl`` during which the value is served instead of
            raising when the provider fails (>= 0).

    Raises:
        ConfigurationError: A duration is not one, is negative, or ``ttl`` is zero.
    """

    ttl: float
    stale_while_revalidate: float
    stale_if_error: float

    def __init__(
        self,
        ttl: Duration,
        stale_while_revalidate: Duration = 0.0,
        stale_if_error: Duration = 0.0,
    ) -> None:
        object.__setattr__(self, "ttl", to_seconds(ttl, "ttl", allow_zero=False))
        object.__setattr__(
            self,
            "stale_while_revalidate",
            to_seconds(stale_while_revalidate, "stale_while_revalidate"),
        )
        object.__setattr__(self, "stale_if_error", to_seconds(stale_if_error, "stale_if_error"))


class _Entry:
    """One stored value and the moments it changes standing, on the cache's clock."""

    __slots__ = (
        "dead_at",
        "error_until",
        "fetched_at",
        "fresh_until",
        "stale_until",
        "used",
        "value",
    )

    def __init__(self, value: Any, at: float, freshness: Freshness) -> None:
        ttl = freshness.ttl
        self.value = value
        self.fetched_at = at
        self.fresh_until = at + ttl
        self.stale_until = at + ttl + freshness.stale_while_revalidate
        self.error_until = at + ttl + freshness.stale_if_error
        self.dead_at = at + ttl + max(freshness.stale_while_revalidate, freshness.stale_if_error)
        # Read since stored (or since it last escaped eviction): it gets a second chance.
        self.used = False


class _Flight:
    """One provider call in progress for a key, that other callers of its kind wait for.

    ``slot`` is its place in the cache's flights: ``(None, key)`` for threads,
    ``(event loop, key)`` for the tasks of one loop.
    """

    __slots__ = ("abandoned", "answer", "error", "event", "slot", "traceback")

    def __init__(self, slot: tuple[object, Hashable], event: threading.Event | anyio.Event):
        self.slot = slot
        self.event = event
        self.answer: Cached[Any] | None = None
        self.error: Exception | None = None
        self.traceback: TracebackType | None = None
        self.abandoned = False  # the leader was cancelled: a waiter takes over


def _show(key: Hashable) -> str:
    text = repr(key)
    return text if len(text) <= _KEY_SHOWN else text[: _KEY_SHOWN - 3] + "..."


def _name_of(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


class Cache(Guard[CacheState], Generic[T]):
    """Keeps one function's answers fresh, serves them stale while it refreshes or fails,
    and never lets concurrent misses of one key call the provider more than once.

    A value is **fresh** while younger than ``ttl``: it is answered from memory. For
    ``stale_while_revalidate`` after that it is answered at once, stale, while one
    background refresh per key replaces it. For ``stale_if_error`` after ``ttl``, a
    failing provider is answered for by the stale value instead of its exception. Past
    ``ttl + max(stale_while_revalidate, stale_if_error)`` a value is dead and dropped.

    Concurrent misses of one key make one provider call: threads wait for the thread that
    calls, tasks of one event loop for the task that calls, and all get its value or its
    exception. A caller that must call is never kept waiting behind a lock.

    One cache serves one function: keys are built from the arguments alone, so a second
    function would read the first one's values.

    Args:
        name: Unique name in the registry.
        ttl: How long a value is fresh (> 0).
        stale_while_revalidate: How long after ``ttl`` a value is still served at once
            while a background refresh runs (default 0: never).
        stale_if_error: How long after ``ttl`` a value is served when the provider fails
            (default 0: never).
        max_entries: The most keys kept; when more are stored, the least recently used go
            first (approximately: a key read since it was stored is passed over once).
        key: Builds the cache key from the call's arguments; by default the arguments
            themselves, which must then be hashable.
        freshness: Gives each fetched value its own :class:`Freshness`, from its key and
            value; by default every value gets ``ttl`` and the two stale durations.
        runbook: One line of text, or a URL, for whoever handles the cache serving stale
            values; it rides along with every transition and snapshot of the cache.
        registry: Where the cache is registered; the default registry if omitted.
        clock: Source of time; the registry's clock if omitted.
        replace: Replace a guard of the same name instead of refusing.

    Raises:
        ConfigurationError: A value is out of range or of the wrong type; the message
            names it.
    """

    kind = "cache"
    states: ClassVar[type[CacheState]] = CacheState

    def __init__(
        self,
        name: str,
        *,
        ttl: Duration,
        stale_while_revalidate: Duration = 0.0,
        stale_if_error: Duration = 0.0,
        max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
        key: Callable[..., Hashable] | None = None,
        freshness: Callable[[Hashable, T], Freshness] | None = None,
        runbook: str | None = None,
        registry: Registry | None = None,
        clock: Clock | None = None,
        replace: bool = False,
    ) -> None:
        self._default = Freshness(ttl, stale_while_revalidate, stale_if_error)
        self._max_entries = check_count(max_entries, "max_entries")
        if key is not None and not callable(key):
            raise ConfigurationError(f"key must be callable or None (got {key!r})")
        if freshness is not None and not callable(freshness):
            raise ConfigurationError(f"freshness must be callable or None (got {freshness!r})")
        self._key = key
        self._freshness = freshness
        registry, clock = registry_and_clock(registry, clock)
        self._now = clock.monotonic
        # Reads take no lock (one dict lookup is atomic); every change is made under it.
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[tuple[object, Hashable], _Flight] = {}
        self._fn: Callable[..., Any] | None = None
        self._fn_async = False
        self._threads: set[threading.Thread] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: asyncio keeps weak
        self._hits = Counter()
        self._misses = Counter()
        self._stale_served = Counter()
        self._stale_on_error = Counter()
        self._coalesced = Counter()
        self._refreshes = 0
        self._refresh_failures = 0
        self._evictions = 0
        self._last_error: str | None = None
        super().__init__(
            name,
            state=CacheState.NORMAL,
            health=Health.HEALTHY,
            registry=registry,
            clock=clock,
            replace=replace,
            runbook=runbook,
        )

    # -- the function it serves --------------------------------------------------------------

    def _bind(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Make ``fn`` the function this cache serves, or refuse a second one.

        Returns:
            The function to call: ``fn``, or the function inside it when ``fn`` is this
            cache's own decorator (``cache.answer(price, ...)`` on a decorated ``price``).
        """
        if getattr(fn, "_resilient_cache", None) is self:
            fn = fn.__wrapped__  # type: ignore[attr-defined]
        if not callable(fn):
            raise TypeError(f"a cache serves a callable (got {fn!r})")
        with self._lock:
            if self._fn is None:
                self._fn_async = is_async_callable(fn)
                self._fn = fn
                return fn
            served = self._fn
        # == as well as `is`: a bound method is a new object at every attribute read.
        if fn is not served and fn != served:
            raise ConfigurationError(
                f"cache {self._name!r} already serves {_name_of(served)} and cannot serve "
                f"{_name_of(fn)} too: keys are built from the arguments alone, so the two "
                "would read each other's values; build one Cache per function"
            )
        return fn

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature.

        Raises:
            ConfigurationError: The cache already serves another function.
        """
        fn = self._bind(fn)
        entries = self._entries
        now = self._now
        hit = self._hits.increment
        key_of = self._key
        unhashable = self._unhashable

        # The hit path is spelled out in both wrappers: a shared helper would add a frame.
        if self._fn_async:
            answer_async = self._answer_async

            @functools.wraps(fn)
            async def cached_async(*args: Any, **kwargs: Any) -> Any:
                key: Hashable = (
                    args if key_of is None and not kwargs else self._key_of(args, kwargs)
                )
                try:
                    entry = entries.get(key)
                except TypeError:
                    raise unhashable(key) from None
                if entry is not None and now() < entry.fresh_until:
                    entry.used = True
                    hit()
                    return entry.value
                return (await answer_async(fn, key, args, kwargs)).value

            cached_async._resilient_cache = self  # type: ignore[attr-defined]
            return cast(Callable[P, R], cached_async)

        answer_sync = self._answer_sync

        @functools.wraps(fn)
        def cached(*args: Any, **kwargs: Any) -> Any:
            key: Hashable = args if key_of is None and not kwargs else self._key_of(args, kwargs)
            try:
                entry = entries.get(key)
            except TypeError:
                raise unhashable(key) from None
            if entry is not None and now() < entry.fresh_until:
                entry.used = True
                hit()
                return entry.value
            return answer_sync(fn, key, args, kwargs).value

        cached._resilient_cache = self  # type: ignore[attr-defined]
        return cast(Callable[P, R], cached)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)``'s answer from the cache, calling ``fn`` when needed.

        Raises:
            ConfigurationError: The cache already serves another function.
            TypeError: ``fn`` is async (use :meth:`call_async`), or the key is unhashable.
        """
        if fn is self._fn and not self._fn_async:
            # A hit answers without building a Cached: the decorator's path, spelled out.
            key = args if self._key is None and not kwargs else self._key_of(args, kwargs)
            try:
                entry = self._entries.get(key)
            except TypeError:
                raise self._unhashable(key) from None
            if entry is not None and self._now() < entry.fresh_until:
                entry.used = True
                self._hits.increment()
                return cast(R, entry.value)
            return cast(R, self._answer_sync(fn, key, args, kwargs).value)
        return self.answer(fn, *args, **kwargs).value

    async def call_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """:meth:`call` for an ``async def`` function."""
        return (await self.answer_async(fn, *args, **kwargs)).value

    def answer(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Cached[R]:
        """Like :meth:`call`, but the answer says how old it is and where it came from.

        Raises:
            ConfigurationError: The cache already serves another function.
            TypeError: ``fn`` is async (use :meth:`answer_async`), or the key is unhashable.
        """
        provider = fn if fn is self._fn else self._bind(fn)
        if self._fn_async:
            raise TypeError(
                f"{fn!r} is async: use cache.call_async() or cache.answer_async() for it"
            )
        return self._answer_sync(provider, self._checked_key(args, kwargs), args, kwargs)

    async def answer_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Cached[R]:
        """:meth:`answer` for an ``async def`` function."""
        provider = fn if fn is self._fn else self._bind(fn)
        if not self._fn_async:
            raise TypeError(f"{fn!r} is not async: use cache.call() or cache.answer() for it")
        return await self._answer_async(provider, self._checked_key(args, kwargs), args, kwargs)

    # -- keys --------------------------------------------------------------------------------

    def _key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        return call_key(args, kwargs) if self._key is None else self._key(*args, **kwargs)

    def _unhashable(self, key: object) -> TypeError:
        return unhashable_key_error(f"cache {self._name!r}", key, from_key=self._key is not None)

    def _checked(self, key: Hashable) -> Hashable:
        try:
            hash(key)
        except TypeError:
            raise self._unhashable(key) from None
        return key

    def _checked_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        return self._checked(self._key_of(args, kwargs))

    # -- answering ---------------------------------------------------------------------------

    def _answer_sync(
        self, fn: Callable[..., Any], key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Cached[Any]:
        counted = False
        while True:
            served = self._from_memory(key, fn, args, kwargs, None)
            if served is not None:
                return served
            slot = (None, key)
            with self._lock:
                if self._servable(key):
                    continue  # stored since it was looked for: answer from memory
                flight = self._flights.get(slot)
                leader = flight is None
                if flight is None:
                    flight = self._flights[slot] = _Flight(slot, threading.Event())
            if not counted:
                self._misses.increment()
                counted = True
            if leader:
                return self._counted(self._lead_sync(fn, key, args, kwargs, flight, False))
            self._coalesced.increment()
            self._clock.wait(cast(threading.Event, flight.event), None)
            if not flight.abandoned:
                return self._joined(flight)

    async def _answer_async(
        self, fn: Callable[..., Any], key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Cached[Any]:
        library = current_library()
        counted = False
        while True:
            served = self._from_memory(key, fn, args, kwargs, library)
            if served is not None:
                return served
            slot = (event_loop(library), key)
            with self._lock:
                if self._servable(key):
                    continue  # stored (by another loop's task) since it was looked for
                flight = self._flights.get(slot)
                leader = flight is None
                if flight is None:
                    flight = self._flights[slot] = _Flight(slot, anyio.Event())
            if not counted:
                self._misses.increment()
                counted = True
            if leader:
                answer = await self._lead_async(fn, key, args, kwargs, flight, False)
                return self._counted(answer)
            self._coalesced.increment()
            await self._clock.wait_async(cast(anyio.Event, flight.event), None)
            if not flight.abandoned:
                return self._joined(flight)

    def _from_memory(
        self,
        key: Hashable,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        library: str | None,
    ) -> Cached[Any] | None:
        """A fresh or stale answer from the stored value (starting a background refresh
        for a stale one), or None when the provider must be asked. ``library`` is the
        async library for an async caller, None for a thread."""
        try:
            entry = self._entries.get(key)
        except TypeError:
            raise self._unhashable(key) from None
        if entry is None:
            return None
        now = self._now()
        if now < entry.fresh_until:
            entry.used = True
            self._hits.increment()
            return Cached(entry.value, key, now - entry.fetched_at, _FRESH)
        if now < entry.stale_until:
            entry.used = True
            self._stale_served.increment()
            self._revalidate(fn, key, args, kwargs, library)
            return Cached(entry.value, key, now - entry.fetched_at, _STALE)
        if now >= entry.dead_at:
            self._drop_dead(key, entry)
        return None

    def _servable(self, key: Hashable) -> bool:
        """Whether memory answers for ``key`` now (fresh, or stale within
        stale_while_revalidate); call with the lock held."""
        entry = self._entries.get(key)
        return entry is not None and self._now() < entry.stale_until

    def _joined(self, flight: _Flight) -> Cached[Any]:
        """What a caller that waited for ``flight`` gets: its answer, or its exception."""
        if flight.error is not None:
            # The leader's traceback, not one that grows with every waiter re-raising it.
            raise flight.error.with_traceback(flight.traceback)
        return self._counted(cast(Cached[Any], flight.answer))

    def _counted(self, answer: Cached[Any]) -> Cached[Any]:
        if answer.status is _STALE_ON_ERROR:
            self._stale_on_error.increment()
        return answer

    # -- calling the provider ----------------------------------------------------------------

    def _lead_sync(
        self,
        fn: Callable[..., Any],
        key: Hashable,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: _Flight,
        background: bool,
    ) -> Cached[Any]:
        try:
            value = fn(*args, **kwargs)
            freshness = self._freshness_of(key, value)
        except Exception as error:
            return self._failed(key, flight, error, background)
        except BaseException:
            self._abandon(flight)
            raise
        return self._landed(key, flight, value, freshness)

    async def _lead_async(
        self,
        fn: Callable[..., Any],
        key: Hashable,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: _Flight,
        background: bool,
    ) -> Cached[Any]:
        try:
            value = await fn(*args, **kwargs)
            freshness = self._freshness_of(key, value)
        except Exception as error:
            return self._failed(key, flight, error, background)
        except BaseException:
            self._abandon(flight)
            raise
        return self._landed(key, flight, value, freshness)

    def _freshness_of(self, key: Hashable, value: Any) -> Freshness:
        if self._freshness is None:
            return self._default
        freshness = self._freshness(key, value)
        if not isinstance(freshness, Freshness):
            raise TypeError(
                f"freshness= must return a Freshness (got {freshness!r} for key {_show(key)})"
            )
        return freshness

    def _landed(
        self, key: Hashable, flight: _Flight, value: Any, freshness: Freshness
    ) -> Cached[Any]:
        """Store what the provider returned, and hand it to everyone waiting."""
        now = self._now()
        answer = Cached(value, key, 0.0, _FETCHED)
        with self._lock:
            self._store(key, _Entry(value, now, freshness), now)
            self._end_flight(flight)
            flight.answer = answer
            moved = self._state is CacheState.SERVING_STALE
            if moved:
                self._move(
                    CacheState.NORMAL,
                    Health.HEALTHY,
                    f"the provider answered for {_show(key)} again",
                    now,
                )
        flight.event.set()
        if moved:
            self._deliver()
        return answer

    def _failed(
        self, key: Hashable, flight: _Flight, error: Exception, background: bool
    ) -> Cached[Any]:
        """The provider raised ``error``: answer with the stale value if it is young
        enough, else raise ``error``; either way to everyone waiting as well."""
        now = self._now()
        described = describe_error(error)
        answer: Cached[Any] | None = None
        with self._lock:
            self._last_error = described
            if background:
                self._refresh_failures += 1
            entry = self._entries.get(key)
            if entry is not None and now < entry.error_until:
                age = now - entry.fetched_at
                answer = Cached(entry.value, key, age, _STALE_ON_ERROR, type(error).__name__)
            self._end_flight(flight)
            flight.answer = answer
            flight.error = error if answer is None else None
            flight.traceback = error.__traceback__
            moved = self._state is CacheState.NORMAL and (background or answer is not None)
            if moved:
                if background:
                    reason = f"a background refresh of {_show(key)} failed: {described}"
                else:
                    reason = (
                        f"the provider failed for {_show(key)} ({described}); serving a "
                        f"value {format_seconds(now - entry.fetched_at)} s old"  # type: ignore[union-attr]
                    )
                self._move(CacheState.SERVING_STALE, Health.DEGRADED, reason, now)
        flight.event.set()
        if moved:
            self._deliver()
        if answer is None:
            raise error
        return answer

    def _abandon(self, flight: _Flight) -> None:
        """The leader was cancelled: wake its waiters so that one of them takes over."""
        with self._lock:
            self._end_flight(flight)
            flight.abandoned = True
        flight.event.set()

    def _end_flight(self, flight: _Flight) -> None:
        """Forget ``flight``; call with the lock held (after a fork it may be gone)."""
        if self._flights.get(flight.slot) is flight:
            del self._flights[flight.slot]

    # -- background refreshes ----------------------------------------------------------------

    def _revalidate(
        self,
        fn: Callable[..., Any],
        key: Hashable,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        library: str | None,
    ) -> None:
        """Start one background refresh of ``key``, unless a call for it is in flight."""
        if library is None:
            slot: tuple[object, Hashable] = (None, key)
            event: threading.Event | anyio.Event = threading.Event()
        else:
            slot = (event_loop(library), key)
            event = anyio.Event()
        with self._lock:
            if slot in self._flights:
                return
            flight = self._flights[slot] = _Flight(slot, event)
            self._refreshes += 1
        try:
            if library is None:
                thread = threading.Thread(
                    target=self._refresh_in_thread,
                    args=(fn, key, args, kwargs, flight),
                    name=f"resilient cache {self._name!r} refresh",
                    daemon=True,
                )
                with self._lock:
                    self._threads.add(thread)
                try:
                    thread.start()
                except BaseException:
                    with self._lock:
                        self._threads.discard(thread)
                    raise
            else:
                spawn(
                    library,
                    self._refresh_in_task,
                    fn,
                    key,
                    args,
                    kwargs,
                    flight,
                    name=f"cache {self._name}",
                    tasks=self._tasks,
                )
        except Exception as error:
            # No refresh runs (no thread to be had): nobody may wait for it, and the caller
            # still gets the stale value; the failure is counted like a refresh's own.
            self._abandon(flight)
            with self._lock:
                self._refresh_failures += 1
                self._last_error = f"the refresh could not start: {describe_error(error)}"
        except BaseException:
            self._abandon(flight)
            raise

    def _refresh_in_thread(
        self,
        fn: Callable[..., Any],
        key: Hashable,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: _Flight,
    ) -> None:
        try:
            self._lead_sync(fn, key, args, kwargs, flight, True)
        except Exception:
            pass  # counted, kept as last_error and in the state by _failed
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    async def _refresh_in_task(
        self,
        fn: Callable[..., Any],
        key: Hashable,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: _Flight,
    ) -> None:
        # A failure is counted, kept as last_error and moves the state (in _failed).
        with contextlib.suppress(Exception):
            await self._lead_async(fn, key, args, kwargs, flight, True)

    def wait_for_refreshes(self, timeout: float | None = None) -> bool:
        """Block until the background refreshes running in threads have ended (for tests
        and orderly shutdown); refreshes in event-loop tasks end with their loop.

        Args:
            timeout: Real seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            Whether none is left running.
        """
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        with self._lock:
            return not any(thread.is_alive() for thread in self._threads)

    # -- storing -----------------------------------------------------------------------------

    def _store(self, key: Hashable, entry: _Entry, now: float) -> None:
        """Store ``entry`` as the newest; evict beyond ``max_entries``. Lock held."""
        # Replaced in place and moved, never taken out and put back: a reader without the
        # lock must never find a stored key missing.
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        passed_over = 0
        while len(entries) > self._max_entries:
            old_key = next(iter(entries))
            old = entries[old_key]
            if old_key != key and old.used and now < old.dead_at and passed_over < len(entries):
                old.used = False  # read since stored: to the back of the line, once
                entries.move_to_end(old_key)
                passed_over += 1
                continue
            if old_key == key:  # everything older was passed over: the oldest of them goes
                entries.move_to_end(key)
                old_key = next(iter(entries))
            del entries[old_key]
            self._evictions += 1

    def _drop_dead(self, key: Hashable, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def get(self, key: Hashable) -> Cached[T] | None:
        """The stored value for ``key``, fresh or stale, without calling the provider.

        A read neither counts as a hit nor starts a refresh.

        Returns:
            The value with its age and status (``fresh`` or ``stale``), or ``None`` when
            there is none or it is dead.

        Raises:
            TypeError: ``key`` is unhashable.
        """
        entry = self._entries.get(self._checked(key))
        if entry is None:
            return None
        now = self._now()
        if now >= entry.dead_at:
            self._drop_dead(key, entry)
            return None
        entry.used = True
        status = _FRESH if now < entry.fresh_until else _STALE
        return Cached(entry.value, key, now - entry.fetched_at, status)

    def put(self, key: Hashable, value: T) -> None:
        """Store ``value`` for ``key`` as if the provider had just returned it.

        Raises:
            TypeError: ``key`` is unhashable, or ``freshness=`` returned no Freshness.
        """
        freshness = self._freshness_of(self._checked(key), value)
        now = self._now()
        with self._lock:
            self._store(key, _Entry(value, now, freshness), now)

    def invalidate(self, key: Hashable) -> bool:
        """Forget the value for ``key``; a fetch already in flight still stores its own.

        Returns:
            Whether there was one.

        Raises:
            TypeError: ``key`` is unhashable.
        """
        key = self._checked(key)
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._entries.clear()

    # -- reading -----------------------------------------------------------------------------

    @property
    def ttl(self) -> float:
        """The default time-to-live, in seconds."""
        return self._default.ttl

    def __len__(self) -> int:
        return len(self._entries)

    def _statistics(self, now: float) -> dict[str, Statistic]:
        default = self._default
        return {
            "hits": self._hits.value,
            "misses": self._misses.value,
            "stale_served": self._stale_served.value,
            "stale_on_error": self._stale_on_error.value,
            "refreshes": self._refreshes,
            "refresh_failures": self._refresh_failures,
            "coalesced": self._coalesced.value,
            "evictions": self._evictions,
            "entries": len(self._entries),
            "max_entries": self._max_entries,
            "ttl": default.ttl,
            "stale_while_revalidate": default.stale_while_revalidate,
            "stale_if_error": default.stale_if_error,
            "last_error": self._last_error,
        }

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock, and no calls or refreshes in flight (they run
        only in the parent). The stored values are the parent's copy."""
        super()._after_fork_in_child()
        self._flights = {}
        self._threads = set()
        self._tasks = set()
