"""The PostgreSQL engine: stores that many processes on many machines share.

A store is addressed by a libpq URL (``postgresql://`` or ``postgres://``)
and a name within the database. Needs psycopg 3: ``pip install
'tastypy[postgres]'``. :class:`PostgresStorage` is one open of a store;
``docs/FORMAT.md`` gives its tables. Importing this package does not import
psycopg (the URL rules in ``_target`` need none); the engine does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._engine import PostgresStorage

__all__ = ["PostgresStorage"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStorage":
        from ._engine import PostgresStorage  # noqa: PLC0415  # psycopg only when asked for

        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
