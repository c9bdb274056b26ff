"""The embedded SQLite store: one file, WAL, one writer at a time (BEGIN IMMEDIATE).

Durability: `synchronous=FULL`, so an acknowledged batch survives a power loss (with WAL and
NORMAL the last commits could be lost). Every table is append-only; the one exception is
`pb_dirty`, a work list of subjects whose decisions must be refreshed, written in the same
transaction as the events that dirtied them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pointbook.dates import from_micros, to_micros
from pointbook.engine.model import Decision, Entry, Event
from pointbook.errors import StoreError
from pointbook.store.base import DecisionRow, PackRow

__all__ = ["SQLiteStore"]

T = TypeVar("T")

# Named migrations, applied in order and recorded in pb_migrations (never edited once released).
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001-initial",
        """
        CREATE TABLE pb_pack_versions (
            domain TEXT NOT NULL,
            version TEXT NOT NULL,
            effective_from_us INTEGER NOT NULL,
            published_at_us INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (domain, version)
        );
        CREATE TABLE pb_events (
            domain TEXT NOT NULL,
            id TEXT NOT NULL,
            subject TEXT NOT NULL,
            type TEXT NOT NULL,
            occurred_us INTEGER NOT NULL,
            attributes TEXT NOT NULL,
            evidence TEXT,
            issuer TEXT,
            content_hash TEXT NOT NULL,
            received_us INTEGER NOT NULL,
            PRIMARY KEY (domain, id)
        ) WITHOUT ROWID;
        CREATE INDEX pb_events_subject ON pb_events (domain, subject, occurred_us);
        CREATE TABLE pb_entries (
            domain TEXT NOT NULL,
            event_id TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            pack_version TEXT NOT NULL,
            pack_hash TEXT NOT NULL,
            delta INTEGER NOT NULL,
            occurred_us INTEGER NOT NULL,
            counts_until_us INTEGER,
            title TEXT NOT NULL,
            evidence TEXT,
            tags TEXT NOT NULL,
            daily_cap INTEGER NOT NULL,
            recorded_us INTEGER NOT NULL,
            PRIMARY KEY (domain, event_id, rule_id)
        ) WITHOUT ROWID;
        CREATE INDEX pb_entries_subject ON pb_entries (domain, subject, occurred_us);
        CREATE TABLE pb_decisions (
            domain TEXT NOT NULL,
            id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            subject TEXT NOT NULL,
            threshold_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            level INTEGER NOT NULL,
            figure INTEGER NOT NULL,
            triggered_us INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            effective_us INTEGER NOT NULL,
            ends_us INTEGER,
            attributes TEXT NOT NULL,
            trigger TEXT NOT NULL,
            pack_version TEXT NOT NULL,
            withdrawn INTEGER NOT NULL,
            recorded_us INTEGER NOT NULL,
            PRIMARY KEY (domain, id, revision)
        ) WITHOUT ROWID;
        CREATE INDEX pb_decisions_subject ON pb_decisions (domain, subject);
        CREATE TABLE pb_dirty (
            domain TEXT NOT NULL,
            subject TEXT NOT NULL,
            PRIMARY KEY (domain, subject)
        ) WITHOUT ROWID;
        """,
    ),
]

_CHUNK = 500


def _chunks(seq: Sequence[T], n: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class SQLiteStore:
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
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from exc

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlock)."""
        self._retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self._retry(lambda: self.conn.execute("COMMIT"))

    def _retry(self, fn: Callable[[], T], attempts: int = 8) -> T:
        delay = 0.05
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or i == attempts - 1:
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
                for stmt in sql.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute("INSERT INTO pb_migrations VALUES (?, ?)", (name, int(time.time() * 1e6)))

    def close(self) -> None:
        self.conn.close()

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
        with self.transaction() as c:
            c.execute(
                "INSERT INTO pb_pack_versions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row.domain,
                    row.version,
                    to_micros(row.effective_from),
                    to_micros(row.published_at),
                    row.content_hash,
                    row.text,
                ),
            )

    # -- events and entries -----------------------------------------------------------------
    def has_events(self, domain: str) -> bool:
        return bool(self._query("SELECT 1 FROM pb_events WHERE domain = ? LIMIT 1", (domain,)))

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
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO pb_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.domain,
                        e.id,
                        e.subject,
                        e.type,
                        to_micros(e.occurred_at),
                        json.dumps(dict(e.attributes), sort_keys=True),
                        e.evidence,
                        e.issuer,
                        h,
                        rec,
                    )
                    for e, h in events
                ],
            )
            c.executemany(
                "INSERT INTO pb_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        n.domain,
                        n.event_id,
                        n.rule_id,
                        n.subject,
                        n.pack_version,
                        n.pack_hash,
                        n.delta,
                        to_micros(n.occurred_at),
                        None if n.counts_until is None else to_micros(n.counts_until),
                        n.title,
                        n.evidence,
                        json.dumps(sorted(n.tags)),
                        int(n.daily_cap),
                        rec,
                    )
                    for n in entries
                ],
            )
            c.executemany(
                "INSERT OR IGNORE INTO pb_dirty VALUES (?, ?)",
                sorted({(e.domain, e.subject) for e, _ in events}),
            )

    def subject_events(self, domain: str, subjects: Sequence[str]) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {s: [] for s in subjects}
        for chunk in _chunks(list(subjects)):
            marks = ",".join("?" * len(chunk))
            for r in self._query(
                "SELECT id, subject, type, occurred_us, attributes, evidence, issuer FROM pb_events "
                f"WHERE domain = ? AND subject IN ({marks}) ORDER BY subject, occurred_us, id",
                (domain, *chunk),
            ):
                out[r[1]].append(
                    Event(
                        id=r[0],
                        domain=domain,
                        subject=r[1],
                        type=r[2],
                        occurred_at=from_micros(r[3]),
                        attributes=json.loads(r[4]),
                        evidence=r[5],
                        issuer=r[6],
                    )
                )
        return out

    def subject_entries(self, domain: str, subject: str) -> list[Entry]:
        rows = self._query(
            "SELECT event_id, rule_id, pack_version, pack_hash, delta, occurred_us, counts_until_us,"
            " title, evidence, tags, daily_cap FROM pb_entries WHERE domain = ? AND subject = ?"
            " ORDER BY occurred_us, event_id, rule_id",
            (domain, subject),
        )
        return [
            Entry(
                event_id=r[0],
                domain=domain,
                subject=subject,
                rule_id=r[1],
                pack_version=r[2],
                pack_hash=r[3],
                delta=r[4],
                occurred_at=from_micros(r[5]),
                counts_until=None if r[6] is None else from_micros(r[6]),
                title=r[7],
                evidence=r[8],
                tags=frozenset(json.loads(r[9])),
                daily_cap=bool(r[10]),
            )
            for r in rows
        ]

    # -- decisions -------------------------------------------------------------------------
    def dirty_subjects(self, domain: str | None, limit: int) -> list[tuple[str, str]]:
        if domain is None:
            rows = self._query("SELECT domain, subject FROM pb_dirty LIMIT ?", (limit,))
        else:
            rows = self._query(
                "SELECT domain, subject FROM pb_dirty WHERE domain = ? LIMIT ?", (domain, limit)
            )
        return [(r[0], r[1]) for r in rows]

    def current_decisions(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> list[DecisionRow]:
        base = (
            "SELECT d.* FROM pb_decisions d JOIN (SELECT id, MAX(revision) AS rev FROM pb_decisions"
            " WHERE domain = ?{filt} GROUP BY id) m ON d.id = m.id AND d.revision = m.rev"
            " WHERE d.domain = ? ORDER BY d.subject, d.triggered_us, d.ordinal"
        )
        rows: list[tuple[Any, ...]] = []
        if subjects is None:
            rows = self._query(base.format(filt=""), (domain, domain))
        else:
            for chunk in _chunks(list(subjects)):
                marks = ",".join("?" * len(chunk))
                rows += self._query(
                    base.format(filt=f" AND subject IN ({marks})"), (domain, *chunk, domain)
                )
        return [_decision_row(r) for r in rows]

    def write_decisions(
        self,
        domain: str,
        subjects: Iterable[str],
        revisions: Sequence[tuple[Decision, int, bool]],
        recorded_at: datetime,
    ) -> None:
        rec = to_micros(recorded_at)
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO pb_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.domain,
                        d.id,
                        rev,
                        d.subject,
                        d.threshold_id,
                        d.kind,
                        d.title,
                        d.level,
                        d.figure,
                        to_micros(d.triggered_at),
                        d.ordinal,
                        to_micros(d.effective_at),
                        None if d.ends_at is None else to_micros(d.ends_at),
                        json.dumps(dict(d.attributes), sort_keys=True),
                        d.trigger,
                        d.pack_version,
                        int(withdrawn),
                        rec,
                    )
                    for d, rev, withdrawn in revisions
                ],
            )
            c.executemany(
                "DELETE FROM pb_dirty WHERE domain = ? AND subject = ?",
                [(domain, s) for s in subjects],
            )


def _decision_row(r: tuple[Any, ...]) -> DecisionRow:
    d = Decision(
        id=r[1],
        domain=r[0],
        subject=r[3],
        threshold_id=r[4],
        kind=r[5],
        title=r[6],
        level=r[7],
        figure=r[8],
        triggered_at=from_micros(r[9]),
        ordinal=r[10],
        effective_at=from_micros(r[11]),
        ends_at=None if r[12] is None else from_micros(r[12]),
        attributes=json.loads(r[13]),
        trigger=r[14],
        pack_version=r[15],
    )
    return DecisionRow(d, r[2], bool(r[16]), from_micros(r[17]))
