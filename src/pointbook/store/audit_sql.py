"""The audit chain over SQL, for every backend: what each kind of row commits to, appending,
and verifying.

A ref names one audited thing: `pack:D/V`, `event:D/ID` (the event with its entries),
`decision:D/ID/REV`, `appeal:ID`, `appeal-decision:ID`, `confirmation:ID`, `switch:SEQ`.
The commitment of a ref is recomputed from the rows as stored, so verification catches a row
changed, removed or added behind pointbook's back as well as a changed or reordered record.

The SQL here is written once, with `?` placeholders, against a small adapter (`Db`) that each
backend provides: `SQLiteDb` below, `PgDb` in `store/postgres.py`. Because the backends store
the same Python values (integer microseconds, JSON as text, 0/1), the same rows give the same
commitments on either. A few store queries outside the chain (`has_events`, `remove_token`,
`population_rows`)
are written here once for the same reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from pointbook.store.audit import (
    ERASED,
    GENESIS,
    AuditRecord,
    VerifyResult,
    chain_hash,
    commit,
    verify_chain,
)

__all__ = [
    "ERASED",
    "Db",
    "SQLiteDb",
    "all_refs",
    "append",
    "commitment_of",
    "event_commitment",
    "event_parts",
    "has_events",
    "population_rows",
    "records",
    "remove_token",
    "root",
    "verify",
]

Row = tuple[Any, ...]

EVENT_COLS = (
    "domain, id, subject, type, occurred_us, attributes, evidence, issuer, content_hash,"
    " received_us, incident, salt, erased_us"
)
ENTRY_COLS = (
    "rule_id, subject, pack_version, pack_hash, delta, occurred_us, counts_until_us, title,"
    " evidence, tags, daily_cap, recorded_us"
)
AUDIT_COLS = "seq, at_us, kind, domain, ref, commitment, prev, hash"


class Db(Protocol):
    """A backend's connection as the audit log uses it. SQL comes with `?` placeholders."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def iter(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]: ...
    def insert(self, table: str, rows: Sequence[Row]) -> None: ...


