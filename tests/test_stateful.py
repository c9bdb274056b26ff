"""T7: a Hypothesis state machine drives the ledger against a tiny reference model.

The pack is deliberately simple, so that the model below can be read in one sitting and seen
to be right: a balance from 20 between 0 and 20; three event types giving fixed points for a
fixed time (minor -3 for 30 days, major -8 for 45 days, helped +2 for 20 days); one crossing
threshold at 8 or below (margin 0, no notice); retention 90 days; erasure on request.

Rules of the machine: ingest new events (dated today, or late: up to 150 days back), with
duplicates inside a batch, with or without refreshing decisions; re-send events already
stored (duplicates) and send an old id with other content (a conflict); file an appeal
against an entry, file a second one while the first is open (refused), uphold or dismiss an
open appeal; refresh decisions; advance the clock; run retention; erase a subject on request.

After every step, for each subject: the balance as of now, and the decisions the fold
reports up to now, equal the model's; the stored, live decisions are exactly the model's
threshold crossings over the whole timeline (for subjects whose refresh is not pending; the
pending ones are exactly the store's work list); one entry per stored event; the erased
details are exactly the events retention reached; and `verify()` passes.

Two bugs the machine found are kept as focused tests at the end of this file.

The model's semantics, from docs/rule-packs.md and docs/engine.md: a subject's timeline is
sorted by instant; on one instant expiries come before events, events go by id. Every step is
clamped to [floor, ceiling] as it happens, and an expiry reverses what its entry actually moved
(clamped again). An open appeal takes the entry out of the balance from its filing (what the
entry moved is reversed, clamped); a dismissal puts it back from the decision (unless it
expired meanwhile); an upheld appeal means the entry never counted. Events are dated at
midnight and the clock never is, and each appeal action gets its own minute, so appeals never
share an instant with anything else (their relative order with events is then unambiguous).

Sizes: CI runs SQLite with 25 examples x 30 steps and PostgreSQL with 6 x 25; POINTBOOK_SOAK=1
runs 300 x 50 and 60 x 40. The seed is POINTBOOK_SEED (CI: fixed, soak: random, printed).
Crash kind: none (a model test; every step completes).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, note, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from helpers import pack
from pointbook.due_process import ProcessError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.store import PostgresStore, SQLiteStore, Store

SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
SEED = int(os.environ.get("POINTBOOK_SEED") or (random.randrange(2**32) if SOAK else 20240601))

HEAD = """
domain: town
version: "1"
effective_from: 2023-01-01
timezone: UTC
title: Model-test scheme
purpose: A scheme small enough to model by hand.
retention: 90 days
erasure_on_request: true
"""
BODY = """
scheme: {kind: balance, start: 20, floor: 0, ceiling: 20}
event_types:
  minor: {}
  major: {}
  helped: {}
rules:
  - {id: minor, title: Minor offence, category: public-order, basis: Test ordinance 1, event: minor, points: -3, counts_for: 30 days}
  - {id: major, title: Major offence, category: public-order, basis: Test ordinance 2, event: major, points: -8, counts_for: 45 days}
  - {id: helped, title: Helped out, category: community-contribution, basis: Test ordinance 3, event: helped, points: 2, counts_for: 20 days}
thresholds:
  - {id: low, kind: warning, title: Low balance, basis: Test policy, direction: at_or_below, value: 8, mode: crossing}
