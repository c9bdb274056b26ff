"""Properties of the fold and the ledger over random small histories (Hypothesis).

Two schemes are exercised: a balance pack (two versions; clean-period, small-loss, entry-return
and course restorations; a daily cap; crossing, several-level, while and terminal thresholds)
and a window pack (counts_for, two rules on one event type, resets, while). Histories have a
few subjects, 0-30 events, dates over ~6 years, random types and attributes; many events fall
on local midnight so that they share an instant with restorations, expiries and each other.

(a) the arrival order never matters (engine: permutations; ledger: shuffled batches);
(b) a duplicate report changes nothing; (c) a balance stays inside [floor, ceiling];
(d) a window sum equals a brute-force sum written here; (e) subjects do not interfere.
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointbook.dates import parse_instant
from pointbook.engine import Event, SubjectState, evaluate_subject
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import HORIZON, Ledger
from pointbook.rules.pack import PackVersion, load_pack_text
from pointbook.store import SQLiteStore

NOW = datetime(2100, 1, 1, tzinfo=UTC)
SUBJECTS = ("s1", "s2", "s3")
BASE_DAY = date(2018, 1, 1)
SPAN_DAYS = 6 * 365

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------
# Packs
# --------------------------------------------------------------------------------------------

_BALANCE_DOC = """
domain: licence
version: "{version}"
effective_from: {effective}
timezone: Europe/Paris
title: Property-test licence
purpose: Exercising restorations, the daily cap and thresholds.
retention: 5 years
scheme: {{kind: balance, start: 12, floor: 0, ceiling: 12, daily_cap: {cap}}}
event_types:
  speeding: {{attributes: {{over: {{type: integer, minimum: 1, maximum: 60}}}}}}
  phone: {{}}
  helped: {{}}
  course: {{}}
  warning: {{}}
  note: {{}}
rules:
  - {{id: speeding-low, title: Speeding under 20, category: road-safety, basis: Code art. 1,
     event: speeding, when: {{field: over, lt: 20}}, points: -1, tags: [minor]}}
  - {{id: speeding-mid, title: Speeding 20 to 39, category: road-safety, basis: Code art. 2,
     event: speeding, when: {{field: over, ge: 20, lt: 40}}, points: {mid}}}
  - {{id: speeding-high, title: Speeding 40 and over, category: road-safety, basis: Code art. 2,
     event: speeding, when: {{field: over, ge: 40}}, points: {high}, counts_for: 4 years,
     tags: [serious]}}
  - {{id: phone, title: Phone at the wheel, category: road-safety, basis: Code art. 3,
     event: phone, points: -3, tags: [phone], daily_cap: true}}
  - {{id: helped, title: Helped at a scene, category: community-contribution, basis: Code art. 4,
     event: helped, points: 2, daily_cap: true}}
  - {{id: helped-bonus, title: Helped (uncapped bonus), category: community-contribution,
     basis: Code art. 5, event: helped, points: 1}}
  - {{id: warning, title: Warning, category: road-safety, basis: Code art. 6,
     event: warning, points: 0}}
restorations:
  - {{id: clean, kind: clean-period, title: Clean record, basis: Code art. 10,
     after: 2 years, longer_after: 3 years, longer_if_tags: [serious]}}
  - {{id: small, kind: small-loss, title: Small loss, basis: Code art. 11,
     after: 6 months, max_loss: {max_loss}}}
  - {{id: back, kind: entry-return, title: Phone points back, basis: Code art. 12,
     after: 1 year, tags: [phone]}}
  - {{id: awareness, kind: course, title: Awareness course, basis: Code art. 13,
     event: course, points: 4, min_interval: 1 year, delay: 30 days}}
thresholds:
  - {{id: warn, kind: warning-letter, title: Warning letter, basis: Code art. 20,
     direction: below, value: 6, mode: crossing, margin: 1, notice: 30 days, duration: 6 months}}
  - {{id: bands, kind: restriction, title: Bands, basis: Code art. 21, direction: at_or_below,
     levels: [{{value: 8, attributes: {{stage: 1}}}}, {{value: 4, attributes: {{stage: 2}}}}],
     mode: crossing}}
  - {{id: low, kind: supervision, title: Supervision, basis: Code art. 22, direction: below,
     value: 3, mode: while, grace: 30 days, margin: 1}}
{terminal}
"""

_TERMINAL = """  - {id: revoke, kind: revocation, title: Revocation, basis: Code art. 23,
     direction: at_or_below, value: 0, mode: crossing, terminal: true}"""

BALANCE = load_pack_text(
    _BALANCE_DOC.format(
        version="2018", effective="2018-01-01", cap=4, mid=-2, high=-4, max_loss=1, terminal=""
    )
    + "---\n"
    + _BALANCE_DOC.format(
        version="2021",
        effective="2021-01-01",
        cap=5,
        mid=-3,
        high=-5,
        max_loss=2,
        terminal=_TERMINAL,
    ),
    "balance.yaml",
)

WINDOW = load_pack_text(
    """
