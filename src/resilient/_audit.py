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

try:
    import fcntl
except ImportError:  # Windows: no flock, and no fork to share the file with
    fcntl = None  # type: ignore[assignment]

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


class AuditLog:
    """Streams a registry's transitions to a JSON Lines file, rotated by size.

    Each transition — with its reason, runbook and lineage — is appended as one line with
    one unbuffered write, so a crash loses nothing already decided. When the file would
    pass ``max_bytes`` it is renamed ``<path>.1`` (older files shift to ``.2``, ...) and a
    new one is started; at most ``backups`` old files are kept. Several processes may write
    the same path (a pre-fork server's workers): see the deployment guide for what holds
    then. :func:`read_audit_log` turns the files back into :class:`Transition` objects,
    oldest first.

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
        self._file: io.FileIO | None = self._open()
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
        data = line.encode("utf-8")
        with self._lock:
            if self._closed:
                return
            # Other processes may write the same path and rotate it: like logging's
            # WatchedFileHandler, write only to the file that is at the path now, and decide
            # rotation by its real size, which counts every process's lines. Transitions
            # are rare, so the few system calls this takes cost nothing that matters.
            file = self._current()
            try:
                if file.tell() and file.tell() + len(data) > self._max_bytes:
                    try:
                        file = self._rotate(file)
                    except OSError as error:
                        # Keep the transition: append past max_bytes rather than lose it,
                        # and say so (once per cause). A failed rotation never stops the
                        # trail.
                        self._rotation_failed(error)
                        file = self._current()
                _write_all(file, data)
            finally:
                _unlock(file)

    def _open(self) -> io.FileIO:
        # Unbuffered, in append mode: each line is one write() at the end of the file, so
        # the lines of several processes interleave only whole.
        return io.FileIO(self._path, "a")

    def _current(self) -> io.FileIO:
        """The open file at the path, shared-locked against a rotation by another process
        until the line is written; call holding ``_lock``. Its position is its size."""
        while True:
            file = self._file
            if file is None:  # a rotation failed earlier, or the child could not reopen
                file = self._file = self._open()
            _lock(file, exclusive=False)
            try:
                if _same_file(self._path, file):
                    file.seek(0, os.SEEK_END)
                    return file
            except BaseException:
                _unlock(file)
                raise
            # Another process rotated the file away (or the path is gone): follow the path.
            _unlock(file)
            self._file = None
            file.close()

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock, and the file opened again by the next write, so
        that the child's lock on the file (against a rotation by another process) is its
        own, not the parent's. The lines of both processes go to whichever file is at the
        path."""
        self._lock = threading.Lock()
        inherited, self._file = self._file, None
        if inherited is not None:
            # An unbuffered file has no internal lock a parent's thread could have held,
            # and closing the child's descriptor leaves the parent's untouched.
            inherited.close()

    def _rotate(self, file: io.FileIO) -> io.FileIO:
        """Rename the full ``file`` away and return the file now at the path, shared-locked;
        call holding ``_lock`` and a shared lock on ``file``.

        Raises:
            OSError: A rename failed; ``file`` is left unlocked and still at the path.
        """
        # Exclusive for the renames: no process is between its check of the path and its
        # write, and no other process rotates. flock cannot upgrade in place, so let go
        # first and look again: another process may have rotated meanwhile, and then this
        # one only follows the path.
        _unlock(file)
        _lock(file, exclusive=True)
        try:
            if _same_file(self._path, file):
                if fcntl is None:
                    # No flock to keep, and Windows renames or deletes no file that is
                    # open: close it first; the path is opened again below.
                    self._file = None
                    file.close()
                if self._backups == 0:
                    self._path.unlink(missing_ok=True)
                else:
                    for index in range(self._backups - 1, 0, -1):
                        older = self._numbered(index)
                        if older.exists():
                            older.replace(self._numbered(index + 1))
                    self._path.replace(self._numbered(1))
        finally:
            _unlock(file)
        return self._current()

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
            if self._file is not None:
                self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _same_file(path: Path, file: io.FileIO) -> bool:
    """Whether ``file`` is still the file at ``path`` (not renamed away, not deleted)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(file.fileno())
    return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)


def _lock(file: io.FileIO, *, exclusive: bool) -> None:
    if fcntl is not None:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)


def _unlock(file: io.FileIO) -> None:
    if fcntl is not None and not file.closed:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _write_all(file: io.FileIO, data: bytes) -> None:
    # One write() in append mode puts a line whole at the end. A regular file takes it
    # all at once unless the disk is full; then what is left follows, still whole in
    # order as far as this process is concerned.
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(f"could not append to {file.name!r}: the write made no progress")
        view = view[written:]


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
