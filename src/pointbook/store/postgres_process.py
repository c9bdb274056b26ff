"""Due process on PostgreSQL: appeals, confirmations, the outbox, the stop switch, pseudonym
keys, shares and erasure. Mixed into PostgresStore; the same rows and audit records as
`sqlite_process`, each write in its own transaction under the store's write lock."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pointbook.dates import from_micros, to_micros
from pointbook.engine.model import Appeal
from pointbook.store import audit_sql, rows
from pointbook.store.audit import ERASED, commit, new_salt
from pointbook.store.postgres_db import Cursor, PgDb, Row, chunks

__all__ = ["PostgresProcessTables"]

T = TypeVar("T")


class PostgresProcessTables:
    # provided by the store
    def write(self, fn: Callable[[Cursor], T], locked: bool = True) -> T:
        raise NotImplementedError

    def append(self, cur: Cursor, at_us: int, records: Sequence[Row]) -> None:
        raise NotImplementedError

    def _query(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
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
        ref = f"appeal:{appeal.id}"

        def txn(cur: Cursor) -> None:
            cur.execute(f"INSERT INTO pb_appeals VALUES ({', '.join(['%s'] * 9)})", row)
            _dirty(cur, appeal.domain, appeal.subject)
            self.append(
                cur,
                row[7],
                [("appeal", appeal.domain, ref, commit(["appeal", list(row[:-1])], salt))],
            )

        self.write(txn)

    def insert_appeal_decision(
        self, appeal: Appeal, outcome: str, reviewer: str, reason: str, at: datetime
    ) -> None:
        row = (appeal.id, appeal.domain, outcome, reviewer, reason, to_micros(at))
        ref = f"appeal-decision:{appeal.id}"

        def txn(cur: Cursor) -> None:
            cur.execute("INSERT INTO pb_appeal_decisions VALUES (%s, %s, %s, %s, %s, %s)", row)
            _dirty(cur, appeal.domain, appeal.subject)
            self.append(
                cur,
                row[5],
                [("appeal-decision", appeal.domain, ref, commit(["appeal-decision", list(row)]))],
            )

        self.write(txn)

    def _appeal_rows(self, where: str, params: Sequence[Any]) -> list[Appeal]:
        found = self._query(f"{rows.APPEAL_SELECT} WHERE {where} ORDER BY a.filed_us, a.id", params)
        return [rows.appeal_from_row(r) for r in found]

    def appeal(self, appeal_id: str) -> Appeal | None:
        found = self._appeal_rows("a.id = %s", (appeal_id,))
        return found[0] if found else None

    def appeals(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> dict[str, list[Appeal]]:
        out: dict[str, list[Appeal]] = {}
        if subjects is None:
            found = self._appeal_rows("a.domain = %s", (domain,))
        else:
            found = []
            for chunk in chunks(list(subjects)):
                found += self._appeal_rows("a.domain = %s AND a.subject = ANY(%s)", (domain, chunk))
        for a in found:
            out.setdefault(a.subject, []).append(a)
        return out

    # -- reviewer confirmation ----------------------------------------------------------------
    def insert_confirmation(
        self, domain: str, subject: str, decision_id: str, reviewer: str, reason: str, at: datetime
    ) -> None:
        row = (decision_id, domain, reviewer, reason, to_micros(at))
        ref = f"confirmation:{decision_id}"

        def txn(cur: Cursor) -> None:
            cur.execute("INSERT INTO pb_confirmations VALUES (%s, %s, %s, %s, %s)", row)
            _dirty(cur, domain, subject)
            self.append(
                cur, row[4], [("confirmation", domain, ref, commit(["confirmation", list(row)]))]
            )

        self.write(txn)

    def confirmations(
        self, domain: str, decision_ids: Sequence[str] | None = None
    ) -> dict[str, tuple[datetime, str]]:
        sql = "SELECT decision_id, confirmed_us, reviewer FROM pb_confirmations WHERE domain = %s"
        if decision_ids is None:
            found = self._query(sql, (domain,))
        else:
            found = []
            for chunk in chunks(list(decision_ids)):
                found += self._query(f"{sql} AND decision_id = ANY(%s)", (domain, chunk))
        return {r[0]: (from_micros(r[1]), r[2]) for r in found}

    # -- outbox ------------------------------------------------------------------------------
    def outbox_pending(
        self, domain: str, limit: int = 100
    ) -> list[tuple[int, str, dict[str, Any]]]:
        found = self._query(
            "SELECT o.seq, o.key, o.payload FROM pb_outbox o LEFT JOIN pb_outbox_taken t"
            " ON t.seq = o.seq WHERE o.domain = %s AND t.seq IS NULL ORDER BY o.seq LIMIT %s",
            (domain, limit),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in found]

    def outbox_take(self, seqs: Sequence[int], at: datetime) -> None:
        at_us = to_micros(at)
        wanted = list(seqs)

        def txn(cur: Cursor) -> None:
            records = []
            for seq in wanted:
                row = cur.execute(
                    "SELECT o.domain, o.key, t.seq FROM pb_outbox o LEFT JOIN pb_outbox_taken t"
                    " ON t.seq = o.seq WHERE o.seq = %s",
                    (seq,),
                ).fetchone()
                if row is None or row[2] is not None:
                    continue  # unknown, or already delivered: nothing to record
                cur.execute("INSERT INTO pb_outbox_taken VALUES (%s, %s)", (seq, at_us))
                records.append(rows.taken_record(row[0], row[1], at_us))
            if records:
                self.append(cur, at_us, records)

        self.write(txn)

    # -- the stop switch (R15) --------------------------------------------------------------------
    def insert_switch(self, domain: str, state: str, reason: str, actor: str, at: datetime) -> None:
        def txn(cur: Cursor) -> None:
            found = cur.execute(
                "INSERT INTO pb_switches (domain, state, reason, actor, at_us)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING *",
                (domain, state, reason, actor, to_micros(at)),
            ).fetchone()
            assert found is not None
            self.append(
                cur,
                to_micros(at),
                [("switch", domain, f"switch:{found[0]}", commit(["switch", list(found)]))],
            )

        self.write(txn)

    def switch_state(self, domain: str) -> tuple[str, str | None, datetime | None]:
        found = self._query(
            "SELECT state, reason, at_us FROM pb_switches WHERE domain = %s"
            " ORDER BY seq DESC LIMIT 1",
            (domain,),
        )
        if not found:
            return ("running", None, None)
        return (found[0][0], found[0][1], from_micros(found[0][2]))

    # -- pseudonym keys (R4) ------------------------------------------------------------------------
    def domain_key(self, domain: str) -> str:
        found = self._query("SELECT key FROM pb_domain_keys WHERE domain = %s", (domain,))
        if found:
            return str(found[0][0])

        def txn(cur: Cursor) -> None:
            cur.execute(
                "INSERT INTO pb_domain_keys VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (domain, secrets.token_hex(32)),
            )

        self.write(txn, locked=False)
        return self.domain_key(domain)

    # -- shares (R5) ------------------------------------------------------------------------------
    def insert_share(
        self, code_hash: str, domain: str, subject: str, at: datetime, expires: datetime
    ) -> None:
        created, until = to_micros(at), to_micros(expires)

        def txn(cur: Cursor) -> None:
            cur.execute(
                "INSERT INTO pb_shares VALUES (%s, %s, %s, %s, %s, NULL)",
                (code_hash, domain, subject, created, until),
            )
            self.append(
                cur, created, [rows.share_record(code_hash, domain, subject, created, until)]
            )

        self.write(txn)

    def use_share(self, code_hash: str, at: datetime) -> tuple[str, str] | str:
        """(domain, subject) for a valid code, marking it used; else the reason it is not."""
        used = to_micros(at)

        def txn(cur: Cursor) -> tuple[str, str] | str:
            # FOR UPDATE: a second use of the same code waits, then sees it used.
            row = cur.execute(
                "SELECT domain, subject, expires_us, used_us FROM pb_shares WHERE code_hash = %s"
                " FOR UPDATE",
                (code_hash,),
            ).fetchone()
            if row is None:
                return "unknown code"
            if row[3] is not None:
                return "this code was already used; a share code works once"
            if used >= row[2]:
                return "this code has expired"
            cur.execute("UPDATE pb_shares SET used_us = %s WHERE code_hash = %s", (used, code_hash))
            self.append(cur, used, [rows.share_use_record(row[0], code_hash, used)])
            return (row[0], row[1])

        return self.write(txn)

    # -- tokens ---------------------------------------------------------------------------------
    def insert_token(
        self, token_hash: str, role: str, domain: str, subject: str | None, label: str
    ) -> None:
        row = (token_hash, role, domain, subject, label, int(time.time() * 1e6))

        def txn(cur: Cursor) -> None:
            cur.execute("INSERT INTO pb_tokens VALUES (%s, %s, %s, %s, %s, %s)", row)
            self.append(cur, row[5], [rows.token_record(row)])

        self.write(txn)

    def find_token(self, token_hash: str) -> tuple[str, str, str | None, str] | None:
        """(role, domain, subject, label) of a token, by the hash of the token."""
        found = self._query(
            "SELECT role, domain, subject, label FROM pb_tokens WHERE hash = %s", (token_hash,)
        )
        return None if not found else (found[0][0], found[0][1], found[0][2], found[0][3])

    # -- erasure (principle 7) -----------------------------------------------------------------------
    def erase_details(self, domain: str, cutoff: datetime, at: datetime) -> int:
        """Erase the personal details of events before ``cutoff``: attributes, evidence, issuer
        and the salt. What the figures need (date, type, rule, points) stays, committed anew."""
        at_us = to_micros(at)

        def txn(cur: Cursor) -> int:
            ids = [
                r[0]
                for r in cur.execute(
                    "SELECT id FROM pb_events WHERE domain = %s AND occurred_us < %s"
                    " AND erased_us IS NULL ORDER BY id",
                    (domain, to_micros(cutoff)),
                )
            ]
            for chunk in chunks(ids):
                cur.execute(
                    "UPDATE pb_events SET attributes = '{}', evidence = NULL, issuer = NULL,"
                    " salt = NULL, erased_us = %s WHERE domain = %s AND id = ANY(%s)",
                    (at_us, domain, chunk),
                )
                cur.execute(
                    "UPDATE pb_entries SET evidence = NULL WHERE domain = %s AND event_id = ANY(%s)",
                    (domain, chunk),
                )
            records = []
            db = PgDb(cur)
            for eid in ids:
                ref = f"event:{domain}/{eid}"
                now = audit_sql.commitment_of(db, ref)
                assert now is not None
                records.append(("erasure", domain, ref, now))
            if records:
                self.append(cur, at_us, records)
            return len(ids)

        return self.write(txn)

    def erase_subject(self, domain: str, subject: str, at: datetime) -> dict[str, int]:
        """Remove a subject's whole record in a domain; the audit log keeps only that it was."""
        at_us = to_micros(at)

        def txn(cur: Cursor) -> dict[str, int]:
            counts: dict[str, int] = {}
            key = (domain, subject)
            refs = [
                f"event:{domain}/{eid}"
                for (eid,) in cur.execute(
                    "SELECT id FROM pb_events WHERE domain = %s AND subject = %s"
                    " ORDER BY occurred_us, id",
                    key,
                ).fetchall()
            ]
            for did, rev in cur.execute(
                "SELECT id, revision FROM pb_decisions WHERE domain = %s AND subject = %s"
                " ORDER BY id, revision",
                key,
            ).fetchall():
                refs.append(f"decision:{domain}/{did}/{rev}")
            appeal_ids = [
                r[0]
                for r in cur.execute(
                    "SELECT id FROM pb_appeals WHERE domain = %s AND subject = %s"
                    " ORDER BY filed_us, id",
                    key,
                ).fetchall()
            ]
            for aid in appeal_ids:
                refs.append(f"appeal:{aid}")
                if cur.execute(
                    "SELECT 1 FROM pb_appeal_decisions WHERE appeal_id = %s", (aid,)
                ).fetchone():
                    refs.append(f"appeal-decision:{aid}")
            decision_ids = [
                r[0]
                for r in cur.execute(
                    "SELECT DISTINCT id FROM pb_decisions WHERE domain = %s AND subject = %s"
                    " ORDER BY id",
                    key,
                ).fetchall()
            ]
            for did in decision_ids:
                if cur.execute(
                    "SELECT 1 FROM pb_confirmations WHERE decision_id = %s", (did,)
                ).fetchone():
                    refs.append(f"confirmation:{did}")
            refs += audit_sql.subject_side_refs(PgDb(cur), domain, subject)
            cur.execute(
                "DELETE FROM pb_outbox_taken WHERE seq IN (SELECT o.seq FROM pb_outbox o JOIN"
                " pb_decisions d ON d.domain = o.domain AND d.id = o.decision_id"
                " WHERE o.domain = %s AND d.subject = %s)",
                key,
            )
            for table in ("pb_entries", "pb_events", "pb_decisions", "pb_dirty", "pb_shares"):
                counts[table] = cur.execute(
                    f"DELETE FROM {table} WHERE domain = %s AND subject = %s",
                    key,
                ).rowcount
            cur.execute("DELETE FROM pb_appeal_decisions WHERE appeal_id = ANY(%s)", (appeal_ids,))
            cur.execute("DELETE FROM pb_appeals WHERE id = ANY(%s)", (appeal_ids,))
            cur.execute("DELETE FROM pb_confirmations WHERE decision_id = ANY(%s)", (decision_ids,))
            cur.execute("DELETE FROM pb_outbox WHERE decision_id = ANY(%s)", (decision_ids,))
            counts["pb_appeals"] = len(appeal_ids)
            self.append(cur, at_us, [("erasure", domain, ref, ERASED) for ref in refs])
            return counts

        return self.write(txn)


def _dirty(cur: Cursor, domain: str, subject: str) -> None:
    cur.execute("INSERT INTO pb_dirty VALUES (%s, %s) ON CONFLICT DO NOTHING", (domain, subject))