domain: league
version: "1"
effective_from: 2018-01-01
timezone: America/New_York
title: Property-test league
purpose: Exercising windows, counts_for, resets and while.
retention: 5 years
scheme: {kind: window, length: 1 year, boundary: inclusive}
event_types:
  foul: {attributes: {pts: {type: integer, minimum: 1, maximum: 5}}}
  caution: {}
  note: {}
rules:
  - {id: foul, title: Foul, category: match-conduct, basis: League rule 1,
     event: foul, points: {attribute: pts}}
  - {id: caution, title: Caution, category: match-conduct, basis: League rule 2,
     event: caution, points: 1, counts_for: 3 months}
  - {id: caution-record, title: Caution on record, category: match-conduct,
     basis: League rule 3, event: caution, points: 1}
thresholds:
  - {id: ban, kind: suspension, title: Suspension, basis: League rule 9,
     direction: at_or_above, value: 9, mode: crossing, resets: true, notice: 7 days,
     duration: 30 days}
  - {id: watch, kind: warning-letter, title: Watch list, basis: League rule 10,
     direction: at_or_above, levels: [{value: 3}, {value: 6}], mode: crossing, margin: 1}
  - {id: hot, kind: supervision, title: Supervision, basis: League rule 11,
     direction: at_or_above, value: 5, mode: while, grace: 14 days, margin: 1}
""",
    "window.yaml",
)


def plain_window(length: str, boundary: str, tz: str) -> list[PackVersion]:
    """A window pack without counts_for or resets: its figure is a plain sum over the window."""
    return load_pack_text(
        f"""
domain: plain
version: "1"
effective_from: 2018-01-01
timezone: {tz}
title: Plain window
purpose: A window sum to check against brute force.
retention: 5 years
scheme: {{kind: window, length: {length}, boundary: {boundary}}}
event_types:
  foul: {{attributes: {{pts: {{type: integer, minimum: 1, maximum: 5}}}}}}
  caution: {{}}
  note: {{}}
rules:
  - {{id: foul, title: Foul, category: match-conduct, basis: League rule 1,
     event: foul, points: {{attribute: pts}}}}
  - {{id: caution, title: Caution, category: match-conduct, basis: League rule 2,
     event: caution, points: 1}}
  - {{id: caution-record, title: Caution on record, category: match-conduct,
     basis: League rule 3, event: caution, points: 2}}
thresholds:
  - {{id: watch, kind: warning-letter, title: Watch list, basis: League rule 10,
     direction: at_or_above, value: 4, mode: crossing}}
