"""The audit chain on SQLite: what each kind of row commits to, appending, and verifying.

A ref names one audited thing: `pack:D/V`, `event:D/ID` (the event with its entries),
`decision:D/ID/REV`, `appeal:ID`, `appeal-decision:ID`, `confirmation:ID`, `switch:SEQ`.
The commitment of a ref is recomputed from the rows as stored, so verification catches a row
changed, removed or added behind pointbook's back as well as a changed or reordered record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pointbook.store.audit import (
    ERASED,
    GENESIS,
    AuditRecord,
    VerifyResult,
    chain_hash,
    commit,
    verify_chain,
)

__all__ = ["append", "commitment_of", "verify"]

Row = tuple[Any, ...]

_EVENT_COLS = (
    "domain, id, subject, type, occurred_us, attributes, evidence, issuer, content_hash,"
    " received_us, incident, salt, erased_us"
)
_ENTRY_COLS = (
    "rule_id, subject, pack_version, pack_hash, delta, occurred_us, counts_until_us, title,"
    " evidence, tags, daily_cap, recorded_us"
)


def event_commitment(event: Row, entries: Sequence[Row]) -> str:
    """An event and its entries; after retention erasure, only the skeleton that remains."""
    *fields, salt, erased_us = event
    ordered = sorted(entries)
    if erased_us is not None:
        d, eid, subject, etype, occurred = fields[:5]
        skeleton = [(e[0], e[2], e[3], e[4], e[5], e[6], e[9], e[10]) for e in ordered]
        return commit(["erased-event", d, eid, subject, etype, occurred, erased_us, skeleton])
    return commit(["event", fields, [list(e) for e in ordered]], salt)


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Row | None:
    row: Row | None = conn.execute(sql, params).fetchone()
    return row


def commitment_of(conn: sqlite3.Connection, ref: str) -> str | None:
    """The commitment of ``ref`` as the store holds it now (None if its row is gone)."""
    kind, _, key = ref.partition(":")
    if kind == "pack":
        domain, _, version = key.partition("/")
        row = _one(
            conn,
            "SELECT domain, version, effective_from_us, published_at_us, content_hash, text "
            "FROM pb_pack_versions WHERE domain = ? AND version = ?",
            (domain, version),
        )
        return None if row is None else commit(["pack", list(row)])
    if kind == "event":
        domain, _, eid = key.partition("/")
        row = _one(
            conn, f"SELECT {_EVENT_COLS} FROM pb_events WHERE domain = ? AND id = ?", (domain, eid)
        )
        if row is None:
            return None
        entries = conn.execute(
            f"SELECT {_ENTRY_COLS} FROM pb_entries WHERE domain = ? AND event_id = ?", (domain, eid)
        ).fetchall()
        return event_commitment(row, entries)
    if kind == "decision":
        domain, did, rev = key.split("/")
        row = _one(
            conn,
            "SELECT * FROM pb_decisions WHERE domain = ? AND id = ? AND revision = ?",
            (domain, did, int(rev)),
        )
        return None if row is None else commit(["decision", list(row)])
    if kind == "appeal":
        row = _one(
            conn,
            "SELECT id, domain, subject, event_id, rule_id, decision_id, reason, filed_us, salt "
            "FROM pb_appeals WHERE id = ?",
            (key,),
        )
        return None if row is None else commit(["appeal", list(row[:-1])], row[-1])
    table, col = {
        "appeal-decision": ("pb_appeal_decisions", "appeal_id"),
        "confirmation": ("pb_confirmations", "decision_id"),
        "switch": ("pb_switches", "seq"),
    }[kind]
    param: Any = int(key) if kind == "switch" else key
    row = _one(conn, f"SELECT * FROM {table} WHERE {col} = ?", (param,))
    return None if row is None else commit([kind, list(row)])


def _all_refs(conn: sqlite3.Connection) -> Iterator[str]:
    for d, v in conn.execute("SELECT domain, version FROM pb_pack_versions"):
        yield f"pack:{d}/{v}"
    for d, i in conn.execute("SELECT domain, id FROM pb_events"):
        yield f"event:{d}/{i}"
    for d, i in conn.execute(
        "SELECT domain, event_id FROM pb_entries EXCEPT SELECT domain, id FROM pb_events"
    ):
        yield f"event:{d}/{i}"  # an entry without its event
    for d, i, r in conn.execute("SELECT domain, id, revision FROM pb_decisions"):
        yield f"decision:{d}/{i}/{r}"
    for (i,) in conn.execute("SELECT id FROM pb_appeals"):
        yield f"appeal:{i}"
    for (i,) in conn.execute("SELECT appeal_id FROM pb_appeal_decisions"):
        yield f"appeal-decision:{i}"
    for (i,) in conn.execute("SELECT decision_id FROM pb_confirmations"):
        yield f"confirmation:{i}"
    for (i,) in conn.execute("SELECT seq FROM pb_switches"):
        yield f"switch:{i}"


def append(
    conn: sqlite3.Connection, at_us: int, records: Sequence[tuple[str, str, str, str]]
) -> str:
    """Append (kind, domain, ref, commitment) records inside the caller's transaction."""
    last = conn.execute("SELECT seq, hash FROM pb_audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    rows = []
    for kind, domain, ref, commitment in records:
        seq += 1
        h = chain_hash(prev, seq, at_us, kind, domain, ref, commitment)
        rows.append((seq, at_us, kind, domain, ref, commitment, prev, h))
        prev = h
    conn.executemany("INSERT INTO pb_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return prev


def records(conn: sqlite3.Connection) -> Iterator[AuditRecord]:
    for r in conn.execute(
        "SELECT seq, at_us, kind, domain, ref, commitment, prev, hash FROM pb_audit ORDER BY rowid"
    ):
        yield AuditRecord(*r)


def verify(conn: sqlite3.Connection, progress: Callable[[int], None] | None = None) -> VerifyResult:
    def current(ref: str) -> str | None:
        if progress:
            progress(1)
        return commitment_of(conn, ref)

    def unaudited(known: set[str]) -> list[str]:
        return sorted(ref for ref in set(_all_refs(conn)) if ref not in known)

    return verify_chain(records(conn), current, unaudited)


def root(conn: sqlite3.Connection) -> str:
    last = conn.execute("SELECT hash FROM pb_audit ORDER BY seq DESC LIMIT 1").fetchone()
    return str(last[0]) if last else GENESIS


__all__ += ["ERASED", "records", "root"]
