"""A store holding every kind of audited row, built the same way on either backend.

Used by the tamper-evidence (T11) and backup/upgrade (T12) suites. The clock is injected and,
with ``Determinism``, salts, appeal ids and token times are too, so two builds of the same
seed write byte-identical rows and reach the same audit root.

What is in it: four domains (three reference packs and an inline `town` pack whose hearing
needs a reviewer's confirmation and which allows erasure on request), a few hundred events
(some late, some with incidents), appeals upheld, dismissed and open (against entries and a
decision), confirmations, the stop switch thrown and reset, outbox rows taken and pending,
share codes used and unused, a token, retention erasure of old details, and a subject erased
on request.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers import pack
from pointbook.dates import Duration
from pointbook.demo import synthetic_event
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.store.base import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "packs"
REFERENCE_PACKS = ["civic-code.yaml", "fr-driving.yaml", "cricket-conduct.yaml"]
REFERENCE_DOMAINS = {"civic-code.yaml": "civic-code", "fr-driving.yaml": "fr-driving"}

# The town code: 100 points; littering -30 for a year, noise -10 for six months; below 50 a
# hearing that a reviewer must confirm. Records may be erased on request.
TOWN_HEAD = """
domain: town
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Town code
purpose: Testing tamper evidence and upgrades.
retention: 2 years
erasure_on_request: true
"""
TOWN = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {}
  noise: {}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Town ordinance 4, event: littering, points: -30, counts_for: 1 year}
  - {id: noise, title: Noise after hours, category: noise, basis: Town ordinance 7, event: noise, points: -10, counts_for: 6 months}
thresholds:
  - {id: hearing, kind: hearing, title: Hearing before a sanction, basis: Town due-process policy, direction: below, value: 50, mode: crossing, notice: 14 days, review: required}
"""

START = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


@dataclass
class Clock:
    """The injected clock: ``now`` moves only when the builder says."""

    at: datetime = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kw: float) -> None:
        self.at += timedelta(**kw)


@dataclass
class Determinism:
    """Counters behind every random value pointbook draws while writing (salts, appeal ids,
    share codes, token times), so the same build gives the same rows. ``n`` can be set to
    continue a sequence in another process or store (a restored backup)."""

    n: int = 0

    def token_hex(self, nbytes: int = 16) -> str:
        self.n += 1
        return hashlib.sha256(f"salt-{self.n}".encode()).hexdigest()[: 2 * nbytes]

    def token_urlsafe(self, nbytes: int = 16) -> str:
        return self.token_hex(nbytes)


@contextmanager
def deterministic(mp: pytest.MonkeyPatch, det: Determinism, clock: Clock) -> Iterator[None]:
    """Route pointbook's randomness (salts, appeal ids, share codes) and the wall clock of
    token rows through ``det`` and ``clock`` for the duration."""
    import pointbook.due_process as due_process
    import pointbook.store.postgres_process as pg_process
    import pointbook.store.rows as rows
    import pointbook.store.sqlite_process as sqlite_process

    with mp.context() as m:
        m.setattr(rows, "new_salt", det.token_hex)
        m.setattr(sqlite_process, "new_salt", det.token_hex)
        if hasattr(pg_process, "new_salt"):
            m.setattr(pg_process, "new_salt", det.token_hex)
        m.setattr(due_process, "secrets", det)
        fake_time = _FakeTime(clock)
        m.setattr(sqlite_process, "time", fake_time)
        if hasattr(pg_process, "time"):
            m.setattr(pg_process, "time", fake_time)
        yield


@dataclass
class _FakeTime:
    """The `time` module as the process tables use it: only `time()`, for token rows."""

    clock: Clock

    def time(self) -> float:
        return self.clock().timestamp()


_lines = itertools.count(1)


def raw(body: dict[str, Any]) -> RawRecord:
    return RawRecord(next(_lines), json.dumps(body), EventIn.model_validate(body), None)


def town_event(eid: str, etype: str, day: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "domain": "town",
        "subject": subject,
        "type": etype,
        "occurred_at": day,
        "attributes": {},
        "evidence": f"ticket-{eid}",
        "issuer": "officer-a",
        **extra,
    }


