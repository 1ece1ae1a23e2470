"""The ``tastypy`` command: look at, check and maintain stores from the shell.

``_parser.py`` defines the command line and :func:`main`; ``_store_commands.py``
and ``_edit_commands.py`` do the work; ``_status.py`` draws the status screen,
``_transfer.py`` reads and writes export files, ``_display.py`` escapes what is
printed, ``_errors.py`` holds the exit statuses and one-line errors, and
``_demo.py`` is the demo job.
"""

from __future__ import annotations

from ._parser import add_timeout_option, main

__all__ = ["add_timeout_option", "main"]
