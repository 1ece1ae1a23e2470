"""The file engine: a store is a directory of JSON-lines files.

``_engine.py`` is :class:`FileStorage`; the format's parts are ``_manifest.py``,
``_chunks.py`` (data files), ``_journal.py`` with ``_commits.py`` (commits
since the data files were written), ``_compaction.py``, ``_layout.py``,
``_sidelog.py`` (side logs: the tracker's ``tries.jsonl``) and ``_lock.py``;
``_fs.py`` is the one seam through which every OS call passes, ``_durable.py``
and ``_snapshot.py`` use it; ``_target.py`` answers what
:mod:`tastypy.storage.engines` asks of a path without opening it;
``verify.py`` and ``repair.py`` (with ``_salvage.py`` and ``_pieces.py``)
check and save damaged stores, with the checks the layers above hand them.
See docs/FORMAT.md.
"""

from __future__ import annotations

from ._engine import FileStorage

__all__ = ["FileStorage"]
