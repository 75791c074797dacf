"""The one bridge between guards and the code they protect, sync and async.

A guard that admits calls (a breaker now; a bulkhead and a budget later) only decides:
``_enter`` admits a call (returning a permit) or raises :class:`RejectedError`, and one of
``_exit_ok`` / ``_exit_error`` / ``_exit_cancel`` tells it how the call ended. The drivers
here act: they run the function, sync or async, as a decorator, through ``call`` /
``call_async``, or around a ``with`` / ``async with`` block.

Control-flow exceptions (anything that is not an ``Exception``: cancellation,
``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) end the call as *cancelled*
and always propagate unchanged; the function's own exceptions propagate unchanged too.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from typing_extensions import ParamSpec

from ._guard import Guard, S

__all__ = ["NO_RESULT", "Admission"]

P = ParamSpec("P")
R = TypeVar("R")
Permit = TypeVar("Permit")


class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()
"""Passed to ``_exit_ok`` when a ``with`` block ended: there is no result to judge."""

# Permits of the ``with`` blocks open in this thread or task, innermost last.
_open_blocks: ContextVar[tuple[tuple[object, object], ...]] = ContextVar(
    "resilient_open_blocks", default=()
)


class Admission(Guard[S], Generic[S, Permit]):
    """A guard that admits or refuses each call and is told how it ended."""

    # -- what a pattern decides -----------------------------------------------------------

    @abc.abstractmethod
    def _enter(self) -> Permit:
        """Admit a call and return its permit, or raise a ``RejectedError``."""

    async def _enter_async(self) -> Permit:
        """Admit an async call; a pattern that queues callers overrides this."""
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

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or ``async def``), keeping its signature."""
        enter = self._enter
        exit_ok = self._exit_ok
        exit_error = self._exit_error
        exit_cancel = self._exit_cancel

        if inspect.iscoroutinefunction(fn):
            enter_async = self._enter_async
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
                permit = await enter_async()
                try:
                    result = await async_fn(*args, **kwargs)
                except Exception as error:
                    exit_error(permit, error)
                    raise
                except BaseException:
                    exit_cancel(permit)
                    raise
                exit_ok(permit, result)
                return result

            return cast(Callable[P, R], async_guarded)

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            permit = enter()
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                exit_error(permit, error)
                raise
            except BaseException:
                exit_cancel(permit)
                raise
            exit_ok(permit, result)
            return result

        return guarded

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through this guard and return its result."""
        permit = self._enter()
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            self._exit_error(permit, error)
            raise
        except BaseException:
            self._exit_cancel(permit)
            raise
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
        permit = await self._enter_async()
        try:
            result = await fn(*args, **kwargs)
        except Exception as error:
            self._exit_error(permit, error)
            raise
        except BaseException:
            self._exit_cancel(permit)
            raise
        self._exit_ok(permit, result)
        return result

    def __enter__(self) -> None:
        permit = self._enter()
        _open_blocks.set((*_open_blocks.get(), (self, permit)))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close_block(exc)

    async def __aenter__(self) -> None:
        permit = await self._enter_async()
        _open_blocks.set((*_open_blocks.get(), (self, permit)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close_block(exc)

    def _close_block(self, exc: BaseException | None) -> None:
        blocks = _open_blocks.get()
        for index in range(len(blocks) - 1, -1, -1):
            if blocks[index][0] is self:
                permit = cast(Permit, blocks[index][1])
                _open_blocks.set(blocks[:index] + blocks[index + 1 :])
                break
        else:
            raise RuntimeError(
                f"{type(self).__name__} {self.name!r}: a block was exited that was not "
                "entered in this thread or task"
            )
        if exc is None:
            self._exit_ok(permit, NO_RESULT)
        elif isinstance(exc, Exception):
            self._exit_error(permit, exc)
        else:
            self._exit_cancel(permit)