""",
        f"plain-{boundary}.yaml",
    )


# (length in days or months, boundary) -> pack. Day lengths in UTC, month lengths in Paris.
PLAIN = {
    ("days", "inclusive"): plain_window("90 days", "inclusive", "UTC"),
    ("days", "exclusive"): plain_window("90 days", "exclusive", "UTC"),
    ("months", "inclusive"): plain_window("6 months", "inclusive", "Europe/Paris"),
    ("months", "exclusive"): plain_window("6 months", "exclusive", "Europe/Paris"),
}
PLAIN_POINTS = {"foul": None, "caution": 1 + 2, "note": 0}  # None: the `pts` attribute

# --------------------------------------------------------------------------------------------
# Histories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """One generated report: the same data goes to the engine and, as JSON, to the ledger."""

    id: str
    subject: str
    type: str
    when: str  # local wall time in the pack's zone, or a bare date
    attributes: dict[str, Any] = field(default_factory=dict)

    def event(self, versions: list[PackVersion]) -> Event:
        v = versions[0]
        return Event(
            id=self.id,
            domain=v.domain,
            subject=self.subject,
            type=self.type,
            occurred_at=parse_instant(self.when, v.tz),
            attributes=dict(self.attributes),
            evidence="ref",
            issuer="prop",
        )

    def record(self, versions: list[PackVersion], line: int) -> RawRecord:
        body = {
            "id": self.id,
            "domain": versions[0].domain,
            "subject": self.subject,
            "type": self.type,
            "occurred_at": self.when,
            "attributes": dict(self.attributes),
            "evidence": "ref",
            "issuer": "prop",
        }
        return RawRecord(line, "", EventIn.model_validate(body), None)


BALANCE_TYPES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "speeding": st.fixed_dictionaries({"over": st.integers(1, 60)}),
    "phone": st.just({}),
    "helped": st.just({}),
    "course": st.just({}),
    "warning": st.just({}),
    "note": st.just({}),
}
WINDOW_TYPES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "foul": st.fixed_dictionaries({"pts": st.integers(1, 5)}),
    "caution": st.just({}),
    "note": st.just({}),
}


@st.composite
def when_text(draw: st.DrawFn, anchors: list[int], span_days: int = SPAN_DAYS) -> str:
    """A local time: a uniform day, or a day shortly after one of the history's anchors (so
    that events cluster, share local days and instants); a bare date, midnight, noon or any
    minute."""
    uniform = st.integers(0, span_days)
    near = st.tuples(st.sampled_from(anchors), st.integers(0, 45)).map(
        lambda p: min(span_days, p[0] + p[1])
    )
    day = BASE_DAY + timedelta(days=draw(st.one_of(uniform, near)))
    minute = draw(st.one_of(st.none(), st.integers(0, 1439), st.sampled_from([0, 720])))
    if minute is None:
        return day.isoformat()  # the start of that local day
    return f"{day.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00"


@st.composite
def histories(
    draw: st.DrawFn,
    types: dict[str, st.SearchStrategy[dict[str, Any]]],
    subjects: tuple[str, ...] = SUBJECTS,
    max_events: int = 30,
    span_days: int = SPAN_DAYS,
) -> list[Raw]:
    n = draw(st.integers(0, max_events))
    anchors = draw(st.lists(st.integers(0, span_days), min_size=1, max_size=3))
    # subjects are not equally busy: the first one gets about half the events
    who = st.sampled_from([subjects[0], *subjects])
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(sorted(types)))
        out.append(
            Raw(
                id=f"e{i:02d}",
                subject=draw(who),
                type=kind,
                when=draw(when_text(anchors, span_days)),
                attributes=draw(types[kind]),
            )
        )
    return out


def instants(events: list[Event]) -> st.SearchStrategy[list[datetime]]:
    """As-of times: random ones over the span and beyond, event instants, and the horizon."""
    start = datetime(2017, 12, 31, tzinfo=UTC)
    rand = st.integers(0, (SPAN_DAYS + 5 * 365) * 86_400).map(
        lambda s: start + timedelta(seconds=s)
    )
    exact = [e.occurred_at for e in events]
    choices = st.one_of(rand, st.sampled_from(exact)) if exact else rand
    return st.lists(choices, min_size=1, max_size=4).map(lambda xs: [*xs, HORIZON])


SCHEMES = {"balance": (BALANCE, BALANCE_TYPES), "window": (WINDOW, WINDOW_TYPES)}

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def of(events: list[Event], subject: str) -> list[Event]:
    return [e for e in events if e.subject == subject]


def snapshot(s: SubjectState) -> tuple[Any, ...]:
    return (s.points, s.lines, s.decisions, s.upcoming)


def engine(versions: list[PackVersion], events: list[Event], subject: str, as_of: datetime) -> Any:
    return evaluate_subject(versions, of(events, subject), as_of, subject=subject)


def new_ledger(versions: list[PackVersion]) -> Ledger:
    ledger = Ledger(SQLiteStore(":memory:"), now=lambda: NOW)
    ledger.publish(versions)
    return ledger


def ingest_in_batches(
    ledger: Ledger, versions: list[PackVersion], raws: list[Raw], cuts: list[int]
) -> None:
    """Ingest ``raws`` in the given order, split at ``cuts`` into separate ingest calls."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(raws)}), len(raws)]
    line = 1
    for lo, hi in itertools.pairwise(bounds):
        records = []
        for r in raws[lo:hi]:
            records.append(r.record(versions, line))
            line += 1
        report = ledger.ingest(records)
        assert report.rejected == [], report.rejected
        assert report.accepted == hi - lo


def expected_decisions(
    versions: list[PackVersion], events: list[Event], subject: str
) -> list[tuple[Any, str]]:
    """What the ledger should hold: the decisions of the fold to the horizon, as of NOW."""
    s = engine(versions, events, subject, HORIZON)
    return sorted(
        ((d, d.status(NOW)) for d in s.decisions if d.triggered_at <= NOW),
        key=lambda p: p[0].id,
    )


