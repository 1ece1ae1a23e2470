"""The disk a power cut can leave behind, built from a recording of OS calls.

The model is the strictest one published for POSIX file systems (SQLite's
crash VFS, LevelDB's fault-injection test, ALICE):

- data written to a file (``write``, ``pwrite``, ``ftruncate``) after its
  last ``fsync``/``fdatasync`` may each be lost, kept, torn at sector size
  (each 512-byte sector new, old, zeros or garbage) or zero-filled (the size
  persisted, the data not), in any combination, which is any order;
- ``fsync``/``fdatasync`` of a file makes its data and size durable, not its
  name;
- a create, ``mkdir``, rename, unlink or ``rmdir`` is durable only once its
  directory (both, for a rename) is ``fsync``ed; before that each may or may
  not have happened, independently; a rename is old-or-new, never half.

Files are inodes; the namespace maps paths to inodes (or :data:`DIR`), so a
rename moves data, and writes through a descriptor follow the inode.
:class:`Timeline` steps through a recording and hands out a :class:`Crash`
after each call; a crash's :meth:`Crash.disk` applies one :class:`Choice`
of fates for the calls that are not yet durable, and :func:`materialize`
writes that disk into a directory.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SECTOR = 512
DIR = -1  # namespace value of a directory (files hold their inode number)

# What can become of one write that is not yet durable.
KEEP, DROP, ZERO, TORN = "keep", "drop", "zero", "torn"
WRITE_FATES = (KEEP, DROP, ZERO, TORN)

NAMESPACE_OPS = {"create", "mkdir", "rename", "unlink", "rmdir"}
DATA_OPS = {"write", "truncate"}


@dataclass(frozen=True)
class Op:
    """One recorded OS call, paths relative to the recording's root ("" is the root)."""

    kind: str  # create mkdir rename unlink rmdir write truncate fsync dirsync close
    path: str = ""
    dst: str = ""  # rename: the new name
    ino: int = 0  # the file's inode (create, rename, unlink, write, truncate, fsync)
    offset: int = 0  # write
    data: bytes = b""  # write
    length: int = 0  # truncate

    def dirs(self) -> frozenset[str]:
        """The directories whose fsync makes this namespace operation durable."""
        if self.kind == "rename":
            return frozenset({os.path.dirname(self.path), os.path.dirname(self.dst)})
        return frozenset({os.path.dirname(self.path)})


Disk = dict[str, "bytes | None"]  # path -> content, or None for a directory


@dataclass
class Choice:
    """Fates for a crash's pending calls: the namespace ops that happened, each write's fate."""

    namespace: frozenset[int]  # indices into Crash.pending_ns that persisted
    data: dict[tuple[int, int], str] = field(default_factory=dict)  # (ino, index) -> fate
    default: str = KEEP  # fate of pending data ops not in `data`
    seed: int = 0  # for torn sectors and garbage


@dataclass
class Crash:
    """What is durable, and what is not yet, after some prefix of the calls."""

    point: int  # number of calls made before the power cut
    namespace: dict[str, int]  # durable path -> inode or DIR
    data: dict[int, bytes]  # durable content of each inode
    pending_ns: tuple[Op, ...]  # namespace ops not yet durable, in call order
    pending_data: dict[int, tuple[Op, ...]]  # ino -> its data ops since its last fsync

    def disk(self, choice: Choice) -> Disk:
        """The disk left by this crash when the pending calls meet *choice*."""
        names = dict(self.namespace)
        for index, op in enumerate(self.pending_ns):
            if index in choice.namespace:
                apply_namespace(names, op)
        disk: Disk = {}
        for path, ino in names.items():
            if ino == DIR:
                disk[path] = None
                continue
            # One stream per file: what one file's tearing draws never shifts another's.
            rng = random.Random(f"{choice.seed}/{ino}")
            content = self.data.get(ino, b"")
            for index, op in enumerate(self.pending_data.get(ino, ())):
                fate = choice.data.get((ino, index), choice.default)
                content = apply_data(content, op, fate, rng)
            disk[path] = content
        return reachable(disk)

    def synced_tail_disk(self) -> Disk:
        """LevelDB's milder model: unsynced namespace ops forgotten, files cut to synced size."""
        disk: Disk = {}
        for path, ino in self.namespace.items():
            if ino == DIR:
                disk[path] = None
                continue
            durable = self.data.get(ino, b"")
            content = durable
            for op in self.pending_data.get(ino, ()):
                content = apply_data(content, op, KEEP, None)
            disk[path] = content[: len(durable)].ljust(len(durable), b"\0")
        return reachable(disk)


def apply_namespace(names: dict[str, int], op: Op) -> None:
    """Let one namespace op happen (to a namespace that may lack some earlier ones)."""
    if op.kind == "create":
        names[op.path] = op.ino
    elif op.kind == "mkdir":
        names[op.path] = DIR
    elif op.kind == "rename":
        # Atomic: the inode is at the new name, and no longer at the old one.
        if names.get(op.path) == op.ino:
            del names[op.path]
        names[op.dst] = op.ino
    elif op.kind == "unlink":
        if names.get(op.path) == op.ino:
            del names[op.path]
    elif op.kind == "rmdir":
        if names.get(op.path) == DIR:
            del names[op.path]
    else:
        raise ValueError(op)


