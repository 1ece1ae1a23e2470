"""``manifest.json``: the one file that says which data files make up a store.

Replacing the manifest atomically is what makes a commit atomic: data files
are written under fresh names first, and only a manifest naming them makes
them part of the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import CorruptStoreError, NotAStoreError
from . import _fs
from ._durable import replace_atomically

__all__ = ["FORMAT", "MANIFEST", "VERSION", "ChunkEntry", "Manifest", "read_manifest"]

FORMAT = "tastypy-store"
VERSION = 1
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
    synced_at: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    chunks: list[ChunkEntry] = field(default_factory=list)

    def encode(self) -> bytes:
        head = {
            "format": FORMAT,
            "version": VERSION,
            "file_size": self.file_size,
            "gzipped": self.gzipped,
            "generation": self.generation,
            "journal": self.journal,
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

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    NotAStoreError
        If the manifest is of another format or a newer version.
    CorruptStoreError
        If the manifest cannot be parsed or misses fields.
    """
    path = directory / MANIFEST
    raw = _fs.read_file(path)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptStoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise NotAStoreError(f"{path} is not a tastypy manifest")
    if doc.get("version") != VERSION:
        raise NotAStoreError(
            f"{path} has format version {doc.get('version')!r}; this tastypy reads "
            f"version {VERSION} (upgrade tastypy?)"
        )
    try:
        chunks = [
            ChunkEntry(str(c["file"]), int(c["records"]), int(c["bytes"]), int(c["crc32"]))
            for c in doc["chunks"]
        ]
        if sum(c.records for c in chunks) != doc["records"]:
            raise CorruptStoreError(
                f"{path}: its data files hold {sum(c.records for c in chunks)} records "
                f"but it says {doc['records']}"
            )
        return Manifest(
            file_size=int(doc["file_size"]),
            gzipped=bool(doc["gzipped"]),
            generation=int(doc["generation"]),
            journal=str(doc["journal"]),
            synced_at=doc.get("synced_at"),
            meta=dict(doc.get("meta") or {}),
            chunks=chunks,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptStoreError(f"{path}: missing or malformed field ({exc!r})") from None
