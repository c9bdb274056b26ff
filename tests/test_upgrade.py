"""T12, backup → restore → replay, and upgrades from every earlier schema with data.

Backup and restore:
- SQLite, by the online backup API and by a file copy while quiescent; PostgreSQL, by copying
  every row into a fresh schema (pg_dump is not assumed: the rows are the store); and across
  backends, a SQLite store's rows loaded into PostgreSQL. The restored store verifies, has the
  same audit root, balances and decisions, and replaying the same events changes nothing.
- A backup taken half-way, restored, then sent the *whole* event file and the same later
  operations (same clock, same salts) ends bit-identical to the store that never stopped: the
  same audit root.

Upgrade: a store is created at each earlier migration level (only the first k of
`MIGRATIONS` / `POSTGRES_MIGRATIONS`), filled with the rows the code of that level wrote, then
opened with the current code, which migrates it. Balances, decisions and `verify` must match a
store built at the current level from the same data, before and after more writes.

Each test simulates a clean stop (a quiescent copy); crashes are T1's and T6's.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pointbook.intake import RawRecord
from pointbook.ledger import Ledger
from pointbook.store import PostgresStore, SQLiteStore, Store
from pointbook.store import postgres as pg_module
from pointbook.store import sqlite as sqlite_module
from pointbook.store.postgres import split_url
from pointbook.store.schema import MIGRATIONS, POSTGRES_MIGRATIONS
from upgrade.rich_store import (
    Clock,
    Determinism,
    RichStore,
    build,
    deterministic,
    event_bodies,
    ingest,
    publish_all,
    raw,
    town_event,
)

# pb_migrations is the store's own: a restore keeps the target's.
DATA_TABLES = [
    "pb_pack_versions",
    "pb_events",
    "pb_entries",
    "pb_decisions",
    "pb_dirty",
    "pb_audit",
    "pb_appeals",
    "pb_appeal_decisions",
    "pb_confirmations",
    "pb_outbox",
    "pb_outbox_taken",
    "pb_switches",
    "pb_domain_keys",
    "pb_shares",
    "pb_tokens",
]
IDENTITY = {"pb_outbox": "seq", "pb_switches": "seq"}


def snapshot(rich: RichStore) -> tuple[str, dict[Any, int], dict[str, Any]]:
    return rich.store.audit_root(), rich.balances(), rich.decisions()


def later_writes(ledger: Ledger, clock: Clock, seed: int) -> None:
    """What happens after a backup or an upgrade: new and late events, an appeal decided."""
    ingest(
        ledger,
        [
            town_event(f"after-{seed}-1", "littering", "2025-12-20", "t-01"),
            town_event(f"after-{seed}-2", "littering", "2025-12-21", "t-01"),
            town_event(f"after-{seed}-3", "noise", "2024-02-02", "t-04"),
        ],
    )
    clock.advance(hours=1)
    entry = ledger.store.subject_entries("town", "t-01")[-1]
    appeal = ledger.file_appeal("town", "t-01", "Not me.", event_id=entry.event_id)
    clock.advance(hours=1)
    ledger.decide_appeal(appeal.id, "upheld", "reviewer-b", "Wrong street.")
    clock.advance(hours=1)


# -- backup and restore: SQLite ------------------------------------------------------------


def sqlite_backup(src: SQLiteStore, dest: Path, method: str) -> None:
    if method == "backup-api":
        target = sqlite3.connect(dest)
        try:
            src.conn.backup(target)
        finally:
            target.close()
    else:
        # Quiescent: checkpoint the WAL into the file, then copy the file alone.
        src.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(src.path, dest)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["backup-api", "file-copy"])
def test_t12_sqlite_backup_restores_the_same_store_and_replay_changes_nothing(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, det = Clock(), Determinism()
    with deterministic(monkeypatch, det, clock):
        rich = build(SQLiteStore(tmp_path / "live.db"), clock=clock)
        before = snapshot(rich)
        sqlite_backup(rich.store, tmp_path / "backup.db", method)  # type: ignore[arg-type]
        rich.ledger.close()
        restored = RichStore(Ledger(SQLiteStore(tmp_path / "backup.db"), now=clock), clock)
        try:
            assert restored.ledger.verify().ok
            assert snapshot(restored) == before
            sent = replay(rich)
            report = restored.ledger.ingest(sent)
            assert (report.accepted, report.duplicates, report.rejected) == (0, len(sent), [])
            assert snapshot(restored) == before, "replaying the same events changed the store"
        finally:
            restored.ledger.close()


def replay(rich: RichStore) -> list[RawRecord]:
    """The event file sent again, less the events of the subject erased on request: their ids
    are gone with the record, so a resend would report them anew (a client stops sending an
    erased person's events)."""
    return [raw(b) for b in rich.bodies if b["subject"] != ERASED_SUBJECT]


ERASED_SUBJECT = "t-05"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["backup-api", "file-copy"])
def test_t12_a_backup_taken_half_way_then_replayed_ends_bit_identical(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = event_bodies(11, 30)
    half = len(bodies) // 2
    clock, det = Clock(), Determinism()
    with deterministic(monkeypatch, det, clock):
        live = Ledger(SQLiteStore(tmp_path / "live.db"), now=clock)
        publish_all(live)
        ingest(live, bodies[:half])
        clock.advance(hours=1)
        mark = (det.n, clock.at, live.store.audit_root())
        sqlite_backup(live.store, tmp_path / "backup.db", method)  # type: ignore[arg-type]
        ingest(live, bodies[half:])
        clock.advance(hours=1)
        later_writes(live, clock, 11)
        expected = RichStore(live, clock)
        want = snapshot(expected)
        live.close()

        det.n, clock.at = mark[0], mark[1]
        restored = Ledger(SQLiteStore(tmp_path / "backup.db"), now=clock)
        try:
            assert restored.store.audit_root() == mark[2]
            report = restored.ingest([raw(b) for b in bodies])  # the whole file again
            assert (report.accepted, report.duplicates) == (len(bodies) - half, half)
            clock.advance(hours=1)
            later_writes(restored, clock, 11)
            got = snapshot(RichStore(restored, clock))
            assert got[1:] == want[1:], "balances or decisions differ after restore and replay"
            assert got[0] == want[0], "the audit root differs after restore and replay"
            assert restored.verify().ok
        finally:
            restored.close()


# -- backup and restore: PostgreSQL, and SQLite to PostgreSQL ------------------------------


def pg_copy(conn: psycopg.Connection[Any], src: str, dst: str) -> None:
    """Restore by rows: every data table of schema ``src`` into the migrated, empty ``dst``."""
    with conn.transaction():
        for table in DATA_TABLES:
            conn.execute(
                sql.SQL("INSERT INTO {}.{} SELECT * FROM {}.{}").format(
                    sql.Identifier(dst),
                    sql.Identifier(table),
                    sql.Identifier(src),
                    sql.Identifier(table),
                )
            )
        reset_identities(conn, dst)


def reset_identities(conn: psycopg.Connection[Any], schema: str) -> None:
    """Identity columns continue after the restored rows (a restore step a row copy needs)."""
    for table, col in IDENTITY.items():
        qualified = f"{schema}.{table}"
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX({}), 0) + 1, false)"
                " FROM {}.{}"
            ).format(sql.Identifier(col), sql.Identifier(schema), sql.Identifier(table)),
            (qualified, col),
        )


