"""T5: results never depend on arrival order.

One seeded event set over the five reference packs (a few subjects per domain, so that
restorations, windows, caps, the 2024 fr-driving version and thresholds all come into play;
about a third of the events share their instant with another event of the same subject) is
delivered in many permutations: shuffled, cut into deliveries of 1-25 events, each delivery an
ingest call with its own atomic batch size (1-10), decisions refreshed after some deliveries
and not others, about 15% of the events sent again in a later delivery and 5% twice in the same
one. Every permutation must end exactly as the serial replay (one batch, in date order) does.

What is compared, and why:
- every stored event (all its fields, as read back) and every entry: byte-equal rows modulo
  the per-row salt, which is random by design (principle 8: a commitment reveals nothing);
- the live (latest, not withdrawn) decisions, field by field, and their statuses as of NOW;
  withdrawn revisions are not compared: a late event legitimately withdraws a decision an
  earlier delivery materialised, and the history of that is part of the record;
- every subject's full state (points, lines, upcoming, entry statuses, decisions) as of two
  dates, one mid-history and NOW;
- the rejected lines (by event id and code) and the duplicate counts (what was re-sent);
- the audit log: `verify()` passes, every event is committed exactly once, and every decision
  revision is queued exactly once in the outbox. The chain's root itself is NOT compared: the
  log is by design a record of arrival (one record per write, in commit order, with salted
  commitments), so two arrival orders must give two roots. A "content root" (SHA-256 over the
  compared rows) stands for it and is printed for docs/reliability.md.

Sizes: CI 100 permutations on SQLite and 3 on PostgreSQL (each also equal to the SQLite
replay); POINTBOOK_SOAK=1: 1,000 and 50. Seed: POINTBOOK_SEED (CI fixed, soak random, printed).
Crash kind: none (every delivery completes).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pointbook.demo import PACK_FILES, synthetic_event
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, load_pack_file
from pointbook.store import PostgresStore, SQLiteStore, Store

SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
SEED = int(os.environ.get("POINTBOOK_SEED") or (random.randrange(2**32) if SOAK else 5005))
PERMUTATIONS = 1000 if SOAK else 100
PG_PERMUTATIONS = 50 if SOAK else 3
NOW = datetime(2026, 1, 2, tzinfo=UTC)
AS_OF = [datetime(2023, 6, 30, tzinfo=UTC), NOW]
DOMAINS = ["fr-driving", "uk-driving", "forum", "cricket", "civic-code"]
PER_DOMAIN, SUBJECTS_PER_DOMAIN = 24, 3
PACKS = Path(__file__).parent.parent / "examples" / "packs"


def event_set(seed: int) -> list[dict[str, Any]]:
    """The events: synthetic ones of the demo's generator, a third moved onto the instant of
    an earlier event of the same subject (ties are where order could leak in)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for domain in DOMAINS:
        mine: list[dict[str, Any]] = []
        for i in range(PER_DOMAIN):
            subject = f"{domain[:2]}-{rng.randrange(SUBJECTS_PER_DOMAIN)}"
            event = synthetic_event(rng, domain, f"{domain}-{i:03d}", subject)
            twins = [e for e in mine if e["subject"] == subject]
            if twins and rng.random() < 0.35:
                event["occurred_at"] = rng.choice(twins)["occurred_at"]
            mine.append(event)
        out += mine
    return out


def raw(n: int, body: dict[str, Any]) -> RawRecord:
    return RawRecord(n, json.dumps(body), EventIn.model_validate(body), None)


# -- what a delivery order must not change ---------------------------------------------------------


def outcome(led: Ledger) -> dict[str, Any]:
    """Everything compared across permutations, read through the store's interface."""
    store = led.store
    events, entries, decisions, states, statuses = [], [], [], [], []
    for domain in DOMAINS:
        subjects = store.subjects(domain)
        for subject, evs in sorted(store.subject_events(domain, subjects).items()):
            events += [asdict(e) for e in evs]
            entries += [asdict(n) for n in store.subject_entries(domain, subject)]
            for when in AS_OF:
                states.append(led.state(domain, subject, when))
        decisions += [
            asdict(r.decision) for r in store.current_decisions(domain) if not r.withdrawn
        ]
        statuses += [
            (d.id, status)
            for d, status in led.decisions(domain, as_of=NOW, include_cancelled=False)
        ]
    return {
        "events": events,
        "entries": entries,
        "decisions": decisions,
        "statuses": sorted(statuses),
        "states": states,
    }


