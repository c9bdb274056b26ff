"""Time edges (reliability checklist T13): DST, leap days, month ends, window boundaries, the
calendar's ends, and a clock that moves backwards. No premature expiry or finality.

Every expected value is worked out by hand from the documented semantics, never by running
pointbook; the rule is cited next to each computation:

* docs/rule-packs.md, "Top level": `timezone` is the zone "for bare dates, calendar arithmetic
  and 'days'"; durations: "Years and months are calendar units added to the local date: 'D + n
  months' keeps the day number, or takes the last day of a shorter month (31 Jan + 1 month is
  28 or 29 Feb)".
* src/pointbook/dates.py (module docstring): durations are "added to the local wall time of the
  pack's time zone, so '1 year after 5 March' is 5 March whatever DST did"; hours are exact
  (added to the instant). A naive date-time is wall time in the zone.
* docs/rule-packs.md, "Order of evaluation": on one instant, (1) exclusive window exits and
  `counts_for` expiries, (2) restorations, (3) events, (4) inclusive window exits; "A bare event
  date is the start of that local day ... A bare `as-of` date means the end of that local day."
* docs/rule-packs.md, "Schemes": with `boundary: inclusive` "an entry exactly one window-length
  old still counts (it leaves just after that instant, so a figure *as of* that very instant
  still includes it); with `exclusive` it leaves at that instant".
* docs/engine.md: figures are a function of the events, the packs and the as-of time; the clock
  (`now`) is injected.

Crash kind: none (no process is killed). The clock test injects a clock that jumps back by
weeks between batches, as an NTP step or a restored VM snapshot would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from helpers import at, ev, pack
from pointbook.dates import LATEST, day_start, end_of_day, zone
from pointbook.engine import Event, SubjectState, evaluate_subject
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, load_pack_file
from pointbook.store import Store

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "examples" / "packs"
US = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def head(tz: str) -> str:
    return f"""
domain: town
version: "1"
effective_from: 2020-01-01
timezone: {tz}
title: Time edge scheme
purpose: Testing calendar arithmetic at its edges.
retention: 10 years
"""


# Each event type has its own duration and a distinct power-of-two loss, so a balance of 100
# minus what still counts says which entries count.
DURATIONS = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  year: {}
  month: {}
  two_months: {}
  day: {}
  hours24: {}
  four_years: {}
rules:
  - {id: year, title: One year, category: traffic, basis: Test code art. 1, event: year,
     points: -1, counts_for: 1 year}
  - {id: month, title: One month, category: traffic, basis: Test code art. 2, event: month,
     points: -2, counts_for: 1 month}
  - {id: two-months, title: Two months, category: traffic, basis: Test code art. 3,
     event: two_months, points: -4, counts_for: 2 months}
  - {id: day, title: One day, category: traffic, basis: Test code art. 4, event: day,
     points: -8, counts_for: 1 day}
  - {id: hours24, title: Twenty-four hours, category: traffic, basis: Test code art. 5,
     event: hours24, points: -16, counts_for: 24 hours}
  - {id: four-years, title: Four years, category: traffic, basis: Test code art. 6,
     event: four_years, points: -32, counts_for: 4 years}
"""
LOSS = {"year": 1, "month": 2, "two_months": 4, "day": 8, "hours24": 16, "four_years": 32}


def durations(tz: str = "Europe/London") -> list[PackVersion]:
    return pack(DURATIONS, head=head(tz))


def state(versions: list[PackVersion], events: list[Event], when: datetime) -> SubjectState:
    return evaluate_subject(versions, events, when)


def ends(
    versions: list[PackVersion], event: Event, expected_end: datetime
) -> tuple[datetime | None, int, int]:
    """When the one entry of ``event`` stops counting, and the balance 1 µs before and at it."""
    loss = LOSS[event.type]
    before = state(versions, [event], expected_end - US)
    at_end = state(versions, [event], expected_end)
    (entry,) = before.entries
    assert before.points == 100 - loss, "the entry must still count 1 µs before its end"
    return entry.ends_at, before.points, at_end.points


def check_end(tz: str, type_: str, when: str, expected_end: datetime) -> None:
    versions = durations(tz)
    event = ev("e1", type_, when, tz=tz)
    end, before, after = ends(versions, event, expected_end)
    assert end == expected_end
    assert (before, after) == (100 - LOSS[type_], 100)