class SQLiteDb:
    """`Db` over a sqlite3 connection (qmark placeholders are native)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    def iter(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        yield from self.conn.execute(sql, params)

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def event_commitment(event: Row, entries: Sequence[Row]) -> str:
    """An event and its entries; after retention erasure, what remains of them: every column
    as it is left (the erased ones empty), unsalted, since the salt went with the details.
    Every column counts: an erased event's entry moved to another subject, or details written
    back into it, must fail verification (T11 found both passing with a partial skeleton)."""
    # Tuples encode as the same JSON arrays as lists: the rows go in as they are.
    ordered = sorted(entries)
    if event[-1] is not None:
        return commit(("erased-event/2", event, ordered))
    return commit(("event", event[:-2], ordered), event[-2])


def legacy_erased_commitment(event: Row, entries: Sequence[Row]) -> str | None:
    """The partial skeleton that erasures recorded before "erased-event/2": still accepted for
    those records, only while the erased columns are still empty (None otherwise)."""
    d, eid, subject, etype, occurred, attributes, evidence, issuer, *_, salt, erased_us = event
    if erased_us is None or (attributes, evidence, issuer, salt) != ("{}", None, None, None):
        return None
    if any(e[8] is not None for e in entries):
        return None
    skeleton = [(e[0], e[2], e[3], e[4], e[5], e[6], e[9], e[10]) for e in sorted(entries)]
    return commit(["erased-event", d, eid, subject, etype, occurred, erased_us, skeleton])


def commitment_of(db: Db, ref: str) -> str | None:
    """The commitment of ``ref`` as the store holds it now (None if its row is gone)."""
    kind, _, key = ref.partition(":")
    if kind == "pack":
        domain, _, version = key.partition("/")
        row = db.one(
            "SELECT domain, version, effective_from_us, published_at_us, content_hash, text "
            "FROM pb_pack_versions WHERE domain = ? AND version = ?",
            (domain, version),
        )
        return None if row is None else commit(["pack", list(row)])
    if kind == "event":
        domain, _, eid = key.partition("/")
        row = db.one(
            f"SELECT {EVENT_COLS} FROM pb_events WHERE domain = ? AND id = ?", (domain, eid)
        )
        if row is None:
            return None
        entries = db.all(
            f"SELECT {ENTRY_COLS} FROM pb_entries WHERE domain = ? AND event_id = ?", (domain, eid)
        )
        return event_commitment(row, entries)
    if kind == "decision":
        domain, did, rev = key.split("/")
        row = db.one(
            "SELECT * FROM pb_decisions WHERE domain = ? AND id = ? AND revision = ?",
            (domain, did, int(rev)),
        )
        return None if row is None else commit(["decision", list(row)])
    if kind == "appeal":
        row = db.one(
            "SELECT id, domain, subject, event_id, rule_id, decision_id, reason, filed_us, salt "
            "FROM pb_appeals WHERE id = ?",
            (key,),
        )
        return None if row is None else commit(["appeal", list(row[:-1])], row[-1])
    if kind in ("outbox", "outbox-taken"):
        domain, _, okey = key.partition("/")
        if kind == "outbox":
            row = db.one(
                "SELECT domain, key, decision_id, payload, created_us FROM pb_outbox"
                " WHERE domain = ? AND key = ?",
                (domain, okey),
            )
            return None if row is None else commit(["outbox", list(row)])
        row = db.one(
            "SELECT o.key, t.taken_us FROM pb_outbox_taken t JOIN pb_outbox o ON o.seq = t.seq"
            " WHERE o.domain = ? AND o.key = ?",
            (domain, okey),
        )
        return None if row is None else commit(["outbox-taken", list(row)])
    if kind == "share":
        row = db.one(
            "SELECT code_hash, domain, subject, created_us, expires_us FROM pb_shares"
            " WHERE code_hash = ?",
            (key,),
        )
        return None if row is None else commit(["share", list(row)])
    if kind == "share-use":
        row = db.one(
            "SELECT code_hash, used_us FROM pb_shares WHERE code_hash = ? AND used_us IS NOT NULL",
            (key,),
        )
        return None if row is None else commit(["share-use", list(row)])
    if kind == "token":
        row = db.one(
            "SELECT hash, role, domain, subject, label, created_us FROM pb_tokens WHERE hash = ?",
            (key,),
        )
        return None if row is None else commit(["token", list(row)])
    table, col = {
        "appeal-decision": ("pb_appeal_decisions", "appeal_id"),
        "confirmation": ("pb_confirmations", "decision_id"),
        "switch": ("pb_switches", "seq"),
    }[kind]
    param: Any = int(key) if kind == "switch" else key
    row = db.one(f"SELECT * FROM {table} WHERE {col} = ?", (param,))
    return None if row is None else commit([kind, list(row)])


def all_refs(db: Db) -> Iterator[str]:
    """The ref of every audited row present in the store."""
    for d, v in db.iter("SELECT domain, version FROM pb_pack_versions"):
        yield f"pack:{d}/{v}"
    for d, i in db.iter("SELECT domain, id FROM pb_events"):
        yield f"event:{d}/{i}"
    for d, i in db.iter(
        "SELECT domain, event_id FROM pb_entries EXCEPT SELECT domain, id FROM pb_events"
    ):
        yield f"event:{d}/{i}"  # an entry without its event
    for d, i, r in db.iter("SELECT domain, id, revision FROM pb_decisions"):
        yield f"decision:{d}/{i}/{r}"
    for (i,) in db.iter("SELECT id FROM pb_appeals"):
        yield f"appeal:{i}"
    for (i,) in db.iter("SELECT appeal_id FROM pb_appeal_decisions"):
        yield f"appeal-decision:{i}"
    for (i,) in db.iter("SELECT decision_id FROM pb_confirmations"):
        yield f"confirmation:{i}"
    for (i,) in db.iter("SELECT seq FROM pb_switches"):
        yield f"switch:{i}"
    for d, k in db.iter("SELECT domain, key FROM pb_outbox"):
        yield f"outbox:{d}/{k}"
    for d, k in db.iter(
        "SELECT o.domain, o.key FROM pb_outbox_taken t JOIN pb_outbox o ON o.seq = t.seq"
    ):
        yield f"outbox-taken:{d}/{k}"
    for (seq,) in db.iter(
        "SELECT t.seq FROM pb_outbox_taken t LEFT JOIN pb_outbox o ON o.seq = t.seq"
        " WHERE o.seq IS NULL"
    ):
        # A delivery mark for no queued row: it would silence the next notification queued.
        yield f"outbox-taken:#{seq}"
    for h, used in db.iter("SELECT code_hash, used_us FROM pb_shares"):
        yield f"share:{h}"
        if used is not None:
            yield f"share-use:{h}"
    for (h,) in db.iter("SELECT hash FROM pb_tokens"):
        yield f"token:{h}"


def subject_side_refs(db: Db, domain: str, subject: str) -> list[str]:
    """The audited rows an erasure request removes besides events, decisions and appeals:
    the subject's queued notifications (and their delivery marks) and share codes."""
    refs = []
    for key, taken in db.all(
        "SELECT o.key, t.seq FROM pb_outbox o JOIN pb_decisions d ON d.domain = o.domain"
        " AND d.id = o.decision_id AND o.key = d.id || ':' || CAST(d.revision AS TEXT)"
        " LEFT JOIN pb_outbox_taken t ON t.seq = o.seq"
        " WHERE o.domain = ? AND d.subject = ? ORDER BY o.key",
        (domain, subject),
    ):
        refs.append(f"outbox:{domain}/{key}")
        if taken is not None:
            refs.append(f"outbox-taken:{domain}/{key}")
    for h, used in db.all(
        "SELECT code_hash, used_us FROM pb_shares WHERE domain = ? AND subject = ? ORDER BY code_hash",
        (domain, subject),
    ):
        refs.append(f"share:{h}")
        if used is not None:
            refs.append(f"share-use:{h}")
    return refs


