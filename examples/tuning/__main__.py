"""``python -m examples.tuning``: see the package's docstring, or ``--help``."""

from .cli import main

raise SystemExit(main())
