"""Calendar arithmetic and time parsing, in a pack's time zone.

All instants are stored and compared as aware UTC datetimes. Durations are
calendar durations: 'D + n months' keeps the day number and falls back to the
last day of a shorter month; they are added to the local wall time of the
pack's time zone, so "1 year after 5 March" is 5 March whatever DST did.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pointbook.errors import InvalidTimeError

__all__ = [
    "Duration",
    "add_duration",
    "day_start",
    "describe_as_of",
    "end_of_day",
    "format_local",
    "from_micros",
    "local_date",
    "parse_as_of",
    "parse_instant",
    "to_micros",
    "zone",
]

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# The instants pointbook works with: Python's calendar (years 1 to 9999) less a margin of a
# day at each end, so that showing an instant in any time zone, or stepping a microsecond past
# it, never leaves the calendar.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _out_of_range(value: object) -> InvalidTimeError:
    return InvalidTimeError(
        f"{value!s} is outside the dates pointbook works with ({EARLIEST.date()} to "
        f"{LATEST.date()} UTC)"
    )


def _checked(instant: datetime, value: object) -> datetime:
    if not EARLIEST <= instant <= LATEST:
        raise _out_of_range(value)
    return instant


@dataclass(frozen=True, slots=True, order=True)
class Duration:
    """A calendar duration: years and months are calendar units, days and hours exact."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def describe(self) -> str:
        parts = []
        for n, unit in (
            (self.years, "year"),
            (self.months, "month"),
            (self.days, "day"),
            (self.hours, "hour"),
        ):
            if n:
                parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
        return ", ".join(parts) if parts else "no time"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimeError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def _add_months(d: datetime, months: int) -> datetime:
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = d.day
    if day > 28:  # every month has 28 days: only a later day may need the month's last
        day = min(day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)


def add_duration(instant: datetime, duration: Duration, tz: ZoneInfo, times: int = 1) -> datetime:
    """Add ``duration`` (``times`` times, may be negative) to a UTC instant, on local wall time.

    A result beyond the calendar is held at its edge (LATEST or EARLIEST): "9000 years after
    2021" is an effect that never comes, not an error in the middle of a fold."""
    try:
        local = instant.astimezone(tz).replace(tzinfo=None)
        # Each unit is added only when there is some of it (the engine adds a duration for
        # almost every entry). Adding a timedelta, even a zero one, also clears `fold`, which
        # picks the earlier of two ambiguous wall times below: it is cleared all the same.
        months = times * (duration.years * 12 + duration.months)
        if months:
            local = _add_months(local, months)
        if duration.days:
            local = local + timedelta(days=times * duration.days)
        elif local.fold:
            local = local.replace(fold=0)
        result = local.replace(tzinfo=tz).astimezone(UTC)
        if duration.hours:
            result = result + timedelta(hours=times * duration.hours)
    except (OverflowError, ValueError):
        return LATEST if times >= 0 else EARLIEST
    if result < EARLIEST:
        return EARLIEST
    return LATEST if result > LATEST else result


def day_start(d: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local day; InvalidTimeError for a day at the calendar's edge."""
    try:
        return _checked(datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC), d)
    except OverflowError as exc:
        raise _out_of_range(d) from exc


def end_of_day(d: date, tz: ZoneInfo) -> datetime:
    """The last microsecond of a local day: a bare as-of date means 'at the end of that day'."""
    try:
        nxt = datetime.combine(d + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    except OverflowError as exc:
        raise _out_of_range(d) from exc
    return _checked(nxt - timedelta(microseconds=1), d)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def parse_instant(value: str | date | datetime, tz: ZoneInfo) -> datetime:
    """An event time: a bare date is the start of that day in ``tz``; a naive
    date-time is wall time in ``tz``; an offset date-time is taken as written."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        return day_start(value, tz)
    else:
        text = value.strip()
        if _DATE_RE.match(text):
            try:
                return day_start(date.fromisoformat(text), tz)
            except ValueError as exc:
                raise InvalidTimeError(f"{text!r} is not a valid date: {exc}") from exc
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidTimeError(
                f"{text!r} is not an ISO 8601 date or date-time (e.g. 2024-03-01 or "
                "2024-03-01T14:30:00+01:00)"
            ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    try:
        return _checked(dt.astimezone(UTC), value)
    except OverflowError as exc:
        raise _out_of_range(value) from exc


def parse_as_of(value: str | None, tz: ZoneInfo, now: datetime) -> datetime:
    """An as-of time: a bare date means the end of that day in ``tz``; None means ``now``."""
    if value is None:
        return now.astimezone(UTC)
    text = value.strip()
    if _DATE_RE.match(text):
        try:
            return end_of_day(date.fromisoformat(text), tz)
        except ValueError as exc:
            raise InvalidTimeError(f"{text!r} is not a valid date: {exc}") from exc
    return parse_instant(text, tz)


def format_local(instant: datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    if not (local.hour or local.minute or local.second or local.microsecond):  # midnight
        return local.date().isoformat()
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


def describe_as_of(instant: datetime, tz: ZoneInfo) -> str:
    """Human words for an as-of instant: 'the end of 2021-06-30' for a bare-date as-of."""
    local = instant.astimezone(tz)
    if local.time() == time(23, 59, 59, 999_999):
        return f"the end of {local.date().isoformat()}"
    return local.isoformat(timespec="seconds")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(instant: datetime) -> int:
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
