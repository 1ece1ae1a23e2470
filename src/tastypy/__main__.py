"""``python -m tastypy``: the ``tastypy`` command."""

from .cli._parser import main

raise SystemExit(main())
