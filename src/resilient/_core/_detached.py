"""Work that outlives the call that started it: one task on the caller's event loop."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["current_library", "event_loop", "in_event_loop", "spawn"]


def current_library() -> str:
    """``"trio"`` inside a trio run, else ``"asyncio"`` (anyio's two backends), without
    sniffio, which is no dependency of anyio's any more."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return "asyncio"


def in_event_loop() -> bool:
    """Whether the calling code runs inside an event loop (asyncio's or trio's), where
    a blocking call would hold up every other task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return current_library() == "trio"
    return True


def event_loop(library: str) -> object:
    """The identity of the running event loop: tasks coalesce with tasks of the same one."""
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


def spawn(
    library: str,
    fn: Callable[..., Coroutine[Any, Any, None]],
    *args: object,
    name: str,
    tasks: set[asyncio.Task[None]],
) -> None:
    """Run ``fn(*args)`` as a task of its own on the running event loop of ``library``.

    Under trio a system task (it must catch its own errors: one that escapes ends the
    run); under asyncio a task kept in ``tasks`` until it ends, since asyncio keeps only
    weak references to tasks. Both run in a copy of the caller's context, so the work sees
    the caller's context variables.
    """
    if library == "trio":
        import trio

        trio.lowlevel.spawn_system_task(fn, *args, name=name, context=contextvars.copy_context())
        return
    task = asyncio.get_running_loop().create_task(fn(*args), name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
