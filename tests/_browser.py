"""Headless chromium for the tests that render a page in a real browser.

- :func:`find_chromium`: Debian's ``/usr/bin/chromium``, or one on ``PATH``.
- :func:`require`: the binary; without one, skip naming the package to install, except under
  ``CI=true``, where a missing browser is a failure (``.ci/run`` installs it).
- :func:`run_chromium`: one headless run with its own profile, bounded in time; on timeout
  its whole process group is killed and the test fails.
- :func:`png_size`: the width and height a PNG file declares.

Screenshots are kept under :data:`ARTIFACTS` (``.artifacts/`` at the repository's root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"
BROWSER_RUN = 90.0
"""Real seconds one chromium run may take: a bound, never an expectation."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_chromium() -> str | None:
    """The chromium binary, or ``None`` where none is installed."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def require(binary: str | None) -> str:
    """``binary``; without one, skip with the reason, or fail under ``CI=true``."""
    if binary is not None:
        return binary
    reason = "chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the browser test to run")
    pytest.skip(reason)


def run_chromium(binary: str, profile: Path, *arguments: str) -> str:
    """Run headless chromium with bounded time; kill its whole process group on timeout.

    Returns:
        What chromium wrote to standard output (the DOM, with ``--dump-dom``).
    """
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    env = {**os.environ, "HOME": str(profile)}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its renderer and GPU processes share the group
    )
    try:
        out, err = process.communicate(timeout=BROWSER_RUN)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {BROWSER_RUN} s")
    assert process.returncode == 0, f"chromium exited with {process.returncode}:\n{err[-2000:]}"
    return out


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height in the header of the PNG ``data``."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