# --------------------------------------------------------------------------------------------
# leap days and month ends
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "when", "expected_end"),
    [
        # 29 Feb 2024 + 1 year: 2025 has no 29 Feb, so the last day of that February, 28 Feb
        # (rule-packs.md). London is on GMT in February: local midnight is 00:00 UTC.
        ("year", "2024-02-29", utc(2025, 2, 28)),
        # + 4 years is 48 months added at once: 29 Feb 2028 exists, and is kept. Adding 1 year
        # four times would give 28 Feb 2028, a day early.
        ("four_years", "2024-02-29", utc(2028, 2, 29)),
        # 28 Feb 2023 + 1 year is 28 Feb 2024, not the leap day after it.
        ("year", "2023-02-28", utc(2024, 2, 28)),
        # 31 Jan + 1 month: 28 Feb in a common year, 29 Feb in a leap year.
        ("month", "2021-01-31", utc(2021, 2, 28)),
        ("month", "2024-01-31", utc(2024, 2, 29)),
        # 31 Jan + 2 months is 31 March (the day number kept), not 28 March as two steps of
        # one month would give. London is on BST from 28 March 2021: 31 March 00:00 local is
        # 30 March 23:00 UTC.
        ("two_months", "2021-01-31", utc(2021, 3, 30, 23)),
        # 31 March + 1 month: 30 April (BST), 29 April 23:00 UTC.
        ("month", "2021-03-31", utc(2021, 4, 29, 23)),
    ],
)
def test_calendar_durations_end_on_the_documented_day(
    type_: str, when: str, expected_end: datetime
) -> None:
    check_end("Europe/London", type_, when, expected_end)


def test_a_leap_day_entry_counts_through_the_last_day_before_its_end() -> None:
    """As-of dates, as a person asks: the 29 Feb 2024 entry counts on 27 Feb 2025 (end of day)
    and no longer on 28 Feb 2025 (end of day), in Asia/Shanghai as in UTC."""
    for tz in ("UTC", "Asia/Shanghai"):
        versions = durations(tz)
        events = [ev("e1", "year", "2024-02-29", tz=tz)]
        assert at(versions, events, "2025-02-27").points == 99
        assert at(versions, events, "2025-02-28").points == 100


# --------------------------------------------------------------------------------------------
# DST
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "when", "expected_end"),
    [
        # 1 day is a calendar day on local wall time: 12:00 GMT on 27 March 2021 (12:00 UTC)
        # + 1 day is 12:00 BST on 28 March, 11:00 UTC: 23 hours across the spring change.
        ("day", "2021-03-27T12:00:00", utc(2021, 3, 28, 11)),
        # ... and 25 hours across the autumn one: 12:00 BST on 30 October (11:00 UTC) + 1 day
        # is 12:00 GMT on 31 October (12:00 UTC).
        ("day", "2021-10-30T12:00:00", utc(2021, 10, 31, 12)),
        # 24 hours are exact whatever the clocks do.
        ("hours24", "2021-03-27T12:00:00", utc(2021, 3, 28, 12)),
        ("hours24", "2021-10-30T12:00:00", utc(2021, 10, 31, 11)),
        # 1 July 10:00 BST (09:00 UTC) + 1 year is 1 July 10:00 BST again: 09:00 UTC.
        ("year", "2021-07-01T10:00:00+01:00", utc(2022, 7, 1, 9)),
    ],
)
def test_days_follow_the_local_calendar_and_hours_the_clock(
    type_: str, when: str, expected_end: datetime
) -> None:
    check_end("Europe/London", type_, when, expected_end)


