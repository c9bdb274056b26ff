"""Local time for whole columns of instants: the local date, and `dates.add_duration`, with
the values dates.py gives one instant at a time, without a Python call per instant.

A zone's UTC offset is constant between its transitions. The offset at the start of every UTC
hour of the years concerned is read once per zone and year (from zoneinfo, the data the
one-at-a-time functions read) and kept. An instant whose hour starts and ends at the same
offset has that offset. What is left to the one-at-a-time functions: instants in an hour that
holds a transition, results within a few hours of one (where a wall time is skipped or comes
twice), and instants outside the years the tables cover. So every value is the one-at-a-time
value; tests/test_localtime.py checks it around the transitions of several zones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from pointbook.dates import Duration, add_duration, local_date, to_micros

__all__ = ["local_days", "shifted"]

Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]

HOUR = 3_600_000_000
DAY = 24 * HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ORDINAL_1970 = date(1970, 1, 1).toordinal()
_NEAR = 3 * HOUR  # a result this close to a transition is worked out one at a time
_FIRST_YEAR, _LAST_YEAR = 1902, 2199  # beyond, one at a time (and the tables stay small)
_SAFE_LOW = to_micros(datetime(_FIRST_YEAR + 1, 1, 1, tzinfo=UTC))
_SAFE_HIGH = to_micros(datetime(_LAST_YEAR - 1, 1, 1, tzinfo=UTC))

_YEARS: dict[tuple[str, int], Ints] = {}  # a zone's offset (µs) at each UTC hour of a year


def _is_utc(tz: ZoneInfo) -> bool:
    return tz.key in ("UTC", "Etc/UTC")


def _year(tz: ZoneInfo, year: int) -> Ints:
    found = _YEARS.get((tz.key, year))
    if found is None:
        start = datetime(year, 1, 1, tzinfo=UTC)
        hours = (datetime(year + 1, 1, 1, tzinfo=UTC) - start) // timedelta(hours=1)
        step = timedelta(hours=1)
        tick = timedelta(microseconds=1)
        found = np.fromiter(
            (_offset(start + h * step, tz) // tick for h in range(hours)),
            dtype=np.int64,
            count=hours,
        )
        _YEARS[(tz.key, year)] = found
    return found


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    found = instant.astimezone(tz).utcoffset()
    assert found is not None  # an aware datetime's
    return found


class _Offsets:
    """A zone's offsets at each UTC hour from the start of ``first`` to the end of ``last``."""

    def __init__(self, tz: ZoneInfo, first: int, last: int) -> None:
        self.base = to_micros(datetime(first, 1, 1, tzinfo=UTC)) // HOUR
        self.table = np.concatenate([_year(tz, y) for y in range(first, last + 1)])

    def at(self, us: Ints) -> tuple[Ints, Flags]:
        """Each instant's offset, and whether it is known (its hour holds no transition)."""
        h = us // HOUR - self.base
        inside = (h >= 0) & (h + 1 < len(self.table))
        h = np.where(inside, h, 0)
        offset = self.table[h]
        return offset, inside & (offset == self.table[h + 1])

    @classmethod
    def around(cls, tz: ZoneInfo, us: Ints, later_years: int = 0) -> _Offsets:
        """A table for the years of ``us`` and ``later_years`` after (within the years
        tables cover), a year more on either side."""
        low = max(int(us.min()) if len(us) else _SAFE_LOW, _SAFE_LOW)
        high = min(max(int(us.max()) if len(us) else low, low), _SAFE_HIGH)
        first = (_EPOCH + timedelta(microseconds=low)).year - 1
        last = min((_EPOCH + timedelta(microseconds=high)).year + later_years + 1, _LAST_YEAR)
        return cls(tz, first, max(first, last))


def _safe(us: Ints) -> Flags:
    return (us >= _SAFE_LOW) & (us <= _SAFE_HIGH)


def local_days(us: Ints, tz: ZoneInfo) -> Ints:
    """The proleptic ordinal (`date.toordinal`) of each instant's local date in ``tz``."""
    us = np.asarray(us, dtype=np.int64)
    if _is_utc(tz):
        return us // DAY + _ORDINAL_1970
    offsets = _Offsets.around(tz, us)
    offset, known = offsets.at(us)
    out = (us + offset) // DAY + _ORDINAL_1970
    for j in np.flatnonzero(~(known & _safe(us))).tolist():
        out[j] = local_date(_EPOCH + timedelta(microseconds=int(us[j])), tz).toordinal()
    return out


def shifted(us: Ints, duration: Duration, tz: ZoneInfo) -> Ints:
    """`add_duration(instant, duration, tz)` for each instant, in microseconds."""
    us = np.asarray(us, dtype=np.int64)
    months = duration.years * 12 + duration.months
    reach = (abs(months) + 11) // 12 + (abs(duration.days) + abs(duration.hours) // 24) // 365 + 1
    offsets = _Offsets.around(tz, us, reach)
    offset, known = offsets.at(us)
    local = us + offset
    days = local // DAY
    tod = local - days * DAY
    if months:
        d64 = days.astype("datetime64[D]")
        m64 = d64.astype("datetime64[M]")
        dom = (d64 - m64.astype("datetime64[D]")).astype(np.int64)  # from 0
        moved = m64 + months
        first = moved.astype("datetime64[D]")
        length = ((moved + 1).astype("datetime64[D]") - first).astype(np.int64)
        days = first.astype(np.int64) + np.minimum(dom, length - 1)
    days = days + duration.days
    wall = days * DAY + tod
    # The instant showing that wall time: looked up at the source's offset, checked at the
    # result's own, with no transition within a few hours of it (no skipped or doubled wall
    # time), else worked out one at a time.
    guess, known_guess = offsets.at(wall - offset)
    out = wall - guess
    own, known_own = offsets.at(out)
    before, known_before = offsets.at(out - _NEAR)
    after, known_after = offsets.at(out + _NEAR)
    good = known & known_guess & known_own & known_before & known_after
    good &= (own == guess) & (before == own) & (after == own) & _safe(us) & _safe(out)
    out = out + duration.hours * HOUR
    for j in np.flatnonzero(~good).tolist():
        moved_one = add_duration(_EPOCH + timedelta(microseconds=int(us[j])), duration, tz)
        out[j] = to_micros(moved_one)
    return out
