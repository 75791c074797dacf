"""Whether the suite runs against the installed wheel or against a checkout."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import resilient

DISTRIBUTION = "resilient-guards"


def installed_from_wheel() -> bool:
    """Whether the ``resilient`` imported is the one a non-editable install of the
    distribution put in place (``make installed``), rather than a checkout's src/
    (an editable install, or src/ on PYTHONPATH)."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return False
    direct_url = distribution.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        return False
    installed = Path(str(distribution.locate_file("resilient"))).resolve()
    return Path(resilient.__file__).resolve().parent == installed