def apply_data(content: bytes, op: Op, fate: str, rng: random.Random | None) -> bytes:
    """*content* after one write or truncate met *fate*."""
    if fate == DROP:
        return content
    if op.kind == "truncate":  # a size change is kept or lost, nothing in between
        return content[: op.length].ljust(op.length, b"\0")
    if fate == KEEP:
        return splice(content, op.offset, op.data)
    if fate == ZERO:  # the size reached the disk, the data did not
        return splice(content, op.offset, bytes(len(op.data)))
    assert fate == TORN and rng is not None
    at = op.offset
    while at < op.offset + len(op.data):
        end = min((at // SECTOR + 1) * SECTOR, op.offset + len(op.data))
        piece = op.data[at - op.offset : end - op.offset]
        sector = rng.randrange(4)
        if sector == 1:
            content = splice(content, at, piece)
        elif sector == 2:
            content = splice(content, at, bytes(len(piece)))
        elif sector == 3:
            content = splice(content, at, rng.randbytes(len(piece)))
        # sector == 0: this sector kept its old content
        at = end
    return content


def splice(content: bytes, offset: int, data: bytes) -> bytes:
    if offset > len(content):
        content = content + bytes(offset - len(content))
    return content[:offset] + data + content[offset + len(data) :]


def reachable(disk: Disk) -> Disk:
    """Only entries whose parent directories all exist (a lost mkdir hides its contents)."""

    def ok(path: str) -> bool:
        parent = os.path.dirname(path)
        return parent == "" or (disk.get(parent, b"") is None and ok(parent))

    return {path: content for path, content in disk.items() if ok(path)}


class Timeline:
    """Step through a recording; yield the crash after each call (and before the first)."""

    def __init__(self, namespace: dict[str, int], data: dict[int, bytes], ops: list[Op]) -> None:
        self.ops = ops
        self.namespace = dict(namespace)  # what is durable so far
        self.data = dict(data)

    def crashes(self) -> Iterator[Crash]:
        pending_ns: list[tuple[Op, frozenset[str]]] = []
        pending_data: dict[int, list[Op]] = {}
        yield self._crash(0, pending_ns, pending_data)
        for point, op in enumerate(self.ops, start=1):
            if op.kind in NAMESPACE_OPS:
                pending_ns.append((op, op.dirs()))
            elif op.kind in DATA_OPS:
                pending_data.setdefault(op.ino, []).append(op)
            elif op.kind == "fsync":
                content = self.data.get(op.ino, b"")
                for data_op in pending_data.pop(op.ino, []):
                    content = apply_data(content, data_op, KEEP, None)
                self.data[op.ino] = content
            elif op.kind == "dirsync":
                still: list[tuple[Op, frozenset[str]]] = []
                for ns_op, needs in pending_ns:
                    if needs - {op.path}:
                        still.append((ns_op, needs - {op.path}))
                    else:
                        apply_namespace(self.namespace, ns_op)
                pending_ns = still
            yield self._crash(point, pending_ns, pending_data)

    def _crash(
        self,
        point: int,
        pending_ns: list[tuple[Op, frozenset[str]]],
        pending_data: dict[int, list[Op]],
    ) -> Crash:
        return Crash(
            point,
            dict(self.namespace),
            dict(self.data),
            tuple(op for op, _ in pending_ns),
            {ino: tuple(ops) for ino, ops in pending_data.items() if ops},
        )


def corner_choices(crash: Crash, seed: int) -> Iterator[Choice]:
    """The corner cases: everything kept or lost, then each pending call alone flipped."""
    every = frozenset(range(len(crash.pending_ns)))
    none: frozenset[int] = frozenset()
    yield Choice(every)
    yield Choice(none, default=DROP)
    for index in range(len(crash.pending_ns)):
        yield Choice(every - {index})
        yield Choice(frozenset({index}), default=DROP)
    for ino, ops in crash.pending_data.items():
        mine = range(len(ops))
        for fate in (DROP, ZERO, TORN):
            yield Choice(every, {(ino, i): fate for i in mine}, seed=seed + ino)
        yield Choice(none, {(ino, i): KEEP for i in mine}, default=DROP)
        if len(ops) > 1:  # the last few calls alone lost: a reordered write-back
            for i in mine[-3:]:
                yield Choice(every, {(ino, i): DROP})


def random_choices(crash: Crash, count: int, seed: int) -> Iterator[Choice]:
    """*count* random combinations of fates (reproducible from *seed*)."""
    rng = random.Random(seed)
    for _ in range(count):
        kept = frozenset(i for i in range(len(crash.pending_ns)) if rng.random() < 0.5)
        fates = {
            (ino, i): rng.choice(WRITE_FATES)
            for ino, ops in crash.pending_data.items()
            for i in range(len(ops))
        }
        yield Choice(kept, fates, seed=rng.randrange(1 << 30))


def materialize(disk: Disk, root: Path) -> None:
    """Write *disk* under *root* (which must not exist)."""
    root.mkdir()
    for path in sorted(disk, key=lambda p: p.count("/")):
        content = disk[path]
        target = root / path
        if content is None:
            target.mkdir()
        else:
            target.write_bytes(content)


def disk_key(disk: Disk) -> tuple[tuple[str, bytes | None], ...]:
    return tuple(sorted(disk.items()))
