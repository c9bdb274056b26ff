"""A domain's events with their entries, read from a SQLite store in the tables' own order.

What-if and the compiled re-score read every stored row of a domain. Reading a large store
subject by subject through the index costs 15-25 µs a row (each row sits at a random place of
the file); reading each table in its own order costs a tenth of that. Both tables are
`WITHOUT ROWID` tables keyed by (domain, event id[, rule id]), so their own order is event id
order: a batch of events (keyset pagination on the id) and the entries of the same id range
are two range reads, joined per batch.

A file store is read through ADBC (`adbc_driver_sqlite`) straight into Arrow columns: Python's
sqlite3 makes a tuple and a Python object for every value, about 2.5 times the cost. Two
connections, each in one read transaction, read the events and the entries (a batch's entries
while the next events are read): the batches are one snapshot of the store. An in-memory store
(tests) can only be read through its own connection: the same queries then go through sqlite3
into the same frames, one after the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import adbc_driver_manager as adbc_errors
import adbc_driver_sqlite.dbapi as adbc
import polars as pl

from pointbook.errors import StoreError
from pointbook.store import audit_sql

__all__ = [
    "EVENT_SCHEMA",
    "NO_END",
    "ROW_SCHEMA",
    "ROW_SCHEMA_INT_FLAGS",
    "in_memory",
    "population_frames",
    "read_frame",
]

# A stored entry's end where it has none (a NULL in the table). The reader types each column
# from its first rows, so no column may start with NULLs: they are read as this and put back.
NO_END = -(2**62)

EVENT_SCHEMA: dict[str, Any] = {
    "subject": pl.String,
    "event_id": pl.String,
    "type": pl.String,
    "occurred_us": pl.Int64,
    "erased": pl.Boolean,
    "attributes": pl.String,  # "" where not read (erased, or a type nobody judges again)
}
ENTRY_SCHEMA: dict[str, Any] = {
    "event_id": pl.String,
    "rule_id": pl.String,
    "delta": pl.Int64,
    "until": pl.Int64,
    "capped": pl.Boolean,
}
ROW_SCHEMA: dict[str, Any] = EVENT_SCHEMA | {
    k: v for k, v in ENTRY_SCHEMA.items() if k != "event_id"
}
# The same rows as readers without booleans give them (sqlite3 tuples, PostgreSQL's CSV):
# the flags as 0/1, cast to ROW_SCHEMA after.
ROW_SCHEMA_INT_FLAGS: dict[str, Any] = ROW_SCHEMA | {"erased": pl.Int64, "capped": pl.Int64}

Fetch = Callable[[str, Sequence[Any]], pl.DataFrame]


def population_frames(
    path: str,
    conn: sqlite3.Connection,
    domain: str,
    since_us: int | None,
    until_us: int | None,
    attribute_types: Sequence[str],
    batch: int = 500_000,
) -> Iterator[pl.DataFrame]:
    """The events of ``domain`` (in [since_us, until_us] where given) in event id order,
    ``batch`` events at a time, each event's row repeated for each of its entries (an event
    with none has one row, its entry columns null): the columns of `ROW_SCHEMA`. Attributes
    are read only for live events of ``attribute_types``. ``path`` is the store's file
    (``conn`` reads an in-memory store)."""
    attrs, window, extra = audit_sql.event_parts("", attribute_types, since_us, until_us)
    events = (
        "SELECT subject, id AS event_id, type, occurred_us, erased_us IS NOT NULL AS erased,"
        f" COALESCE({attrs}, '') AS attributes FROM pb_events"
        f" WHERE domain = ? AND id > ?{window} ORDER BY id LIMIT ?"
    )
    entries = (
        "SELECT event_id, rule_id, delta, COALESCE(counts_until_us, ?) AS until,"
        " daily_cap AS capped FROM pb_entries WHERE domain = ? AND event_id > ?"
    )

    def read_events(after: str) -> pl.DataFrame:
        found = fetch_events(events, [*attribute_types, domain, after, *extra, batch])
        return found.cast(EVENT_SCHEMA)  # type: ignore[arg-type]

    def read_entries(after: str, last: str | None) -> pl.DataFrame:
        bound, params = "", [NO_END, domain, after]
        if last is not None:
            bound, params = " AND event_id <= ?", [*params, last]
        found = fetch_entries(entries + bound, params)
        if found.is_empty():
            return pl.DataFrame(schema=ENTRY_SCHEMA)
        return found.cast(ENTRY_SCHEMA).with_columns(  # type: ignore[arg-type]
            pl.when(pl.col("until") == NO_END).then(None).otherwise(pl.col("until")).alias("until")
        )

    # Two connections: a batch's entries are read while the next batch of events is. The
    # entries' read transaction starts after the events' (their first read comes later),
    # so it holds every entry of every event read (events and entries are written in one
    # transaction); entries of later events are left out by the join.
    one_connection = in_memory(path)  # used by one thread at a time
    with (
        _reader(path, conn) as fetch_events,
        _reader(path, conn) as fetch_entries,
        ThreadPoolExecutor(1, thread_name_prefix="scan-entries") as pool,
    ):
        after, ev = "", read_events("")
        while not ev.is_empty():
            last = ev["event_id"][-1]
            full = ev.height == batch  # else the last batch: its entries run to the end
            if one_connection:
                en, ahead = read_entries(after, last if full else None), None
            else:
                pending = pool.submit(read_entries, after, last if full else None)
                ahead = read_events(last) if full else None
                en = pending.result()
            yield ev.join(en, on="event_id", how="left", maintain_order="left").select(
                list(ROW_SCHEMA)
            )
            if not full:
                return
            after = last
            ev = ahead if ahead is not None else read_events(last)


def read_frame(path: str, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
    """One query's rows from the store file ``path``, read through ADBC into Arrow columns
    (what `population_frames` reads with; also the benchmarks' columnar baselines)."""
    if in_memory(path):
        raise ValueError(f"{path}: an in-memory store is read through its own connection")
    with _reader(path, None) as fetch:
        return fetch(sql, params)


class _reader:
    """A fetch function (query, parameters) -> frame over one read transaction: through ADBC
    for a file, through ``conn`` for an in-memory store."""

    def __init__(self, path: str, conn: sqlite3.Connection | None) -> None:
        self.path, self.conn = path, conn
        self.adbc: Any = None

    def __enter__(self) -> Fetch:
        if in_memory(self.path):
            return self._sqlite3
        uri = Path(self.path).resolve().as_uri() + "?mode=ro"
        try:
            # DB-API connections are not autocommit: every batch is read in one transaction.
            self.adbc = adbc.connect(uri)
        except adbc_errors.Error as exc:
            raise self._error(exc) from exc
        return self._adbc

    def __exit__(self, *exc: object) -> None:
        if self.adbc is not None:
            with suppress(adbc_errors.Error):
                self.adbc.close()

    def _adbc(self, sql: str, params: Sequence[Any]) -> pl.DataFrame:
        try:
            with self.adbc.cursor() as cur:
                cur.execute(sql, tuple(params))
                found = pl.DataFrame(cur.fetch_arrow())
        except adbc_errors.Error as exc:
            raise self._error(exc) from exc
        return found

    def _error(self, exc: Exception) -> StoreError:
        return StoreError(
            f"{self.path}: cannot read the store in bulk ({exc}); check that the file exists"
            " and is readable, or read a smaller population (it is then read by subject)"
        )

    def _sqlite3(self, sql: str, params: Sequence[Any]) -> pl.DataFrame:
        assert self.conn is not None  # an in-memory store is read through its own connection
        cursor = self.conn.execute(sql, tuple(params))
        names = [d[0] for d in cursor.description]
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row")


def in_memory(path: str) -> bool:
    """Whether ``path`` names an in-memory database (read through its own connection only)."""
    return path in ("", ":memory:") or path.startswith("file::memory:") or "mode=memory" in path
