"""``python -m examples.kickoff_spike``: see the package's docstring, or ``--help``."""

from .cli import main

raise SystemExit(main())
