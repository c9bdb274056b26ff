"""Local time for columns of instants (engine/localtime.py) against dates.py one instant at a
time: the local date and `add_duration`, in zones with summer time, half-hour and 45-minute
offsets, a summer time of half an hour, a day skipped, and rules that changed, with instants
drawn around the zones' transitions where wall times are skipped or come twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pointbook.dates import Duration, add_duration, local_date, to_micros
from pointbook.engine.localtime import local_days, shifted

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # summer time of 30 minutes, not at a UTC hour
    "Asia/Kathmandu",  # +05:45
    "America/Sao_Paulo",  # summer time abolished in 2019
    "Pacific/Apia",  # 2011-12-30 skipped
    "UTC",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000


@cache
def transitions(name: str) -> list[int]:
    """The hours (µs) around which ``name``'s offset changes, 1995 to 2035."""
    tz = ZoneInfo(name)
    start = datetime(1995, 1, 1, tzinfo=UTC)
    found, last = [], None
    for h in range(0, 41 * 8766):
        at = start + timedelta(hours=h)
        offset = at.astimezone(tz).utcoffset()
        if last is not None and offset != last:
            found.append(to_micros(at))
        last = offset
    return found or [to_micros(start)]


@st.composite
def instants(draw: st.DrawFn, name: str) -> list[int]:
    near = transitions(name)
    out = []
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.booleans()):
            base = draw(st.sampled_from(near))
            out.append(base + draw(st.integers(-30 * HOUR, 30 * HOUR)))
        else:
            low, high = (
                to_micros(datetime(1990, 1, 1, tzinfo=UTC)),
                to_micros(datetime(2040, 1, 1, tzinfo=UTC)),
            )
            out.append(draw(st.integers(low, high)))
    return out


durations = st.builds(
    Duration,
    years=st.integers(0, 10),
    months=st.integers(0, 30),
    days=st.integers(0, 400),
    hours=st.integers(0, 60),
)


def _one(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), name=st.sampled_from(ZONES))
def test_local_days_are_the_local_dates_of_each_instant(data: st.DataObject, name: str) -> None:
    tz = ZoneInfo(name)
    us = data.draw(instants(name))
    got = local_days(np.array(us, dtype=np.int64), tz).tolist()
    assert got == [local_date(_one(u), tz).toordinal() for u in us]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(ZONES), duration=durations)
def test_shifted_instants_are_add_duration_of_each(
    data: st.DataObject, name: str, duration: Duration
) -> None:
    tz = ZoneInfo(name)
    us = data.draw(instants(name))
    got = shifted(np.array(us, dtype=np.int64), duration, tz).tolist()
    assert got == [to_micros(add_duration(_one(u), duration, tz)) for u in us]


def test_the_edges_of_the_calendar_are_worked_out_one_at_a_time() -> None:
    """Instants beyond the years the tables cover (and results beyond the calendar, held at
    its edge) are the one-at-a-time values too."""
    tz = ZoneInfo("Europe/Paris")
    us = [
        to_micros(datetime(1, 1, 3, tzinfo=UTC)),
        to_micros(datetime(1850, 6, 1, tzinfo=UTC)),
        to_micros(datetime(2021, 3, 28, 1, 30, tzinfo=UTC)),
        to_micros(datetime(2400, 1, 1, tzinfo=UTC)),
        to_micros(datetime(9999, 12, 1, tzinfo=UTC)),
    ]
    for duration in (Duration(years=3), Duration(months=1, days=2), Duration(hours=5)):
        got = shifted(np.array(us, dtype=np.int64), duration, tz).tolist()
        assert got == [to_micros(add_duration(_one(u), duration, tz)) for u in us]
    assert local_days(np.array(us, dtype=np.int64), tz).tolist() == [
        local_date(_one(u), tz).toordinal() for u in us
    ]


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    name=st.sampled_from(ZONES[:-1]),
    days=st.integers(1, 800),
    hours=st.sampled_from([0, 0, 0, 1, 5]),
)
def test_results_aimed_at_a_transition_are_add_duration_of_each(
    data: st.DataObject, name: str, days: int, hours: int
) -> None:
    """Sources a whole number of days before a transition, give or take a few hours: the
    results fall on wall times that are skipped or come twice."""
    tz = ZoneInfo(name)
    targets = data.draw(st.lists(st.sampled_from(transitions(name)), min_size=1, max_size=20))
    jitter = st.integers(-3 * HOUR, 3 * HOUR)
    us = [t - days * 24 * HOUR + data.draw(jitter) for t in targets]
    duration = Duration(days=days, hours=hours)
    got = shifted(np.array(us, dtype=np.int64), duration, tz).tolist()
    assert got == [to_micros(add_duration(_one(u), duration, tz)) for u in us]
