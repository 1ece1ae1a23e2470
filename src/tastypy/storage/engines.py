"""Which engine serves a store: the one place that maps a target to an engine.

A filesystem path gives the file engine; a ``postgresql://`` (or
``postgres://``) URL, with the store's ``name``, gives the PostgreSQL
engine (``storage/postgres/``, imported only then: it needs psycopg). The
POD and the tracker open every store through :func:`open_engine`; a caller
with an engine object of its own passes it as ``storage=`` instead. What
the layers above ask of a store without opening it goes through here too,
so that none of them reads a store's files:
:func:`probe` (is a store there?), :func:`is_store`, :func:`writers` (who
writes to it), :func:`store_key` (its identity in this process),
:func:`verify` and :func:`repair`, and :func:`cosmetic` (log records a
command line may leave out).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError
from .files import _target
from .files._engine import FileStorage
from .postgres import _target as _pg_target
from .protocol import Member, Probe, Storage, TaskSummary

if TYPE_CHECKING:
    from .damage import ContentChecks, RepairReport, VerifyReport

__all__ = [
    "FILE_OPTIONS",
    "cosmetic",
    "display",
    "is_store",
    "is_url",
    "members",
    "names_a_store",
    "open_engine",
    "probe",
    "repair",
    "set_give_up",
    "store_key",
    "stores",
    "task_keys",
    "task_summary",
    "verify",
    "with_store_name",
    "writers",
]

FILE_OPTIONS = ("file_size", "gzipped")


def is_url(target: object) -> bool:
    """Whether *target* is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    return _pg_target.is_url(target)


def display(target: str | os.PathLike[str]) -> str:
    """*target* as messages show it: a URL without its password, a path as given."""
    text = os.fspath(target)
    if not is_url(text):
        return str(text)
    assert isinstance(text, str)
    if _pg_target.named(text):
        with contextlib.suppress(SettingsError):
            return _pg_target.parse(text, None).location
    return _pg_target.redact(text)


def _for_files(target: str | os.PathLike[str], what: str = "this") -> str | os.PathLike[str]:
    """*target*, as given, once it is known to be the file engine's (a path)."""
    text = os.fspath(target)
    if is_url(text):
        assert isinstance(text, str)
        raise SettingsError(
            f"{_pg_target.redact(text)}: {what} is not done for PostgreSQL stores yet; "
            "it needs a store's directory"
        )
    return target


def _open_postgres(
    url: str, name: object, *, readonly: bool, durable: bool, new: bool, given: dict[str, Any]
) -> Storage:
    """The PostgreSQL engine's open of store *name* at *url*."""
    target = _pg_target.parse(url, name)
    if given:
        raise SettingsError(
            f"{target.location}: the PostgreSQL engine has no setting {', '.join(sorted(given))}"
        )
    storage: Storage = _postgres(target.location).PostgresStorage(
        url, name, readonly=readonly, durable=durable, new=new
    )
    return storage


def _postgres(where: str) -> Any:
    """The PostgreSQL engine's catalog module (and engine), or an error saying what to install."""
    try:
        from .postgres import _catalog  # noqa: PLC0415  # needs psycopg, an extra
    except ImportError as exc:
        if exc.name not in {"psycopg", "psycopg_binary", "psycopg_c"}:
            raise
        raise ImportError(
            f"{where}: the PostgreSQL engine needs psycopg 3, which is not "
            f"installed ({exc}); install it with: pip install 'tastypy[postgres]'",
            name=exc.name,
        ) from None
    return _catalog


def _pg(target: str | os.PathLike[str]) -> Any:
    """The PostgreSQL catalog if *target* is a URL (naming a store: ``URL#name``), else None."""
    text = os.fspath(target)
    if not is_url(text):
        return None
    assert isinstance(text, str)
    return _postgres(_pg_target.parse(text, None).location)


def stores(url: str) -> list[dict[str, Any]]:
    """The stores of the PostgreSQL database at *url*: each one's name, kind, keys, last write."""
    return list(_postgres(_pg_target.redact(url)).stores(url))


def with_store_name(url: str, name: str) -> str:
    """*url* naming store *name* (``URL#name``); SettingsError if it names another."""
    bare, given = _pg_target.split_name(url)
    if given and given != name:
        raise SettingsError(f"{display(url)}: names the store {given!r}, and --name {name!r}")
    return f"{bare}#{name}"


def names_a_store(target: str | os.PathLike[str]) -> bool:
    """Whether *target* is a path, or a URL that names a store (``URL#name``)."""
    text = os.fspath(target)
    return not is_url(text) or _pg_target.named(str(text))


def open_engine(
    target: str | os.PathLike[str],
    *,
    readonly: bool = False,
    durable: bool = True,
    timeout: float | None = 0.0,
    new: bool = False,
    shared: bool = False,
    options: dict[str, Any] | None = None,
    name: str | None = None,
) -> Storage:
    """Open the store at *target* with the engine that serves it.

    *options* are the engine's own settings (``None`` values: the stored or
    default ones); *new* refuses a store that already exists. *shared* opens
    it as one of several writers (``docs/SHARED.md``); read-only opens are
    the same either way. *name* names the store within a database (a URL
    needs it; a path must not have it). A PostgreSQL store is always shared.

    Raises
    ------
    SettingsError
        For an option the engine does not have, or a target no engine serves.
    FileExistsError
        With *new*, if a store is there already.
    """
    given = {key: value for key, value in (options or {}).items() if value is not None}
    text = os.fspath(target)
    if is_url(text):
        assert isinstance(text, str)
        return _open_postgres(text, name, readonly=readonly, durable=durable, new=new, given=given)
    if name is not None:
        raise SettingsError(
            f"{text}: name= names a store within a database (a postgresql:// URL); "
            "a directory is its store's name"
        )
    unknown = sorted(set(given) - set(FILE_OPTIONS))
    if unknown:
        raise SettingsError(f"the file engine has no setting {', '.join(unknown)}")
    if shared and not readonly:
        from .files._shared import SharedFileStorage  # noqa: PLC0415  # only shared opens need it

        return SharedFileStorage(
            target,
            durable=durable,
            timeout=timeout,
            new=new,
            file_size=given.get("file_size"),
            gzipped=given.get("gzipped"),
        )
    return FileStorage(
        target,
        readonly=readonly,
        durable=durable,
        timeout=timeout,
        new=new,
        file_size=given.get("file_size"),
        gzipped=given.get("gzipped"),
    )


