"""JSON-ready views of engine results: what the CLI prints and the export contains.

Times are shown in the pack's time zone; a start-of-day instant is shown as a bare date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pointbook.dates import format_local
from pointbook.engine.model import Appeal, Decision, Entry, Event, Line, SubjectState
from pointbook.rules.pack import PackVersion

__all__ = [
    "appeal_view",
    "balance_view",
    "decision_view",
    "explain_view",
    "export_record",
    "scheme_view",
]


def _t(at: datetime | None, tz: ZoneInfo) -> str | None:
    return None if at is None else format_local(at, tz)


def retain_until(versions: Sequence[PackVersion], occurred_at: datetime) -> datetime | None:
    """When an entry's details are erased: its event date plus the retention of the version
    that judged it (R18)."""
    from pointbook.dates import add_duration
    from pointbook.rules.pack import version_at

    v = version_at(versions, occurred_at) or versions[0]
    if v.spec.retention is None:
        return None
    return add_duration(occurred_at, v.spec.retention, v.tz)


def appeal_view(a: Appeal, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": a.id,
        "subject": a.subject,
        "event_id": a.event_id,
        "rule_id": a.rule_id,
        "decision_id": a.decision_id,
        "reason": a.reason,
        "filed_at": _t(a.filed_at, tz),
        "status": a.outcome or "open",
        "decided_at": _t(a.decided_at, tz),
        "reviewer": a.reviewer,
        "decision_reason": a.decision_reason,
    }


def scheme_view(version: PackVersion) -> dict[str, Any]:
    s = version.scheme
    if s.kind == "balance":
        return {"kind": "balance", "start": s.start, "floor": s.floor, "ceiling": s.ceiling}
    return {"kind": "window", "length": s.length.describe(), "boundary": s.boundary}


def decision_view(
    d: Decision, status: str, tz: ZoneInfo, confirmed: tuple[datetime, str] | None = None
) -> dict[str, Any]:
    extra = {}
    if confirmed is not None:
        extra = {"confirmed_at": _t(confirmed[0], tz), "confirmed_by": confirmed[1]}
    return {
        **extra,
        "id": d.id,
        "subject": d.subject,
        "kind": d.kind,
        "title": d.title,
        "status": status,
        "triggered_at": _t(d.triggered_at, tz),
        "effective_at": _t(d.effective_at, tz),
        "ends_at": _t(d.ends_at, tz),
        "level": d.level,
        "figure": d.figure,
        "attributes": dict(d.attributes),
        "trigger": d.trigger,
        "pack_version": d.pack_version,
    }


def balance_view(
    state: SubjectState,
    versions: Sequence[PackVersion],
    decisions: Sequence[tuple[Decision, str]] | None = None,
) -> dict[str, Any]:
    tz = versions[0].tz
    current = next((v for v in versions if v.version == state.pack_version), versions[0])
    if decisions is None:
        decisions = [(d, d.status(state.as_of)) for d in state.decisions]
    nxt = state.next_threshold
    return {
        "domain": state.domain,
        "subject": state.subject,
        "as_of": format_local(state.as_of, tz),
        "points": state.points,
        "scheme": scheme_view(current),
        "pack_version": state.pack_version,
        "decisions": [decision_view(d, status, tz) for d, status in decisions],
        "next_threshold": None
        if nxt is None
        else {"kind": nxt[0], "level": nxt[1], "points_away": nxt[2]},
    }


def _line(
    line: Line, tz: ZoneInfo, counts: bool | None, expires: datetime | None
) -> dict[str, Any]:
    return {
        "kind": line.kind,
        "event_id": line.event_id,
        "rule_id": line.rule_id,
        "pack_version": line.pack_version,
        "delta": line.delta,
        "applied": line.applied,
        "occurred_at": _t(line.at, tz),
        "figure": line.figure,
        "counts": counts,
        "expires_at": _t(expires, tz),
        "reason": line.reason,
    }


def explain_view(
    state: SubjectState,
    versions: Sequence[PackVersion],
    decisions: Sequence[tuple[Decision, str]] | None = None,
) -> dict[str, Any]:
    tz = versions[0].tz
    status = {(s.entry.event_id, s.entry.rule_id): s for s in state.entries}
    lines = []
    for line in state.lines:
        s = status.get((line.event_id or "", line.rule_id or "")) if line.kind == "entry" else None
        if s is not None:
            item = _line(line, tz, s.counts, s.ends_at)
            item["state"] = s.state
            lines.append(item)
        else:
            lines.append(_line(line, tz, line.applied != 0 if line.kind != "entry" else None, None))
    out = balance_view(state, versions, decisions)
    out["entries"] = lines
    out["upcoming"] = [_line(u, tz, None, None) for u in state.upcoming]
    return out


def export_record(
    versions: Sequence[PackVersion],
    events: Sequence[Event],
    entries: Sequence[Entry],
    state: SubjectState,
    now: datetime,
    decisions: Sequence[tuple[Decision, str]] | None = None,
    appeals: Sequence[Appeal] = (),
    confirmations: dict[str, tuple[datetime, str]] | None = None,
) -> dict[str, Any]:
    tz = versions[0].tz
    out = explain_view(state, versions, decisions)
    confirmed = confirmations or {}
    out["decisions"] = [
        decision_view(d, status, tz, confirmed.get(d.id)) for d, status in (decisions or [])
    ] or out["decisions"]
    out["appeals"] = [appeal_view(a, tz) for a in appeals]
    out["exported_at"] = format_local(now, tz)
    out["pack_versions"] = [
        {
            "version": v.version,
            "effective_from": format_local(v.effective_from, tz),
            "content_hash": v.content_hash,
            "text": v.text,
        }
        for v in versions
    ]
    out["events"] = [
        {
            "id": e.id,
            "type": e.type,
            "occurred_at": _t(e.occurred_at, tz),
            "attributes": dict(e.attributes),
            "evidence": e.evidence,
            "issuer": e.issuer,
            "incident": e.incident,
            "reported_at": _t(e.reported_at, tz),
            "details_erased": e.judged is not None,
        }
        for e in sorted(events, key=Event.sort_key)
    ]
    out["ledger_entries"] = [
        {
            "event_id": n.event_id,
            "rule_id": n.rule_id,
            "pack_version": n.pack_version,
            "pack_hash": n.pack_hash,
            "delta": n.delta,
            "occurred_at": _t(n.occurred_at, tz),
            "counts_until": _t(n.counts_until, tz),
            "retain_until": _t(retain_until(versions, n.occurred_at), tz),
            "evidence": n.evidence,
        }
        for n in entries
    ]
    return out
