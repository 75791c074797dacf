"""The one bridge between guards and the code they protect, sync and async.

Two kinds of pattern meet their code here. A guard that admits calls (a breaker now; a
bulkhead and a budget later) only decides: ``_enter`` admits a call (returning a permit)
or raises :class:`RejectedError`, and one of ``_exit_ok`` / ``_exit_error`` /
``_exit_cancel`` tells it how the call ended. A retrying pattern answers, after each
attempt, how long to wait before the next one or that there is none.

The drivers here act: they run the function, sync or async, as a decorator, through
``call`` / ``call_async``, or around a block, and they do all the waiting, on the
pattern's clock, skipping the sleep entirely for a zero wait. In test mode
(:mod:`._test_mode`) they skip every retry wait on a clock that takes real time; an async
driver still passes a checkpoint there, so cancellation reaches it as it would a sleep.

Control-flow exceptions (anything that is not an ``Exception``: cancellation,
``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) end the call as *cancelled*
and always propagate unchanged; the function's own exceptions propagate unchanged too.
"""

from __future__ import annotations

import abc
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Generic, NoReturn, Protocol, TypeAlias, TypeVar, cast

from anyio.lowlevel import checkpoint
from typing_extensions import ParamSpec

from ._clock import Clock
from ._counter import Tally
from ._events import ListenerSet
from ._guard import Guard, S
from ._test_mode import skips_waits

__all__ = [
    "NO_RESULT",
    "Admission",
    "Admits",
    "Attempt",
    "Attempts",
    "Retrying",
    "reraise_unwrapped",
    "retry_call",
    "retry_call_async",
]

P = ParamSpec("P")
R = TypeVar("R")
Permit = TypeVar("Permit")


