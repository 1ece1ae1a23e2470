"""Opening a store directory: read-only, or locked for writing (laying it out if new).

:class:`~._engine.FileStorage` opens through these functions and keeps what
they return; committing and compacting are its own.
"""

from __future__ import annotations

import contextlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import CorruptStoreError, NotAStoreError, SettingsError
from . import _fs
from ._chunks import CHUNKS
from ._durable import fsync_dir
from ._layout import (
    create_store,
    lost_manifest,
    refuse_strangers,
    remove_leftovers,
    remove_new_store,
)
from ._lock import LOCK_FILE, StoreLock
from ._manifest import MANIFEST, VERSION, Manifest, read_manifest

if TYPE_CHECKING:
    from ._commit_lock import CommitLock

__all__ = [
    "DEFAULT_FILE_SIZE",
    "Opened",
    "check_setting",
    "describe",
    "open_readonly",
    "open_writable",
    "remove_dirs",
]

DEFAULT_FILE_SIZE = 1000


@dataclass
class Opened:
    """A store opened for writing: its manifest, its lock, and what the open made."""

    manifest: Manifest
    lock: StoreLock
    created: bool = False  # this open laid the store out
    made: list[Path] = field(default_factory=list)  # directories created, parents first
    commit_lock: CommitLock | None = None  # a shared open's


def open_readonly(path: Path) -> Manifest:
    """The manifest of the store at *path*, which must exist; nothing is locked or written."""
    if not (path / MANIFEST).exists():
        if not path.exists():
            raise NotAStoreError(f"{path} does not exist (no {MANIFEST})")
        lost = lost_manifest(path) if path.is_dir() else None
        if lost is not None:
            raise lost
        raise NotAStoreError(f"{path} is not a tastypy store (no {MANIFEST})")
    return read_manifest(path)


def _refuse_strangers_before_locking(path: Path) -> None:
    """Refuse a directory that holds something other than a store, before writing into it."""
    if not path.exists() or (path / MANIFEST).exists():
        return
    try:
        refuse_strangers(path)  # before the lock file: leave other folders alone
    except (NotAStoreError, CorruptStoreError):
        # Another writer may have laid the store out meanwhile (shared
        # writers opening a new store at once): then it is a store, read
        # under the lock. Else the refusal stands.
        if not (path / MANIFEST).exists():
            raise


def open_writable(
    path: Path,
    *,
    file_size: int | None,
    gzipped: bool | None,
    timeout: float | None,
    durable: bool,
    new: bool,
    existed: bool,
    shared: bool = False,
) -> Opened:
    """Lock the store at *path* for writing, creating it (and its parents) if missing.

    A directory that holds something other than a store is refused before
    anything is written into it. On failure the lock is released, the
    directories made are removed again and, with *new*, a store this open laid
    out goes too (*existed*: whether anything was at *path* before).

    With *shared*, the store is locked for shared writing, and read, laid
    out or tidied under its commit lock, which the result carries.
    """
    if path.exists() and not path.is_dir():
        raise NotAStoreError(f"{path} is a file, not a store directory")
    _refuse_strangers_before_locking(path)
    # Each new directory's entry is durable only once its parent is fsynced.
    made = _fs.makedirs(path)
    try:
        for directory in made:
            if durable:
                fsync_dir(directory.parent)
        lock = StoreLock(path, timeout, shared=shared)
    except BaseException:
        remove_dirs(made)  # a failed open leaves no empty directories
        raise
    created = False
    commit_lock = None
    try:
        # Shared writers share the store lock: one at a time lays out or tidies.
        if shared:
            from ._commit_lock import CommitLock  # noqa: PLC0415  # shared stores only

            commit_lock = CommitLock(path)
        with commit_lock.held() if commit_lock is not None else contextlib.nullcontext():
            if (path / MANIFEST).exists():
                manifest = read_manifest(path)
                # A shared writer never takes another's compaction in progress for debris.
                tidy = remove_leftovers if not shared else _remove_leftovers_unless_compacting
                tidy(path, manifest)
            else:
                created = True
                manifest = create_store(  # checks for strangers again, now under the lock
                    path,
                    DEFAULT_FILE_SIZE if file_size is None else file_size,
                    bool(gzipped),
                    durable=durable,
                )
    except BaseException:
        if commit_lock is not None:
            commit_lock.close()
        lock.release()
        if new and created:  # e.g. a full disk while laying it out
            remove_new_store(path, existed)
            remove_dirs(made)
        raise
    return Opened(manifest, lock, created, made, commit_lock)


def _remove_leftovers_unless_compacting(path: Path, manifest: Manifest) -> None:
    """A shared writer's tidying: only while no other writer compacts (its lock free)."""
    from ._commit_lock import COMPACT_LOCK, CommitLock  # noqa: PLC0415  # shared stores only

    compacting = CommitLock(path, COMPACT_LOCK)
    try:
        with compacting.held_if_free() as free:
            if free:
                remove_leftovers(path, manifest)
    finally:
        compacting.close()


def remove_dirs(made: list[Path]) -> None:
    """Remove the (empty) directories in *made*, deepest first."""
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            _fs.rmdir(directory)


def check_setting(path: Path, name: str, asked: object, stored: object) -> None:
    """Refuse an explicit setting that differs from the stored one."""
    if asked is not None and asked != stored:
        raise SettingsError(
            f"{path} was created with {name}={stored!r}, but {name}={asked!r} was asked for; "
            f"omit {name} to use the stored value, or use pod.copy(new_path, {name}=...) "
            "to rewrite the store with the new setting"
        )


def describe(path: Path) -> dict[str, Any]:
    """Size on disk, number of files, format version and time of the last write.

    Only the store's own regular files count (a link is not followed, not
    even to size it); the lock file's time is not a write.
    """
    sizes: list[int] = []
    last: float | None = None
    for directory in (path, path / CHUNKS):
        try:
            names = _fs.listdir(directory)
        except OSError:
            continue
        for name in names:
            try:
                found = (directory / name).lstat()
            except OSError:
                continue  # removed meanwhile (a compaction)
            if not stat.S_ISREG(found.st_mode):
                continue
            sizes.append(found.st_size)
            if name != LOCK_FILE:
                last = found.st_mtime if last is None else max(last, found.st_mtime)
    return {
        "bytes_on_disk": sum(sizes),
        "files": len(sizes),
        "format_version": VERSION,
        "last_write": last,
    }
