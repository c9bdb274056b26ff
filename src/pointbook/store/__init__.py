"""Stores: one interface, an embedded SQLite backend (the default) and a PostgreSQL one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pointbook.store.base import DecisionRow, PackRow, Store
from pointbook.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from pointbook.store.postgres import PostgresStore

__all__ = ["DecisionRow", "PackRow", "PostgresStore", "SQLiteStore", "Store", "open_store"]


def open_store(db: str) -> Store:
    """Open a store from ``--db``: a file path (SQLite), ``sqlite:///path``, or a PostgreSQL
    URL ``postgresql://USER@HOST:PORT/DATABASE`` (or ``postgres://``), optionally with
    ``?schema=NAME`` to keep the store in one schema."""
    if db.startswith(("postgresql://", "postgres://")):
        from pointbook.store.postgres import PostgresStore

        return PostgresStore(db)
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///") :]
    return SQLiteStore(db)


def __getattr__(name: str) -> object:
    # PostgresStore is imported on first use: psycopg loads only for a PostgreSQL store.
    if name == "PostgresStore":
        from pointbook.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)
