"""The PostgreSQL store: the same tables, rows and audit chain as the SQLite one, on a server.

One connection per store, in autocommit mode for reads; every write is one transaction.
Events and entries are written with binary COPY (the fastest path into PostgreSQL); their
primary keys still make a duplicate fail loudly (idempotency is decided by the ledger before).
Each transaction that appends to the audit chain takes a transaction-level advisory lock on
the store's fixed key (`pg_advisory_xact_lock`) before it reads the chain's head, so writers
in any number of processes append one after the other; a batch's COPY runs before the lock,
in parallel with other writers. A serialization failure or deadlock is retried with backoff.

``PostgresStore(url, schema=None)``: ``url`` is a libpq URL (``postgresql://...`` or
``postgres://...``), optionally with ``?schema=NAME``; with a schema, the store lives in it
(created if missing) and sets its ``search_path`` to it alone.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import polars as pl
import psycopg
from psycopg import errors, sql
from psycopg.rows import TupleRow

from pointbook.dates import from_micros, to_micros
from pointbook.engine.model import Decision, Entry, Event
from pointbook.errors import StoreError
from pointbook.store import audit_sql, rows
from pointbook.store.audit import VerifyResult, commit
from pointbook.store.base import BatchRaceError, DecisionRow, PackRow
from pointbook.store.postgres_db import Cursor, PgDb, Row, chunks, copy_rows
from pointbook.store.postgres_process import PostgresProcessTables
from pointbook.store.postgres_scan import population_frames
from pointbook.store.schema import AUDIT_LOG_MIGRATION, POSTGRES_MIGRATIONS

__all__ = ["LOCK_CLASS", "PgDb", "PostgresStore", "redact", "split_url"]

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

# The advisory lock serialising audit appends: (LOCK_CLASS, a key from the schema's name).
LOCK_CLASS = 0x7062_0A0D
_ATTEMPTS = 8
_CONNECT_TIMEOUT_S = 10


def split_url(url: str) -> tuple[str, str | None]:
    """The libpq URL without pointbook's ``schema`` parameter, and that parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"], quote_via=quote)
    return urlunsplit(parts._replace(query=rest)), schema or None


def redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class PgBatchRaceError(BatchRaceError, errors.UniqueViolation):
    """BatchRaceError on PostgreSQL: still the driver's UniqueViolation (the key refused the
    batch) for code that catches that."""


def lock_key(schema: str) -> tuple[int, int]:
    """The store's advisory lock key: LOCK_CLASS and the CRC-32 of its schema (as int4)."""
    n = zlib.crc32(schema.encode())
    return (LOCK_CLASS, n - (1 << 32) if n >= 1 << 31 else n)


