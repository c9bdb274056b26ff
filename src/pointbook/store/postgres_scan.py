"""A domain's events with their entries, read from a PostgreSQL store in bulk.

The same rows as `sqlite_scan.population_frames` (the columns of `ROW_SCHEMA`), for what-if
and the compiled re-score over a large population: each page of events (keyset pagination on
the primary key) joined with its entries by the server, sent by `COPY ... TO STDOUT` as CSV
and parsed by Polars' CSV reader, instead of a Python tuple and Python objects per row. Every
page is read in one REPEATABLE READ transaction: the pages are one snapshot of the store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl
import psycopg

from pointbook.store import audit_sql
from pointbook.store.postgres_db import _pg
from pointbook.store.sqlite_scan import ROW_SCHEMA_INT_FLAGS

__all__ = ["population_frames"]


def population_frames(
    conn: psycopg.Connection[Any],
    domain: str,
    since_us: int | None,
    until_us: int | None,
    attribute_types: Sequence[str],
    batch: int = 500_000,
) -> Iterator[pl.DataFrame]:
    """The events of ``domain`` (in [since_us, until_us] where given) in event id order,
    ``batch`` events at a time, each event's row repeated for each of its entries (an event
    with none has one row, its entry columns null). Attributes are read only for live events
    of ``attribute_types`` ("" otherwise)."""
    attrs, window, extra = audit_sql.event_parts("", attribute_types, since_us, until_us)
    query = _pg(
        "COPY (SELECT e.subject, e.id, e.type, e.occurred_us,"
        " CASE WHEN e.erased_us IS NULL THEN 0 ELSE 1 END, e.attributes,"
        " n.rule_id, n.delta, n.counts_until_us, n.daily_cap"
        f" FROM (SELECT subject, id, type, occurred_us, erased_us, COALESCE({attrs}, '')"
        " AS attributes FROM pb_events"
        f" WHERE domain = ? AND id > ?{window} ORDER BY id LIMIT ?) e"
        " LEFT JOIN pb_entries n ON n.domain = ? AND n.event_id = e.id"
        " ORDER BY e.id) TO STDOUT (FORMAT csv)"
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        after = ""
        while True:
            out = io.BytesIO()
            params = [*attribute_types, domain, after, *extra, batch, domain]
            with cur.copy(query, params) as copy:
                for block in copy:
                    out.write(block)
            if not out.tell():
                return
            frame = _parse(out.getvalue())
            yield frame
            if frame["event_id"].n_unique() < batch:
                return
            after = frame["event_id"][-1]


def _parse(data: bytes) -> pl.DataFrame:
    # An unquoted empty field is a NULL in PostgreSQL's CSV: the entry columns of an event
    # with no entry; attributes are never NULL (COALESCE), read "" either way.
    frame = pl.read_csv(
        data,
        has_header=False,
        schema=ROW_SCHEMA_INT_FLAGS,  # Polars reads true/false, not PostgreSQL's t/f
    )
    return frame.with_columns(
        pl.col("attributes").fill_null(""),
        pl.col("erased").cast(pl.Boolean),
        pl.col("capped").cast(pl.Boolean),
    )
