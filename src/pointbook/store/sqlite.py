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
from pointbook.store import sqlite_audit as audit
from pointbook.store.audit import VerifyResult, commit, new_salt
from pointbook.store.base import DecisionRow, PackRow
from pointbook.store.schema import MIGRATIONS
from pointbook.store.sqlite_process import ProcessTables

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_CHUNK = 500


def _chunks(seq: Sequence[T], n: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


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
        event_rows = [
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
                e.incident,
                new_salt(),
                None,
            )
            for e, h in events
        ]
        entry_rows = [
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
        ]
        by_event: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for r in entry_rows:
            by_event.setdefault((r[0], r[1]), []).append(r[2:])
        records = [
            (
                "event",
                r[0],
                f"event:{r[0]}/{r[1]}",
                audit.event_commitment(r, by_event.get((r[0], r[1]), [])),
            )
            for r in event_rows
        ]
        with self.transaction() as c:
            c.executemany(f"INSERT INTO pb_events VALUES ({', '.join('?' * 13)})", event_rows)
            c.executemany(f"INSERT INTO pb_entries VALUES ({', '.join('?' * 14)})", entry_rows)
            c.executemany(
                "INSERT OR IGNORE INTO pb_dirty VALUES (?, ?)",
                sorted({(e.domain, e.subject) for e, _ in events}),
            )
            audit.append(c, rec, records)

    def subject_events(self, domain: str, subjects: Sequence[str]) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {s: [] for s in subjects}
        for chunk in _chunks(list(subjects)):
            marks = ",".join("?" * len(chunk))
            for r in self._query(
                "SELECT id, subject, type, occurred_us, attributes, evidence, issuer, incident,"
                " received_us, erased_us FROM pb_events "
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
                        incident=r[7],
                        reported_at=from_micros(r[8]),
                        judged=None if r[9] is None else self._judged(domain, r[0]),
                    )
                )
        return out

    def _judged(self, domain: str, event_id: str) -> tuple[Entry, ...]:
        """The entries of an event whose details were erased (the fold uses them as judged)."""
        rows = self._query(
            "SELECT subject FROM pb_entries WHERE domain = ? AND event_id = ? LIMIT 1",
            (domain, event_id),
        )
        if not rows:
            return ()
        return tuple(n for n in self.subject_entries(domain, rows[0][0]) if n.event_id == event_id)

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
        revisions: Sequence[tuple[Decision, int, bool, str]],
        recorded_at: datetime,
    ) -> None:
        """Append decision revisions, queue each once in the outbox, and clear the work list:
        one transaction, so a change is never recorded without being queued (or twice)."""
        rec = to_micros(recorded_at)
        rows = [
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
                int(d.requires_review),
                reason,
            )
            for d, rev, withdrawn, reason in revisions
        ]
        outbox = [
            (
                domain,
                f"{r[1]}:{r[2]}",
                r[1],
                json.dumps(
                    {
                        "domain": domain,
                        "decision_id": r[1],
                        "revision": r[2],
                        "subject": r[3],
                        "kind": r[5],
                        "change": "cancelled" if r[16] else ("new" if r[2] == 1 else "revised"),
                        "reason": r[19],
                    },
                    sort_keys=True,
                ),
                rec,
            )
            for r in rows
        ]
        with self.transaction() as c:
            c.executemany(f"INSERT INTO pb_decisions VALUES ({', '.join('?' * 20)})", rows)
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
                [
                    (
                        "decision",
                        domain,
                        f"decision:{domain}/{r[1]}/{r[2]}",
                        commit(["decision", list(r)]),
                    )
                    for r in rows
                ],
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
        requires_review=bool(r[18]),
    )
    return DecisionRow(d, r[2], bool(r[16]), from_micros(r[17]), r[19])
