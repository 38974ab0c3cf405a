"""``python -m wskit``: the command line of cli.py."""

from .cli import main

raise SystemExit(main())