"""

# ---------------------------------------------------------------------------------------------
# The reference model
# ---------------------------------------------------------------------------------------------

START, FLOOR, CEILING, LEVEL = 20, 0, 20, 8
POINTS = {"minor": (-3, 30), "major": (-8, 45), "helped": (2, 20)}  # points, days counted
RETENTION = timedelta(days=90)
SUBJECTS = ("s1", "s2")
FIRST_DAY = date(2023, 1, 1)


@dataclass
class MEvent:
    id: str
    subject: str
    type: str
    day: date

    @property
    def at(self) -> datetime:
        return datetime.combine(self.day, time(), UTC)


@dataclass
class MAppeal:
    filed: datetime
    decided: datetime | None = None
    outcome: str | None = None  # "upheld" | "dismissed"


def clamp(x: int) -> int:
    return max(FLOOR, min(CEILING, x))


def model_fold(
    events: list[MEvent], appeals: dict[str, MAppeal], as_of: datetime | None
) -> tuple[int, list[datetime]]:
    """The balance as of ``as_of`` (None: after everything) and every threshold crossing."""
    steps: list[tuple[datetime, int, str, str]] = []  # (instant, order in the instant, id, what)
    for e in events:
        appeal = appeals.get(e.id)
        if appeal is not None and appeal.outcome == "upheld":
            continue  # an upheld appeal: the entry never counted
        steps.append((e.at, 1, e.id, "apply"))
        steps.append((e.at + timedelta(days=POINTS[e.type][1]), 0, e.id, "expire"))
        if appeal is not None:
            steps.append((appeal.filed, 2, e.id, "suspend"))
            if appeal.outcome == "dismissed" and appeal.decided is not None:
                steps.append((appeal.decided, 2, e.id, "reinstate"))
    kinds = {e.id: e.type for e in events}
    figure, armed, crossings = START, True, []
    applied: dict[str, int] = {}
    counting: set[str] = set()
    suspended: set[str] = set()
    for at, _order, eid, what in sorted(steps):
        if as_of is not None and at > as_of:
            break
        before = figure
        if what == "apply":
            figure = clamp(figure + POINTS[kinds[eid]][0])
            applied[eid] = figure - before
            counting.add(eid)
        elif what == "expire" and eid in counting:
            counting.discard(eid)
            if eid not in suspended:
                figure = clamp(figure - applied[eid])
        elif what == "suspend" and eid in counting:
            suspended.add(eid)
            figure = clamp(figure - applied[eid])
        elif what == "reinstate" and eid in suspended:
            suspended.discard(eid)
            if eid in counting:
                figure = clamp(figure + applied[eid])
        if armed and figure <= LEVEL:
            crossings.append(at)
            armed = False
        elif not armed and figure > LEVEL:
            armed = True
    return figure, crossings


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------

VERSIONS = pack(BODY, head=HEAD, forgive=False)
picks = st.integers(min_value=0, max_value=10**6)


def record(n: int, e: MEvent, kind: str | None = None) -> RawRecord:
    body = {
        "id": e.id,
        "domain": "town",
        "subject": e.subject,
        "type": kind or e.type,
        "occurred_at": e.day.isoformat(),
        "evidence": f"ref-{e.id}",
        "issuer": "model-test",
    }
    return RawRecord(n, "", EventIn.model_validate(body), None)


class LedgerMachine(RuleBasedStateMachine):
    """Subclassed per backend with ``make_store`` (a fresh, empty store per example)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2023, 3, 1, 9, 0, tzinfo=UTC)
        self.ledger = Ledger(self.make_store(), now=lambda: self.now)
        self.ledger.publish(VERSIONS)
        self.events: dict[str, MEvent] = {}
        self.appeals: dict[str, MAppeal] = {}
        self.appeal_ids: dict[str, str] = {}  # event id -> the store's appeal id
        self.erased: set[str] = set()  # events whose details retention erased
        self.pending: set[str] = set()  # subjects whose decisions are not refreshed yet
        self.next_id = 0

    def make_store(self) -> Store:
        raise NotImplementedError

    def teardown(self) -> None:
        self.ledger.close()

    # -- helpers ---------------------------------------------------------------------------
    def tick(self, minutes: int) -> None:
        """Move the clock on; it never rests on midnight, where events and expiries are."""
        self.now += timedelta(minutes=minutes)
        if self.now.time() == time():
            self.now += timedelta(minutes=1)

    def new_event(self, subject: str, kind: str, days_back: int) -> MEvent:
        self.next_id += 1
        day = max(FIRST_DAY, self.now.date() - timedelta(days=days_back))
        return MEvent(f"e{self.next_id:04d}", subject, kind, day)

    def of(self, subject: str) -> list[MEvent]:
        return [e for e in self.events.values() if e.subject == subject]

    # -- rules -----------------------------------------------------------------------------
    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(SUBJECTS),
                st.sampled_from(sorted(POINTS)),
                st.one_of(st.just(0), st.integers(0, 150)),  # today, or late
            ),
            min_size=1,
            max_size=6,
        ),
        doubled=st.booleans(),
        refresh=st.booleans(),
    )
    def ingest(self, batch: list[tuple[str, str, int]], doubled: bool, refresh: bool) -> None:
        new = [self.new_event(s, k, back) for s, k, back in batch]
        records = [record(i, e) for i, e in enumerate(new, start=1)]
        if doubled:
            records.append(record(len(records) + 1, new[0]))  # the same report twice
        report = self.ledger.ingest(records, batch_size=4, refresh=refresh)
        assert (report.accepted, report.duplicates, report.rejected) == (len(new), int(doubled), [])
        self.events.update({e.id: e for e in new})
        self.pending |= {e.subject for e in new}
        if refresh:
            self.pending.clear()

    @precondition(lambda self: bool(self.events))
    @rule(which=st.lists(picks, min_size=1, max_size=4))
    def resend(self, which: list[int]) -> None:
        known = sorted(self.events)
        again = [self.events[known[k % len(known)]] for k in which]
        report = self.ledger.ingest([record(i, e) for i, e in enumerate(again)], refresh=False)
        assert (report.accepted, report.duplicates, report.rejected) == (0, len(again), [])

    @precondition(lambda self: bool(self.events))
    @rule(which=picks)
    def conflict(self, which: int) -> None:
        known = sorted(self.events)
        e = self.events[known[which % len(known)]]
        other = next(k for k in sorted(POINTS) if k != e.type)
        report = self.ledger.ingest([record(7, e, kind=other)], refresh=False)
        assert report.accepted == 0
        assert [(r.line, r.code) for r in report.rejected] == [(7, "event/conflict")]

    @precondition(lambda self: any(i not in self.appeals for i in self.events))
    @rule(which=picks, minutes=st.integers(1, 600))
    def file_appeal(self, which: int, minutes: int) -> None:
        free = sorted(i for i in self.events if i not in self.appeals)
        e = self.events[free[which % len(free)]]
        self.tick(minutes)
        appeal = self.ledger.file_appeal("town", e.subject, "it was not me", event_id=e.id)
        self.appeals[e.id] = MAppeal(filed=self.now)
        self.appeal_ids[e.id] = appeal.id
        self.pending.clear()  # filing refreshes the domain's decisions

    @precondition(lambda self: any(a.outcome is None for a in self.appeals.values()))
    @rule(which=picks)
    def appeal_again_while_open(self, which: int) -> None:
        open_ = sorted(i for i, a in self.appeals.items() if a.outcome is None)
        e = self.events[open_[which % len(open_)]]
        with pytest.raises(ProcessError, match="already open"):
            self.ledger.file_appeal("town", e.subject, "and again", event_id=e.id)

    @precondition(lambda self: any(a.outcome is None for a in self.appeals.values()))
    @rule(which=picks, upheld=st.booleans(), minutes=st.integers(1, 600))
    def decide_appeal(self, which: int, upheld: bool, minutes: int) -> None:
        open_ = sorted(i for i, a in self.appeals.items() if a.outcome is None)
        eid = open_[which % len(open_)]
        outcome = "upheld" if upheld else "dismissed"
        self.tick(minutes)
        decided = self.ledger.decide_appeal(self.appeal_ids[eid], outcome, "rev", "reviewed")
        assert (decided.outcome, decided.decided_at) == (outcome, self.now)
        self.appeals[eid].outcome, self.appeals[eid].decided = outcome, self.now
        self.pending.clear()

    @rule()
    def refresh(self) -> None:
        assert self.ledger.refresh_decisions() == len(self.pending)
        self.pending.clear()

    @rule(days=st.integers(1, 60), minutes=st.integers(0, 600))
    def advance(self, days: int, minutes: int) -> None:
        self.now += timedelta(days=days)
        self.tick(minutes)

    @rule()
    def retention(self) -> None:
        cutoff = self.now - RETENTION
        due = {i for i, e in self.events.items() if e.at < cutoff} - self.erased
        assert self.ledger.run_retention() == {"town": len(due)}
        self.erased |= due

    @precondition(lambda self: bool(self.events))
    @rule(which=picks)
    def erase_subject(self, which: int) -> None:
        having = sorted({e.subject for e in self.events.values()})
        subject = having[which % len(having)]
        counts = self.ledger.erase_subject("town", subject)
        gone = {e.id for e in self.of(subject)}
        assert counts["pb_events"] == len(gone)
        for eid in gone:
            self.events.pop(eid)
            self.appeals.pop(eid, None)
            self.appeal_ids.pop(eid, None)
        self.erased -= gone
        self.pending.discard(subject)

    # -- what must hold after every step ----------------------------------------------------
    @invariant()
    def agrees_with_the_model(self) -> None:
        store = self.ledger.store
        assert {s for _, s in store.dirty_subjects("town", 100)} == self.pending
        stored = store.subject_events("town", list(SUBJECTS))
        for subject in SUBJECTS:
            mine = self.of(subject)
            appeals = {e.id: self.appeals[e.id] for e in mine if e.id in self.appeals}
            balance, crossings = model_fold(mine, appeals, self.now)
            _, every_crossing = model_fold(mine, appeals, None)
            state = self.ledger.state("town", subject, self.now)
            note(f"{subject} at {self.now.isoformat()}: model {balance}, ledger {state.points}")
            assert state.points == balance, (subject, state.lines)
            assert [d.triggered_at for d in state.decisions] == crossings
            if subject not in self.pending:
                live = sorted(
                    r.decision.triggered_at
                    for r in store.current_decisions("town", [subject])
                    if not r.withdrawn
                )
                assert live == every_crossing, (subject, state.lines)
            entries = store.subject_entries("town", subject)
            assert sorted(n.event_id for n in entries) == sorted(e.id for e in mine)
            erased = {e.id for e in stored[subject] if e.judged is not None}
            assert erased == {e.id for e in mine} & self.erased
        result = self.ledger.verify()
        assert result.ok, result.reason


