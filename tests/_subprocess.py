"""The environment for a child interpreter that must import what this one imports."""

from __future__ import annotations

import os
from pathlib import Path

import resilient

ROOT = Path(__file__).resolve().parent.parent


def same_imports(*, examples: bool = True) -> dict[str, str]:
    """``os.environ`` with PYTHONPATH leading to the ``resilient`` this process imported
    (a checkout's src/ when it is installed editable, site-packages when the wheel is)
    and, with ``examples``, to the repository root (``examples.<name>``, ``tests.<name>``)
    and to tests/, whose helper modules pytest puts on the path."""
    package_parent = str(Path(resilient.__file__).resolve().parents[1])
    paths = [package_parent, str(ROOT), str(ROOT / "tests")] if examples else [package_parent]
    inherited = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *filter(None, [inherited])])}
