"""The audit trail on disk: every transition as one line of JSON, rotated by size."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ._core import _fork
from ._core._errors import ConfigurationError
from ._core._events import Subscription
from ._core._guard import registry_and_clock
from ._core._registry import Registry
from ._core._state import Transition
from ._core._validate import check_count, check_flag

__all__ = ["DEFAULT_AUDIT_BACKUPS", "DEFAULT_AUDIT_MAX_BYTES", "AuditLog", "read_audit_log"]

logger = logging.getLogger("resilient")

DEFAULT_AUDIT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_AUDIT_BACKUPS = 5
# Each rotation renames every kept file in turn, so their number is bounded.
MAX_AUDIT_BACKUPS = 1000

# File objects a forked child stopped using: kept, never closed, because closing one
# flushes it under its own internal lock, which a thread of the parent may have held at
# the fork (and its buffer may hold that thread's half-written line).
_left_by_fork: list[object] = []


class AuditLog:
    """Streams a registry's transitions to a JSON Lines file, rotated by size.

    Each transition — with its reason, runbook and lineage — is appended as one line and
    flushed at once, so a crash loses nothing already decided. When the file would pass
    ``max_bytes`` it is renamed ``<path>.1`` (older files shift to ``.2``, ...) and a new one
    is started; at most ``backups`` old files are kept. :func:`read_audit_log` turns the
    files back into :class:`Transition` objects, oldest first.

    Args:
        path: The file to write (its folder must exist).
        registry: Whose transitions to record; the default registry if omitted.
        max_bytes: Size at which the file rotates (>= 1024).
        backups: How many rotated files to keep (0 to 1000).

    Raises:
        ConfigurationError: The folder does not exist, or a size is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        registry: Registry | None = None,
        max_bytes: int = DEFAULT_AUDIT_MAX_BYTES,
        backups: int = DEFAULT_AUDIT_BACKUPS,
    ) -> None:
        registry, _ = registry_and_clock(registry, None)
        self._path = _check_path(path)
        if not self._path.parent.is_dir():
            raise ConfigurationError(
                f"path must be in an existing folder (got {str(path)!r}; "
                f"{str(self._path.parent)!r} does not exist)"
            )
        self._max_bytes = check_count(max_bytes, "max_bytes", minimum=1024)
        self._backups = check_count(backups, "backups", minimum=0, maximum=MAX_AUDIT_BACKUPS)
        self._lock = threading.Lock()
        _drop_cut_line(self._path)
        self._file = self._path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._closed = False
        self._failures: set[tuple[type[OSError], str]] = set()
        self._subscription: Subscription | None = registry.subscribe(self.write)
        _fork.track(self)

    @property
    def path(self) -> Path:
        """The file being written."""
        return self._path

    def write(self, transition: Transition) -> None:
        """Append one transition (the registry calls this for every transition)."""
        line = json.dumps(transition.to_dict(), separators=(",", ":"), default=str) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            if self._closed:
                return
            if self._file.closed:  # a rotation failed earlier: try again to have a file
                self._file = self._path.open("a", encoding="utf-8")
                self._size = self._file.tell()
            if self._size and self._size + size > self._max_bytes:
                try:
                    self._rotate()
                except OSError as error:
                    # Keep the transition: append past max_bytes rather than lose it, and
                    # say so (once per cause).
                    self._rotation_failed(error)
            self._file.write(line)
            self._file.flush()
            self._size += size

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock and a file object of its own, opened again on the
        same path. Both processes then append whole lines to the same file; each rotates
        by its own count of the bytes it wrote."""
        self._lock = threading.Lock()
        if self._closed:
            return
        _left_by_fork.append(self._file)
        try:
            self._file = self._path.open("a", encoding="utf-8")
            self._size = self._file.tell()
        except OSError:
            # write() opens the file again when it finds it closed; until then, keep the
            # inherited object only as a marker.
            self._file = _closed_marker()

    def _rotate(self) -> None:
        self._file.close()
        try:
            if self._backups == 0:
                self._path.unlink(missing_ok=True)
            else:
                for index in range(self._backups - 1, 0, -1):
                    older = self._numbered(index)
                    if older.exists():
                        older.replace(self._numbered(index + 1))
                self._path.replace(self._numbered(1))
        finally:
            # Whatever happened to the old files, go on writing: a failed rotation is
            # reported (as a listener error) but never stops the trail.
            self._file = self._path.open("a", encoding="utf-8")
            self._size = self._file.tell()

    def _rotation_failed(self, error: OSError) -> None:
        key = (type(error), str(error))
        if key not in self._failures:
            self._failures.add(key)
            logger.error(
                "audit log %s could not rotate (%s); transitions go on being appended to it",
                self._path,
                error,
            )

    def _numbered(self, index: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{index}")

    def close(self) -> None:
        """Stop recording and close the file. Closing twice is harmless."""
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None
        with self._lock:
            self._closed = True
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _closed_marker() -> io.TextIOWrapper:
    """A closed text file: tells write() to open the path again."""
    marker = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    marker.close()
    return marker


def read_audit_log(path: str | os.PathLike[str], *, rotated: bool = True) -> list[Transition]:
    """The transitions of an audit log, oldest first.

    Args:
        path: The file :class:`AuditLog` wrote.
        rotated: Also read its rotated files (``<path>.N`` ... ``<path>.1``) first.

    Raises:
        FileNotFoundError: Neither the file nor any rotated file exists: a mistyped path
            must not read as "nothing happened".
        ValueError: A line is not a transition; the message names the file and line.
        ConfigurationError: ``path`` is not a path.
    """
    rotated = check_flag(rotated, "rotated")
    base = _check_path(path)
    files: list[Path] = []
    if rotated and base.parent.is_dir():
        prefix = base.name + "."
        numbered = [
            (int(p.name[len(prefix) :]), p)
            for p in base.parent.iterdir()
            if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit() and p.is_file()
        ]
        files.extend(p for _, p in sorted(numbered, reverse=True))
    if base.exists():
        files.append(base)
    if not files:
        beside = f", nor a rotated {base.name}.1, .2, ... beside it" if rotated else ""
        # Reads "[Errno 2] no audit log here, ...; check the path: '<path>'".
        raise FileNotFoundError(
            errno.ENOENT, f"no audit log here{beside}; check the path", str(base)
        )
    return [transition for file in files for transition in _read(file)]


def _check_path(path: object) -> Path:
    """``path`` as a :class:`Path`, or a ConfigurationError naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(
            f"path must be a str or os.PathLike, e.g. 'audit.jsonl' "
            f"(got {type(path).__name__} {path!r})"
        )
    return Path(path)


