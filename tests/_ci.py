"""What a test does when something it needs from the system is missing.

Outside CI it skips, saying what to install; under ``CI=true`` it fails, because
``.ci/run`` installs everything the tests need and a silent skip there would hide a test
that never ran.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(reason: str, requirement: str) -> NoReturn:
    """Skip with ``reason``, or fail with it under ``CI=true``.

    Args:
        reason: What is missing and how to install it
            (``"redis-server is not installed; apt-get install redis-server"``).
        requirement: What CI requires, for the failure (``"the Redis tests to run"``).
    """
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires {requirement}", pytrace=False)
    pytest.skip(reason)