def append(db: Db, at_us: int, records: Sequence[tuple[str, str, str, str]]) -> str:
    """Append (kind, domain, ref, commitment) records inside the caller's transaction.

    The caller holds the store's write lock: no other writer appends until it commits."""
    last = db.one("SELECT seq, hash FROM pb_audit ORDER BY seq DESC LIMIT 1")
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    rows = []
    for kind, domain, ref, commitment in records:
        seq += 1
        h = chain_hash(prev, seq, at_us, kind, domain, ref, commitment)
        rows.append((seq, at_us, kind, domain, ref, commitment, prev, h))
        prev = h
    db.insert("pb_audit", rows)
    return prev


def adopt_unaudited(db: Db, at_us: int) -> int:
    """Records, kind "adopt", for rows written before the audit log existed (a store created
    at schema 0001, which had none), committed as they are found when the log is created.
    From then on the log vouches for them; what happened to them before, it cannot say.
    Without this, `verify` called every such row smuggled in, forever (T12 found it)."""
    logged = {rec.ref for rec in records(db)}
    # The tables of 0001 (the later ones do not exist yet while the log is being created).
    old = [f"pack:{d}/{v}" for d, v in db.iter("SELECT domain, version FROM pb_pack_versions")]
    old += [f"event:{d}/{i}" for d, i in db.iter("SELECT domain, id FROM pb_events")]
    old += [
        f"decision:{d}/{i}/{r}"
        for d, i, r in db.iter("SELECT domain, id, revision FROM pb_decisions")
    ]
    found = []
    for ref in sorted(set(old) - logged):
        commitment = commitment_of(db, ref)
        if commitment is not None:  # an entry without its event stays for verify to report
            domain = ref.partition(":")[2].partition("/")[0]
            found.append(("adopt", domain, ref, commitment))
    if found:
        append(db, at_us, found)
    return len(found)


def records(db: Db) -> Iterator[AuditRecord]:
    # seq is the table's key (in SQLite, INTEGER PRIMARY KEY: the rowid itself).
    for r in db.iter(f"SELECT {AUDIT_COLS} FROM pb_audit ORDER BY seq"):
        yield AuditRecord(*r)


