"""What only the PostgreSQL backend has to show: URLs, COPY ingest, migrations, tamper evidence
on the server, the same audit commitments as SQLite, concurrent writers.

What both backends share is tested on each in test_ledger.py and test_scenarios.py (the
`store_factory` fixture of conftest.py, which also says how the server is found).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import errors

from helpers import pack
from pointbook.engine import Appeal
from pointbook.errors import StoreError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.store import (
    PostgresStore,
    SQLiteStore,
    Store,
    audit_sql,
    open_store,
    postgres,
    postgres_process,
    rows,
    sqlite_process,
)
from pointbook.store.audit_sql import SQLiteDb
from pointbook.store.postgres_db import PgDb
from pointbook.store.schema import MIGRATIONS, POSTGRES_MIGRATIONS

HEAD = """
domain: town
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Test scheme
purpose: Testing the PostgreSQL store.
retention: 2 years
erasure_on_request: true
"""
BODY = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {attributes: {weight_kg: integer}}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -30}
thresholds:
  - {id: hearing, kind: hearing-notice, title: Hearing, basis: Due process, direction: below, value: 50, mode: crossing, notice: 14 days, review: required}
"""
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def record(n: int, id: str, at: str, subject: str = "s1") -> RawRecord:
    body = {
        "id": id,
        "domain": "town",
        "subject": subject,
        "type": "littering",
        "occurred_at": at,
        "attributes": {"weight_kg": n % 7},
        "evidence": f"ticket-{n}",
        "issuer": "warden-ü",  # not ASCII: text is stored byte for byte on both backends
    }
    return RawRecord(n, str(body), EventIn.model_validate(body), None)


def many(n: int, prefix: str = "e", subjects: int = 1000) -> list[RawRecord]:
    """``n`` events spread over ``subjects`` subjects and the first months of 2024."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        record(
            i,
            f"{prefix}{i}",
            (start + timedelta(minutes=7 * i)).isoformat(),
            subject=f"{prefix}-s{i % subjects}",
        )
        for i in range(n)
    ]


@pytest.fixture
def pg(pg_url: str, pg_schemas: Callable[[], str]) -> Iterator[Callable[..., PostgresStore]]:
    """A maker of PostgreSQL stores: in a fresh schema, or in ``schema`` if given."""
    opened: list[PostgresStore] = []

    def make(schema: str | None = None) -> PostgresStore:
        opened.append(PostgresStore(pg_url, schema=schema or pg_schemas()))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def _ledger(store: Store) -> Ledger:
    led = Ledger(store, now=lambda: NOW)
    led.publish(pack(BODY, head=HEAD))
    return led


def test_postgres_urls_open_a_store_in_the_schema_they_name(
    pg_url: str, pg_schemas: Callable[[], str]
) -> None:
    short = pg_url.replace("postgresql://", "postgres://", 1)
    for url, name in ((pg_url, pg_schemas()), (short, pg_schemas())):
        store = open_store(f"{url}?schema={name}")
        try:
            assert isinstance(store, PostgresStore) and store.schema == name
            assert store.conn.execute("SHOW search_path").fetchone() == (name,)
            assert store.conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (name,)
            ).fetchone() == (16,)
        finally:
            store.close()


def test_connection_errors_say_how_to_fix_them() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://pointbook:s3cret@127.0.0.1:1/test?schema=x")
    message = str(caught.value)
    assert "cannot connect to PostgreSQL at postgresql://pointbook:***@127.0.0.1:1/test" in message
    assert "Is the PostgreSQL server running" in message and "--db or POINTBOOK_DB" in message
    assert "s3cret" not in message


def test_migrations_match_sqlites_and_apply_once(
    pg: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    assert [n for n, _ in POSTGRES_MIGRATIONS] == [n for n, _ in MIGRATIONS]
    first = pg()
    applied = first._query("SELECT name, applied_us FROM pb_migrations ORDER BY name")
    assert [r[0] for r in applied] == [n for n, _ in MIGRATIONS]
    again = pg(first.schema)  # a second store on the same schema
    first.migrate()
    again.migrate()
    assert again._query("SELECT name, applied_us FROM pb_migrations ORDER BY name") == applied
    # Same tables, same columns in the same order (commitments read rows with SELECT *).
    lite = sqlite3.connect(tmp_path / "s.db")
    try:
        SQLiteStore(tmp_path / "s.db").close()
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert len(tables) == 16
        for table in tables:
            want = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
            got = first._query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s ORDER BY ordinal_position",
                (first.schema, table),
            )
            assert [r[0] for r in got] == want, table
    finally:
        lite.close()


def test_stores_opened_at_once_on_a_new_schema_migrate_it_once(
    pg: Callable[..., PostgresStore], pg_schemas: Callable[[], str]
) -> None:
    """Processes starting together: the schema and each migration are created once, under the
    store's lock, and every store opens."""
    name = pg_schemas()
    opened: list[PostgresStore] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(pg(name))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(opened) == 4
    assert [r[0] for r in opened[0]._query("SELECT name FROM pb_migrations ORDER BY 1")] == [
        n for n, _ in MIGRATIONS
    ]