def ledger_decisions(ledger: Ledger, domain: str, subject: str) -> list[tuple[Any, str]]:
    # Cancelled decisions are the ledger's own history (what it once derived before a late
    # report arrived), so they depend on arrival by nature; the current ones must not.
    current = ledger.decisions(domain, subject, include_cancelled=False)
    return sorted(current, key=lambda p: p[0].id)


# --------------------------------------------------------------------------------------------
# (a) arrival order
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), scheme=st.sampled_from(sorted(SCHEMES)))
def test_engine_result_does_not_depend_on_event_order(data: st.DataObject, scheme: str) -> None:
    versions, types = SCHEMES[scheme]
    raws = data.draw(histories(types), label="history")
    events = [r.event(versions) for r in raws]
    shuffled = data.draw(st.permutations(events), label="permutation")
    as_ofs = data.draw(instants(events), label="as_of")
    for subject in SUBJECTS:
        for as_of in as_ofs:
            a = engine(versions, events, subject, as_of)
            b = engine(versions, shuffled, subject, as_of)
            assert snapshot(a) == snapshot(b), (subject, as_of)


@settings(SETTINGS, max_examples=80)
@given(data=st.data(), scheme=st.sampled_from(sorted(SCHEMES)))
def test_ledger_result_does_not_depend_on_arrival_order_or_batches(
    data: st.DataObject, scheme: str
) -> None:
    versions, types = SCHEMES[scheme]
    raws = data.draw(histories(types), label="history")
    events = [r.event(versions) for r in raws]
    order = data.draw(st.permutations(raws), label="arrival order")
    cuts = data.draw(st.lists(st.integers(0, max(len(raws), 1)), max_size=4), label="cuts")
    as_ofs = data.draw(instants(events), label="as_of")
    ledger = new_ledger(versions)
    ingest_in_batches(ledger, versions, order, cuts)
    domain = versions[0].domain
    for subject in SUBJECTS:
        for as_of in as_ofs:
            got = ledger.state(domain, subject, as_of)
            want = engine(versions, events, subject, as_of)
            assert (got.points, got.decisions) == (want.points, want.decisions), (subject, as_of)
            assert snapshot(got) == snapshot(want), (subject, as_of)
        assert ledger_decisions(ledger, domain, subject) == expected_decisions(
            versions, events, subject
        ), subject


# --------------------------------------------------------------------------------------------
# (b) duplicates
# --------------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=80)
@given(data=st.data(), scheme=st.sampled_from(sorted(SCHEMES)))
def test_a_duplicate_report_changes_nothing(data: st.DataObject, scheme: str) -> None:
    versions, types = SCHEMES[scheme]
    raws = data.draw(histories(types), label="history")
    events = [r.event(versions) for r in raws]
    as_ofs = data.draw(instants(events), label="as_of")
    ledger = new_ledger(versions)
    ingest_in_batches(ledger, versions, raws, [])
    domain = versions[0].domain

    def everything() -> Any:
        states = [
            snapshot(ledger.state(domain, subject, as_of))
            for subject in SUBJECTS
            for as_of in as_ofs
        ]
        decisions = [ledger_decisions(ledger, domain, subject) for subject in SUBJECTS]
        return (
            states,
            decisions,
            ledger.store.current_decisions(domain),
            ledger.store.subjects(domain),
        )

    before = everything()
    again = data.draw(st.lists(st.sampled_from(raws), max_size=12) if raws else st.just([]))
    report = ledger.ingest([r.record(versions, n) for n, r in enumerate(again, start=1)])
    assert (report.accepted, report.duplicates, report.rejected) == (0, len(again), [])
    assert everything() == before


# --------------------------------------------------------------------------------------------
# (c) floor and ceiling
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_the_balance_stays_within_floor_and_ceiling(data: st.DataObject) -> None:
    raws = data.draw(histories(BALANCE_TYPES), label="history")
    events = [r.event(BALANCE) for r in raws]
    as_ofs = data.draw(instants(events), label="as_of")
    for v in BALANCE:
        assert (v.scheme.floor, v.scheme.ceiling) == (0, 12)  # type: ignore[union-attr]
    for subject in SUBJECTS:
        for as_of in as_ofs:
            s = engine(BALANCE, events, subject, as_of)
            assert 0 <= s.points <= 12
            for ln in (*s.lines, *s.upcoming):
                assert 0 <= ln.figure <= 12, ln
                # a step never moves further than it says, nor the other way
                assert abs(ln.applied) <= abs(ln.delta), ln
                assert ln.applied * ln.delta >= 0, ln


