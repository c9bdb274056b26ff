"""Due process on SQLite: appeals, confirmations, the outbox, the stop switch, pseudonym keys,
shares and erasure. Mixed into SQLiteStore; every write is audited in its own transaction."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from pointbook.dates import from_micros, to_micros
from pointbook.engine.model import Appeal
from pointbook.store import audit_sql, rows
from pointbook.store import sqlite_audit as audit
from pointbook.store.audit import ERASED, commit, new_salt

__all__ = ["ProcessTables"]


class ProcessTables:
    conn: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:  # provided by the store
        raise NotImplementedError

    # -- appeals --------------------------------------------------------------------------
    def insert_appeal(self, appeal: Appeal) -> None:
        salt = new_salt()
        row = (
            appeal.id,
            appeal.domain,
            appeal.subject,
            appeal.event_id,
            appeal.rule_id,
            appeal.decision_id,
            appeal.reason,
            to_micros(appeal.filed_at),
            salt,
        )
        with self.transaction() as c:
            c.execute(f"INSERT INTO pb_appeals VALUES ({', '.join('?' * 9)})", row)
            c.execute(
                "INSERT OR IGNORE INTO pb_dirty VALUES (?, ?)", (appeal.domain, appeal.subject)
            )
            ref = f"appeal:{appeal.id}"
            audit.append(
                c,
                row[7],
                [("appeal", appeal.domain, ref, commit(["appeal", list(row[:-1])], salt))],
            )

    def insert_appeal_decision(
        self, appeal: Appeal, outcome: str, reviewer: str, reason: str, at: datetime
    ) -> None:
        row = (appeal.id, appeal.domain, outcome, reviewer, reason, to_micros(at))
        with self.transaction() as c:
            c.execute("INSERT INTO pb_appeal_decisions VALUES (?, ?, ?, ?, ?, ?)", row)
            c.execute(
                "INSERT OR IGNORE INTO pb_dirty VALUES (?, ?)", (appeal.domain, appeal.subject)
            )
            ref = f"appeal-decision:{appeal.id}"
            audit.append(
                c,
                row[5],
                [("appeal-decision", appeal.domain, ref, commit(["appeal-decision", list(row)]))],
            )

    def _appeal_rows(self, where: str, params: Sequence[Any]) -> list[Appeal]:
        found = self.conn.execute(
            f"{rows.APPEAL_SELECT} WHERE {where} ORDER BY a.filed_us, a.id", params
        ).fetchall()
        return [rows.appeal_from_row(r) for r in found]

    def appeal(self, appeal_id: str) -> Appeal | None:
        found = self._appeal_rows("a.id = ?", (appeal_id,))
        return found[0] if found else None

    def appeals(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> dict[str, list[Appeal]]:
        out: dict[str, list[Appeal]] = {}
        if subjects is None:
            found = self._appeal_rows("a.domain = ?", (domain,))
        else:
            found = []
            for i in range(0, len(subjects), 500):
                chunk = list(subjects[i : i + 500])
                marks = ",".join("?" * len(chunk))
                found += self._appeal_rows(
                    f"a.domain = ? AND a.subject IN ({marks})", (domain, *chunk)
                )
        for a in found:
            out.setdefault(a.subject, []).append(a)
        return out

    # -- reviewer confirmation ----------------------------------------------------------------
    def insert_confirmation(
        self, domain: str, subject: str, decision_id: str, reviewer: str, reason: str, at: datetime
    ) -> None:
        row = (decision_id, domain, reviewer, reason, to_micros(at))
        with self.transaction() as c:
            c.execute("INSERT INTO pb_confirmations VALUES (?, ?, ?, ?, ?)", row)
            c.execute("INSERT OR IGNORE INTO pb_dirty VALUES (?, ?)", (domain, subject))
            ref = f"confirmation:{decision_id}"
            audit.append(
                c, row[4], [("confirmation", domain, ref, commit(["confirmation", list(row)]))]
            )

    def confirmations(
        self, domain: str, decision_ids: Sequence[str] | None = None
    ) -> dict[str, tuple[datetime, str]]:
        sql = "SELECT decision_id, confirmed_us, reviewer FROM pb_confirmations WHERE domain = ?"
        if decision_ids is None:
            found = self.conn.execute(sql, (domain,)).fetchall()
        else:
            found = []
            ids = list(decision_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                found += self.conn.execute(
                    f"{sql} AND decision_id IN ({marks})", (domain, *chunk)
                ).fetchall()
        return {r[0]: (from_micros(r[1]), r[2]) for r in found}

    # -- outbox ------------------------------------------------------------------------------
    def outbox_pending(
        self, domain: str, limit: int = 100
    ) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.conn.execute(
            "SELECT o.seq, o.key, o.payload FROM pb_outbox o LEFT JOIN pb_outbox_taken t"
            " ON t.seq = o.seq WHERE o.domain = ? AND t.seq IS NULL ORDER BY o.seq LIMIT ?",
            (domain, limit),
        ).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def outbox_take(self, seqs: Sequence[int], at: datetime) -> None:
        at_us = to_micros(at)
        with self.transaction() as c:
            records = []
            for seq in seqs:
                row = c.execute(
                    "SELECT o.domain, o.key, t.seq FROM pb_outbox o LEFT JOIN pb_outbox_taken t"
                    " ON t.seq = o.seq WHERE o.seq = ?",
                    (seq,),
                ).fetchone()
                if row is None or row[2] is not None:
                    continue  # unknown, or already delivered: nothing to record
                c.execute("INSERT INTO pb_outbox_taken VALUES (?, ?)", (seq, at_us))
                records.append(rows.taken_record(row[0], row[1], at_us))
            if records:
                audit.append(c, at_us, records)

    # -- the stop switch (R15) --------------------------------------------------------------------
    def insert_switch(self, domain: str, state: str, reason: str, actor: str, at: datetime) -> None:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO pb_switches (domain, state, reason, actor, at_us) VALUES (?, ?, ?, ?, ?)",
                (domain, state, reason, actor, to_micros(at)),
            )
            seq = cur.lastrowid
            row = c.execute("SELECT * FROM pb_switches WHERE seq = ?", (seq,)).fetchone()
            audit.append(
                c,
                to_micros(at),
                [("switch", domain, f"switch:{seq}", commit(["switch", list(row)]))],
            )

    def switch_state(self, domain: str) -> tuple[str, str | None, datetime | None]:
        row = self.conn.execute(
            "SELECT state, reason, at_us FROM pb_switches WHERE domain = ? ORDER BY seq DESC LIMIT 1",
            (domain,),
        ).fetchone()
        if row is None:
            return ("running", None, None)
        return (row[0], row[1], from_micros(row[2]))

    # -- pseudonym keys (R4) ------------------------------------------------------------------------
    def domain_key(self, domain: str) -> str:
        row = self.conn.execute(
            "SELECT key FROM pb_domain_keys WHERE domain = ?", (domain,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO pb_domain_keys VALUES (?, ?)",
                (domain, secrets.token_hex(32)),
            )
        return self.domain_key(domain)

    # -- shares (R5) ------------------------------------------------------------------------------
    def insert_share(
        self, code_hash: str, domain: str, subject: str, at: datetime, expires: datetime
    ) -> None:
        created, until = to_micros(at), to_micros(expires)
        with self.transaction() as c:
            c.execute(
                "INSERT INTO pb_shares VALUES (?, ?, ?, ?, ?, NULL)",
                (code_hash, domain, subject, created, until),
            )
            audit.append(
                c, created, [rows.share_record(code_hash, domain, subject, created, until)]
            )

    def use_share(self, code_hash: str, at: datetime) -> tuple[str, str] | str:
        """(domain, subject) for a valid code, marking it used; else the reason it is not."""
        used = to_micros(at)
        with self.transaction() as c:
            row = c.execute(
                "SELECT domain, subject, expires_us, used_us FROM pb_shares WHERE code_hash = ?",
                (code_hash,),
            ).fetchone()
            if row is None:
                return "unknown code"
            if row[3] is not None:
                return "this code was already used; a share code works once"
            if used >= row[2]:
                return "this code has expired"
            c.execute("UPDATE pb_shares SET used_us = ? WHERE code_hash = ?", (used, code_hash))
            audit.append(c, used, [rows.share_use_record(row[0], code_hash, used)])
            return (row[0], row[1])

    # -- tokens ---------------------------------------------------------------------------------
    def insert_token(
        self, token_hash: str, role: str, domain: str, subject: str | None, label: str
    ) -> None:
        row = (token_hash, role, domain, subject, label, int(time.time() * 1e6))
        with self.transaction() as c:
            c.execute("INSERT INTO pb_tokens VALUES (?, ?, ?, ?, ?, ?)", row)
            audit.append(c, row[5], [rows.token_record(row)])

    def find_token(self, token_hash: str) -> tuple[str, str, str | None, str] | None:
        """(role, domain, subject, label) of a token, by the hash of the token."""
        row = self.conn.execute(
            "SELECT role, domain, subject, label FROM pb_tokens WHERE hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    # -- erasure (principle 7) -----------------------------------------------------------------------
    def _flush_erasure(self) -> None:
        """Move the erasing pages from the WAL into the file and empty the WAL, so no copy of
        the erased details stays on disk (with secure_delete, freed space is zeroed)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def erase_details(self, domain: str, cutoff: datetime, at: datetime) -> int:
        """Erase the personal details of events before ``cutoff``: attributes, evidence, issuer
        and the salt. What the figures need (date, type, rule, points) stays, committed anew."""
        at_us = to_micros(at)
        with self.transaction() as c:
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM pb_events WHERE domain = ? AND occurred_us < ? AND erased_us IS NULL",
                    (domain, to_micros(cutoff)),
                )
            ]
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                c.execute(
                    "UPDATE pb_events SET attributes = '{}', evidence = NULL, issuer = NULL,"
                    f" salt = NULL, erased_us = ? WHERE domain = ? AND id IN ({marks})",
                    (at_us, domain, *chunk),
                )
                c.execute(
                    f"UPDATE pb_entries SET evidence = NULL WHERE domain = ? AND event_id IN ({marks})",
                    (domain, *chunk),
                )
            records = []
            for eid in ids:
                ref = f"event:{domain}/{eid}"
                now = audit.commitment_of(c, ref)
                assert now is not None
                records.append(("erasure", domain, ref, now))
            if records:
                audit.append(c, at_us, records)
        self._flush_erasure()
        return len(ids)

    def erase_subject(self, domain: str, subject: str, at: datetime) -> dict[str, int]:
        """Remove a subject's whole record in a domain; the audit log keeps only that it was."""
        at_us = to_micros(at)
        counts: dict[str, int] = {}
        with self.transaction() as c:
            refs: list[str] = []
            for (eid,) in c.execute(
                "SELECT id FROM pb_events WHERE domain = ? AND subject = ?", (domain, subject)
            ).fetchall():
                refs.append(f"event:{domain}/{eid}")
            for did, rev in c.execute(
                "SELECT id, revision FROM pb_decisions WHERE domain = ? AND subject = ?",
                (domain, subject),
            ).fetchall():
                refs.append(f"decision:{domain}/{did}/{rev}")
            appeal_ids = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM pb_appeals WHERE domain = ? AND subject = ?", (domain, subject)
                )
            ]
            for aid in appeal_ids:
                refs.append(f"appeal:{aid}")
                if c.execute(
                    "SELECT 1 FROM pb_appeal_decisions WHERE appeal_id = ?", (aid,)
                ).fetchone():
                    refs.append(f"appeal-decision:{aid}")
            decision_ids = [
                r[0]
                for r in c.execute(
                    "SELECT DISTINCT id FROM pb_decisions WHERE domain = ? AND subject = ?",
                    (domain, subject),
                )
            ]
            for did in decision_ids:
                if c.execute(
                    "SELECT 1 FROM pb_confirmations WHERE decision_id = ?", (did,)
                ).fetchone():
                    refs.append(f"confirmation:{did}")
            side = audit_sql.subject_side_refs(audit_sql.SQLiteDb(c), domain, subject)
            refs += side
            c.execute(
                "DELETE FROM pb_outbox_taken WHERE seq IN (SELECT o.seq FROM pb_outbox o JOIN"
                " pb_decisions d ON d.domain = o.domain AND d.id = o.decision_id"
                " WHERE o.domain = ? AND d.subject = ?)",
                (domain, subject),
            )
            for table, where in (
                ("pb_entries", "domain = ? AND subject = ?"),
                ("pb_events", "domain = ? AND subject = ?"),
                ("pb_decisions", "domain = ? AND subject = ?"),
                ("pb_dirty", "domain = ? AND subject = ?"),
                ("pb_shares", "domain = ? AND subject = ?"),
            ):
                counts[table] = c.execute(
                    f"DELETE FROM {table} WHERE {where}", (domain, subject)
                ).rowcount
            for aid in appeal_ids:
                c.execute("DELETE FROM pb_appeal_decisions WHERE appeal_id = ?", (aid,))
                c.execute("DELETE FROM pb_appeals WHERE id = ?", (aid,))
            for did in decision_ids:
                c.execute("DELETE FROM pb_confirmations WHERE decision_id = ?", (did,))
                c.execute("DELETE FROM pb_outbox WHERE decision_id = ?", (did,))
            counts["pb_appeals"] = len(appeal_ids)
            audit.append(c, at_us, [("erasure", domain, ref, ERASED) for ref in refs])
        self._flush_erasure()
        return counts


def _chunks(seq: list[str], n: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