def _settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# Hypothesis stops shrinking a failure after 300 s: the timeout leaves room for that.
@pytest.mark.timeout(2400 if SOAK else 600)
def test_the_ledger_follows_the_model_on_sqlite() -> None:
    # The model test is about semantics, not durability: stores on a RAM disk when there is one
    # keep the fsync of every commit from dominating the run (and the shrinking of a failure).
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="pb-stateful-", dir=shm if shm.is_dir() else None))
    counter = iter(range(10**9))

    class OnSQLite(LedgerMachine):
        def make_store(self) -> Store:
            return SQLiteStore(folder / f"store-{next(counter)}.db")

    print(f"stateful sqlite: seed {SEED}")
    try:
        run_state_machine_as_test(
            seed(SEED)(OnSQLite), settings=_settings(300 if SOAK else 25, 50 if SOAK else 30)
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(2400 if SOAK else 600)
def test_the_ledger_follows_the_model_on_postgres(
    pg_url: str, pg_schemas: Callable[[], str]
) -> None:
    class OnPostgres(LedgerMachine):
        def make_store(self) -> Store:
            return PostgresStore(pg_url, schema=pg_schemas())

    print(f"stateful postgres: seed {SEED}")
    run_state_machine_as_test(
        seed(SEED)(OnPostgres), settings=_settings(60 if SOAK else 6, 40 if SOAK else 25)
    )


# ---------------------------------------------------------------------------------------------
# What the machine found, kept as focused tests (both backends)
# ---------------------------------------------------------------------------------------------


def _ledger(store_factory: Callable[[], Store], clock: list[datetime]) -> Ledger:
    led = Ledger(store_factory(), now=lambda: clock[0])
    led.publish(VERSIONS)
    return led


def test_a_decision_derived_again_after_an_erasure_keeps_the_log_verifiable(
    store_factory: Callable[[], Store],
) -> None:
    """Decision ids are derived from the data, so a subject erased on request and reported
    again for the same facts gets the same decision (and outbox key) again. The log holds the
    first queuing too, and `verify` then called the next notification out of its place in the
    delivery queue: an honest store reported as tampered with."""
    clock = [datetime(2023, 3, 1, 9, tzinfo=UTC)]
    led = _ledger(store_factory, clock)
    day = date(2023, 3, 1)
    twice = [MEvent("a1", "s2", "major", day), MEvent("a2", "s2", "major", day)]
    led.ingest([record(i, e) for i, e in enumerate(twice)])
    (first,) = led.store.current_decisions("town")
    led.erase_subject("town", "s2")
    again = [MEvent("b1", "s2", "major", day), MEvent("b2", "s2", "major", day)]
    led.ingest([record(i, e) for i, e in enumerate(again)])
    (same,) = led.store.current_decisions("town")
    assert same.decision.id == first.decision.id
    later = [MEvent("c1", "s1", "major", day), MEvent("c2", "s1", "major", day)]
    led.ingest([record(i, e) for i, e in enumerate(later)])
    result = led.verify()
    assert result.ok, result.reason
    led.close()


def test_an_appeal_filed_after_a_dismissed_one_is_refused_or_honoured(
    store_factory: Callable[[], Store],
) -> None:
    """A second appeal against the same entry, once the first was dismissed, was accepted and
    listed as open, yet the entry kept counting while it was open and even after it was
    upheld (the fold heeds only the first appeal against an entry). Either the filing is
    refused, or the appeal does what an appeal does (docs/engine.md: an open appeal suspends
    what it contests, an upheld one reverses it)."""
    clock = [datetime(2023, 3, 1, 9, tzinfo=UTC)]
    led = _ledger(store_factory, clock)
    led.ingest([record(1, MEvent("a1", "s1", "major", date(2023, 3, 1)))])
    first = led.file_appeal("town", "s1", "it was not me", event_id="a1")
    clock[0] += timedelta(hours=1)
    led.decide_appeal(first.id, "dismissed", "rev", "the photo shows the car")
    clock[0] += timedelta(hours=1)
    assert led.state("town", "s1").points == 12
    try:
        second = led.file_appeal("town", "s1", "new evidence", event_id="a1")
    except ProcessError:
        return  # refused: a decided appeal is final
    clock[0] += timedelta(hours=1)
    assert led.state("town", "s1").points == 20, "an open appeal must suspend the entry"
    led.decide_appeal(second.id, "upheld", "rev", "the new evidence clears the person")
    clock[0] += timedelta(hours=1)
    assert led.state("town", "s1").points == 20, "an upheld appeal must reverse the entry"
    led.close()
