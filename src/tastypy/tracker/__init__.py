"""The progress tracker: a POD of task records, with counts, tries and ``run()``.

:class:`ProgressTracker` (``_tracker.py``) keeps the records; ``_counts.py``
the counts, kept incrementally; ``_tries.py`` the tries logged between syncs;
``_records.py`` the check of a record's fields; ``_maintenance.py`` what
``verify`` and ``repair`` check and fix in a tracker's store; ``_run.py``
with ``_pool.py`` and ``_attempt.py`` the :meth:`ProgressTracker.run` loop
and its workers.
"""

from __future__ import annotations

from ._run import RunSummary
from ._tracker import ProgressTracker, Tracker

__all__ = ["ProgressTracker", "RunSummary", "Tracker"]