def test_a_local_time_the_clocks_skipped() -> None:
    """01:30 on 28 March 2021 never happened in London (01:00 GMT became 02:00 BST). The docs
    do not say how such a wall time reads; pointbook reads it with the offset in force before
    the change (Python's fold=0), as if the clocks had not gone forward yet: 01:30 UTC, which
    is 02:30 BST. A year on is 02:30 BST on 28 March 2022 (BST since 27 March): 01:30 UTC."""
    versions = durations()
    gap = ev("gap", "year", "2021-03-28T01:30:00", tz="Europe/London")
    assert gap.occurred_at == utc(2021, 3, 28, 1, 30)
    end, before, after = ends(versions, gap, utc(2022, 3, 28, 1, 30))
    assert (end, before, after) == (utc(2022, 3, 28, 1, 30), 99, 100)
    # It sorts by its instant: after an event at 02:15 BST (01:15 UTC), whatever the ids.
    early = ev("zz", "day", "2021-03-28T02:15:00+01:00", tz="Europe/London")
    folded = state(versions, [gap, early], utc(2021, 3, 28, 2))
    assert [ln.event_id for ln in folded.lines if ln.event_id] == ["zz", "gap"]


def test_a_local_time_the_clocks_repeated() -> None:
    """01:30 on 31 October 2021 happened twice in London (BST, then GMT). pointbook takes the
    first (fold=0): 00:30 UTC. A year on, 01:30 on 31 October 2022 is GMT only (the clocks went
    back on 30 October 2022): 01:30 UTC, a year and an hour later, on the local calendar."""
    versions = durations()
    twice = ev("twice", "year", "2021-10-31T01:30:00", tz="Europe/London")
    assert twice.occurred_at == utc(2021, 10, 31, 0, 30)
    end, before, after = ends(versions, twice, utc(2022, 10, 31, 1, 30))
    assert (end, before, after) == (utc(2022, 10, 31, 1, 30), 99, 100)


@pytest.mark.parametrize(
    ("tz", "day", "first_instant"),
    [
        # America/Santiago, 11 September 2022: 24:00 -04 became 01:00 -03; the day has no
        # midnight and starts at 01:00 -03, 04:00 UTC.
        ("America/Santiago", date(2022, 9, 11), utc(2022, 9, 11, 4)),
        # America/Havana, 13 March 2022: 00:00 -05 became 01:00 -04; the day starts at 05:00 UTC.
        ("America/Havana", date(2022, 3, 13), utc(2022, 3, 13, 5)),
        # America/Havana, 6 November 2022: 01:00 -04 became 00:00 -05, so midnight came twice;
        # the day starts at the first, 04:00 UTC.
        ("America/Havana", date(2022, 11, 6), utc(2022, 11, 6, 4)),
    ],
)
def test_a_day_whose_midnight_was_skipped_or_repeated(
    tz: str, day: date, first_instant: datetime
) -> None:
    """A bare date is the start of that local day, and a bare as-of date its end: the day
    before ends 1 µs before the day starts, so an event on the day is never counted as of the
    day before, and is as of the day itself."""
    z = zone(tz)
    assert day_start(day, z) == first_instant
    assert end_of_day(day - timedelta(days=1), z) == first_instant - US
    versions = durations(tz)
    events = [ev("e1", "day", day.isoformat(), tz=tz)]
    assert events[0].occurred_at == first_instant
    assert at(versions, events, (day - timedelta(days=1)).isoformat()).points == 100
    assert at(versions, events, first_instant.isoformat()).points == 92


# --------------------------------------------------------------------------------------------
# window boundaries, to the microsecond
# --------------------------------------------------------------------------------------------


def uk() -> list[PackVersion]:
    """examples/packs/uk-driving.yaml: `length: 3 years`, `boundary: inclusive  # s.29(2): only
    offences MORE than 3 years before another drop out`; 12 points or more (`at_or_above`,
    `crossing`) is a `disqualification`. Time zone Europe/London."""
    return load_pack_file(PACKS / "uk-driving.yaml")


def endorsement(id: str, when: str, points: int) -> Event:
    return ev(id, "endorsement", when, domain="uk-driving", tz="Europe/London", points=points)


def test_an_offence_exactly_three_years_later_still_adds_up() -> None:
    """6 points on 1 May 2019 and 6 on 1 May 2022, bare dates: both 00:00 BST, 23:00 UTC the
    day before. The first leaves the window at 2019-05-01 + 3 years = the very instant of the
    second; events (step 3) come before inclusive exits (step 4), so the second offence sees 12
    and the totting-up decision is made at that instant."""
    versions = uk()
    events = [endorsement("o1", "2019-05-01", 6), endorsement("o2", "2022-05-01", 6)]
    boundary = utc(2022, 4, 30, 23)
    s = state(versions, events, utc(2022, 6, 1))
    assert [(d.kind, d.triggered_at, d.figure) for d in s.decisions] == [
        ("disqualification", boundary, 12)
    ]