def _drop_cut_line(path: Path) -> None:
    """Remove a last line cut short by a crash, so that appending starts on a whole line.

    The cut line never held a whole transition; it is reported, not kept, because a line
    appended to it would be unreadable too.
    """
    if not path.is_file():
        return
    with path.open("rb+") as raw:
        size = raw.seek(0, os.SEEK_END)
        if size == 0:
            return
        raw.seek(size - 1)
        if raw.read(1) == b"\n":
            return
        # Find the end of the last whole line.
        position = size
        keep = 0
        while position > 0:
            step = min(4096, position)
            position -= step
            raw.seek(position)
            chunk = raw.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = position + newline + 1
                break
        raw.truncate(keep)
    logger.warning(
        "audit log %s ended with a line cut short (%d bytes, not a whole transition); "
        "removed it before appending",
        path,
        size - keep,
    )


def _read(file: Path) -> Iterator[Transition]:
    # Bytes, decoded line by line, so that a bad byte is reported with its file and line.
    with file.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if not raw.endswith(b"\n"):
                    return  # cut short by a crash, maybe inside a character
                raise ValueError(f"{file}:{number} is not UTF-8 text: {error}") from error
            if not line.strip():
                continue
            try:
                yield Transition.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                if not line.endswith("\n"):
                    return  # a last line cut short by a crash: everything before it stands
                raise ValueError(f"{file}:{number} is not a transition: {error}") from error
