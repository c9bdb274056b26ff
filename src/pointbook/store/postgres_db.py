"""PostgreSQL plumbing both halves of PostgresStore share: the `audit_sql.Db` adapter and
binary COPY."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import TupleRow

__all__ = ["COPY_TYPES", "Cursor", "PgDb", "Row", "chunks", "copy_rows"]

T = TypeVar("T")
Row = tuple[Any, ...]
Cursor = psycopg.Cursor[TupleRow]

# COPY ... (FORMAT BINARY) needs each column's type; in the tables' column order.
_B, _S = "int8", "text"
COPY_TYPES: dict[str, list[str]] = {
    "pb_events": [_S, _S, _S, _S, _B, _S, _S, _S, _S, _B, _S, _S, _B],
    "pb_entries": [_S, _S, _S, _S, _S, _S, _B, _B, _B, _S, _S, _S, _B, _B],
    "pb_decisions": [
        _S,
        _S,
        _B,
        _S,
        _S,
        _S,
        _S,
        _B,
        _B,
        _B,
        _B,
        _B,
        _B,
        _S,
        _S,
        _S,
        _B,
        _B,
        _B,
        _S,
    ],
    "pb_audit": [_B, _B, _S, _S, _S, _S, _S, _S],
    "pb_outbox (domain, key, decision_id, payload, created_us)": [_S, _S, _S, _S, _B],
}

_cursor_names = itertools.count(1)


def copy_rows(cur: Cursor, table: str, found: Sequence[Row]) -> None:
    """Write rows with one binary COPY (``table`` may carry a column list; see COPY_TYPES)."""
    if not found:
        return
    with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(COPY_TYPES[table])
        for r in found:
            cp.write_row(r)


class PgDb:
    """`audit_sql.Db` over a psycopg cursor: `?` placeholders become `%s`; inserts are COPY.

    With ``stream``, `iter` reads through a server-side cursor (inside a transaction), so
    verifying a large store does not hold the whole audit log in memory."""

    def __init__(self, cur: Cursor, stream: bool = False) -> None:
        self.cur = cur
        self.stream = stream

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.cur.execute(_pg(sql), params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.cur.execute(_pg(sql), params).fetchall()

    def iter(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        if not self.stream:
            yield from self.all(sql, params)
            return
        with self.cur.connection.cursor(name=f"pb_iter_{next(_cursor_names)}") as named:
            named.itersize = 5000
            named.execute(_pg(sql), params)
            yield from named

    def insert(self, table: str, found: Sequence[Row]) -> None:
        copy_rows(self.cur, table, found)


def _pg(query: str) -> Any:
    return query.replace("?", "%s")


def chunks(seq: Sequence[T], n: int = 500) -> Iterator[list[T]]:
    for i in range(0, len(seq), n):
        yield list(seq[i : i + n])
