"""Decision records from the compiled fold's rows: what the refresh of a bulk load writes.

The decision refresh needs each subject's decisions exactly as the reference fold
(`fold.evaluate_subject`) makes them. After a bulk load, the subjects without appeals are
folded by the compiled fold from their stored entries (`analytics.whatif_kernel.decision_rows`:
one row per decision with its threshold row, level, instant, ordinal, figure, trigger, the
event behind it and when a `while` decision was closed); this module makes each row the
`Decision` the reference fold makes, adding what comes from the threshold: kind, title, level
value and attributes, notice, duration, review, and the version in force. tests/test_kernel.py
and tests/test_parallel.py compare the two, field for field and as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pointbook.dates import add_duration, from_micros
from pointbook.engine.fold import TRIGGER_START, TRIGGER_TIME, _decision, _decision_id
from pointbook.engine.kernel import EVENT, NEVER, START, TIME
from pointbook.engine.model import Decision
from pointbook.rules.pack import PackVersion

__all__ = ["decisions_of_rows"]


def decisions_of_rows(
    versions: Sequence[PackVersion], names: Sequence[str], rows: Any
) -> dict[str, tuple[Decision, ...]]:
    """The decisions of each subject named in ``rows`` (a `decision_rows` frame, its ``s``
    indexing ``names``), in the order made; ``versions``: the domain's, in date order."""
    tz = versions[0].tz
    domain = versions[0].domain
    # Threshold rows as the kernel numbers them: every version's thresholds in pack order.
    thresholds = [
        (th, version.version, th.level_list())
        for version in versions
        for th in version.spec.thresholds
    ]
    out: dict[str, list[Decision]] = {}
    columns = ("s", "t", "level", "at", "ordinal", "figure", "trigger", "event_id", "closed")
    for s, t, k, at_us, ordinal, figure, trigger, event_id, closed in zip(
        *(rows[c].to_list() for c in columns), strict=True
    ):
        th, version, levels = thresholds[t]
        level = levels[k]
        at: datetime = from_micros(at_us)
        if trigger == START:
            text = TRIGGER_START
        elif trigger == TIME:
            text = TRIGGER_TIME
        else:
            text = f"{'event' if trigger == EVENT else 'course'} {event_id}"
        effective = at if th.notice is None else add_duration(at, th.notice, tz)
        ends = None if th.duration is None else add_duration(effective, th.duration, tz)
        if closed != NEVER:
            close = from_micros(closed)
            if ends is None or close < ends:  # fold.close_decision
                ends = close
        subject = names[s]
        out.setdefault(subject, []).append(
            _decision(
                id=_decision_id(domain, subject, th.id, level.value, at, ordinal),
                ordinal=ordinal,
                domain=domain,
                subject=subject,
                threshold_id=th.id,
                kind=th.kind,
                title=th.title,
                level=level.value,
                figure=figure,
                triggered_at=at,
                effective_at=effective,
                ends_at=ends,
                attributes=dict(level.attributes),
                trigger=text,
                pack_version=version,
                requires_review=th.review != "none",
            )
        )
    return {subject: tuple(found) for subject, found in out.items()}