def test_one_microsecond_more_than_three_years_does_not() -> None:
    versions = uk()
    events = [
        endorsement("o1", "2019-05-01", 6),
        endorsement("o2", "2022-05-01T00:00:00.000001+01:00", 6),
    ]
    assert state(versions, events, utc(2022, 6, 1)).decisions == ()


def test_as_of_the_boundary_instant_an_inclusive_window_still_counts() -> None:
    versions = uk()
    events = [endorsement("o1", "2019-05-01", 6)]
    boundary = utc(2022, 4, 30, 23)
    assert state(versions, events, boundary).points == 6
    assert state(versions, events, boundary + US).points == 0


EXCLUSIVE = """
scheme: {kind: window, length: 3 years, boundary: exclusive}
event_types:
  endorsement: {attributes: {points: {type: integer, minimum: 1, maximum: 11}}}
rules:
  - {id: endorsement-points, title: Points, category: road-safety, basis: Test code art. 1,
     event: endorsement, points: {attribute: points}}
thresholds:
  - {id: totting-up, kind: disqualification, title: Totting up, basis: Test code art. 2,
     direction: at_or_above, value: 12, mode: crossing}
"""


def test_an_exclusive_window_drops_the_entry_at_the_boundary() -> None:
    """The same offences under `boundary: exclusive`: the first leaves at the instant of the
    second (step 1, before events), so the second sees 6 and no decision is made; as of the
    boundary itself the figure is already 0."""
    versions = pack(EXCLUSIVE, head=head("Europe/London").replace("town", "uk-driving"))
    events = [endorsement("o1", "2019-05-01", 6), endorsement("o2", "2022-05-01", 6)]
    assert state(versions, events, utc(2022, 6, 1)).decisions == ()
    boundary = utc(2022, 4, 30, 23)
    assert state(versions, events[:1], boundary - US).points == 6
    assert state(versions, events[:1], boundary).points == 0


def test_a_counts_for_expiry_happens_at_its_instant_not_before() -> None:
    """examples/packs/civic-code.yaml: littering -5, `counts_for: 1 year`, Asia/Shanghai. On
    2021-05-02 (00:00 +08, 16:00 UTC the day before) it ends at 2022-05-02 00:00 +08."""
    versions = load_pack_file(PACKS / "civic-code.yaml")
    events = [ev("l1", "littering", "2021-05-02", domain="civic-code", tz="Asia/Shanghai")]
    end = utc(2022, 5, 1, 16)
    assert state(versions, events, end - US).points == 995
    assert state(versions, events, end).points == 1000


# --------------------------------------------------------------------------------------------
# the ends of the calendar
# --------------------------------------------------------------------------------------------

FOREVER = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  offence: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Test code art. 1, event: offence,
     points: -10, counts_for: 9000 years}
