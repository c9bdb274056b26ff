"""Stores: one interface, an embedded SQLite backend (the default)."""

from __future__ import annotations

from pointbook.errors import StoreError
from pointbook.store.base import DecisionRow, PackRow, Store
from pointbook.store.sqlite import SQLiteStore

__all__ = ["DecisionRow", "PackRow", "SQLiteStore", "Store", "open_store"]


def open_store(db: str) -> Store:
    """Open a store from ``--db``: a file path (SQLite) or ``sqlite:///path``."""
    if db.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            "the PostgreSQL backend is not part of this build yet; use a SQLite file path"
        )
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///") :]
    return SQLiteStore(db)