class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()
"""Passed to ``_exit_ok`` when a ``with`` block ended: there is no result to judge."""


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` function, a partial of
    one, or an object whose ``__call__`` is ``async def``.

    Raises:
        TypeError: ``fn`` is not callable, or is a generator function or an object whose
            ``__call__`` is one (whose body would run only after the guard has already
            counted the call).
    """
    if fn.__class__ is types.FunctionType and not (
        fn.__code__.co_flags & _NOT_PLAIN
        or "_is_coroutine_marker" in fn.__dict__  # inspect.markcoroutinefunction (3.12)
    ):
        return False  # a plain def, what call() is given on every call: no inspect frames
    if inspect.iscoroutinefunction(fn):
        return True  # call_async asks on every call
    if not callable(fn):
        raise TypeError(f"a guard wraps a callable (got {fn!r})")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        _refuse_generator(fn)
    if type(fn) in _PLAIN_FUNCTIONS:
        return False  # its __call__ is the interpreter's own
    call = type(fn).__call__
    if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
        _refuse_generator(fn)
    return inspect.iscoroutinefunction(call)


_PLAIN_FUNCTIONS = frozenset({types.FunctionType, types.MethodType, types.BuiltinFunctionType})
_NOT_PLAIN = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def _refuse_generator(fn: object) -> NoReturn:
    raise TypeError(
        f"{fn!r} is a generator function: its body runs only when iterated, after the "
        "guard has counted the call. Guard the function that consumes it instead"
    )


def reraise_unwrapped(group: BaseException) -> NoReturn:
    """Raise what escaped a task group whose tasks keep their own errors: a lone
    control-flow exception (``KeyboardInterrupt``, ``SystemExit``) as itself, unwrapped
    from the group the task group put it in; anything else as it is."""
    inner = getattr(group, "exceptions", None)
    if inner and len(inner) == 1 and not isinstance(inner[0], Exception):
        raise inner[0] from None
    raise group


# A sync function that returns a coroutine (a lambda or a decorator around an async
# function) has not run yet when it returns: counting that as a success would hide every
# failure. One type check per call, on the result only.
_COROUTINE = types.CoroutineType


class _CoroutineReturned(TypeError):
    """The refusal of a coroutine returned by a sync function.

    Every guard it passes through counts no outcome (as for a cancellation), however the
    guards are nested and whether or not calls are timed: the function has not run, so
    there is nothing to judge. It presents itself as the ``TypeError`` it is, so
    tracebacks and ``CallEnded.error_type`` show what the caller catches.
    """

    __module__ = "builtins"
    __qualname__ = "TypeError"

    def __reduce__(self) -> tuple[type[TypeError], tuple[Any, ...]]:
        # Pickled (to another process) as the plain TypeError it presents itself as.
        return TypeError, self.args


_CoroutineReturned.__name__ = "TypeError"


def _refuse_coroutine(fn: object, result: Coroutine[Any, Any, Any]) -> NoReturn:
    result.close()  # it will never be awaited; closing it spares a RuntimeWarning
    raise _CoroutineReturned(
        f"{fn!r} is not `async def` but returned a coroutine, which the guard cannot await "
        "or judge: declare it `async def` (awaiting what it returns) so that its outcome counts"
    )


def _refuse_async(fn: object, method: str) -> None:
    raise TypeError(
        f"{fn!r} is async: use `await guard.{method}_async(...)` (or decorate it) instead of "
        f"guard.{method}(...), which would only count the creation of a coroutine"
    )


# The ``with`` blocks of this thread or task, innermost first, as a linked stack of
# [guard, permit, the block's start when its guard times calls (else None), the blocks
# outside it]. Entering a block is one ContextVar.set; leaving it sets nothing: the
# block's entry is marked done (guard None) where it stands, and the next block entered
# here steps over it. (A ContextVar.set costs more than the rest of a block's
# bookkeeping.) Only the context that entered a block leaves it, so a task or thread
# that inherited the stack never sees an entry change but from open to done.
_open_blocks: ContextVar[list[Any] | None] = ContextVar("resilient_open_blocks", default=None)

# The listeners of what is no guard and times nothing: nobody. (A bulkhead's partitions
# take their bulkhead's listeners and are timed as its calls.)
_NOBODY = ListenerSet()


Refusing: TypeAlias = tuple[
    str, str, float, Callable[[], float], Tally, Callable[[str, float, str], BaseException]
]
"""A pattern's standing decision, for the drivers to carry out on their own:
``(guard, state, until, now, refused, error)``: refuse every call until ``until`` on the
clock ``now``, counting each refusal in the tally ``refused`` and raising
``error(guard, retry_after, state)``.

It never changes once published; the pattern replaces it (or sets ``None``) when its
state moves, so a driver reads it once per call. A plain tuple, which a driver unpacks in
one specialised step (a tuple subclass, such as a NamedTuple, would not be).
"""


class Admits(Generic[Permit]):
    """How code meets a pattern that admits each call: decorator, ``call``, ``with``.

    A subclass decides through ``_enter`` (sync, may block), ``_enter_nowait`` (never
    waits: a permit, or ``None`` when an async caller must wait in ``_enter_async``) and
    the three ``_exit_*`` methods. Guards get this through :class:`Admission`; views that
    are not guards themselves (a bulkhead's partitions) use it directly, and time their
    calls through their guard's ``_started`` and ``_call_ended``.

    Every spelling reads ``_listeners.times_calls`` once per call: while some listener
    takes :class:`CallEnded`, the call goes through a timed twin that publishes one;
    otherwise that attribute read is all it costs.

    Two attributes let a pattern decide the common cases without a call. The decorator
    and ``call`` read them first, on every call:

    - ``_standing_permit``: a permit that every call gets without asking, or ``None`` when
      ``_enter`` must decide. When it (or any permit) is a :class:`Tally`, a call that
      returns ends with ``next(permit)`` instead of ``_exit_ok``: all its success needs.
    - ``_refusing``: ``None``, or a :data:`Refusing`: every call is refused until a
      known time (an open breaker). The driver refuses on its own, in its own frame,
      which spares a refused call a frame of unwinding; from that time on, the calls go
      to ``_enter`` again.

    ``_enter`` still decides everything on its own, for the spellings that do not look.
    """

    __slots__ = ()

    _listeners: ListenerSet = _NOBODY
    _standing_permit: Any = None
    _refusing: Refusing | None = None

    def _announce_refusal(self, state: str, retry_after: float | None, now: float | None) -> None:
        """Publish the :class:`Refusal` of a call; only while a listener takes them."""

    def _refuse_watched(self, refusing: Refusing, retry_after: float) -> NoReturn:
        """Carry out a standing refusal that listeners watch: publish its
        :class:`Refusal` and the refused call's :class:`CallEnded` to those that take them,
        and raise it."""
        name, state, until, _, _, refusal = refusing
        at = until - retry_after  # when the driver read the clock
        listeners = self._listeners
        if listeners.hears_refusals:
            self._announce_refusal(state, retry_after, at)
        error = refusal(name, retry_after, state)
        try:
            if listeners.times_calls:
                self._call_ended(at, error, refused=True)
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through the local

    @property
    def name(self) -> str:
        """The name used in error messages."""
        raise NotImplementedError

    # -- what a pattern decides -----------------------------------------------------------

    @abc.abstractmethod
    def _enter(self) -> Permit:
        """Admit a sync call (blocking while it waits) and return its permit, or raise a
        ``RejectedError``."""

    def _enter_nowait(self) -> Permit | None:
        """Admit a call at once, refuse it, or return None when it has to wait."""
        return self._enter()

    async def _enter_async(self) -> Permit:
        """Admit an async call that has to wait; only called after ``_enter_nowait``
        returned None."""
        return self._enter()

    @abc.abstractmethod
    def _exit_ok(self, permit: Permit, result: object) -> None:
        """The call returned ``result`` (``NO_RESULT`` for a block)."""

    @abc.abstractmethod
    def _exit_error(self, permit: Permit, error: Exception) -> None:
        """The call raised ``error``."""

    @abc.abstractmethod
    def _exit_cancel(self, permit: Permit) -> None:
        """The call was cancelled or interrupted; it counts as no outcome."""

    # -- how the driver acts --------------------------------------------------------------
    # The decorator's closures and call()/call_async() spell the same steps out on purpose:
    # a shared helper would add a Python frame to every guarded call.

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature."""
        # The closures below hold three cells (the guard, its listeners, the function) and
        # look everything else up as they go: a call copies every cell of its closure into
        # its frame, and a dozen of them cost more than the lookups they would save.
        guard = self
        listeners = self._listeners

        if is_async_callable(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
                refusing = guard._refusing
                if refusing is not None:
                    name, state, until, now, refusals, refusal = refusing
                    retry_after = until - now()
                    if retry_after > 0:
                        next(refusals)
                        if listeners.watches_refusals:
                            guard._refuse_watched(refusing, retry_after)
                        raise refusal(name, retry_after, state)
                if listeners.times_calls:
                    return await guard._run_timed_async(async_fn, args, kwargs)
                permit = guard._standing_permit
                if permit is None:
                    permit = guard._enter_nowait()
                    if permit is None:
                        permit = await guard._enter_async()
                try:
                    result = await async_fn(*args, **kwargs)
                except Exception as error:
                    # A coroutine refused by a guard inside: checked only when it failed.
                    if error.__class__ is _CoroutineReturned:
                        guard._exit_cancel(permit)
                    else:
                        guard._exit_error(permit, error)
                    permit = None  # a kept traceback must not keep a tally alive
                    raise
                except BaseException:
                    guard._exit_cancel(permit)
                    permit = None  # a kept traceback must not keep a tally alive
                    raise
                if permit.__class__ is Tally:
                    next(permit)
                else:
                    guard._exit_ok(permit, result)
                return result

            return cast(Callable[P, R], async_guarded)

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            refusing = guard._refusing
            if refusing is not None:
                name, state, until, now, refusals, refusal = refusing
                retry_after = until - now()
                if retry_after > 0:
                    next(refusals)
                    if listeners.watches_refusals:
                        guard._refuse_watched(refusing, retry_after)
                    raise refusal(name, retry_after, state)
            if listeners.times_calls:
                return cast(R, guard._run_timed(fn, args, kwargs))
            permit = guard._standing_permit
            if permit is None:
                permit = guard._enter()
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is _CoroutineReturned:
                    guard._exit_cancel(permit)
                else:
                    guard._exit_error(permit, error)
                permit = None  # a kept traceback must not keep a tally alive
                raise
            except BaseException:
                guard._exit_cancel(permit)
                permit = None  # a kept traceback must not keep a tally alive
                raise
            if result.__class__ is _COROUTINE:
                guard._exit_cancel(permit)
                _refuse_coroutine(fn, result)  # type: ignore[arg-type]
            if permit.__class__ is Tally:
                next(permit)
            else:
                guard._exit_ok(permit, result)
            return result

        return guarded

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through this guard and return its result."""
        if is_async_callable(fn):
            _refuse_async(fn, "call")
        refusing = self._refusing
        if refusing is not None:
            name, state, until, now, refusals, refusal = refusing
            retry_after = until - now()
            if retry_after > 0:
                next(refusals)
                if self._listeners.watches_refusals:
                    self._refuse_watched(refusing, retry_after)
                raise refusal(name, retry_after, state)
        if self._listeners.times_calls:
            return cast(R, self._run_timed(fn, args, kwargs))
        permit = self._standing_permit
        if permit is None:
            permit = self._enter()
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            if error.__class__ is _CoroutineReturned:
                self._exit_cancel(permit)
            else:
                self._exit_error(permit, error)
            permit = None  # a kept traceback must not keep a tally alive
            raise
        except BaseException:
            self._exit_cancel(permit)
            permit = None  # a kept traceback must not keep a tally alive
            raise
        if result.__class__ is _COROUTINE:
            self._exit_cancel(permit)
            _refuse_coroutine(fn, result)  # type: ignore[arg-type]
        if permit.__class__ is Tally:
            next(permit)
        else:
            self._exit_ok(permit, result)
        return result

    async def call_async(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]] | Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through this guard and return its result."""
        if not is_async_callable(fn):
            raise TypeError(
                f"{fn!r} is not async: use guard.call(...) for it; awaiting what it returns "
                "would count a call that already ran as a failure"
            )
        refusing = self._refusing
        if refusing is not None:
            name, state, until, now, refusals, refusal = refusing
            retry_after = until - now()
            if retry_after > 0:
                next(refusals)
                if self._listeners.watches_refusals:
                    self._refuse_watched(refusing, retry_after)
                raise refusal(name, retry_after, state)
        if self._listeners.times_calls:
            return cast(R, await self._run_timed_async(fn, args, kwargs))
        permit = self._standing_permit
        if permit is None:
            permit = self._enter_nowait()
            if permit is None:
                permit = await self._enter_async()
        try:
            result = await fn(*args, **kwargs)
        except Exception as error:
            if error.__class__ is _CoroutineReturned:
                self._exit_cancel(permit)
            else:
                self._exit_error(permit, error)
            permit = None  # a kept traceback must not keep a tally alive
            raise
        except BaseException:
            self._exit_cancel(permit)
            permit = None  # a kept traceback must not keep a tally alive
            raise
        if permit.__class__ is Tally:
            next(permit)
        else:
            self._exit_ok(permit, result)
        return result

    def __enter__(self) -> None:
        if self._listeners.times_calls:
            began = self._started()
            started: float | None = began
            try:
                permit = self._enter()
            except BaseException as error:
                self._call_ended(began, error, refused=True)
                raise
        else:
            started = None
            permit = self._standing_permit
            if permit is None:
                permit = self._enter()
        outer = _open_blocks.get()
        while outer is not None and outer[0] is None:
            outer = outer[3]
        _open_blocks.set([self, permit, started, outer])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The innermost block, this guard's and ended normally, spelled out: no frame more.
        top = _open_blocks.get()
        if exc is None and top is not None and top[0] is self and top[2] is None:
            permit = top[1]
            top[0] = top[1] = None  # done
            if permit.__class__ is Tally:
                next(permit)
            else:
                self._exit_ok(permit, NO_RESULT)
            return
        self._close_block(exc)

    async def __aenter__(self) -> None:
        if self._listeners.times_calls:
            began = self._started()
            started: float | None = began
            try:
                permit = self._enter_nowait()
                if permit is None:
                    permit = await self._enter_async()
            except BaseException as error:
                self._call_ended(began, error, refused=True)
                raise
        else:
            started = None
            permit = self._standing_permit
            if permit is None:
                permit = self._enter_nowait()
                if permit is None:
                    permit = await self._enter_async()
        outer = _open_blocks.get()
        while outer is not None and outer[0] is None:
            outer = outer[3]
        _open_blocks.set([self, permit, started, outer])

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close_block(exc)

    def _close_block(self, exc: BaseException | None) -> None:
        # The innermost open block of this guard; blocks of other guards inside it (left
        # open by a generator, say) stay open.
        block = _open_blocks.get()
        while block is not None and block[0] is not self:
            block = block[3]
        if block is None:
            raise RuntimeError(
                f"{type(self).__name__} {self.name!r}: a block was exited that was not "
                "entered in this thread or task"
            )
        permit = cast(Permit, block[1])
        started = block[2]
        block[0] = block[1] = None  # done
        if exc is None:
            if permit.__class__ is Tally:
                next(permit)  # type: ignore[call-overload]
            else:
                self._exit_ok(permit, NO_RESULT)
        else:
            self._exit_raised(permit, exc)
        if started is not None:
            self._call_ended(started, exc)

    def _exit_raised(self, permit: Permit, error: BaseException) -> None:
        """Tell the pattern how a call that raised ``error`` ended: a failure, or no
        outcome for a cancellation and for a coroutine refused inside."""
        if isinstance(error, Exception) and error.__class__ is not _CoroutineReturned:
            self._exit_error(permit, error)
        else:
            self._exit_cancel(permit)

    # -- timed twins: only while a listener takes CallEnded -------------------------------
    # The untimed spellings above stay apart for speed; these twins may pay a frame or two
    # (they are opt-in and publish an event per call anyway), so they share the exits.

    def _started(self) -> float:
        """The start of a timed call; only called while ``_listeners.times_calls``, so
        never for a subclass that keeps the default listeners (nobody)."""
        raise NotImplementedError

    def _call_ended(
        self, started: float, error: BaseException | None, *, refused: bool = False
    ) -> None:
        """Publish the :class:`CallEnded` of a call that started at ``started``."""

    def _run_timed(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """A sync call, as ``call`` runs it, that publishes a :class:`CallEnded`."""
        started = self._started()
        try:
            permit = self._enter()
        except BaseException as error:
            self._call_ended(started, error, refused=True)
            raise
        try:
            result = fn(*args, **kwargs)
            if result.__class__ is _COROUTINE:
                _refuse_coroutine(fn, result)
        except BaseException as error:
            self._exit_raised(permit, error)
            del permit  # a kept traceback must not keep a tally alive
            self._call_ended(started, error)
            raise
        self._exit_ok(permit, result)
        self._call_ended(started, None)
        return result

    async def _run_timed_async(
        self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
    ) -> Any:
        """The async twin of :meth:`_run_timed`."""
        started = self._started()
        try:
            permit = self._enter_nowait()
            if permit is None:
                permit = await self._enter_async()
        except BaseException as error:
            self._call_ended(started, error, refused=True)
            raise
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            self._exit_raised(permit, error)
            del permit  # a kept traceback must not keep a tally alive
            self._call_ended(started, error)
            raise
        self._exit_ok(permit, result)
        self._call_ended(started, None)
        return result


class Admission(Guard[S], Admits[Permit], Generic[S, Permit]):
    """A guard that admits or refuses each call and is told how it ended."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The drivers read both on every call: as attributes of the instance, not
        # defaults of the class, so that CPython 3.11 specialises the reads. (A subclass
        # that declares __slots__ must name both, as the circuit breaker does.)
        self._standing_permit = None
        self._refusing = None  # type: ignore[misc]
        super().__init__(*args, **kwargs)

    def _started(self) -> float:
        return self._clock.monotonic()


def admit_both(outer: Admits[Any], inner: Admits[Any], fn: Callable[P, R]) -> Callable[P, R]:
    """``outer(inner(fn))`` in one wrapper: the same decisions in the same order, without
    the middle frame. Pipelines use it for guards that sit next to each other."""
    outer_enter, inner_enter = outer._enter, inner._enter
    outer_ok, outer_error, outer_cancel = outer._exit_ok, outer._exit_error, outer._exit_cancel
    inner_ok, inner_error, inner_cancel = inner._exit_ok, inner._exit_error, inner._exit_cancel
    # While calls are timed, each guard times its own through the plain nesting.
    listeners = outer._listeners
    nested = outer(inner(fn))
    refused = _CoroutineReturned

    if is_async_callable(fn):
        outer_nowait, inner_nowait = outer._enter_nowait, inner._enter_nowait
        outer_async, inner_async = outer._enter_async, inner._enter_async
        async_fn = cast(Callable[P, Awaitable[Any]], fn)

        @functools.wraps(fn)
        async def async_both(*args: P.args, **kwargs: P.kwargs) -> Any:
            if listeners.times_calls:
                return await cast(Callable[P, Awaitable[Any]], nested)(*args, **kwargs)
            first = outer_nowait()
            if first is None:
                first = await outer_async()
            try:
                second = inner_nowait()
                if second is None:
                    second = await inner_async()
            except Exception as error:
                outer_error(first, error)
                first = second = None  # a kept traceback must not keep a tally alive
                raise
            except BaseException:
                outer_cancel(first)
                first = second = None  # a kept traceback must not keep a tally alive
                raise
            try:
                result = await async_fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is refused:
                    inner_cancel(second)
                    outer_cancel(first)
                else:
                    inner_error(second, error)
                    outer_error(first, error)
                first = second = None  # a kept traceback must not keep a tally alive
                raise
            except BaseException:
                inner_cancel(second)
                outer_cancel(first)
                first = second = None  # a kept traceback must not keep a tally alive
                raise
            inner_ok(second, result)
            outer_ok(first, result)
            return result

        return cast(Callable[P, R], async_both)

    @functools.wraps(fn)
    def both(*args: P.args, **kwargs: P.kwargs) -> R:
        if listeners.times_calls:
            return nested(*args, **kwargs)
        first = outer_enter()
        try:
            second = inner_enter()
        except Exception as error:
            outer_error(first, error)
            first = second = None  # a kept traceback must not keep a tally alive
            raise
        except BaseException:
            outer_cancel(first)
            first = second = None  # a kept traceback must not keep a tally alive
            raise
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            if error.__class__ is refused:
                inner_cancel(second)
                outer_cancel(first)
            else:
                inner_error(second, error)
                outer_error(first, error)
            first = second = None  # a kept traceback must not keep a tally alive
            raise
        except BaseException:
            inner_cancel(second)
            outer_cancel(first)
            first = second = None  # a kept traceback must not keep a tally alive
            raise
        if result.__class__ is _COROUTINE:
            inner_cancel(second)
            outer_cancel(first)
            _refuse_coroutine(fn, result)  # type: ignore[arg-type]
        inner_ok(second, result)
        outer_ok(first, result)
        return result

    return both


# -- retrying ----------------------------------------------------------------------------------


class Retrying(Protocol):
    """What a retrying pattern answers; the drivers below do the waiting and the calling."""

    @property
    def clock(self) -> Clock: ...

    def _begin(self, operation: str) -> Any: ...

    def _activate(self, call: Any) -> None: ...

    def _deactivate(self, call: Any) -> None: ...

    def _new_call(self, operation: str) -> Any: ...

    def _accept(self, call: Any, result: object, operation: str) -> bool: ...

    def _on_error(self, call: Any, error: Exception) -> float | None: ...

    def _on_bad_result(self, call: Any, result: object) -> float: ...

    def _before_retry(self, call: Any) -> None: ...

    def _call_ended(
        self, started: float, error: BaseException | None, *, refused: bool = False
    ) -> None: ...


def _retry_wait(clock: Clock, wait: float) -> None:
    """Wait before a retry, unless test mode skips it."""
    if not skips_waits(clock):
        clock.sleep(wait)


async def _retry_wait_async(clock: Clock, wait: float) -> None:
    """Wait before a retry; in test mode only a checkpoint, so cancellation still lands."""
    if skips_waits(clock):
        await checkpoint()
    else:
        await clock.sleep_async(wait)


def retry_call(
    policy: Retrying,
    fn: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    operation: str,
    resume: tuple[Any, float] | None = None,
) -> R:
    """Run ``fn`` until it succeeds or ``policy`` stops it, sleeping between attempts.

    ``resume`` is ``(call, wait)`` when the caller has begun the call (``_begin`` gave
    None: no deadline or budget to carry) and made the first attempt itself, which the
    policy answered with ``wait``: the loop goes on from that wait. A decorator does so to
    keep a first success to its own frame.
    """
    if resume is None:
        call = policy._begin(operation)  # None unless the call carries a deadline or budget
        scoped = call
        wait: float | None = None  # no attempt made yet
    else:
        call, wait = resume
        scoped = None
    if scoped is not None:
        policy._activate(scoped)
    try:
        while True:
            if wait is not None:
                if wait > 0:
                    _retry_wait(policy.clock, wait)
                policy._before_retry(call)
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is _CoroutineReturned:
                    raise  # a mistake in the code, refused by a guard inside: not retried
                if call is None:
                    call = policy._new_call(operation)
                wait = policy._on_error(call, error)
                if wait is None:
                    raise
            else:
                if result.__class__ is _COROUTINE:
                    _refuse_coroutine(fn, result)  # type: ignore[arg-type]
                if policy._accept(call, result, operation):
                    return result
                if call is None:
                    call = policy._new_call(operation)
                wait = policy._on_bad_result(call, result)
    finally:
        if scoped is not None:
            policy._deactivate(scoped)


async def retry_call_async(
    policy: Retrying,
    fn: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    operation: str,
    resume: tuple[Any, float] | None = None,
) -> R:
    """The async twin of :func:`retry_call`; each wait is a cancellation point."""
    if resume is None:
        call = policy._begin(operation)
        scoped = call
        wait: float | None = None
    else:
        call, wait = resume
        scoped = None
    if scoped is not None:
        policy._activate(scoped)
    try:
        while True:
            if wait is not None:
                if wait > 0:
                    await _retry_wait_async(policy.clock, wait)
                policy._before_retry(call)
            try:
                result = await fn(*args, **kwargs)
            except Exception as error:
                if error.__class__ is _CoroutineReturned:
                    raise  # a mistake in the code, refused by a guard inside: not retried
                if call is None:
                    call = policy._new_call(operation)
                wait = policy._on_error(call, error)
                if wait is None:
                    raise
            else:
                if policy._accept(call, result, operation):
                    return result
                if call is None:
                    call = policy._new_call(operation)
                wait = policy._on_bad_result(call, result)
    finally:
        if scoped is not None:
            policy._deactivate(scoped)


class Attempt:
    """One attempt of a retried block: use it as ``with attempt:``."""

    __slots__ = ("_attempts", "number")

    def __init__(self, attempts: Attempts, number: int) -> None:
        self._attempts = attempts
        self.number: int = number
        """1 for the first attempt."""

    def __enter__(self) -> Attempt:
        self._attempts._started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return self._attempts._ended(exc)

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


class Attempts:
    """Iterates over the attempts of a retried block, sync (``for``) or async (``async for``).

    The block's exception is swallowed only when a retry follows; otherwise it propagates
    out of the ``with`` block (with the policy's note on it). A block that ends normally
    ends the loop.
    """

    __slots__ = (
        "_call",
        "_done",
        "_number",
        "_operation",
        "_policy",
        "_scoped",
        "_since",
        "_wait",
    )

    def __init__(self, policy: Retrying, operation: str, since: float | None = None) -> None:
        self._policy = policy
        self._operation = operation
        # When the block is timed (a listener takes CallEnded): its start; the one
        # CallEnded goes out when the loop ends, however it ends.
        self._since = since
        self._call: Any = policy._begin(operation)
        self._scoped = self._call is not None
        self._number = 0
        self._wait: float | None = None
        self._done = False

    def __iter__(self) -> Attempts:
        return self

    def __aiter__(self) -> Attempts:
        return self

    def __next__(self) -> Attempt:
        wait = self._next_wait()
        if wait:
            try:
                _retry_wait(self._policy.clock, wait)
            except BaseException as error:  # interrupted: the block ends here
                self._end(error)
                raise
        return self._next_attempt()

    async def __anext__(self) -> Attempt:
        try:
            wait = self._next_wait()
        except StopIteration:
            raise StopAsyncIteration from None
        if wait:
            try:
                await _retry_wait_async(self._policy.clock, wait)
            except BaseException as error:  # cancelled: the block ends here
                self._end(error)
                raise
        return self._next_attempt()

    def _end(self, error: BaseException | None) -> None:
        """The loop is over: no further attempt, and its CallEnded (if timed) goes out."""
        self._done = True
        since = self._since
        if since is not None:
            self._since = None
            self._policy._call_ended(since, error)

    def _next_wait(self) -> float | None:
        if self._done or (self._number and self._wait is None):
            self._done = True
            raise StopIteration
        return self._wait

    def _next_attempt(self) -> Attempt:
        if self._number:
            self._policy._before_retry(self._call)
        self._wait = None
        self._number += 1
        return Attempt(self, self._number)

    def _started(self) -> None:
        # The deadline and budget are in force inside each attempt's block only, so a loop
        # left early (break, return) leaves nothing behind in the context.
        if self._scoped:
            self._policy._activate(self._call)

    def _ended(self, exc: BaseException | None) -> bool:
        policy = self._policy
        if self._scoped:
            policy._deactivate(self._call)
        if exc is None:
            policy._accept(self._call, NO_RESULT, self._operation)
            self._end(None)
            return False
        if not isinstance(exc, Exception) or exc.__class__ is _CoroutineReturned:
            self._end(exc)
            return False
        if self._call is None:
            self._call = policy._new_call(self._operation)
        self._wait = policy._on_error(self._call, exc)
        if self._wait is None:
            self._end(exc)
            return False
        return True