class PostgresStore(PostgresProcessTables):
    """A pointbook store in a PostgreSQL database (optionally in one schema of it)."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        conninfo, url_schema = split_url(url)
        self.url = redact(conninfo)
        self.schema = schema or url_schema
        options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo:
            options["connect_timeout"] = _CONNECT_TIMEOUT_S
        try:
            self.conn: Connection = psycopg.connect(conninfo, **options)
        except psycopg.Error as exc:
            why = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise StoreError(
                f"cannot open the store: cannot connect to PostgreSQL at {self.url} ({why}). "
                "Is the PostgreSQL server running and accepting connections there, and do the "
                "user and database exist? Check the URL given to --db or POINTBOOK_DB: "
                "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME]"
            ) from exc
        try:
            self._open_schema()
            self.migrate()
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"{self.url}: cannot open the store: {exc}") from exc
            raise

    # -- plumbing --------------------------------------------------------------------------
    def _open_schema(self) -> None:
        if self.schema is None:
            found = self.conn.execute("SELECT current_schema()").fetchone()
            name = str(found[0]) if found and found[0] else "public"
        else:
            name = self.schema
            ident = sql.Identifier(name)
            exists = self.conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)
            ).fetchone()
            if exists is None:
                with self.conn.transaction():
                    self.conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock_key(name))
                    self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            self.conn.execute(sql.SQL("SET search_path TO {}").format(ident))
        self.lock_key = lock_key(name)

    def lock(self, cur: Cursor) -> None:
        """Take the store's write lock until the transaction ends (audit appends queue here)."""
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", self.lock_key)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Nothing to change for a bulk load: the server's settings are the operator's."""
        yield

    @contextmanager
    def refreshing(self, domain: str) -> Iterator[None]:
        """One transaction holding the write lock while ``domain``'s decisions are refreshed:
        the reads inside see every commit, no other writer commits until it ends, and the
        writes inside (`write`) are savepoints of it."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                self.lock(cur)
                yield
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def append(self, cur: Cursor, at_us: int, records: Sequence[Row]) -> None:
        """Append audit records under the write lock, inside the caller's transaction."""
        self.lock(cur)
        audit_sql.append(PgDb(cur), at_us, records)

    def write(self, fn: Callable[[Cursor], T], locked: bool = True) -> T:
        """Run ``fn`` in one transaction (holding the write lock from the start if ``locked``),
        retrying serialization failures and deadlocks with backoff."""
        delay = 0.02
        for attempt in range(_ATTEMPTS):
            try:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    if locked:
                        self.lock(cur)
                    return fn(cur)
            except (errors.SerializationFailure, errors.DeadlockDetected) as exc:
                if attempt == _ATTEMPTS - 1:
                    raise StoreError(
                        f"{self.url}: {exc}; other writers kept conflicting, try again"
                    ) from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
            except psycopg.OperationalError as exc:
                raise StoreError(f"{self.url}: {exc}") from exc
        raise AssertionError("unreachable")

    def _query(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def migrate(self) -> None:
        exists = self._query("SELECT to_regclass('pb_migrations')")[0][0] is not None
        done = {r[0] for r in self._query("SELECT name FROM pb_migrations")} if exists else set()
        for name, ddl in POSTGRES_MIGRATIONS:
            if name in done:
                continue

            def step(cur: Cursor, name: str = name, ddl: str = ddl) -> None:
                cur.execute(
                    'CREATE TABLE IF NOT EXISTS pb_migrations (name TEXT COLLATE "C" PRIMARY KEY,'
                    " applied_us BIGINT)"
                )
                if cur.execute("SELECT 1 FROM pb_migrations WHERE name = %s", (name,)).fetchone():
                    return  # another process applied it while this one waited for the lock
                for stmt in ddl.split(";"):
                    if stmt.strip():
                        cur.execute(stmt)
                if name == AUDIT_LOG_MIGRATION:
                    audit_sql.adopt_unaudited(PgDb(cur), int(time.time() * 1e6))
                cur.execute(
                    "INSERT INTO pb_migrations VALUES (%s, %s)", (name, int(time.time() * 1e6))
                )

            self.write(step)

    def close(self) -> None:
        self.conn.close()

    def verify(self) -> VerifyResult:
        """Verify in one read-only snapshot, so concurrent writers cannot skew the answer."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return audit_sql.verify(PgDb(cur, stream=True))
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def audit_root(self) -> str:
        try:
            with self.conn.cursor() as cur:
                return audit_sql.root(PgDb(cur))
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    # -- packs -----------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return [
            r[0] for r in self._query("SELECT DISTINCT domain FROM pb_pack_versions ORDER BY 1")
        ]

    def pack_rows(self, domain: str) -> list[PackRow]:
        found = self._query(
            "SELECT domain, version, effective_from_us, published_at_us, content_hash, text "
            "FROM pb_pack_versions WHERE domain = %s ORDER BY effective_from_us",
            (domain,),
        )
        return [
            PackRow(r[0], r[1], from_micros(r[2]), from_micros(r[3]), r[4], r[5]) for r in found
        ]

    def insert_pack(self, row: PackRow) -> None:
        values = (
            row.domain,
            row.version,
            to_micros(row.effective_from),
            to_micros(row.published_at),
            row.content_hash,
            row.text,
        )
        ref = f"pack:{row.domain}/{row.version}"

        def txn(cur: Cursor) -> None:
            cur.execute("INSERT INTO pb_pack_versions VALUES (%s, %s, %s, %s, %s, %s)", values)
            self.append(cur, values[3], [("pack", row.domain, ref, commit(["pack", list(values)]))])

        self.write(txn)

    # -- events and entries -----------------------------------------------------------------
    def has_events(self, domain: str, since: datetime | None = None) -> bool:
        """Whether the domain has events (occurring at or after ``since``, when given)."""
        since_us = None if since is None else to_micros(since)
        try:
            with self.conn.cursor() as cur:
                return audit_sql.has_events(PgDb(cur), domain, since_us)
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def subjects(self, domain: str) -> list[str]:
        return [
            r[0]
            for r in self._query(
                "SELECT DISTINCT subject FROM pb_events WHERE domain = %s ORDER BY 1", (domain,)
            )
        ]

    def event_hashes(self, domain: str, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in chunks(ids, 5000):
            for eid, h in self._query(
                "SELECT id, content_hash FROM pb_events WHERE domain = %s AND id = ANY(%s)",
                (domain, chunk),
            ):
                out[eid] = h
        return out

    def write_batch(
        self, events: Sequence[tuple[Event, str]], entries: Sequence[Entry], received_at: datetime
    ) -> None:
        rec = to_micros(received_at)
        event_rows = rows.event_rows(events, rec)
        entry_rows = rows.entry_rows(entries, rec)
        records = rows.event_records(event_rows, entry_rows)
        dirty = sorted({(e.domain, e.subject) for e, _ in events})

        def txn(cur: Cursor) -> None:
            # The bulk of the work runs before the lock, in parallel with other writers: new
            # rows of pb_events and pb_entries, which no writer holding the lock waits on.
            copy_rows(cur, "pb_events", event_rows)
            copy_rows(cur, "pb_entries", entry_rows)
            self.lock(cur)
            cur.execute(
                "INSERT INTO pb_dirty SELECT * FROM unnest(%s::text[], %s::text[])"
                " ON CONFLICT DO NOTHING",
                ([d for d, _ in dirty], [s for _, s in dirty]),
            )
            self.append(cur, rec, records)

        try:
            self.write(txn, locked=False)
        except errors.UniqueViolation as exc:
            # The ledger checked these ids before the write; another process may have stored
            # some since. Rolled back whole: the caller ingests the batch again.
            stored = self._stored_ids(events) if exc.diag.table_name == "pb_events" else []
            if stored:
                raise PgBatchRaceError(stored) from exc
            raise

    def _stored_ids(self, events: Sequence[tuple[Event, str]]) -> list[tuple[str, str]]:
        by_domain: dict[str, list[str]] = {}
        for e, _ in events:
            by_domain.setdefault(e.domain, []).append(e.id)
        return [(d, i) for d, ids in by_domain.items() for i in self.event_hashes(d, ids)]

    def subject_events(self, domain: str, subjects: Sequence[str]) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {s: [] for s in subjects}
        decode = rows.event_from_row
        erased: dict[str, dict[str, tuple[Entry, ...]]] = {}
        for chunk in chunks(subjects):
            for r in self._query(
                rows.EVENT_SELECT + "WHERE domain = %s AND subject = ANY(%s)"
                " ORDER BY subject, occurred_us, id",
                (domain, chunk),
            ):
                if r[9] is None:
                    out[r[1]].append(decode(domain, r, None))
                else:
                    if r[1] not in erased:
                        erased[r[1]] = self._judged(domain, r[1])
                    out[r[1]].append(decode(domain, r, erased[r[1]].get(r[0], ())))
        return out

    def _judged(self, domain: str, subject: str) -> dict[str, tuple[Entry, ...]]:
        """The entries of a subject's events by event id: what the fold uses as judged for an
        event whose details were erased. Read once per subject, however many were erased."""
        judged: dict[str, tuple[Entry, ...]] = {}
        for n in self.subject_entries(domain, subject):
            judged[n.event_id] = (*judged.get(n.event_id, ()), n)
        return judged

    def population_rows(
        self,
        domain: str,
        subjects: Sequence[str],
        since_us: int | None,
        until_us: int | None,
        attribute_types: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                return audit_sql.population_rows(
                    PgDb(cur), domain, subjects, since_us, until_us, attribute_types
                )
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def population_frames(
        self,
        domain: str,
        since_us: int | None,
        until_us: int | None,
        attribute_types: Sequence[str],
        batch: int = 500_000,
    ) -> Iterator[pl.DataFrame]:
        """A domain's events (in [since_us, until_us] where given) with their entries, in
        event id order, ``batch`` events at a time, joined by the server and sent as CSV by
        COPY (`postgres_scan.population_frames`). The caller regroups the rows by subject."""
        try:
            yield from population_frames(
                self.conn, domain, since_us, until_us, attribute_types, batch
            )
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    def subject_entries(self, domain: str, subject: str) -> list[Entry]:
        found = self._query(
            rows.ENTRY_SELECT + "WHERE domain = %s AND subject = %s"
            " ORDER BY occurred_us, event_id, rule_id",
            (domain, subject),
        )
        return [rows.entry_from_row(domain, subject, r) for r in found]

    # -- decisions -------------------------------------------------------------------------
    def dirty_subjects(self, domain: str | None, limit: int) -> list[tuple[str, str]]:
        # In key order, as SQLite's scan of the same table returns them.
        if domain is None:
            found = self._query(
                "SELECT domain, subject FROM pb_dirty ORDER BY domain, subject LIMIT %s", (limit,)
            )
        else:
            found = self._query(
                "SELECT domain, subject FROM pb_dirty WHERE domain = %s"
                " ORDER BY domain, subject LIMIT %s",
                (domain, limit),
            )
        return [(r[0], r[1]) for r in found]

    def current_decisions(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> list[DecisionRow]:
        base = (
            "SELECT d.* FROM pb_decisions d JOIN (SELECT id, MAX(revision) AS rev FROM pb_decisions"
            " WHERE domain = %s{filt} GROUP BY id) m ON d.id = m.id AND d.revision = m.rev"
            " WHERE d.domain = %s ORDER BY d.subject, d.triggered_us, d.ordinal"
        )
        found: list[Row] = []
        if subjects is None:
            found = self._query(base.format(filt=""), (domain, domain))
        else:
            for chunk in chunks(subjects):  # chunk by chunk, in the same order as SQLite
                found += self._query(
                    base.format(filt=" AND subject = ANY(%s)"), (domain, chunk, domain)
                )
        return [rows.decision_from_row(r) for r in found]

    def write_decisions(
        self,
        domain: str,
        subjects: Iterable[str],
        revisions: Sequence[tuple[Decision, int, bool, str]],
        recorded_at: datetime,
    ) -> None:
        """Append decision revisions, queue each once in the outbox, and clear the work list:
        one transaction, so a change is never recorded without being queued (or twice)."""
        rec = to_micros(recorded_at)
        decision_rows = rows.decision_rows(revisions, rec)
        outbox = rows.outbox_rows(domain, decision_rows, rec)
        done = list(subjects)

        def txn(cur: Cursor) -> None:
            copy_rows(cur, "pb_decisions", decision_rows)
            copy_rows(cur, "pb_outbox (domain, key, decision_id, payload, created_us)", outbox)
            cur.execute(
                "DELETE FROM pb_dirty WHERE domain = %s AND subject = ANY(%s)", (domain, done)
            )
            self.append(
                cur,
                rec,
                [*rows.decision_records(domain, decision_rows), *rows.outbox_records(outbox)],
            )

        self.write(txn)

    # -- tokens (inserted and found in postgres_process.py) ---------------------------------
    def delete_token(self, domain: str, token_hash: str) -> bool:
        """Remove a token of ``domain`` with an audit record of the removal (see
        `audit_sql.remove_token`; `write` holds the write lock the record needs); whether there
        was one to remove."""
        at_us = int(time.time() * 1e6)
        return self.write(lambda cur: audit_sql.remove_token(PgDb(cur), domain, token_hash, at_us))