@pytest.mark.timeout(300)
def test_t12_postgres_rows_copied_to_a_fresh_schema_restore_the_same_store(
    pg_url: str, pg_schemas: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, det = Clock(), Determinism()
    src_schema, dst_schema = pg_schemas(), pg_schemas()
    with deterministic(monkeypatch, det, clock):
        rich = build(PostgresStore(pg_url, schema=src_schema), clock=clock)
        before = snapshot(rich)
        target = PostgresStore(pg_url, schema=dst_schema)
        with psycopg.connect(split_url(pg_url)[0], autocommit=True) as conn:
            pg_copy(conn, src_schema, dst_schema)
        restored = RichStore(Ledger(target, now=clock), clock)
        try:
            assert restored.ledger.verify().ok
            assert snapshot(restored) == before
            restored.ledger.ingest(replay(rich))
            assert snapshot(restored) == before
            # Later writes land after the restored rows (identities were reset) and, with the
            # same clock and salts, give both stores the same root again.
            mark = (det.n, clock.at)
            later_writes(rich.ledger, clock, 3)
            want = snapshot(rich)
            det.n, clock.at = mark
            later_writes(restored.ledger, clock, 3)
            assert restored.ledger.verify().ok
            assert snapshot(restored) == want
        finally:
            rich.ledger.close()
            restored.ledger.close()


@pytest.mark.timeout(300)
def test_t12_a_sqlite_store_loaded_into_postgres_verifies_with_the_same_root(
    pg_url: str, pg_schemas: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commitments are the same on both backends: the rows of one are a backup of the
    other."""
    clock, det = Clock(), Determinism()
    with deterministic(monkeypatch, det, clock):
        rich = build(SQLiteStore(tmp_path / "live.db"), clock=clock)
        before = snapshot(rich)
        target = PostgresStore(pg_url, schema=pg_schemas())
        conn = rich.store.conn  # type: ignore[attr-defined]
        try:
            with target.conn.transaction(), target.conn.cursor() as cur:
                for table in DATA_TABLES:
                    found = conn.execute(f"SELECT * FROM {table}").fetchall()
                    if found:
                        marks = ", ".join(["%s"] * len(found[0]))
                        cur.executemany(f"INSERT INTO {table} VALUES ({marks})", found)
                reset_identities(target.conn, target.schema or "public")
            moved = RichStore(Ledger(target, now=clock), clock)
            assert moved.ledger.verify().ok
            assert snapshot(moved) == before
        finally:
            rich.ledger.close()
            target.close()


# -- upgrades --------------------------------------------------------------------------------

LEVELS = list(range(1, len(MIGRATIONS)))
assert len(MIGRATIONS) == len(POSTGRES_MIGRATIONS)


@contextmanager
def schema_at(backend: str, level: int) -> Iterator[None]:
    """New stores opened inside are created (and written) at migration ``level``."""
    with pytest.MonkeyPatch.context() as m:
        if backend == "sqlite":
            m.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:level])
        else:
            m.setattr(pg_module, "POSTGRES_MIGRATIONS", POSTGRES_MIGRATIONS[:level])
        yield


# The columns each table had at migration 0001 (0002 added the rest at the end).
LEVEL1_WIDTH = {"pb_pack_versions": 6, "pb_events": 10, "pb_entries": 14, "pb_decisions": 18}


def level1_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the 0001 code wrote for the same history: the tables of 0001, their columns."""
    return {
        t: [r[:w] for r in store._query(f"SELECT * FROM {t}")]  # type: ignore[attr-defined]
        for t, w in LEVEL1_WIDTH.items()
    }


def write_level1(store: Store, found: dict[str, list[tuple[Any, ...]]]) -> None:
    if isinstance(store, SQLiteStore):
        with store.transaction() as c:
            for t, rows_ in found.items():
                if rows_:
                    marks = ", ".join("?" * len(rows_[0]))
                    c.executemany(f"INSERT INTO {t} VALUES ({marks})", rows_)
        return
    assert isinstance(store, PostgresStore)
    with store.conn.transaction(), store.conn.cursor() as cur:
        for t, rows_ in found.items():
            if rows_:
                marks = ", ".join(["%s"] * len(rows_[0]))
                cur.executemany(f"INSERT INTO {t} VALUES ({marks})", rows_)


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    """Opens (creating on first use) the store named ``name`` of one backend."""
    opened: list[Store] = []
    schemas: dict[str, str] = {}
    if request.param == "sqlite":

        def open_(name: str) -> Store:
            opened.append(SQLiteStore(tmp_path / f"{name}.db"))
            return opened[-1]

    else:
        url: str = request.getfixturevalue("pg_url")
        new_schema: Callable[[], str] = request.getfixturevalue("pg_schemas")

        def open_(name: str) -> Store:
            schema = schemas.setdefault(name, new_schema())
            opened.append(PostgresStore(url, schema=schema))
            return opened[-1]

    open_.backend = request.param  # type: ignore[attr-defined]
    yield open_
    for store in opened:
        store.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("level", LEVELS)
def test_t12_a_store_from_an_earlier_schema_upgrades_with_its_data(
    level: int, opener: Callable[[str], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: str = opener.backend  # type: ignore[attr-defined]
    clock, det = Clock(), Determinism()
    with deterministic(monkeypatch, det, clock):
        # The reference: the same history written at the current level.
        reference = build(opener("reference"), clock=clock, tokens=False) if level > 1 else None
        clock.at, det.n = Clock().at, 0
        if level == 1:
            # 0001 had no due process: packs, events, entries and decisions only.
            reference = RichStore(
                Ledger(opener("reference"), now=clock), clock, event_bodies(7, 40)
            )
            publish_all(reference.ledger)
            ingest(reference.ledger, reference.bodies)
            clock.at, det.n = Clock().at, 0
            with schema_at(backend, 1):
                old_store = opener("old")
                write_level1(old_store, level1_rows(reference.store))
                old_store.close()
        else:
            with schema_at(backend, level):
                old = build(opener("old"), clock=clock, tokens=False)
                old.ledger.close()
        assert reference is not None
        want = snapshot(reference)

        upgraded = RichStore(Ledger(opener("old"), now=clock), clock, reference.bodies)  # migrates
        names = [r[0] for r in upgraded.store._query("SELECT name FROM pb_migrations ORDER BY 1")]  # type: ignore[attr-defined]
        assert names == [n for n, _ in MIGRATIONS]
        result = upgraded.ledger.verify()
        assert result.ok, f"{backend} store from schema level {level}: {result.reason}"
        got = snapshot(upgraded)
        assert got[1:] == want[1:], "balances or decisions changed across the upgrade"
        if level > 1:
            assert got[0] == want[0], "the audit root changed across the upgrade"

        # The upgraded store goes on like the reference: the same file resent (duplicates),
        # then new and late events and an appeal, at the same times with the same salts.
        mark = (det.n, clock.at)
        for rich in (reference, upgraded):
            det.n, clock.at = mark
            report = rich.ledger.ingest(replay(rich) if level > 1 else replay_level1())
            assert report.accepted == 0 and not report.rejected
            clock.advance(hours=1)
            later_writes(rich.ledger, clock, level)
        assert upgraded.ledger.verify().ok
        after, want_after = snapshot(upgraded), snapshot(reference)
        assert after[1:] == want_after[1:]
        if level > 1:
            assert after[0] == want_after[0]


def replay_level1() -> list[RawRecord]:
    return [raw(b) for b in event_bodies(7, 40)]
