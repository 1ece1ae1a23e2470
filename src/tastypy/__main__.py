"""``python -m tastypy``: the ``tastypy`` command."""

from .cli import main

raise SystemExit(main())