def event_bodies(seed: int, per_domain: int) -> list[dict[str, Any]]:
    """Synthetic events of the reference packs plus town events that cross the hearing."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    domains = {"civic-code": 6, "fr-driving": 8, "cricket": 4}
    for domain, n_subjects in domains.items():
        for i in range(per_domain):
            subject = f"{domain[:2]}-{rng.randrange(n_subjects):03d}"
            bodies.append(synthetic_event(rng, domain, f"{domain}-{seed}-{i:05d}", subject))
    for s in range(6):
        subject = f"t-{s:02d}"
        for k in range(2 + s % 3):
            etype = "littering" if (s + k) % 2 == 0 else "noise"
            day = f"2025-{1 + (s + 3 * k) % 12:02d}-{1 + (7 * s + k) % 27:02d}"
            extra = {"incident": f"inc-{s}"} if k == 1 else {}
            bodies.append(town_event(f"town-{seed}-{s}-{k}", etype, day, subject, **extra))
    # A few late reports: file order is not date order.
    rng.shuffle(bodies)
    return bodies


@dataclass
class RichStore:
    ledger: Ledger
    clock: Clock
    bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return self.ledger.store

    def balances(self) -> dict[tuple[str, str], int]:
        """Every subject's points as of the clock (the figures a restore or upgrade keeps)."""
        out = {}
        for domain in self.store.domains():
            for state in self.ledger.states(domain, self.clock()):
                out[(domain, state.subject)] = state.points
        return out

    def decisions(self) -> dict[str, list[tuple[str, str, str, str]]]:
        """Every domain's decisions with their statuses as of the clock."""
        return {
            domain: sorted(
                (d.id, d.subject, d.kind, status)
                for d, status in self.ledger.decisions(domain, as_of=self.clock())
            )
            for domain in self.store.domains()
        }


def publish_all(ledger: Ledger) -> None:
    for name in REFERENCE_PACKS:
        ledger.publish_file(EXAMPLES / name)
    ledger.publish(pack(TOWN, head=TOWN_HEAD))


def ingest(ledger: Ledger, bodies: list[dict[str, Any]]) -> None:
    report = ledger.ingest([raw(b) for b in bodies])
    assert not report.rejected, [(r.code, r.reason) for r in report.rejected[:3]]


def build(
    store: Store,
    seed: int = 7,
    per_domain: int = 40,
    clock: Clock | None = None,
    tokens: bool = True,
) -> RichStore:
    """Fill ``store`` with every kind of audited row (see the module docstring); without
    ``tokens`` no API token (a store at a schema before tokens existed)."""
    clock = clock or Clock()
    ledger = Ledger(store, now=clock)
    rich = RichStore(ledger, clock, event_bodies(seed, per_domain))
    publish_all(ledger)
    half = len(rich.bodies) // 2
    ingest(ledger, rich.bodies[:half])
    clock.advance(hours=1)
    ingest(ledger, rich.bodies[half:])
    clock.advance(hours=1)
    _due_process(rich)
    clock.advance(hours=1)
    _sharing(rich, tokens)
    clock.advance(days=1)
    # Retention: civic-code keeps details 2 years; events before 2024-01 lose them.
    ledger.run_retention()
    clock.advance(hours=1)
    ledger.erase_subject("town", "t-05")
    clock.advance(hours=1)
    # A late report after the erasures: the store keeps growing as before.
    ingest(ledger, [town_event(f"town-{seed}-late", "noise", "2025-12-30", "t-00")])
    clock.advance(hours=1)
    return rich


def _due_process(rich: RichStore) -> None:
    ledger, store = rich.ledger, rich.store
    entries = [
        (s, n.event_id)
        for s in ("t-00", "t-01", "t-02", "t-03")
        for n in store.subject_entries("town", s)[:1]
    ]
    outcomes = ["upheld", "dismissed", None, "dismissed"]
    for (subject, event_id), outcome in zip(entries, outcomes, strict=False):
        appeal = ledger.file_appeal("town", subject, "It was not me.", event_id=event_id)
        rich.clock.advance(minutes=5)
        if outcome:
            ledger.decide_appeal(appeal.id, outcome, "reviewer-b", "Checked the evidence.")
            rich.clock.advance(minutes=5)
    for d, status in ledger.decisions("town"):
        if d.requires_review and status != "cancelled":
            ledger.confirm_decision("town", d.id, "reviewer-c", "Hearing held.")
            rich.clock.advance(minutes=5)
    cricket = [d for d, _ in ledger.decisions("cricket")]
    assert cricket, "the cricket events should trigger at least one decision"
    for d, outcome in zip(cricket[:2], ["dismissed", "upheld"], strict=False):
        appeal = ledger.file_appeal("cricket", d.subject, "Wrong", decision_id=d.id)
        rich.clock.advance(minutes=5)
        ledger.decide_appeal(appeal.id, outcome, "reviewer-b", "Reviewed.")
        rich.clock.advance(minutes=5)
    ledger.set_switch("fr-driving", True, "Audit of speed cameras.", "operator-1")
    rich.clock.advance(minutes=5)
    ledger.set_switch("fr-driving", False, "Cameras checked.", "operator-1")
    for domain in ("fr-driving", "town"):
        pending = ledger.outbox(domain, limit=3)
        store.outbox_take([seq for seq, _, _ in pending], rich.clock())


def _sharing(rich: RichStore, tokens: bool) -> None:
    ledger = rich.ledger
    code, _ = ledger.create_share("fr-driving", "fr-001", Duration(days=30))
    ledger.redeem_share(code)
    ledger.create_share("fr-driving", "fr-002", Duration(days=30))
    ledger.create_share("town", "t-05", Duration(days=30))  # erased with the subject
    if tokens:
        rich.store.insert_token(
            hashlib.sha256(b"token-1").hexdigest(), "reviewer", "town", None, "reviewer-b"
        )