def probe(target: str | os.PathLike[str]) -> Probe:
    """What is at *target*: a store, nothing, something else, or a damaged store.

    Reads nothing of the data; a command checks with it before it opens.

    Raises
    ------
    SettingsError
        For a target no engine serves.
    CorruptStoreError
        If what is there cannot even be looked at safely (a link where a
        store's file should be).
    """
    catalog = _pg(target)
    if catalog is not None:
        found: Probe = catalog.probe(os.fspath(target))
        return found
    return _target.probe(Path(target))


def is_store(target: str | os.PathLike[str]) -> bool:
    """Whether a store is at *target* (never raises for what is there instead)."""
    catalog = _pg(target)
    if catalog is not None:
        return bool(catalog.probe(os.fspath(target)).kind == "store")
    return _target.is_store(Path(target))


def writers(target: str | os.PathLike[str]) -> list[int]:
    """The live processes holding the store at *target* open for writing, by pid.

    Asked of the OS, never of a file alone: a copied store, or one whose
    writer was killed, has none. 0 stands for a holder the OS does not name.
    On PostgreSQL: the processes holding tasks under a live lease (see
    :func:`members` for their hosts).
    """
    if _pg(target) is not None:
        return [member.pid for member in members(target)]
    return _target.writers(Path(target))


def set_give_up(check: Callable[[float], bool]) -> None:
    """What a shared writer waiting for another's commit asks, with the seconds waited.

    True makes it give up (``InterruptedError``, nothing held): the mapping
    layer says so when a signal is waiting to be handled or the program is
    ending and has waited long enough.
    """
    from .files import _commit_lock  # noqa: PLC0415  # shared stores only

    _commit_lock.give_up = check


def members(target: str | os.PathLike[str]) -> list[Member]:
    """The live processes writing the shared store at *target*, with what they hold."""
    catalog = _pg(target)
    if catalog is not None:
        found: list[Member] = catalog.members(os.fspath(target))
        return found
    return _target.members(Path(target))


def task_keys(
    target: str | os.PathLike[str], state: str, limit: int | None = None
) -> list[str] | None:
    """The keys of the tracker at *target* in *state* (``tastypy list``'s), found by its engine.

    In order; None where the engine cannot say without loading the store
    (the file engine; see :func:`task_summary`).
    """
    catalog = _pg(target)
    if catalog is None:
        return None
    found: list[str] | None = catalog.task_keys(os.fspath(target), state, limit)
    return found


def task_summary(target: str | os.PathLike[str]) -> TaskSummary | None:
    """The tracker at *target* counted by its engine, without loading it; None if it cannot.

    PostgreSQL counts on the server; the file engine has no counts of its own.
    """
    catalog = _pg(target)
    if catalog is None:
        return None
    found: TaskSummary | None = catalog.task_summary(os.fspath(target))
    return found


def store_key(target: str | os.PathLike[str], name: object = None) -> str:
    """What names the store at *target* (and *name*) in this process (two paths to it: one key).

    Raises
    ------
    NotAStoreError
        If *target* cannot name a store (an empty path, a link to nothing).
    SettingsError
        For a URL that does not parse, or a bad *name*.
    """
    text = os.fspath(target)
    if is_url(text):
        assert isinstance(text, str)
        parsed = _pg_target.parse(text, name)
        return f"postgresql:{parsed.url}#{parsed.name}"  # the password too: a key, never shown
    return _target.store_key(target)


def cosmetic(record: logging.LogRecord) -> bool:
    """Whether an engine's log *record* is cosmetic: the store works all the same.

    (The file engine's note, in its lock file, of who holds the lock: a full
    disk may refuse it.) A command line may leave such records out.
    """
    return _target.cosmetic(record)


def verify(target: str | os.PathLike[str], *, checks: ContentChecks) -> VerifyReport:
    """Check every part of the store at *target*, and *checks* on what it holds.

    See :func:`tastypy.verify`, which gives the layers' *checks*.
    """
    catalog = _pg(target)
    if catalog is not None:
        report: VerifyReport = catalog.verify(os.fspath(target), checks)
        return report
    from .files import verify as file_verify  # noqa: PLC0415  # see repair()

    return file_verify.verify(target, checks=checks)


def repair(
    target: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    *,
    in_place: bool,
    accept_edits: bool,
    timeout: float | None,
    checks: ContentChecks,
) -> RepairReport:
    """Save what is intact in the store at *target*: see :func:`tastypy.repair`."""
    # Imported when first asked for: a program that never checks or repairs
    # a store should not pay for the import of the checks and the salvage scan.
    from .files import repair as file_repair  # noqa: PLC0415

    return file_repair.repair(
        _for_files(target, "repair"),
        output,
        in_place=in_place,
        accept_edits=accept_edits,
        timeout=timeout,
        checks=checks,
    )