"""


def test_an_expiry_past_the_end_of_the_calendar_never_comes(
    store_factory: Callable[[], Store],
) -> None:
    """`counts_for: 9000 years` from 2021 ends in year 11021, which no date can hold: the entry
    counts until the end of the dates pointbook works with (dates.LATEST, 30 December 9999),
    and judging, folding, explaining and the retention run all go on without an error."""
    versions = pack(
        FOREVER, head=head("Asia/Shanghai").replace("10 years", "9000 years"), forgive=False
    )
    ledger = Ledger(store_factory(), now=lambda: utc(2024, 1, 1))
    ledger.publish(versions)
    report = ledger.ingest([_record("f1", "offence", "2021-03-02")])
    assert (report.accepted, report.rejected) == (1, [])
    (entry,) = ledger.store.subject_entries("town", "s1")
    assert entry.counts_until == LATEST
    assert ledger.state("town", "s1", utc(9000, 1, 1)).points == 90
    view = ledger.view("town", "s1", utc(2500, 1, 1), explain=True)
    assert view["points"] == 90
    assert ledger.run_retention(utc(2024, 1, 1)) == {"town": 0}
    assert ledger.verify().ok


# --------------------------------------------------------------------------------------------
# a clock that moves backwards
# --------------------------------------------------------------------------------------------


def _record(id: str, type_: str, when: str, domain: str = "town", line: int = 1) -> RawRecord:
    event = EventIn(
        id=id,
        domain=domain,
        subject="s1",
        type=type_,
        occurred_at=when,
        evidence="ref",
        issuer="test",
    )
    return RawRecord(line, "", event, None)


class Clock:
    """The ledger's injected clock, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_clock_moving_backwards_between_batches(store_factory: Callable[[], Store]) -> None:
    """examples/packs/civic-code.yaml (Asia/Shanghai; littering -5, illegal dumping -50,
    graffiti -50, each for 1 year; below 900 a hearing notice with 30 days' notice, crossing).

    The clock reads 10 June 2021, then jumps back to 15 April 2021 (an NTP step, a restored
    snapshot), then forward again. Figures depend on the events and the as-of time only
    (docs/engine.md), so nothing already recorded changes; what the backward clock decides is
    what "now" means: an event dated after it is still "in the future" (refused), and a
    decision is not in force before its effective date as of that clock."""
    clock = Clock(utc(2021, 6, 10))
    ledger = Ledger(store_factory(), now=clock)
    ledger.publish(load_pack_file(PACKS / "civic-code.yaml"))

    def ingest(*records: RawRecord) -> list[str]:
        report = ledger.ingest(list(records))
        return [r.code for r in report.rejected]

    assert ingest(_record("e1", "littering", "2021-03-02", "civic-code")) == []
    assert ingest(_record("e2", "graffiti", "2021-04-01", "civic-code")) == []

    clock.now = utc(2021, 4, 15)  # back by 8 weeks
    # e3 happened before the clock's "now": accepted. e4 (20 May) is more than a day after the
    # clock's now: refused as in the future, even though the clock read June a moment ago.
    assert ingest(
        _record("e3", "illegal_dumping", "2021-04-10", "civic-code"),
        _record("e4", "graffiti", "2021-05-20", "civic-code", line=2),
    ) == ["event/future"]
    # 1000 - 5 - 50 - 50 = 895 as of now, below 900 since e3: triggered 10 April 00:00 +08
    # (9 April 16:00 UTC), effective 30 days later, 10 May 00:00 +08 (9 May 16:00 UTC).
    assert ledger.state("civic-code", "s1").points == 895
    ((decision, status),) = ledger.decisions("civic-code", "s1")
    assert (decision.triggered_at, decision.effective_at) == (
        utc(2021, 4, 9, 16),
        utc(2021, 5, 9, 16),
    )
    assert status == "pending"  # as of 15 April: not in force before its effective date
    assert ledger.verify().ok  # audit records written at an earlier time still chain

    clock.now = utc(2021, 6, 10)
    assert ingest(_record("e4", "graffiti", "2021-05-20", "civic-code")) == []
    assert ledger.state("civic-code", "s1").points == 845
    ((decision, status),) = ledger.decisions("civic-code", "s1")
    assert status == "in_force"
    assert ledger.verify().ok


CONTEST = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
contest_window: 14 days
event_types:
  offence: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Test code art. 1, event: offence,
     points: -10, counts_for: 1 year}
"""


def test_no_finality_before_the_contest_window_ends_even_after_the_clock_went_back(
    store_factory: Callable[[], Store],
) -> None:
    """`contest_window: 14 days` (docs/rule-packs.md: an entry counts once final): an offence
    on 1 May 2021 (UTC) is final on 15 May. As of a clock at 20 May it counts (90); when the
    clock goes back to 10 May it is pending again as of that clock (100), never final early."""
    clock = Clock(utc(2021, 5, 20))
    ledger = Ledger(store_factory(), now=clock)
    ledger.publish(pack(CONTEST, head=head("UTC")))
    assert ledger.ingest([_record("c1", "offence", "2021-05-01")]).accepted == 1
    assert ledger.state("town", "s1").points == 90
    clock.now = utc(2021, 5, 10)
    s = ledger.state("town", "s1")
    assert s.points == 100
    assert [e.state for e in s.entries] == ["pending"]
    clock.now = utc(2021, 5, 15) - US
    assert ledger.state("town", "s1").points == 100
    clock.now = utc(2021, 5, 15)
    assert ledger.state("town", "s1").points == 90