def event_commitments(db: Db) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(ref, accepted commitments) of every event as stored: the same as `commitment_of` per
    event (and, for an erasure recorded before "erased-event/2", its legacy skeleton), but in
    two ordered scans (events, entries) merged here instead of two queries per event."""
    entries = db.iter(f"SELECT domain, event_id, {ENTRY_COLS} FROM pb_entries ORDER BY 1, 2")
    pending = next(entries, None)
    for row in db.iter(f"SELECT {EVENT_COLS} FROM pb_events ORDER BY 1, 2"):
        key = (row[0], row[1])
        mine = []
        # Both scans are in byte order (SQLite BINARY, PostgreSQL COLLATE "C"): code point order.
        while pending is not None and (pending[0], pending[1]) <= key:
            if (pending[0], pending[1]) == key:
                mine.append(pending[2:])
            pending = next(entries, None)
        legacy = legacy_erased_commitment(row, mine)
        strong = event_commitment(row, mine)
        yield f"event:{row[0]}/{row[1]}", (strong,) if legacy is None else (strong, legacy)


def verify(db: Db, progress: Callable[[int], None] | None = None) -> VerifyResult:
    events: dict[str, tuple[str, ...]] | None = None

    def current(ref: str) -> str | tuple[str, ...] | None:
        nonlocal events
        if progress:
            progress(1)
        if ref.startswith("event:"):
            if events is None:
                events = dict(event_commitments(db))
            return events.get(ref)
        return commitment_of(db, ref)

    def unaudited(known: set[str]) -> list[str]:
        return sorted(ref for ref in set(all_refs(db)) if ref not in known)

    result = verify_chain(records(db), current, unaudited)
    if result.ok:
        moved = outbox_out_of_order(db)
        if moved is not None:
            return VerifyResult(False, result.records, result.root, None, moved)
    return result


def outbox_out_of_order(db: Db) -> str | None:
    """The delivery queue must be in the order its rows were audited: a queued notification
    whose place (seq) was changed would be delivered out of turn without any row changing."""
    # A key queued again (a subject erased on request, then reported again for the same facts,
    # gets the same derived decision and key) takes its place from its latest record.
    place: dict[str, int] = {}
    for seq, ref in db.iter("SELECT seq, ref FROM pb_audit WHERE kind = 'outbox' ORDER BY seq"):
        place[str(ref)] = int(seq)
    queued = [
        f"outbox:{d}/{k}" for d, k in db.iter("SELECT domain, key FROM pb_outbox ORDER BY seq")
    ]
    present = set(queued)
    expected = sorted((ref for ref in place if ref in present), key=place.__getitem__)
    for mine, theirs in zip(queued, expected, strict=False):
        if mine != theirs:
            return (
                f"{mine} is out of its place in the delivery queue (the log queued {theirs} there)"
            )
    return None


def root(db: Db) -> str:
    last = db.one("SELECT hash FROM pb_audit ORDER BY seq DESC LIMIT 1")
    return str(last[0]) if last else GENESIS


# -- store queries written once for both backends ---------------------------------------------
def has_events(db: Db, domain: str, since_us: int | None = None) -> bool:
    """Whether ``domain`` has events (occurring at or after ``since_us``, when given)."""
    if since_us is None:
        return db.one("SELECT 1 FROM pb_events WHERE domain = ? LIMIT 1", (domain,)) is not None
    found = db.one(
        "SELECT 1 FROM pb_events WHERE domain = ? AND occurred_us >= ? LIMIT 1",
        (domain, since_us),
    )
    return found is not None


def event_parts(
    alias: str, attribute_types: Sequence[str], since_us: int | None, until_us: int | None
) -> tuple[str, str, list[Any]]:
    """What the population reads share: the attributes column (read only for live events of
    ``attribute_types``; its parameters come first), the instant window, and its parameters."""
    if attribute_types:
        types = ", ".join("?" * len(attribute_types))
        attrs = (
            f"CASE WHEN {alias}erased_us IS NULL AND {alias}type IN ({types})"
            f" THEN {alias}attributes END"
        )
    else:
        attrs = "NULL"
    window, params = "", []
    if since_us is not None:
        window += f" AND {alias}occurred_us >= ?"
        params.append(since_us)
    if until_us is not None:
        window += f" AND {alias}occurred_us <= ?"
        params.append(until_us)
    return attrs, window, params


def population_rows(
    db: Db,
    domain: str,
    subjects: Sequence[str],
    since_us: int | None,
    until_us: int | None,
    attribute_types: Sequence[str],
) -> list[Row]:
    """Every event of ``subjects`` (occurring in [since_us, until_us] where given) with each
    of its stored entries, by subject: (subject, event id, type, occurred_us, erased 0/1,
    attributes or None, rule_id, delta, counts_until_us, daily_cap), the last four None for
    an event with no entry. Attributes are read only for live events of ``attribute_types``
    (the rows what-if judges again)."""
    if not subjects:
        return []
    marks = ", ".join("?" * len(subjects))
    attrs, window, extra = event_parts("e.", attribute_types, since_us, until_us)
    sql = (
        "SELECT e.subject, e.id, e.type, e.occurred_us,"
        " CASE WHEN e.erased_us IS NULL THEN 0 ELSE 1 END,"
        f" {attrs}, n.rule_id, n.delta, n.counts_until_us, n.daily_cap"
        " FROM pb_events e LEFT JOIN pb_entries n ON n.domain = e.domain AND n.event_id = e.id"
        f" WHERE e.domain = ? AND e.subject IN ({marks}){window}"
    )
    params: list[Any] = [*attribute_types, domain, *subjects, *extra]
    return db.all(sql, params)


def remove_token(db: Db, domain: str, token_hash: str, at_us: int) -> bool:
    """Delete ``domain``'s token with hash ``token_hash`` inside the caller's transaction (the
    caller holds the write lock), with a "token-removal" record whose commitment is ERASED:
    `verify` then expects the row gone. Whether there was such a token."""
    gone = db.all(
        "DELETE FROM pb_tokens WHERE domain = ? AND hash = ? RETURNING hash", (domain, token_hash)
    )
    if gone:
        append(db, at_us, [("token-removal", domain, f"token:{token_hash}", ERASED)])
    return bool(gone)
