"""``manifest.json``: the one file that says which data files make up a store.

Replacing the manifest atomically is what makes a commit atomic: data files
are written under fresh names first, and only a manifest naming them makes
them part of the store.
"""

from __future__ import annotations

import os
import re
import reprlib
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...errors import CorruptStoreError, NotAStoreError
from . import _fs
from ._durable import replace_atomically

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MAX_GENERATION",
    "VERSION",
    "VERSIONS",
    "ChunkEntry",
    "Manifest",
    "read_manifest",
    "validated_manifest",
]

FORMAT = "tastypy-store"
VERSION = 1
# Version 2 adds "journal_first" (the number of the journal's first commit,
# 1 in version 1): a shared store's commits are numbered across compactions.
VERSIONS = (1, 2)
MAX_COMMIT = 1 << 53
# "records" counts the records in the data files only (the journal may add,
# change and delete records on top of them).
MANIFEST = "manifest.json"


@dataclass
class ChunkEntry:
    """One data file: its name (relative to ``chunks/``), size and checksum."""

    file: str
    records: int
    nbytes: int
    crc32: int

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "records": self.records,
            "bytes": self.nbytes,
            "crc32": self.crc32,
        }


@dataclass
class Manifest:
    """The decoded manifest; see ``docs/FORMAT.md``."""

    file_size: int
    gzipped: bool
    generation: int = 0
    journal: str = ""
    # True only while no commit has been appended to the journal since this
    # manifest was written (with a new, empty journal): then, and only then,
    # a missing journal provably lost nothing.
    journal_empty: bool = False
    journal_first: int = 1  # the number of the journal's first commit
    synced_at: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    chunks: list[ChunkEntry] = field(default_factory=list)

    def encode(self) -> bytes:
        head: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION if self.journal_first == 1 else 2,
            "file_size": self.file_size,
            "gzipped": self.gzipped,
            "generation": self.generation,
            "journal": self.journal,
            "journal_empty": self.journal_empty,
        }
        if self.journal_first != 1:
            head["journal_first"] = self.journal_first
        head |= {
            "synced_at": self.synced_at,
            "records": sum(c.records for c in self.chunks),
            "meta": self.meta,
        }
        # One chunk per line keeps large manifests compact yet readable.
        lines = [orjson.dumps(c.to_json()) for c in self.chunks]
        body = orjson.dumps(head, option=orjson.OPT_INDENT_2)[:-2]
        if not lines:
            return body + b',\n  "chunks": []\n}\n'
        chunks = b",\n    ".join(lines)
        return body + b',\n  "chunks": [\n    ' + chunks + b"\n  ]\n}\n"

    def write(self, directory: Path, *, durable: bool) -> None:
        self.synced_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        replace_atomically(directory / MANIFEST, self.encode(), durable=durable)


def read_manifest(directory: Path) -> Manifest:
    """Read and validate ``directory/manifest.json``.

    Every field is checked for type and range, and every file name for its
    exact form (plain names, no separators): a store is untrusted input.

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    NotAStoreError
        If the manifest is of another format or a newer version.
    CorruptStoreError
        If the manifest cannot be parsed, or a field is missing or out of
        range; the message names the file and the field.
    """
    path = directory / MANIFEST
    chunk_dir = directory / "chunks"
    try:
        kind = os.lstat(chunk_dir).st_mode
    except FileNotFoundError:
        kind = stat.S_IFDIR  # missing: a writable open makes it, a named file is missing
    if stat.S_ISLNK(kind):  # its leftovers would be deleted out there
        raise CorruptStoreError(
            f"{chunk_dir} is a symbolic link; a store's own directories never "
            "are, and tastypy does not follow one out of the store"
        )
    if not stat.S_ISDIR(kind):
        raise CorruptStoreError(
            f"{chunk_dir} is not a directory; a store keeps its data files in it, so this "
            "store was damaged or tampered with (restore it from a backup)"
        )
    raw = _fs.read_file(path)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptStoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise NotAStoreError(f"{path} is not a tastypy manifest")
    if doc.get("version") not in VERSIONS or type(doc.get("version")) is not int:
        raise NotAStoreError(
            f"{path} has format version {doc.get('version')!r}; this tastypy reads "
            f"versions {VERSIONS[0]} to {VERSIONS[-1]} (upgrade tastypy?)"
        )
    return _validated(path, doc)


