"""The embedded SQLite store: one file, WAL, one writer at a time (BEGIN IMMEDIATE).

Durability: `synchronous=FULL`, so an acknowledged batch survives a power loss (with WAL and
NORMAL the last commits could be lost). Every table is append-only; the one exception is
`pb_dirty`, a work list of subjects whose decisions must be refreshed, written in the same
transaction as the events that dirtied them.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from pointbook.dates import from_micros, to_micros
from pointbook.engine.model import Decision, Entry, Event
from pointbook.errors import StorageFullError, StoreError
from pointbook.store import audit_sql, rows
from pointbook.store import sqlite_audit as audit
from pointbook.store.audit import VerifyResult, commit
from pointbook.store.audit_sql import SQLiteDb
from pointbook.store.base import BatchRaceError, DecisionRow, PackRow
from pointbook.store.schema import AUDIT_LOG_MIGRATION, MIGRATIONS
from pointbook.store.sqlite_process import ProcessTables
from pointbook.store.sqlite_scan import population_frames

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_CHUNK = 500


def _chunks(seq: Sequence[T], n: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# The page cache of a bulk load, in KiB (a negative cache_size is KiB): 256 MiB. And the WAL
# pages a bulk load lets pile up before a checkpoint copies them into the file (the default
# is 1,000: a large load then checkpoints every few batches, writing each index page over and
# over). Measured on `bench scale`: 12-14% less CPU per event than 64 MiB and the default.
BULK_CACHE_SIZE = -262144
BULK_WAL_AUTOCHECKPOINT = 100_000


def current_decisions_sql(subjects: int | None) -> str:
    """The latest revision of each decision of a domain, or of ``subjects`` of its subjects
    (that many `?` after the domain's). With a list of subjects the subject index is named:
    without statistics SQLite's planner took a long list for a reason to scan every decision
    of the domain, so each read of the decision refresh grew with the store."""
    if subjects is None:
        pick = "FROM pb_decisions WHERE domain = ?"
    else:
        marks = ",".join("?" * subjects)
        pick = f"FROM pb_decisions INDEXED BY pb_decisions_subject WHERE domain = ? AND subject IN ({marks})"
    return (
        f"SELECT d.* FROM pb_decisions d JOIN (SELECT id, MAX(revision) AS rev {pick}"
        " GROUP BY id) m ON d.id = m.id AND d.revision = m.rev"
        " WHERE d.domain = ? ORDER BY d.subject, d.triggered_us, d.ordinal"
    )


# SQLite's primary result codes for a full disk and for an I/O error (an extended code keeps
# its primary code in the low byte). ENOSPC surfaces as either, depending on the write it hit.
_SQLITE_FULL = 13
_SQLITE_IOERR = 10


def disk_error(path: str, exc: BaseException) -> StoreError | None:
    """The actionable error for a write the disk refused (full, or failing); None otherwise.
    Without it a full disk read "database or disk is full; another writer holds the store"
    from the busy retry, or a traceback from inside a batch (the disk-full test found both)."""
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or (
        code is not None and code & 0xFF == _SQLITE_FULL
    )
    if full:
        return StorageFullError(
            f"{path}: the disk is full ({exc}). Nothing of this write was stored: the store is "
            "as it was before it. Free space on the disk that holds the store (its -wal file "
            "grows while writing), then run the same command again: what is already stored is "
            "recognised and skipped"
        )
    if code is not None and code & 0xFF == _SQLITE_IOERR:
        return StoreError(
            f"{path}: the disk refused a write ({exc}): it may be full or failing. Nothing of "
            "this write was stored. Check the free space and the disk, then run the same "
            "command again"
        )
    return None


class SQLiteStore(ProcessTables):
    """A pointbook store in one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            # Erased details must not linger in free pages of the file (principle 7, R18).
            self.conn.execute("PRAGMA secure_delete=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            full = disk_error(self.path, exc)
            raise full or StoreError(f"{self.path}: cannot open the store: {exc}") from exc

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock).
        Inside `refreshing` (the lock already held) a write is a savepoint of that transaction."""
        if self.conn.in_transaction:
            with self._savepoint():
                yield self.conn
            return
        self._retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException as exc:
            if self.conn.in_transaction:  # a full disk may have rolled it back already
                self.conn.execute("ROLLBACK")
            full = disk_error(self.path, exc)
            if full is not None:
                raise full from exc
            raise
        else:
            try:
                self._retry(lambda: self.conn.execute("COMMIT"))
            except BaseException:
                # After a failed COMMIT (an I/O error, a full disk, a reader holding on) SQLite
                # may leave the transaction open; the next write would then join it and be
                # acknowledged without ever being committed (T6 found it): roll it back.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self.conn.execute("SAVEPOINT pb_write")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:  # a full disk may have rolled back the whole of it
                self.conn.execute("ROLLBACK TO pb_write")
                self.conn.execute("RELEASE pb_write")
            raise
        else:
            self.conn.execute("RELEASE pb_write")

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """A 256 MiB page cache and checkpoints every 100,000 WAL pages while a bulk load lasts.
        The indexes are written in subject order, not insertion order: with SQLite's default
        2 MiB cache and checkpoints every 1,000 pages a large load re-reads and rewrites the
        index pages it just wrote, and the time per event grows with the store. Durability is
        the same (every commit is synced). Put back after, so a long-lived server does not keep
        the cache."""
        (before,) = self.conn.execute("PRAGMA cache_size").fetchone()
        (pages,) = self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        self.conn.execute(f"PRAGMA cache_size={BULK_CACHE_SIZE}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={BULK_WAL_AUTOCHECKPOINT}")
        try:
            yield
        finally:
            with suppress(sqlite3.Error):  # a closed or failed connection keeps nothing
                self.conn.execute(f"PRAGMA cache_size={int(before)}")
                self.conn.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    @contextmanager
    def refreshing(self, domain: str) -> Iterator[None]:
        """The write lock (BEGIN IMMEDIATE) held while ``domain``'s decisions are refreshed:
        the reads inside see every commit, and no other writer commits until it ends."""
        with self.transaction():
            yield

    def _retry(self, fn: Callable[[], T], attempts: int = 8) -> T:
        delay = 0.05
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise disk_error(self.path, exc) or StoreError(f"{self.path}: {exc}") from exc
                if i == attempts - 1:
                    raise StoreError(f"{self.path}: {exc}; another writer holds the store") from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS pb_migrations (name TEXT PRIMARY KEY, applied_us INTEGER)"
        )
        done = {r[0] for r in self.conn.execute("SELECT name FROM pb_migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with self.transaction() as c:
                if c.execute("SELECT 1 FROM pb_migrations WHERE name = ?", (name,)).fetchone():
                    continue  # another process applied it while this one waited for the lock
                for stmt in sql.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                if name == AUDIT_LOG_MIGRATION:
                    audit.adopt_unaudited(c, int(time.time() * 1e6))
                c.execute("INSERT INTO pb_migrations VALUES (?, ?)", (name, int(time.time() * 1e6)))

    def close(self) -> None:
        self.conn.close()

    def verify(self) -> VerifyResult:
        return audit.verify(self.conn)

    def audit_root(self) -> str:
        return audit.root(self.conn)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    # -- packs -----------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return [
            r[0] for r in self._query("SELECT DISTINCT domain FROM pb_pack_versions ORDER BY 1")
        ]

    def pack_rows(self, domain: str) -> list[PackRow]:
        rows = self._query(
            "SELECT domain, version, effective_from_us, published_at_us, content_hash, text "
            "FROM pb_pack_versions WHERE domain = ? ORDER BY effective_from_us",
            (domain,),
        )
        return [PackRow(r[0], r[1], from_micros(r[2]), from_micros(r[3]), r[4], r[5]) for r in rows]

    def insert_pack(self, row: PackRow) -> None:
        values = (
            row.domain,
            row.version,
            to_micros(row.effective_from),
            to_micros(row.published_at),
            row.content_hash,
            row.text,
        )
        with self.transaction() as c:
            c.execute("INSERT INTO pb_pack_versions VALUES (?, ?, ?, ?, ?, ?)", values)
            ref = f"pack:{row.domain}/{row.version}"
            audit.append(c, values[3], [("pack", row.domain, ref, commit(["pack", list(values)]))])

    # -- events and entries -----------------------------------------------------------------
    def has_events(self, domain: str, since: datetime | None = None) -> bool:
        """Whether the domain has events (occurring at or after ``since``, when given)."""
        since_us = None if since is None else to_micros(since)
        return audit_sql.has_events(SQLiteDb(self.conn), domain, since_us)

    def subjects(self, domain: str) -> list[str]:
        return [
            r[0]
            for r in self._query(
                "SELECT DISTINCT subject FROM pb_events WHERE domain = ? ORDER BY 1", (domain,)
            )
        ]

    def event_hashes(self, domain: str, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for eid, h in self._query(
                f"SELECT id, content_hash FROM pb_events WHERE domain = ? AND id IN ({marks})",
                (domain, *chunk),
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
        try:
            with self.transaction() as c:
                c.executemany(f"INSERT INTO pb_events VALUES ({', '.join('?' * 13)})", event_rows)
                c.executemany(f"INSERT INTO pb_entries VALUES ({', '.join('?' * 14)})", entry_rows)
                c.executemany(
                    "INSERT OR IGNORE INTO pb_dirty VALUES (?, ?)",
                    sorted({(e.domain, e.subject) for e, _ in events}),
                )
                audit.append(c, rec, records)
        except sqlite3.IntegrityError as exc:
            # The ledger checked these ids before taking the write lock; another process may
            # have stored some since. Rolled back whole: the caller ingests the batch again.
            stored = self._stored_ids(events)
            if stored:
                raise BatchRaceError(stored) from exc
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
        for chunk in _chunks(list(subjects)):
            marks = ",".join("?" * len(chunk))
            for r in self._query(
                rows.EVENT_SELECT
                + f"WHERE domain = ? AND subject IN ({marks}) ORDER BY subject, occurred_us, id",
                (domain, *chunk),
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
        db = SQLiteDb(self.conn)
        return audit_sql.population_rows(db, domain, subjects, since_us, until_us, attribute_types)

    def population_frames(
        self,
        domain: str,
        since_us: int | None,
        until_us: int | None,
        attribute_types: Sequence[str],
        batch: int = 500_000,
    ) -> Iterator[pl.DataFrame]:
        """A domain's events (in [since_us, until_us] where given) with their entries, in the
        tables' own order, ``batch`` events at a time (`sqlite_scan.population_frames`): a
        tenth of the cost of reading a large store subject by subject through the index. The
        caller regroups the rows by subject."""
        return population_frames(
            self.path, self.conn, domain, since_us, until_us, attribute_types, batch
        )

    def subject_entries(self, domain: str, subject: str) -> list[Entry]:
        found = self._query(
            rows.ENTRY_SELECT + "WHERE domain = ? AND subject = ?"
            " ORDER BY occurred_us, event_id, rule_id",
            (domain, subject),
        )
        return [rows.entry_from_row(domain, subject, r) for r in found]

    # -- decisions -------------------------------------------------------------------------
    def dirty_subjects(self, domain: str | None, limit: int) -> list[tuple[str, str]]:
        if domain is None:
            found = self._query("SELECT domain, subject FROM pb_dirty LIMIT ?", (limit,))
        else:
            found = self._query(
                "SELECT domain, subject FROM pb_dirty WHERE domain = ? LIMIT ?", (domain, limit)
            )
        return [(r[0], r[1]) for r in found]

    def current_decisions(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> list[DecisionRow]:
        found: list[tuple[Any, ...]] = []
        if subjects is None:
            found = self._query(current_decisions_sql(None), (domain, domain))
        else:
            for chunk in _chunks(list(subjects)):
                found += self._query(current_decisions_sql(len(chunk)), (domain, *chunk, domain))
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
        with self.transaction() as c:
            c.executemany(f"INSERT INTO pb_decisions VALUES ({', '.join('?' * 20)})", decision_rows)
            c.executemany(
                "INSERT INTO pb_outbox (domain, key, decision_id, payload, created_us) "
                "VALUES (?, ?, ?, ?, ?)",
                outbox,
            )
            c.executemany(
                "DELETE FROM pb_dirty WHERE domain = ? AND subject = ?",
                [(domain, s) for s in subjects],
            )
            audit.append(
                c,
                rec,
                [*rows.decision_records(domain, decision_rows), *rows.outbox_records(outbox)],
            )

    # -- tokens (inserted and found in sqlite_process.py) -----------------------------------
    def delete_token(self, domain: str, token_hash: str) -> bool:
        """Remove a token of ``domain`` with an audit record of the removal (see
        `audit_sql.remove_token`); whether there was one to remove."""
        with self.transaction() as c:
            return audit_sql.remove_token(SQLiteDb(c), domain, token_hash, int(time.time() * 1e6))
