"""The storage protocol: what the mapping layer needs from an engine, and nothing more.

The POD keeps its data in memory and decides *when* to sync; an engine
decides *how* a batch of changes becomes durable. They meet at
:class:`Storage`. Engines: :mod:`.files` (a directory of JSON files) and
:mod:`.memory`; :func:`.engines.open_engine` picks one for a target.

Optional capabilities
---------------------
An engine may do more than the core protocol. It says so in
:attr:`Storage.capabilities`, with the names below, and then also has the
methods of the matching protocol class. The mapping layer uses a capability
only when the engine declares it. The memory engine's shared opens declare
``"shared"``; the shared file store and every writable PostgreSQL open
declare ``"shared"`` and ``"claims"`` (PostgreSQL's claims also have
``claim_task`` and ``claim_tasks``, a claim in one statement, which the
tracker uses where present). Every PostgreSQL open declares ``"on_demand"``.
``"counts"`` is a seam no engine fills yet.

``"shared"`` (:class:`Shared`)
    One of several writers at once: each sync commits on top of what the
    others committed, and says how to merge that into memory
    (``docs/SHARED.md``).
``"claims"`` (:class:`Claims`)
    Claim a task atomically across processes, and release it.
``"counts"`` (:class:`Counts`)
    Count records by state without loading them.
``"on_demand"`` (:class:`OnDemand`)
    Fetch values when asked instead of loading everything.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ._merge import Merge

__all__ = [
    "CAPABILITIES",
    "Claims",
    "Counts",
    "Member",
    "OnDemand",
    "Probe",
    "Shared",
    "SideLog",
    "Storage",
    "TaskSummary",
]

CAPABILITIES = frozenset({"claims", "counts", "on_demand", "shared"})

Change = tuple[str, "bytes | None"]


class Storage(Protocol):
    """One open of a store, by one engine.

    ``load`` returns decoded values, in a dict the caller then owns: an engine
    reads a record and its value in one pass (one JSON parse per data file for
    the file engine, the driver's own decoding for a database), so handing over
    bytes would parse twice, and a dict needs no second copy of the index.

    Notes
    -----
    Not thread-safe: the owning POD serializes calls. One writable open per
    store at a time (a second raises :class:`~tastypy.errors.LockedError`);
    read-only opens are unlimited and see every commit whole.
    """

    readonly: bool
    durable: bool
    capabilities: frozenset[str]

    @property
    def location(self) -> str:
        """Where the store is, for messages: a path, a URL, a name."""
        ...

    @property
    def options(self) -> dict[str, Any]:
        """The engine's own settings, stored with the data (a copy; ``{}`` if none).

        The file engine's are ``file_size`` and ``gzipped``.
        """
        ...

    @property
    def meta(self) -> dict[str, Any]:
        """Settings of the mapping layer, stored with the data (a copy)."""
        ...

    def set_meta(self, meta: dict[str, Any]) -> None:
        """Durably replace the mapping layer's settings."""
        ...

    def load(self) -> dict[str, Any]:
        """Everything as of the last commit, in order, as a new dict."""
        ...

    def commit(self, changes: Iterable[Change]) -> None:
        """One atomic, durable batch, applied in order as a ``dict`` would apply it.

        ``(key, encoded JSON)`` sets a key (in place if present, else at the
        end); ``(key, None)`` deletes it (a missing key is ignored). *changes*
        may be a generator; if it raises, nothing is committed.
        """
        ...

    def compact(self) -> None:
        """Fold pending commits into the engine's main form now (may do nothing)."""
        ...

    def close(self) -> None:
        """Release resources (the write lock). Idempotent."""
        ...

    def discard(self) -> None:
        """Close, and remove the store this open created and only it wrote.

        For a copy that failed midway: what was made for it goes again.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """Facts about the store for people (``tastypy show``): its size, format, last write.

        Names and meanings are the engine's own; values are JSON scalars.
        """
        ...

    def side_log(self, name: str) -> SideLog:
        """The store's side log *name* (a short lowercase word), opened for this open's use."""
        ...


class SideLog(Protocol):
    """Lines appended between syncs that outlive the process that wrote them.

    An append is one write, without waiting for the disk: it survives the
    process being killed (not necessarily a power cut, unless flushed). The
    layer above gives the lines their meaning (the tracker's tries) and
    empties the log once a sync has put what it says in the store proper.
    """

    @property
    def location(self) -> str:
        """What messages call the log."""
        ...

    @property
    def empty(self) -> bool:
        """Whether the log holds nothing."""
        ...

    def read(self) -> bytes:
        """Every byte of the log: lines ending in newlines, the last maybe torn."""
        ...

    def append(self, line: bytes) -> None:
        """Append *line* (ending in a newline) whole, or raise having appended nothing."""
        ...

    def flush(self) -> None:
        """Make the lines appended so far survive a power cut (if the store is durable)."""
        ...

    def clear(self) -> None:
        """Empty the log."""
        ...

    def close(self) -> None:
        """Release the log's resources. Idempotent."""
        ...


@dataclass(frozen=True)
class Probe:
    """What is at a target, found without opening it: :func:`.engines.probe`.

    *kind* is ``"store"``, ``"missing"`` (nothing there), ``"other"``
    (something that is not a store) or ``"damaged"`` (what is left of a
    store that cannot be opened). *reason*: for ``"other"``, what a store
    would have (``"no manifest.json"``); for ``"damaged"``, the whole message,
    naming the target, what is left and the fix; else empty.
    """

    kind: Literal["store", "missing", "other", "damaged"]
    reason: str = ""


@dataclass(frozen=True)
class Member:
    """A live process writing a shared store: :func:`.engines.members`.

    *holding*: the tasks it holds now; *claims*: the tries it has claimed
    since it opened the store, at *since* (Unix time). *host*: the machine
    it runs on, where the engine knows (PostgreSQL); empty for this one.
    """

    pid: int
    since: float
    holding: int
    claims: int
    host: str = ""


@dataclass(frozen=True)
class TaskSummary:
    """A tracker's records counted by the engine itself: :func:`.engines.task_summary`.

    Counted as the tracker counts (``tracker/_counts.py``), each task in one
    state: *done*; else *aborted*; else *exhausted* (tried *max_tries*
    times); else *failed* (tried); the rest untried. *tried* overlaps them.
    *notable*: the JSON of every task not done whose record may name
    errors or a retry time (a superset: the caller decodes and checks),
    with the tries claims counted for it if more than the record's (else None).
    """

    max_tries: int
    total: int
    done: int
    aborted: int
    exhausted: int
    failed: int
    tried: int
    notable: list[tuple[bytes, int | None]]


class Shared(Protocol):
    """Capability ``"shared"``: one of several writers of a store at once."""

    def sync(self, changes: Iterable[Change]) -> Merge:
        """Commit *changes* on top of the others' commits; how to merge theirs into memory.

        Atomic and durable as :meth:`Storage.commit`. Only the changes that
        differ from what this open last saw (its last load or sync) are
        written, so a key the caller did not change is never written back
        over another writer's change. A raising *changes* commits nothing.
        """
        ...


class Claims(Protocol):
    """Capability ``"claims"``: tasks claimed across the writers of a shared store.

    Each writer logs its claims where the others read them; a claim of a
    writer that is no longer alive is void, the tries it counted are not
    (``docs/SHARED.md``). The methods marked so are called inside
    :meth:`locked`.
    """

    def locked(self) -> AbstractContextManager[None]:
        """Hold the store's commit lock, every writer's claims read: nobody else commits."""
        ...

    def holder(self, key: str) -> str | None:
        """The other live writer holding *key*, or None (inside :meth:`locked`)."""
        ...

    def claiming(self) -> AbstractContextManager[None]:
        """Hold what a claim needs: every commit so far readable, nobody committing.

        Other writers may claim meanwhile (where :meth:`take` excludes them).
        """
        ...

    def take(self, key: str) -> bool:
        """Hold *key* against the other live writers; False if one holds it now.

        Needs no lock. A :meth:`claim` of *key* follows, or :meth:`untake`.
        """
        ...

    def untake(self, key: str) -> None:
        """Undo a :meth:`take` not followed by a claim (a claim held stays)."""
        ...

    def taking(self, key: str) -> bool:
        """Whether *key* is taken and neither claimed nor let go since."""
        ...

    def untake_left(self) -> None:
        """Undo a :meth:`take` that an exception cut short (done by the next take too)."""
        ...

    def logged_tries(self, key: str) -> int:
        """The most tries any writer's claims counted for *key* (inside :meth:`locked`)."""
        ...

    def logged_tries_of(self, keys: list[str]) -> dict[str, int]:
        """:meth:`logged_tries` of many keys at once: those with any, and their tries."""
        ...

    def claim(self, key: str, tries: int, *, new: bool = False) -> None:
        """Claim *key* for this open (its *tries* th try), logged before this returns.

        *new*: no record of *key* is committed (see :meth:`claimed_new`).
        """
        ...

    def committed(self, key: str) -> bool:
        """Whether a record of *key* is committed, as of this open's last catch-up."""
        ...

    def claimed_new(self, key: str) -> bool:
        """Whether another writer's unreleased claim of *key* found no record committed.

        A dead writer's tries of a task whose record is missing count only
        then: otherwise the task was deleted since.
        """
        ...

    def release(self, key: str) -> None:
        """End this open's claim of *key*, if it has one."""
        ...

    def release_many(self, keys: list[str]) -> None:
        """End this open's claims of *keys* (those it has), in one write."""
        ...

    @property
    def held(self) -> frozenset[str]:
        """The keys this open holds."""
        ...

    def settled(self) -> None:
        """The tries this open's claims counted are all committed now.

        Until it is said (again, after a later claim), the open's claims log
        outlives it when it closes, for the others to settle as a dead writer's.
        """
        ...

    def forget_tries(self, key: str) -> None:
        """Count no more the tries this open's claims gave *key* (they were reset)."""
        ...

    def own_tries(self) -> dict[str, int]:
        """Each key this open's claims counted tries for, with the most counted."""
        ...

    def dead_claims(self) -> dict[str, dict[str, int]]:
        """Dead writers whose claims counted tries: writer -> {key: tries}."""
        ...

    def forget_writer(self, writer: str) -> None:
        """Forget dead *writer*'s claims, its tries now settled (inside :meth:`locked`)."""
        ...


class Counts(Protocol):
    """Capability ``"counts"``: a tracker's records counted by the engine, and found by state.

    With ``"on_demand"``: a tracker served on demand asks these instead of
    reading every record. A record's facts are ``(state, aborted, tries)``:
    state 0 to do, 1 done, 2 aborted and not done, None for a value that
    is not a task record; aborted by the truth of ``_aborted``; tries -1
    for an unusable ``_tries``.
    """

    def task_tally(
        self, keys: list[str]
    ) -> tuple[list[tuple[int, bool, int, int]], dict[str, tuple[int | None, bool, int]]]:
        """How many committed records have each ``(state, aborted, tries)``, as
        ``(state, aborted, tries, n)`` rows; and the facts of those of *keys*
        the store holds, as of the same commit."""
        ...

    def unusable_task(self) -> str | None:
        """A key whose record's ``_tries`` is unusable (the first in order), or None."""
        ...

    def to_do_page(
        self,
        after: int,
        before: int,
        limit: int,
        max_tries: int,
        keys: list[str],
        *,
        notable: bool = False,
    ) -> list[tuple[int, str, bytes | None, bool]]:
        """Up to *limit* ``(pos, key, retry JSON or None, to do)`` in order, positions
        in (*after*, *before*): records to do under *max_tries* (0: no limit; with
        *notable*, only those that may name a retry time), and those of *keys*
        whatever their state."""
        ...

    def present(self, keys: list[str]) -> set[str]:
        """Those of *keys* the store holds."""
        ...


class OnDemand(Protocol):
    """Capability ``"on_demand"``: values fetched when asked (stores larger than memory).

    The POD then never calls :meth:`Storage.load`; its data is a window
    onto the store (``_window.py``). A shared open remembers what it last
    saw (to write back only what changed, see :meth:`Shared.sync`) only of
    the keys the caller keeps.
    """

    def begin_on_demand(self, resident: Container[str]) -> None:
        """Serve this open on demand from now on, forgetting what it saw.

        *resident*: the keys whose values the caller keeps in memory; a sync
        remembers what it wrote only of those.
        """
        ...

    def fetch(self, keys: list[str]) -> dict[str, bytes]:
        """The committed JSON of those of *keys* the store holds now."""
        ...

    def page(
        self, after: int, limit: int, *, before: int | None = None, backwards: bool = False
    ) -> list[tuple[int, str, bytes]]:
        """Up to *limit* ``(position, key, JSON)`` in order, after *after* (-1: the start).

        *before*: only positions below it. *backwards*: in reverse order,
        below *after*.
        """
        ...

    def rows(self) -> list[tuple[str, bytes]]:
        """Every ``(key, JSON)`` of the store, in order, as of one commit."""
        ...

    def end(self) -> int:
        """A position above every key's (the next key added takes it)."""
        ...

    def saw(self, key: str, blob: bytes) -> bool:
        """Whether *blob* is the value of *key* last read or synced (so unchanged since)."""
        ...

    def remember(self, key: str, blob: bytes) -> None:
        """The caller keeps *key*'s value, read as *blob* (until :meth:`forget`)."""
        ...

    def size(self, keys: list[str]) -> tuple[int, int]:
        """How many keys the store holds now, and how many of *keys*."""
        ...

    def forget(self, keys: Iterable[str]) -> None:
        """The caller no longer keeps the values of *keys*."""
        ...

    def append_new(self, keys: list[str], blob: bytes, others: dict[str, bytes]) -> bool:
        """Add *keys*, none of them the store's, at its end in order, in one commit.

        Each key's value is the JSON *blob*, or ``others[key]``; the caller
        keeps none of them in memory. False, with nothing done, if the store
        has any of them (or a row left by one's deletion), if another writer
        committed since this open's last sync, or if this open claims one:
        the caller then writes them by a sync (a bulk ``add_many``).
        """
        ...
