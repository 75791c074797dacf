"""A progress bar for long simulations, on a terminal only."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]

_WIDTH = 30
"""Characters of the bar itself."""
_REDRAW_EVERY = 0.1
"""Real seconds between two redraws of one variant's bar."""


class ProgressBar:
    """Shows each variant's simulated time as a bar that fills, for ``run(progress=...)``.

    On a terminal the bar is redrawn in place (at most ten times a second) and ends with
    the real time the variant took; elsewhere (a log, CI) only that last line is written,
    so logs stay short.

    Args:
        stream: Where to write; standard error by default.
        interactive: Redraw in place; by default, whether ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        if interactive is None:
            isatty = getattr(self._stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self._interactive = interactive
        self._variant: str | None = None
        self._started = 0.0
        self._drawn = 0.0

    def __call__(self, variant: str, done: float, total: float) -> None:
        now = time.perf_counter()
        if variant != self._variant:
            self._variant, self._started, self._drawn = variant, now, 0.0
        finished = done >= total
        if not finished and (not self._interactive or now - self._drawn < _REDRAW_EVERY):
            return
        self._drawn = now
        share = 1.0 if total <= 0 else min(1.0, done / total)
        filled = round(share * _WIDTH)
        line = (
            f"{variant}: [{'#' * filled}{'.' * (_WIDTH - filled)}] "
            f"{share:4.0%} of {_simulated(total)} simulated"
        )
        if finished:
            line += f", {now - self._started:.1f} s real"
        if self._interactive:
            self._stream.write("\r\x1b[K" + line + ("\n" if finished else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def _simulated(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"
