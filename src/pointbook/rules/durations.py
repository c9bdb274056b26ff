"""Durations as pack authors write them: "2 years", "6 months", "1 year 1 day", or a mapping."""

from __future__ import annotations

import re
from typing import Any

from pointbook.dates import Duration

_PART = re.compile(r"(\d+)\s*(years?|months?|weeks?|days?|hours?)", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*(\d+\s*(years?|months?|weeks?|days?|hours?)\s*,?\s*)+$", re.IGNORECASE)


def parse_duration(value: Any) -> Duration:
    """Parse '2 years', '1 year 1 day', '24 months', '14 days' or {years: 2}."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"years", "months", "weeks", "days", "hours"}
        if unknown:
            raise ValueError(
                f"unknown duration unit(s) {sorted(unknown)}: use years, months, weeks, days, hours"
            )
        vals = {k: value.get(k, 0) for k in ("years", "months", "weeks", "days", "hours")}
        for k, v in vals.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"duration {k} must be a whole number >= 0, got {v!r}")
        return Duration(
            vals["years"], vals["months"], vals["weeks"] * 7 + vals["days"], vals["hours"]
        )
    if isinstance(value, str) and _WHOLE.match(value):
        acc = {"year": 0, "month": 0, "week": 0, "day": 0, "hour": 0}
        for n, unit in _PART.findall(value):
            acc[unit.lower().rstrip("s")] += int(n)
        return Duration(acc["year"], acc["month"], acc["week"] * 7 + acc["day"], acc["hour"])
    raise ValueError(
        f"{value!r} is not a duration: write e.g. '2 years', '6 months', '1 year 1 day' or '14 days'"
    )