def content_root(found: dict[str, Any]) -> str:
    rows = {k: found[k] for k in ("events", "entries", "decisions", "statuses")}
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def audit_shape(led: Ledger) -> None:
    """The log verifies, commits each event once, and queues each decision revision once."""
    result = led.verify()
    assert result.ok, result.reason
    refs = Counter(
        ref for (ref,) in _query(led.store, "SELECT ref FROM pb_audit WHERE kind = 'event'")
    )
    assert set(refs.values()) <= {1}, [r for r, n in refs.items() if n > 1]
    ((revisions,),) = _query(led.store, "SELECT count(*) FROM pb_decisions")
    ((queued,),) = _query(led.store, "SELECT count(*) FROM pb_outbox")
    assert queued == revisions


def _query(store: Store, sql: str) -> list[tuple[Any, ...]]:
    if isinstance(store, SQLiteStore):
        return store.conn.execute(sql).fetchall()
    assert isinstance(store, PostgresStore)
    return list(store.conn.execute(sql).fetchall())


# -- deliveries ----------------------------------------------------------------------------------


def deliver(led: Ledger, events: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    """One permutation: shuffled, cut into deliveries, some re-sent; returns the rejected
    (event id, code) pairs, having checked that exactly the re-sent copies were duplicates."""
    order = events[:]
    rng.shuffle(order)
    deliveries: list[list[dict[str, Any]]] = []
    while order:
        k = rng.randint(1, 25)
        deliveries.append(order[:k])
        order = order[k:]
    resent: list[str] = []
    sent: list[dict[str, Any]] = []
    rejected: set[tuple[str | None, str]] = set()
    duplicates = 0
    for chunk in deliveries:
        batch = chunk[:]
        for e in chunk:
            if rng.random() < 0.05:
                batch.insert(rng.randrange(len(batch) + 1), e)  # twice in one delivery
                resent.append(e["id"])
        for e in sent:
            if rng.random() < 0.15 / max(1, len(deliveries) - 1):
                batch.insert(rng.randrange(len(batch) + 1), e)  # again, later
                resent.append(e["id"])
        report = led.ingest(
            [raw(i, e) for i, e in enumerate(batch, start=1)],
            batch_size=rng.randint(1, 10),
            refresh=rng.random() < 0.7,
        )
        rejected |= {(r.event_id, r.code) for r in report.rejected}
        duplicates += report.duplicates
        sent += chunk
        if rng.random() < 0.1:
            led.refresh_decisions()
    led.refresh_decisions()
    # Every copy re-sent is a duplicate, except copies of a rejected event: rejected again.
    refused = {eid for eid, _ in rejected}
    assert duplicates == sum(1 for eid in resent if eid not in refused)
    return {"rejected": sorted(rejected)}


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def versions() -> dict[str, list[PackVersion]]:
    out: dict[str, list[PackVersion]] = {}
    for name in PACK_FILES:
        for v in load_pack_file(PACKS / name):
            out.setdefault(v.domain, []).append(v)
    return out


@pytest.fixture(scope="module")
def template(versions: dict[str, list[PackVersion]]) -> Iterator[SQLiteStore]:
    """An in-memory store with the five packs published, copied for each permutation."""
    led = Ledger(SQLiteStore(":memory:"), now=lambda: NOW)
    for vs in versions.values():
        led.publish(vs)
    assert isinstance(led.store, SQLiteStore)
    yield led.store
    led.close()


def fresh(template: SQLiteStore, versions: dict[str, list[PackVersion]]) -> Ledger:
    store = SQLiteStore(":memory:")
    template.conn.backup(store.conn)
    led = Ledger(store, now=lambda: NOW)
    # The parsed versions are the ones every permutation's store holds (same published text,
    # checked by content hash); parsing them again per permutation would dominate the run.
    for domain, vs in versions.items():
        assert [r.content_hash for r in store.pack_rows(domain)] == [v.content_hash for v in vs]
        led._versions[domain] = list(vs)
    return led


@pytest.fixture(scope="module")
def replay(
    template: SQLiteStore, versions: dict[str, list[PackVersion]]
) -> tuple[list[dict[str, Any]], dict[str, Any], list[tuple[str | None, str]]]:
    """The serial replay: every event once, in date order, one batch."""
    events = event_set(SEED)
    led = fresh(template, versions)
    ordered = sorted(events, key=lambda e: (e["occurred_at"], e["id"]))
    report = led.ingest([raw(i, e) for i, e in enumerate(ordered, start=1)], batch_size=10**5)
    rejected = sorted({(r.event_id, r.code) for r in report.rejected})
    assert report.accepted > 0.9 * len(events), rejected
    found = outcome(led)
    audit_shape(led)
    # The set must exercise what order could break: decisions, ties and several versions.
    assert found["decisions"], "the event set produces no decision: raise PER_DOMAIN"
    assert any(len(set(ds)) > 1 for ds in _versions_used(found["entries"]).values())
    led.close()
    return events, found, rejected


def _versions_used(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in entries:
        out.setdefault(n["domain"], []).append(n["pack_version"])
    return out


def _mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str:
    for key in expected:
        if found[key] != expected[key]:
            pairs = zip(found[key], expected[key], strict=False)
            first = next(((a, b) for a, b in pairs if a != b), None)
            return f"{key} differ ({len(found[key])} vs {len(expected[key])}); first: {first}"
    return "none"


# -- the tests ----------------------------------------------------------------------------------------


@pytest.mark.timeout(3600 if SOAK else 300)
def test_permutations_on_sqlite_end_as_the_serial_replay(
    template: SQLiteStore,
    versions: dict[str, list[PackVersion]],
    replay: tuple[list[dict[str, Any]], dict[str, Any], list[tuple[str | None, str]]],
) -> None:
    events, expected, rejected = replay
    started = time.perf_counter()
    mismatches = []
    for i in range(PERMUTATIONS):
        rng = random.Random(f"{SEED}-{i}")
        led = fresh(template, versions)
        reported = deliver(led, events, rng)
        found = outcome(led)
        if found != expected or reported["rejected"] != rejected:
            mismatches.append((i, _mismatch(found, expected), reported["rejected"] == rejected))
        audit_shape(led)
        led.close()
    took = time.perf_counter() - started
    print(
        f"T5 sqlite: seed {SEED}, {PERMUTATIONS} permutations of {len(events)} events, "
        f"{len(expected['decisions'])} live decisions, content root "
        f"{content_root(expected)[:16]}, {len(mismatches)} mismatches, {took:.1f} s"
    )
    assert not mismatches, mismatches[:3]


@pytest.mark.timeout(3600 if SOAK else 300)
def test_permutations_on_postgres_end_as_the_serial_replay_on_sqlite(
    pg_url: str,
    pg_schemas: Callable[[], str],
    versions: dict[str, list[PackVersion]],
    replay: tuple[list[dict[str, Any]], dict[str, Any], list[tuple[str | None, str]]],
) -> None:
    events, expected, rejected = replay
    started = time.perf_counter()
    mismatches = []
    for i in range(PG_PERMUTATIONS):
        rng = random.Random(f"{SEED}-pg-{i}")
        led = Ledger(PostgresStore(pg_url, schema=pg_schemas()), now=lambda: NOW)
        try:
            for vs in versions.values():
                led.publish(vs)
            reported = deliver(led, events, rng)
            found = outcome(led)
            if found != expected or reported["rejected"] != rejected:
                mismatches.append((i, _mismatch(found, expected)))
            audit_shape(led)
        finally:
            led.close()
    took = time.perf_counter() - started
    print(
        f"T5 postgres: seed {SEED}, {PG_PERMUTATIONS} permutations, {len(mismatches)} "
        f"mismatches, {took:.1f} s"
    )
    assert not mismatches, mismatches[:3]