# --------------------------------------------------------------------------------------------
# (d) window sum against brute force
# --------------------------------------------------------------------------------------------


def _plus_months_local(instant: datetime, months: int, tz: ZoneInfo) -> datetime:
    """``instant`` + ``months`` calendar months on local wall time, written independently: the
    same day number, or the last day of a shorter month."""
    local = instant.astimezone(tz).replace(tzinfo=None)
    total = local.year * 12 + local.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).replace(tzinfo=tz).astimezone(UTC)


def points_of(e: Event) -> int:
    p = PLAIN_POINTS[e.type]
    return int(e.attributes["pts"]) if p is None else p


def brute_force(events: list[Event], as_of: datetime, length: str, boundary: str, tz: Any) -> int:
    total = 0
    for e in events:
        if e.occurred_at > as_of:
            continue
        if length == "days":
            # 90 days in UTC: the window is (as_of - 90 days, as_of] (exclusive) or
            # [as_of - 90 days, as_of] (inclusive).
            start = as_of - timedelta(days=90)
            inside = e.occurred_at >= start if boundary == "inclusive" else e.occurred_at > start
        else:
            # 6 calendar months: an entry leaves when it is one window-length old, i.e. at its
            # date + 6 months (inclusive: just after that instant; exclusive: at it).
            leaves = _plus_months_local(e.occurred_at, 6, tz)
            inside = as_of <= leaves if boundary == "inclusive" else as_of < leaves
        if inside:
            total += points_of(e)
    return total


@settings(SETTINGS, max_examples=250)
@given(
    data=st.data(),
    length=st.sampled_from(["days", "months"]),
    boundary=st.sampled_from(["inclusive", "exclusive"]),
)
def test_window_sum_equals_brute_force(data: st.DataObject, length: str, boundary: str) -> None:
    versions = PLAIN[(length, boundary)]
    tz = versions[0].tz
    # Dense histories (one subject, 2 years) so that windows hold several entries.
    raws = data.draw(histories(WINDOW_TYPES, subjects=("s1",), span_days=2 * 365), label="history")
    events = [r.event(versions) for r in raws]

    def edge(e: Event) -> datetime:
        if length == "days":
            return e.occurred_at + timedelta(days=90)
        return _plus_months_local(e.occurred_at, 6, tz)

    candidates = [e.occurred_at for e in events] + [edge(e) for e in events]
    tiny = timedelta(microseconds=1)
    nudged = [t + d for t in candidates for d in (-tiny, timedelta(0), tiny)]
    start = datetime(2017, 12, 31, tzinfo=UTC)
    rand = st.integers(0, 3 * 365 * 86_400).map(lambda s: start + timedelta(seconds=s))
    pick = st.one_of(rand, st.sampled_from(nudged)) if nudged else rand
    as_ofs = data.draw(st.lists(pick, min_size=1, max_size=10), label="as_of")
    for as_of in as_ofs:
        s = evaluate_subject(versions, events, as_of, subject="s1")
        assert s.points == brute_force(events, as_of, length, boundary, tz), as_of


# --------------------------------------------------------------------------------------------
# (e) non-interference
# --------------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=80)
@given(data=st.data(), scheme=st.sampled_from(sorted(SCHEMES)))
def test_other_subjects_never_change_a_subjects_state(data: st.DataObject, scheme: str) -> None:
    versions, types = SCHEMES[scheme]
    raws = data.draw(histories(types), label="history")
    events = [r.event(versions) for r in raws]
    as_ofs = data.draw(instants(events), label="as_of")
    domain = versions[0].domain
    alone = new_ledger(versions)
    ingest_in_batches(alone, versions, [r for r in raws if r.subject == "s1"], [])
    together = new_ledger(versions)
    ingest_in_batches(together, versions, raws, [])
    for as_of in as_ofs:
        a = alone.state(domain, "s1", as_of)
        b = together.state(domain, "s1", as_of)
        assert snapshot(a) == snapshot(b), as_of
        # and both agree with the pure engine folding s1's own events
        assert snapshot(engine(versions, events, "s1", as_of)) == snapshot(a), as_of
    assert ledger_decisions(alone, domain, "s1") == ledger_decisions(together, domain, "s1")