# Bounds that no real store reaches but that keep arithmetic and memory sane.
_MAX_FILE_SIZE = 1 << 40
_MAX_BYTES = 1 << 50
MAX_GENERATION = 99_999_999  # the 8 digits of the file names
_JOURNAL = re.compile(r"journal-\d{8}\.jsonl(\.gz)?")
_CHUNK = re.compile(r"\d{8}-\d{6}\.jsonl(\.gz)?")


class _Fields:
    """Typed access to one JSON object of the manifest; errors name the field."""

    def __init__(self, path: Path, doc: dict[str, Any], where: str = "") -> None:
        self.path, self.doc, self.where = path, doc, where

    def fail(self, name: str, expected: str) -> CorruptStoreError:
        if name not in self.doc:
            return CorruptStoreError(f"{self.path}: field {self.where}{name!r} is missing")
        value = reprlib.repr(self.doc[name])
        return CorruptStoreError(
            f"{self.path}: field {self.where}{name!r} is {value}; expected {expected}"
        )

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.doc.get(name)
        if type(value) is not int or not low <= value <= high:
            raise self.fail(name, f"an integer from {low} to {high}")
        return value

    def boolean(self, name: str, default: bool | None = None) -> bool:
        value = self.doc.get(name, default)
        if type(value) is not bool:
            raise self.fail(name, "true or false")
        return value

    def name(self, name: str, form: re.Pattern[str], gzipped: bool, shown: str) -> str:
        value = self.doc.get(name)
        if (
            type(value) is not str
            or form.fullmatch(value) is None
            or value.endswith(".gz") != gzipped
        ):
            raise self.fail(name, f"a file name {shown}{'.gz' if gzipped else ''}")
        return value


def validated_manifest(path: Path, doc: dict[str, Any]) -> Manifest:
    """The manifest *doc* (decoded JSON, said to be from *path*), checked as an open checks it."""
    return _validated(path, doc)


def _validated(path: Path, doc: dict[str, Any]) -> Manifest:
    top = _Fields(path, doc)
    file_size = top.integer("file_size", 1, _MAX_FILE_SIZE)
    gzipped = top.boolean("gzipped")
    generation = top.integer("generation", 0, MAX_GENERATION)
    journal = top.name("journal", _JOURNAL, gzipped, "journal-<8 digits>.jsonl")
    journal_empty = top.boolean("journal_empty", default=False)
    journal_first = 1
    if doc["version"] >= 2:
        journal_first = top.integer("journal_first", 1, MAX_COMMIT)
    elif "journal_first" in doc:
        raise top.fail("journal_first", "no such field in a version 1 manifest")
    synced_at = doc.get("synced_at")
    if synced_at is not None and type(synced_at) is not str:
        raise top.fail("synced_at", "a time as text, or null")
    meta = doc.get("meta", {})
    if type(meta) is not dict:
        raise top.fail("meta", "a JSON object")
    try:
        orjson.dumps(meta)  # what cannot be written back would fail every later write
    except TypeError:
        raise top.fail(
            "meta", "a JSON object that can be written back (254 deep at most)"
        ) from None
    listed = doc.get("chunks")
    if type(listed) is not list:
        raise top.fail("chunks", "a list of data files")
    chunks: list[ChunkEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(listed):
        if type(item) is not dict:
            raise _Fields(path, {"chunks": item}, "").fail("chunks", "a list of JSON objects")
        entry = _Fields(path, item, f"chunks[{index}].")
        name = entry.name("file", _CHUNK, gzipped, "<8 digits>-<6 digits>.jsonl")
        if name in seen:
            raise entry.fail("file", "a data file not already listed")
        seen.add(name)
        chunks.append(
            ChunkEntry(
                name,
                entry.integer("records", 0, file_size),
                entry.integer("bytes", 0, _MAX_BYTES),
                entry.integer("crc32", 0, 0xFFFFFFFF),
            )
        )
    total = sum(c.records for c in chunks)
    if doc.get("records") != total or type(doc.get("records")) is not int:
        raise top.fail("records", f"{total}, the sum of the data files' records")
    return Manifest(
        file_size=file_size,
        gzipped=gzipped,
        generation=generation,
        journal=journal,
        journal_empty=journal_empty,
        journal_first=journal_first,
        synced_at=synced_at,
        meta=dict(meta),
        chunks=chunks,
    )
