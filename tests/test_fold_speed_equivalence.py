"""The fold's shortcuts give exactly what the plain computations they replace give.

The fold reads what it needs of each pack version once (`_Facts`), finds the thresholds a move
can affect by bisection instead of testing each, finds the version in force by bisection
within a remembered span, makes its records without the frozen __init__'s per-field cost,
and adds a duration unit by unit only where there is some of it. Each test checks one shortcut
against the plain computation, written out here; the suites of the fold check the results.
"""

from __future__ import annotations

import calendar
import pickle
import random
from dataclasses import FrozenInstanceError, dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers import pack
from pointbook.dates import EARLIEST, LATEST, Duration, add_duration, format_local, zone
from pointbook.engine.fold import _FACTS, _FACTS_MAX, _facts, _Fold
from pointbook.engine.model import Decision, Entry, EntryStatus, Line, fast_maker
from pointbook.rules.pack import PackVersion, load_pack_file, version_at

ROOT = Path(__file__).resolve().parent.parent
FORUM = ROOT / "examples" / "packs" / "forum-reputation.yaml"
FR_DRIVING = ROOT / "examples" / "packs" / "fr-driving.yaml"
T0 = datetime(2021, 3, 4, 5, 6, tzinfo=UTC)

# --------------------------------------------------------------------------------------------
# Records made by the fast maker
# --------------------------------------------------------------------------------------------

ENTRY_ARGS: dict[str, Any] = {
    "event_id": "e1",
    "domain": "town",
    "subject": "s1",
    "rule_id": "r1",
    "pack_version": "1",
    "pack_hash": "sha256:00",
    "delta": -3,
    "occurred_at": T0,
    "counts_until": None,
    "title": "Offence",
    "evidence": None,
}  # tags and daily_cap left to their defaults
LINE_ARGS: dict[str, Any] = {
    "at": T0,
    "kind": "entry",
    "event_id": "e1",
    "rule_id": "r1",
    "pack_version": "1",
    "delta": -3,
    "applied": -2,
    "figure": 10,
    "reason": "Offence: -3 points",
}
DECISION_ARGS: dict[str, Any] = {
    "id": "d-1",
    "domain": "town",
    "subject": "s1",
    "threshold_id": "warn",
    "kind": "warning-letter",
    "title": "Warning",
    "level": 6,
    "figure": 5,
    "triggered_at": T0,
    "ordinal": 0,
    "effective_at": T0,
    "ends_at": None,
    "attributes": {"stage": 1},
    "trigger": "event e1",
    "pack_version": "1",
}  # requires_review left to its default
STATUS_ARGS: dict[str, Any] = {
    "entry": Entry(**ENTRY_ARGS),
    "applied": -2,
    "counts": True,
    "ends_at": None,
    "ended_by": None,
}

RECORDS = [
    pytest.param(Entry, ENTRY_ARGS, "delta", id="Entry"),
    pytest.param(Line, LINE_ARGS, "figure", id="Line"),
    pytest.param(Decision, DECISION_ARGS, "ends_at", id="Decision"),
    pytest.param(EntryStatus, STATUS_ARGS, "state", id="EntryStatus"),
]


@pytest.mark.parametrize(("record", "kwargs", "name"), RECORDS)
def test_the_fast_maker_makes_the_very_record_the_class_makes(
    record: Any, kwargs: dict[str, Any], name: str
) -> None:
    make = fast_maker(record)
    assert make is not record  # the fast path is the one in use
    fast, plain = make(**kwargs), record(**kwargs)
    assert type(fast) is record
    assert fast == plain and repr(fast) == repr(plain)
    assert make(*kwargs.values()) == plain  # positionally too
    if record is not Decision:  # a Decision holds a dict: unhashable either way
        assert hash(fast) == hash(plain)
    with pytest.raises(FrozenInstanceError):
        setattr(fast, name, None)
    assert pickle.loads(pickle.dumps(fast)) == plain
    assert replace(fast, **{name: None}) == replace(plain, **{name: None})


def test_the_fast_maker_is_the_class_itself_where_it_cannot_help() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    assert fast_maker(NoSlots) is NoSlots


# --------------------------------------------------------------------------------------------
# Thresholds a move meets
# --------------------------------------------------------------------------------------------

MANY = """
scheme: {kind: balance, start: 20, floor: 0, ceiling: 40}
event_types:
  offence: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Test code art. 1,
     event: offence, points: -1}
thresholds:
  - {id: a, kind: warning-letter, title: A, basis: Test code art. 2, direction: below,
     value: 15, mode: crossing, margin: 2}
  - {id: b, kind: restriction, title: B, basis: Test code art. 3, direction: at_or_below,
     levels: [{value: 12}, {value: 8}, {value: 3}], mode: crossing}
  - {id: c, kind: supervision, title: C, basis: Test code art. 4, direction: below,
     value: 14, mode: while, margin: 1}
  - {id: d, kind: notice, title: D, basis: Test code art. 5, direction: at_or_above,
     value: 30, mode: crossing, margin: 4}
  - {id: e, kind: review, title: E, basis: Test code art. 6, direction: above,
     value: 31, mode: while}
"""


def _plain_met(
    thresholds: tuple[Any, ...], lo: int, hi: int
) -> list[tuple[Any, ...]]:  # what the fold tested threshold by threshold
    return [c for c in thresholds if not (hi < c[2] or lo > c[3])]


