"""The row codec both backends share: the engine's records as the plain tuples stored in the
tables (column order as in the schema), and back.

Every backend writes exactly these tuples, so a row's audit commitment is the same whichever
store holds it: times are integer microseconds, JSON is text, booleans are the integers 0 and 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pointbook.dates import from_micros, to_micros
from pointbook.engine.canonical import direct_encoder
from pointbook.engine.model import Appeal, Decision, Entry, Event
from pointbook.store.audit import commit, new_salt
from pointbook.store.audit_sql import event_commitment
from pointbook.store.base import DecisionRow

__all__ = [
    "APPEAL_SELECT",
    "EVENT_SELECT",
    "Row",
    "appeal_from_row",
    "decision_from_row",
    "decision_records",
    "decision_rows",
    "entry_from_row",
    "entry_rows",
    "event_from_row",
    "event_records",
    "event_rows",
    "outbox_rows",
]

Row = tuple[Any, ...]
# Made once (json.dumps with options builds an encoder per call); the stored text is unchanged.
_SORTED = json.JSONEncoder(sort_keys=True)
_PLAIN = json.JSONEncoder()
_sorted_text = direct_encoder(_SORTED)
_plain_text = direct_encoder(_PLAIN)
# The read side: from_micros inlined (a keyword timedelta costs more per call), one decoder.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_delta = timedelta
_loads = json.JSONDecoder().decode
_NO_TAGS: frozenset[str] = frozenset()

# pb_events: the columns of the table in order (13), as written by write_batch.
EVENT_WIDTH = 13
ENTRY_WIDTH = 14
DECISION_WIDTH = 20

EVENT_SELECT = (
    "SELECT id, subject, type, occurred_us, attributes, evidence, issuer, incident,"
    " received_us, erased_us FROM pb_events "
)
ENTRY_SELECT = (
    "SELECT event_id, rule_id, pack_version, pack_hash, delta, occurred_us, counts_until_us,"
    " title, evidence, tags, daily_cap FROM pb_entries "
)
APPEAL_SELECT = (
    "SELECT a.id, a.domain, a.subject, a.event_id, a.rule_id, a.decision_id, a.reason,"
    " a.filed_us, d.outcome, d.reviewer, d.reason, d.decided_us FROM pb_appeals a"
    " LEFT JOIN pb_appeal_decisions d ON d.appeal_id = a.id"
)


def event_rows(events: Sequence[tuple[Event, str]], rec: int) -> list[Row]:
    """pb_events rows for new events (a fresh salt each), received at ``rec``."""
    attributes_text = _sorted_text
    return [
        (
            e.domain,
            e.id,
            e.subject,
            e.type,
            to_micros(e.occurred_at),
            attributes_text(dict(e.attributes)) if e.attributes else "{}",
            e.evidence,
            e.issuer,
            h,
            rec,
            e.incident,
            new_salt(),
            None,
        )
        for e, h in events
    ]


def entry_rows(entries: Sequence[Entry], rec: int) -> list[Row]:
    # A rule's entries share its tags (one frozenset): each set is encoded once per call.
    tags_text: dict[frozenset[str], str] = {}
    out = []
    for n in entries:
        tags = tags_text.get(n.tags)
        if tags is None:
            tags = tags_text[n.tags] = _plain_text(sorted(n.tags))
        out.append(
            (
                n.domain,
                n.event_id,
                n.rule_id,
                n.subject,
                n.pack_version,
                n.pack_hash,
                n.delta,
                to_micros(n.occurred_at),
                None if n.counts_until is None else to_micros(n.counts_until),
                n.title,
                n.evidence,
                tags,
                int(n.daily_cap),
                rec,
            )
        )
    return out


def event_records(event_rows: Sequence[Row], entry_rows: Sequence[Row]) -> list[Row]:
    """The audit records (kind, domain, ref, commitment) of new events with their entries."""
    by_event: dict[tuple[str, str], list[Row]] = {}
    for r in entry_rows:
        found = by_event.get(r[:2])
        if found is None:
            by_event[r[:2]] = [r[2:]]
        else:
            found.append(r[2:])
    no_entries: list[Row] = []
    return [
        (
            "event",
            r[0],
            f"event:{r[0]}/{r[1]}",
            event_commitment(r, by_event.get(r[:2], no_entries)),
        )
        for r in event_rows
    ]


def event_from_row(domain: str, r: Row, judged: tuple[Entry, ...] | None) -> Event:
    """An Event from an EVENT_SELECT row; ``judged`` for an erased one (r[9] set)."""
    # Every read of a record decodes each of its events: positional arguments in the field
    # order of Event (tests/test_ledger.py holds them to it), no JSON parse for the common
    # empty attributes, and from_micros inlined.
    return Event(
        r[0],
        domain,
        r[1],
        r[2],
        _EPOCH + _delta(0, 0, r[3]),
        {} if r[4] == "{}" else _loads(r[4]),
        r[5],
        r[6],
        r[7],
        _EPOCH + _delta(0, 0, r[8]),
        judged,
    )


def entry_from_row(domain: str, subject: str, r: Row) -> Entry:
    """An Entry from an ENTRY_SELECT row."""
    return Entry(
        r[0],
        domain,
        subject,
        r[1],
        r[2],
        r[3],
        r[4],
        _EPOCH + _delta(0, 0, r[5]),
        None if r[6] is None else _EPOCH + _delta(0, 0, r[6]),
        r[7],
        r[8],
        _NO_TAGS if r[9] == "[]" else frozenset(_loads(r[9])),
        bool(r[10]),
    )


def decision_rows(revisions: Sequence[tuple[Decision, int, bool, str]], rec: int) -> list[Row]:
    return [
        (
            d.domain,
            d.id,
            rev,
            d.subject,
            d.threshold_id,
            d.kind,
            d.title,
            d.level,
            d.figure,
            to_micros(d.triggered_at),
            d.ordinal,
            to_micros(d.effective_at),
            None if d.ends_at is None else to_micros(d.ends_at),
            _SORTED.encode(dict(d.attributes)),
            d.trigger,
            d.pack_version,
            int(withdrawn),
            rec,
            int(d.requires_review),
            reason,
        )
        for d, rev, withdrawn, reason in revisions
    ]


def outbox_rows(domain: str, rows: Sequence[Row], rec: int) -> list[Row]:
    """(domain, key, decision_id, payload, created_us): each decision revision queued once."""
    return [
        (
            domain,
            f"{r[1]}:{r[2]}",
            r[1],
            json.dumps(
                {
                    "domain": domain,
                    "decision_id": r[1],
                    "revision": r[2],
                    "subject": r[3],
                    "kind": r[5],
                    "change": "cancelled" if r[16] else ("new" if r[2] == 1 else "revised"),
                    "effective_us": r[11],
                    "requires_review": bool(r[18]),
                    "reason": r[19],
                },
                sort_keys=True,
            ),
            rec,
        )
        for r in rows
    ]


def decision_records(domain: str, rows: Sequence[Row]) -> list[tuple[str, str, str, str]]:
    return [
        ("decision", domain, f"decision:{domain}/{r[1]}/{r[2]}", commit(["decision", list(r)]))
        for r in rows
    ]


def decision_from_row(r: Row) -> DecisionRow:
    """A DecisionRow from a ``SELECT *`` row of pb_decisions."""
    d = Decision(  # positional, in the field order of Decision (as event_from_row)
        r[1],
        r[0],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        _EPOCH + _delta(0, 0, r[9]),
        r[10],
        _EPOCH + _delta(0, 0, r[11]),
        None if r[12] is None else _EPOCH + _delta(0, 0, r[12]),
        {} if r[13] == "{}" else _loads(r[13]),
        r[14],
        r[15],
        bool(r[18]),
    )
    return DecisionRow(d, r[2], bool(r[16]), _EPOCH + _delta(0, 0, r[17]), r[19])


def appeal_from_row(r: Row) -> Appeal:
    """An Appeal (with its decision, if any) from an APPEAL_SELECT row."""
    return Appeal(
        id=r[0],
        domain=r[1],
        subject=r[2],
        event_id=r[3],
        rule_id=r[4],
        decision_id=r[5],
        reason=r[6],
        filed_at=from_micros(r[7]),
        outcome=r[8],
        reviewer=r[9],
        decision_reason=r[10],
        decided_at=None if r[11] is None else from_micros(r[11]),
    )


def outbox_records(rows: Sequence[Row]) -> list[tuple[str, str, str, str]]:
    """Each queued change is audited: an undelivered notification cannot vanish unnoticed."""
    return [("outbox", r[0], f"outbox:{r[0]}/{r[1]}", commit(["outbox", list(r)])) for r in rows]


def taken_record(domain: str, key: str, taken_us: int) -> tuple[str, str, str, str]:
    return (
        "outbox-taken",
        domain,
        f"outbox-taken:{domain}/{key}",
        commit(["outbox-taken", [key, taken_us]]),
    )


def share_record(
    code_hash: str, domain: str, subject: str, created_us: int, expires_us: int
) -> tuple[str, str, str, str]:
    body = ["share", [code_hash, domain, subject, created_us, expires_us]]
    return ("share", domain, f"share:{code_hash}", commit(body))


def share_use_record(domain: str, code_hash: str, used_us: int) -> tuple[str, str, str, str]:
    return (
        "share-use",
        domain,
        f"share-use:{code_hash}",
        commit(["share-use", [code_hash, used_us]]),
    )


def token_record(row: Row) -> tuple[str, str, str, str]:
    """(hash, role, domain, subject, label, created_us): a credential, audited by its hash."""
    return ("token", row[2], f"token:{row[0]}", commit(["token", list(row)]))


__all__ += ["outbox_records", "share_record", "share_use_record", "taken_record", "token_record"]
