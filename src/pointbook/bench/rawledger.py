"""The storage floor of the engine's own output, measured in the same run.

`raw insert` in `bench ingest` writes one event-shaped row per event: what the storage takes
for the input. The engine writes more than that for each event (the event, its entries, an
audit record per row, decision revisions and notifications). This baseline takes every row
the timed ingest left in those tables, builds an empty copy of the tables (same columns,
keys and indexes; no engine), and times inserting the rows again with the backend's fastest
path: SQLite ``executemany`` and PostgreSQL binary COPY, in as many durable transactions as
the ingest had batches, each holding an equal share of every table. Reading the rows back is
not timed. The ratio of the engine's time to this one says how close the engine is to the
storage for what it stores, which the event-row baseline cannot say.
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from pointbook.bench import bulk_sqlite
from pointbook.store.base import Store
from pointbook.store.sqlite import SQLiteStore

__all__ = ["LEDGER_TABLES", "time_raw_ledger"]

# What `Ledger.ingest` (with its decisions refresh) writes; pack rows and the transient work
# list are left out. The outbox is copied without its generated sequence, as the store does.
LEDGER_TABLES = ("pb_events", "pb_entries", "pb_audit", "pb_decisions", "pb_outbox")
_OUTBOX = "pb_outbox (domain, key, decision_id, payload, created_us)"
Row = tuple[Any, ...]


def _slices(found: list[Row], parts: int) -> list[list[Row]]:
    size = max(1, math.ceil(len(found) / parts))
    return [found[i * size : (i + 1) * size] for i in range(parts)]


def time_raw_ledger(store: Store, backend: str, folder: Path, batches: int) -> tuple[int, float]:
    """(rows, seconds): the ledger rows of ``store`` inserted into empty copies of its tables
    (a ``backend`` store: a SQLite file, or a PostgreSQL store in a schema of its own)."""
    if backend == "sqlite":
        if isinstance(store, SQLiteStore):
            return _sqlite(Path(store.path), folder / "raw-ledger.db", batches)
    else:
        from pointbook.store.postgres import PostgresStore  # psycopg loads only for PostgreSQL

        if isinstance(store, PostgresStore) and store.schema is not None:
            return _postgres(store.schema, batches)
    raise TypeError(f"{type(store).__name__} is not a {backend} store this baseline can copy")


def _sqlite(source: Path, target: Path, batches: int) -> tuple[int, float]:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        ddl = [
            sql
            for (sql,) in src.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name IN "
                f"({', '.join('?' * len(LEDGER_TABLES))}) AND sql IS NOT NULL "
                "AND type IN ('table', 'index') ORDER BY type DESC",
                LEDGER_TABLES,
            )
        ]
        tables = {t: src.execute(f"SELECT * FROM {t}").fetchall() for t in LEDGER_TABLES}
    finally:
        src.close()
    conn = bulk_sqlite(target)  # as the engine's bulk load
    try:
        for statement in ddl:
            conn.execute(statement)
        inserts = {
            t: f"INSERT INTO {t} VALUES ({', '.join('?' * len(found[0]))})"
            for t, found in tables.items()
            if found
        }
        parts = {t: _slices(found, batches) for t, found in tables.items() if found}
        t0 = time.perf_counter()
        for i in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            for t, insert in inserts.items():
                conn.executemany(insert, parts[t][i])
            conn.execute("COMMIT")
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    return sum(len(found) for found in tables.values()), seconds


def _postgres(schema: str, batches: int) -> tuple[int, float]:
    import psycopg
    from psycopg import sql

    from pointbook.bench import drop_schema, new_schema, pg_url
    from pointbook.store.postgres import split_url
    from pointbook.store.postgres_db import COPY_TYPES

    target = new_schema("pb_bench_raw_ledger")
    try:
        with psycopg.connect(split_url(pg_url())[0], autocommit=True) as pg:
            tables: dict[str, list[Row]] = {}
            for t in LEDGER_TABLES:
                cols = "domain, key, decision_id, payload, created_us" if t == "pb_outbox" else "*"
                query = sql.SQL("SELECT {} FROM {}.{}").format(
                    sql.SQL(cols), sql.Identifier(schema), sql.Identifier(t)
                )
                tables[t] = pg.execute(query).fetchall()
            pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target)))
            for t in LEDGER_TABLES:
                pg.execute(
                    sql.SQL(
                        "CREATE TABLE {}.{} (LIKE {}.{} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                        "INCLUDING INDEXES INCLUDING IDENTITY)"
                    ).format(
                        sql.Identifier(target),
                        sql.Identifier(t),
                        sql.Identifier(schema),
                        sql.Identifier(t),
                    )
                )
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target)))
            parts = {t: _slices(found, batches) for t, found in tables.items() if found}
            t0 = time.perf_counter()
            for i in range(batches):
                with pg.transaction(), pg.cursor() as cur:
                    for t, chunks in parts.items():
                        name = _OUTBOX if t == "pb_outbox" else t
                        with cur.copy(f"COPY {name} FROM STDIN (FORMAT BINARY)") as cp:
                            cp.set_types(COPY_TYPES[name])
                            for r in chunks[i]:
                                cp.write_row(r)
            seconds = time.perf_counter() - t0
    finally:
        drop_schema(target)
    return sum(len(found) for found in tables.values()), seconds