def test_a_move_meets_exactly_the_thresholds_whose_span_it_meets_in_pack_order() -> None:
    facts = _facts(pack(MANY)[0])
    for lo in range(-5, 46):
        for hi in range(lo, 46):
            assert list(facts.met(lo, hi)) == _plain_met(facts.thresholds, lo, hi), (lo, hi)


def test_a_move_meets_the_same_thresholds_of_a_many_level_pack() -> None:
    facts = _facts(load_pack_file(FORUM)[0])
    rng = random.Random(7)
    for _ in range(20_000):
        lo = rng.randrange(-10, 26_000)
        hi = lo + rng.choice([0, 1, 2, 5, 10, 15, 40, 200, 500, 5000])
        assert list(facts.met(lo, hi)) == _plain_met(facts.thresholds, lo, hi), (lo, hi)


# --------------------------------------------------------------------------------------------
# The version in force
# --------------------------------------------------------------------------------------------


def _fold(versions: list[PackVersion]) -> _Fold:
    return _Fold(versions, [], datetime(2100, 1, 1, tzinfo=UTC))


def _instants(versions: list[PackVersion]) -> list[datetime]:
    out = [EARLIEST, LATEST, datetime(2000, 1, 1, tzinfo=UTC)]
    for v in versions:
        for step in (-1, 0, 1):
            out.append(v.effective_from + timedelta(microseconds=step))
    return out


@pytest.mark.parametrize("order", ["sorted", "reversed", "tied"])
def test_the_version_in_force_is_the_one_version_at_names(order: str) -> None:
    versions = load_pack_file(FR_DRIVING)
    if order == "reversed":
        versions = versions[::-1]  # evaluate_subject wants them sorted; scanned all the same
    elif order == "tied":
        versions = [*versions, replace(versions[1], version="tied")]
    fold = _fold(versions)
    rng = random.Random(3)
    instants = _instants(versions)
    for at in [*instants, *rng.sample(instants * 4, len(instants) * 4)]:  # any order of steps
        assert fold.facts_at(at).version is (version_at(versions, at) or versions[0]), at


def test_the_facts_of_a_version_are_its_own_and_the_memo_stays_bounded() -> None:
    first = load_pack_file(FR_DRIVING)[0]
    copies = [replace(first, version=f"copy-{i}") for i in range(_FACTS_MAX * 2)]
    for v in copies:
        assert _facts(v).version is v
        assert len(_FACTS) <= _FACTS_MAX
    assert _facts(first).version is first


# --------------------------------------------------------------------------------------------
# Durations and local times
# --------------------------------------------------------------------------------------------


def _plain_add_duration(instant: datetime, d: Duration, tz: Any, times: int = 1) -> datetime:
    """add_duration as it was written before its shortcuts: every unit added, zero or not."""
    try:
        local = instant.astimezone(tz).replace(tzinfo=None)
        total = local.year * 12 + (local.month - 1) + times * (d.years * 12 + d.months)
        year, month = divmod(total, 12)
        month += 1
        last = calendar.monthrange(year, month)[1]
        local = local.replace(year=year, month=month, day=min(local.day, last))
        local = local + timedelta(days=times * d.days)
        result = local.replace(tzinfo=tz).astimezone(UTC)
        result = result + timedelta(hours=times * d.hours)
    except (OverflowError, ValueError):
        return LATEST if times >= 0 else EARLIEST
    return min(max(result, EARLIEST), LATEST)


def _plain_format_local(instant: datetime, tz: Any) -> str:
    local = instant.astimezone(tz)
    if local.time() == time(0):
        return local.date().isoformat()
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


DURATIONS = [
    Duration(),
    Duration(hours=1),
    Duration(hours=36),
    Duration(days=1),
    Duration(days=30),
    Duration(months=1),
    Duration(months=6),
    Duration(years=1),
    Duration(years=3, months=2, days=1, hours=5),
    Duration(years=9000),
]


@pytest.mark.parametrize("name", ["UTC", "Europe/Paris", "America/New_York", "Asia/Shanghai"])
def test_adding_a_duration_gives_what_adding_every_unit_gives(name: str) -> None:
    """Around clock changes (ambiguous and skipped wall times), on month ends, at the calendar's
    edges, any number of times."""
    tz = zone(name)
    starts = [
        datetime(2021, 10, 31, 0, 30, tzinfo=UTC),  # 02:30 in Paris, the first time
        datetime(2021, 10, 31, 1, 30, tzinfo=UTC),  # 02:30 in Paris, the second time
        datetime(2021, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2021, 11, 7, 5, 30, tzinfo=UTC),  # 01:30 in New York, twice
        datetime(2021, 11, 7, 6, 30, tzinfo=UTC),
        datetime(2024, 1, 31, 12, tzinfo=UTC),
        datetime(2024, 2, 29, tzinfo=UTC),
        datetime(2023, 8, 31, 22, tzinfo=UTC),
        EARLIEST,
        LATEST,
    ]
    for start in starts:
        for minutes in range(-120, 121, 30):
            instant = start + timedelta(minutes=minutes)
            if not EARLIEST <= instant <= LATEST:
                continue
            assert format_local(instant, tz) == _plain_format_local(instant, tz)
            for d in DURATIONS:
                for times in (1, 2, 0, -1):
                    got = add_duration(instant, d, tz, times)
                    want = _plain_add_duration(instant, d, tz, times)
                    assert (got, got.utcoffset()) == (want, want.utcoffset()), (instant, d, times)
