"""The audit chain on SQLite: the shared SQL of `store/audit_sql.py` over a sqlite3 connection.

A ref names one audited thing: `pack:D/V`, `event:D/ID` (the event with its entries),
`decision:D/ID/REV`, `appeal:ID`, `appeal-decision:ID`, `confirmation:ID`, `switch:SEQ`.
What each commits to, how records are chained and how the chain is verified are in
`audit_sql` (the same for every backend); this module binds them to sqlite3.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence

from pointbook.store import audit_sql
from pointbook.store.audit import ERASED, AuditRecord, VerifyResult
from pointbook.store.audit_sql import SQLiteDb, event_commitment

__all__ = ["ERASED", "append", "commitment_of", "event_commitment", "records", "root", "verify"]


def commitment_of(conn: sqlite3.Connection, ref: str) -> str | None:
    """The commitment of ``ref`` as the store holds it now (None if its row is gone)."""
    return audit_sql.commitment_of(SQLiteDb(conn), ref)


def append(
    conn: sqlite3.Connection, at_us: int, records: Sequence[tuple[str, str, str, str]]
) -> str:
    """Append (kind, domain, ref, commitment) records inside the caller's transaction."""
    return audit_sql.append(SQLiteDb(conn), at_us, records)


def records(conn: sqlite3.Connection) -> Iterator[AuditRecord]:
    return audit_sql.records(SQLiteDb(conn))


def verify(conn: sqlite3.Connection, progress: Callable[[int], None] | None = None) -> VerifyResult:
    return audit_sql.verify(SQLiteDb(conn), progress)


def root(conn: sqlite3.Connection) -> str:
    return audit_sql.root(SQLiteDb(conn))
