"""The audit chain on SQLite: the shared SQL of `store/audit_sql.py` over a sqlite3 connection.

A ref names one audited thing: `pack:D/V`, `event:D/ID` (the event with its entries),
`decision:D/ID/REV`, `appeal:ID`, `appeal-decision:ID`, `confirmation:ID`, `switch:SEQ`.
What each commits to, how records are chained and how the chain is verified are in
`audit_sql` (the same for every backend); this module binds them to sqlite3.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence

from pointbook.errors import StoreError
from pointbook.store import audit_sql
from pointbook.store.audit import ERASED, AuditRecord, VerifyResult
from pointbook.store.audit_sql import SQLiteDb, event_commitment

__all__ = [
    "ERASED",
    "adopt_unaudited",
    "append",
    "commitment_of",
    "event_commitment",
    "records",
    "root",
    "verify",
]


def commitment_of(conn: sqlite3.Connection, ref: str) -> str | None:
    """The commitment of ``ref`` as the store holds it now (None if its row is gone)."""
    return audit_sql.commitment_of(SQLiteDb(conn), ref)


def append(
    conn: sqlite3.Connection, at_us: int, records: Sequence[tuple[str, str, str, str]]
) -> str:
    """Append (kind, domain, ref, commitment) records inside the caller's transaction."""
    return audit_sql.append(SQLiteDb(conn), at_us, records)


def adopt_unaudited(conn: sqlite3.Connection, at_us: int) -> int:
    """Audit records for rows older than the audit log (see `audit_sql.adopt_unaudited`)."""
    return audit_sql.adopt_unaudited(SQLiteDb(conn), at_us)


def records(conn: sqlite3.Connection) -> Iterator[AuditRecord]:
    return audit_sql.records(SQLiteDb(conn))


def verify(conn: sqlite3.Connection, progress: Callable[[int], None] | None = None) -> VerifyResult:
    """The chain and every row's commitment, after SQLite's own integrity check of the file:
    a damaged page or an index that no longer matches its table (which the commitments alone
    cannot see: queries by subject read the index) fails verification with a clear reason, as
    does a file SQLite cannot read at all, instead of a traceback (T11 byte flips)."""
    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check(3)")]
        if problems != ["ok"]:
            return _damaged("; ".join(problems))
        return audit_sql.verify(SQLiteDb(conn), progress)
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"cannot verify now: {exc}; another writer holds the store") from exc
        return _damaged(str(exc))


def _damaged(why: str) -> VerifyResult:
    return VerifyResult(
        False,
        0,
        "",
        None,
        f"the store file is damaged ({why}): SQLite cannot read it as it was written; restore "
        "it from a backup and verify that",
    )


def root(conn: sqlite3.Connection) -> str:
    return audit_sql.root(SQLiteDb(conn))