def test_write_batch_copies_a_large_batch(
    pg: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    copied: list[tuple[str, int]] = []
    real = postgres.copy_rows

    def spy(cur: Any, table: str, found: Any) -> None:
        copied.append((table, len(found)))
        real(cur, table, found)

    monkeypatch.setattr(postgres, "copy_rows", spy)
    store = pg()
    led = _ledger(store)
    report = led.ingest(many(20_000), batch_size=20_000, refresh=False)
    assert (report.accepted, report.entries, report.rejected) == (20_000, 20_000, [])
    assert copied == [("pb_events", 20_000), ("pb_entries", 20_000)]
    assert store._query("SELECT count(*) FROM pb_events") == [(20_000,)]
    assert store._query("SELECT count(*) FROM pb_dirty") == [(1000,)]
    # The same batch again is all duplicates (decided before the write: no COPY at all).
    again = led.ingest(many(20_000), batch_size=20_000, refresh=False)
    assert (again.accepted, again.duplicates, len(copied)) == (0, 20_000, 2)
    result = store.verify()
    assert result.ok and result.records == 20_001, result.reason


def test_a_duplicate_write_fails_loudly_and_leaves_nothing(
    pg: Callable[..., PostgresStore],
) -> None:
    store = pg()
    led = _ledger(store)
    event, entries = led.to_event(record(1, "e1", "2024-01-10"))
    store.write_batch([(event, event.content_hash())], entries, NOW)
    other, more = led.to_event(record(2, "e2", "2024-01-11"))
    # The ledger would have refused e1 as a duplicate; written anyway, the key refuses it.
    with pytest.raises(errors.UniqueViolation):
        store.write_batch([(other, "h2"), (event, event.content_hash())], more + entries, NOW)
    assert store.event_hashes("town", ["e1", "e2"]).keys() == {"e1"}
    assert store.verify().ok


def test_audit_verify_catches_rows_changed_in_postgres(pg: Callable[..., PostgresStore]) -> None:
    store = pg()
    led = _ledger(store)
    led.ingest([record(1, "e1", "2024-01-10"), record(2, "e2", "2024-02-10")])
    assert store.verify().ok
    root = store.audit_root()

    store.conn.execute("""UPDATE pb_events SET attributes = '{"weight_kg": 9}' WHERE id = 'e2'""")
    result = store.verify()
    assert not result.ok and result.root == root
    assert (
        result.reason
        == f"event:town/e2 (record {result.first_bad}) was changed after it was written"
    )

    store.conn.execute("""UPDATE pb_events SET attributes = '{"weight_kg": 2}' WHERE id = 'e2'""")
    assert store.verify().ok
    store.conn.execute("INSERT INTO pb_dirty VALUES ('town', 'x')")  # not audited: fine
    store.conn.execute(
        "INSERT INTO pb_entries SELECT domain, 'ghost', rule_id, subject, pack_version, pack_hash,"
        " delta, occurred_us, counts_until_us, title, evidence, tags, daily_cap, recorded_us"
        " FROM pb_entries WHERE event_id = 'e1'"
    )
    result = store.verify()
    assert not result.ok and "event:town/ghost" in (result.reason or "")
    store.conn.execute("DELETE FROM pb_entries WHERE event_id = 'ghost'")

    store.conn.execute("DELETE FROM pb_audit WHERE seq = 2")  # the chain itself
    result = store.verify()
    assert (result.ok, result.records, result.first_bad) == (False, 1, 3)
    assert "out of place" in (result.reason or "")


def _same_history(store: Store) -> Ledger:
    """One history through every audited write, with fixed ids and a clock that moves."""
    clock = [NOW]
    led = Ledger(store, now=lambda: clock[0])
    led.publish(pack(BODY, head=HEAD))
    led.ingest([record(i, f"e{i}", f"2022-0{i}-10", subject=f"s{i % 2}") for i in range(1, 8)])
    clock[0] += timedelta(minutes=1)
    led.ingest([record(9, "late", "2022-01-02", subject="s1")])  # history changes: revisions
    clock[0] += timedelta(minutes=1)
    (hearing, _), *_ = led.decisions("town", "s1")
    led.confirm_decision("town", hearing.id, "reviewer-1", "checked the tickets")
    appeal = Appeal("a-1", "town", "s0", "it was not me", clock[0], event_id="e2")
    store.insert_appeal(appeal)
    led.refresh_decisions("town")
    clock[0] += timedelta(minutes=1)
    led.decide_appeal("a-1", "upheld", "reviewer-2", "the photo shows someone else")
    led.set_switch("town", True, "audit of the wardens", "ops")
    led.set_switch("town", False, "audit done", "ops")
    clock[0] += timedelta(days=400)
    assert led.run_retention() == {"town": 8}
    led.erase_subject("town", "s0")
    return led


def test_the_same_history_commits_the_same_on_both_backends(
    pg: Callable[..., PostgresStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Salts are random per row; fixed here, every commitment must come out the same.
    for module in (rows, sqlite_process, postgres_process):
        monkeypatch.setattr(module, "new_salt", lambda: "5a1t" * 8)
    lite, server = SQLiteStore(tmp_path / "same.db"), pg()
    try:
        answers = []
        for store in (lite, server):
            led = _same_history(store)
            answers.append(
                (
                    led.state("town", "s1").points,
                    [(d.id, s) for d, s in led.decisions("town")],
                    led.outbox("town"),
                    led.pseudonym("town", "x") == led.pseudonym("town", "x"),
                )
            )
            assert store.verify().ok
        assert answers[0] == answers[1]
        chain = [lite.conn.execute(f"SELECT {audit_sql.AUDIT_COLS} FROM pb_audit ORDER BY seq")]
        lite_chain = chain[0].fetchall()
        pg_chain = server._query(f"SELECT {audit_sql.AUDIT_COLS} FROM pb_audit ORDER BY seq")
        assert len(lite_chain) > 30 and {r[2] for r in lite_chain} == {
            "pack",
            "event",
            "decision",
            "confirmation",
            "appeal",
            "appeal-decision",
            "switch",
            "erasure",
            "outbox",
        }
        assert pg_chain == lite_chain  # same records, same order, same hashes
        assert lite.audit_root() == server.audit_root()
        # The commitment each backend recomputes from its rows today, ref by ref.
        with server.conn.cursor() as cur:
            for ref in sorted({r[4] for r in lite_chain}):
                mine = audit_sql.commitment_of(SQLiteDb(lite.conn), ref)
                assert audit_sql.commitment_of(PgDb(cur), ref) == mine, ref
    finally:
        lite.close()


def test_two_writers_leave_one_chain_that_verifies(
    pg: Callable[..., PostgresStore],
) -> None:
    """Two stores (two connections) writing at once, as two processes would: batches of events
    and switch changes interleave in one chain. (Decisions are refreshed afterwards: two
    ledgers refreshing the same dirty subjects at once would both write revision 1 and the
    second would be refused by the key, on either backend.)"""
    first = pg()
    second = pg(first.schema)
    leader = _ledger(first)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(store: PostgresStore, prefix: str) -> None:
        try:
            led = Ledger(store, now=lambda: NOW)
            mine = many(600, prefix, subjects=40)
            barrier.wait()
            for i in range(0, 600, 30):
                report = led.ingest(mine[i : i + 30], refresh=False)
                assert report.accepted == 30
                led.set_switch("town", False, f"batch {i} written", prefix)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(first, "a")),
        threading.Thread(target=run, args=(second, "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    leader.refresh_decisions()
    result = first.verify()
    assert result.ok, result.reason
    kinds = dict(first._query("SELECT kind, count(*) FROM pb_audit GROUP BY kind"))
    assert (kinds["pack"], kinds["event"], kinds["switch"]) == (1, 1200, 40)
    assert kinds["decision"] > 0
    # The writers' records interleave in the chain: the lock queued them, it did not fail them.
    writers = [r[0] for r in first._query("SELECT domain || kind FROM pb_audit ORDER BY seq")]
    actors = [r[0] for r in first._query("SELECT actor FROM pb_switches ORDER BY seq")]
    assert len(writers) == result.records and set(actors) == {"a", "b"}
    assert second.verify() == result


def test_copy_ingest_rate_is_reported(pg: Callable[..., PostgresStore]) -> None:
    """The time of write_batch alone for 20k events (the figure docs/engine.md quotes)."""
    store = pg()
    led = _ledger(store)
    judged = [led.to_event(r) for r in many(20_000)]
    events = [(e, e.content_hash()) for e, _ in judged]
    entries = [n for _, ns in judged for n in ns]
    start = time.perf_counter()
    store.write_batch(events, entries, NOW)
    elapsed = time.perf_counter() - start
    assert store._query("SELECT count(*) FROM pb_entries") == [(20_000,)]
    print(f"write_batch: 20,000 events in {elapsed:.2f}s ({20_000 / elapsed:,.0f} events/s)")
