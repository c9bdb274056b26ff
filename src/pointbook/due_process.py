"""Due process, forgetting and sharing: the ledger operations behind principles 4-9.

Mixed into Ledger. Appeals and confirmations are facts the engine folds (an open appeal
suspends what it contests, an upheld one reverses it); everything here is audited by the store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pointbook.dates import Duration, add_duration, parse_instant
from pointbook.engine import Appeal, Decision
from pointbook.errors import PointbookError
from pointbook.store.audit import VerifyResult

if TYPE_CHECKING:
    from pointbook.rules.pack import PackVersion
    from pointbook.store.base import DecisionRow, Store

__all__ = ["DueProcess", "ProcessError", "RecordImport"]

MAX_REASON = 2000


class ProcessError(PointbookError):
    """An appeal, confirmation, erasure or share that cannot be done as asked."""


class DueProcess:
    store: Store
    now: Callable[[], datetime]

    # provided by Ledger
    def require_domain(self, domain: str) -> list[PackVersion]:
        raise NotImplementedError

    def refresh_decisions(
        self, domain: str | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        raise NotImplementedError

    # -- appeals ---------------------------------------------------------------------------
    def file_appeal(
        self,
        domain: str,
        subject: str,
        reason: str,
        event_id: str | None = None,
        rule_id: str | None = None,
        decision_id: str | None = None,
    ) -> Appeal:
        """The subject contests an entry (an event's entries, or one rule's) or a decision."""
        self.require_domain(domain)
        reason = _reason(reason)
        if (event_id is None) == (decision_id is None):
            raise ProcessError(
                "an appeal contests either an entry (--entry) or a decision (--decision)"
            )
        if event_id is not None:
            entries = [
                n for n in self.store.subject_entries(domain, subject) if n.event_id == event_id
            ]
            if rule_id is not None:
                entries = [n for n in entries if n.rule_id == rule_id]
            if not entries:
                raise ProcessError(
                    f"{subject} has no entry {event_id}{'#' + rule_id if rule_id else ''} in "
                    f"{domain}: `pointbook explain {domain} {subject}` lists the entries"
                )
        else:
            rows = [
                r
                for r in self.store.current_decisions(domain, [subject])
                if r.decision.id == decision_id
            ]
            if not rows:
                raise ProcessError(
                    f"{subject} has no decision {decision_id} in {domain}: `pointbook decisions "
                    f"{domain} --subject {subject}` lists them"
                )
        now = self.now()
        for other in self.store.appeals(domain, [subject]).get(subject, []):
            same = (other.event_id, other.rule_id, other.decision_id) == (
                event_id,
                rule_id,
                decision_id,
            )
            if same and other.state(now) == "open":
                raise ProcessError(f"appeal {other.id} against the same thing is already open")
        appeal = Appeal(
            id="a-" + secrets.token_hex(6),
            domain=domain,
            subject=subject,
            reason=reason,
            filed_at=now,
            event_id=event_id,
            rule_id=rule_id,
            decision_id=decision_id,
        )
        self.store.insert_appeal(appeal)
        self.refresh_decisions(domain)
        return appeal

    def decide_appeal(self, appeal_id: str, outcome: str, reviewer: str, reason: str) -> Appeal:
        appeal = self.store.appeal(appeal_id)
        if appeal is None:
            raise ProcessError(
                f"no appeal {appeal_id!r}: `pointbook appeal list DOMAIN` lists them"
            )
        if outcome not in ("upheld", "dismissed"):
            raise ProcessError("an appeal is upheld or dismissed")
        if not reviewer.strip():
            raise ProcessError("a decision on an appeal names its reviewer (--reviewer)")
        now = self.now()
        if appeal.state(now) != "open":
            raise ProcessError(f"appeal {appeal_id} was already decided ({appeal.outcome})")
        self.store.insert_appeal_decision(appeal, outcome, reviewer.strip(), _reason(reason), now)
        self.refresh_decisions(appeal.domain)
        decided = self.store.appeal(appeal_id)
        assert decided is not None
        return decided

    def appeals_of(self, domain: str, status: str | None = None) -> list[Appeal]:
        self.require_domain(domain)
        now = self.now()
        found = [a for lst in self.store.appeals(domain).values() for a in lst]
        found.sort(key=lambda a: (a.filed_at, a.id))
        return [a for a in found if status is None or a.state(now) == status]

    def _withdrawal_reason(self, decision: Decision, appeals: dict[str, list[Appeal]]) -> str:
        for a in sorted(
            appeals.get(decision.subject, []),
            key=lambda a: a.decided_at or a.filed_at,
            reverse=True,
        ):
            if a.decision_id == decision.id and a.outcome == "upheld":
                return f"appeal {a.id} upheld: {a.decision_reason}"
            if a.event_id is not None and a.outcome == "upheld":
                return f"its cause was removed: appeal {a.id} upheld ({a.decision_reason})"
            if a.event_id is not None and a.outcome is None:
                return f"its cause is contested: appeal {a.id} is open"
        return "its cause was removed by a change of history (a late or corrected report)"

    # -- decisions ----------------------------------------------------------------------------
    def confirm_decision(
        self, domain: str, decision_id: str, reviewer: str, reason: str
    ) -> DecisionRow:
        versions = self.require_domain(domain)
        rows = [r for r in self.store.current_decisions(domain) if r.decision.id == decision_id]
        if not rows or rows[0].withdrawn:
            raise ProcessError(f"no current decision {decision_id} in {domain}")
        row = rows[0]
        d = row.decision
        if not d.requires_review:
            raise ProcessError(
                f"decision {decision_id} ({d.kind}) needs no confirmation under its pack"
            )
        if decision_id in self.store.confirmations(domain):
            raise ProcessError(f"decision {decision_id} is already confirmed")
        if not reviewer.strip():
            raise ProcessError("a confirmation names its reviewer (--reviewer)")
        review = next(
            (th.review for v in versions for th in v.thresholds if th.id == d.threshold_id),
            "required",
        )
        if review == "four-eyes":
            events = self.store.subject_events(domain, [d.subject])[d.subject]
            issuers = {e.issuer for e in events if e.occurred_at <= d.triggered_at and e.issuer}
            if reviewer.strip() in issuers:
                raise ProcessError(
                    f"{reviewer} reported events behind decision {decision_id}: under four-eyes "
                    "review another reviewer must confirm it"
                )
        self.store.insert_confirmation(
            domain, d.subject, decision_id, reviewer.strip(), _reason(reason), self.now()
        )
        return row

    def decision_status(
        self,
        d: Decision,
        withdrawn: bool,
        as_of: datetime,
        confirmations: dict[str, tuple[datetime, str]],
        appeals: dict[str, list[Appeal]],
        stop: tuple[str, str | None, datetime | None],
    ) -> str:
        if withdrawn:
            return "cancelled"
        appeal = next(
            (
                a
                for a in reversed(appeals.get(d.subject, []))
                if a.decision_id == d.id and a.state(as_of) != "not-filed"
            ),
            None,
        )
        confirmed = confirmations.get(d.id, (None, ""))[0]
        status = d.status(as_of, confirmed, appeal)
        if status == "in_force" and any(
            a.event_id is not None
            and d.trigger == f"event {a.event_id}"
            and a.state(as_of) == "open"
            for a in appeals.get(d.subject, [])
        ):
            return "pending"  # its cause is contested: no sanction until a reviewer decides
        state, _, stopped_at = stop
        if (
            status == "in_force"
            and state == "stopped"
            and stopped_at is not None
            and as_of >= stopped_at
        ):
            took_force = max(d.effective_at, confirmed or d.effective_at)
            if took_force > stopped_at:
                return "pending"  # the stop switch holds every sanction not yet in force (R15)
        return status

    # -- the stop switch ---------------------------------------------------------------------
    def set_switch(self, domain: str, stopped: bool, reason: str, actor: str) -> None:
        self.require_domain(domain)
        if not actor.strip():
            raise ProcessError("say who operates the switch (--by)")
        self.store.insert_switch(
            domain, "stopped" if stopped else "running", _reason(reason), actor.strip(), self.now()
        )

    def outbox(self, domain: str, limit: int = 100) -> list[tuple[int, str, dict[str, Any]]]:
        """Decision changes waiting for delivery; none while the domain is stopped (R15)."""
        self.require_domain(domain)
        self.refresh_decisions(domain)
        if self.store.switch_state(domain)[0] == "stopped":
            return []
        return self.store.outbox_pending(domain, limit)

    # -- tamper evidence ------------------------------------------------------------------------
    def verify(self) -> VerifyResult:
        return self.store.verify()

    # -- forgetting ---------------------------------------------------------------------------
    def run_retention(self, as_of: datetime | None = None) -> dict[str, int]:
        """Erase the details of every event older than its domain's retention."""
        when = as_of or self.now()
        out: dict[str, int] = {}
        for domain in self.store.domains():
            versions = self.require_domain(domain)
            from pointbook.rules.pack import version_at

            in_force = version_at(versions, when) or versions[0]
            retention = in_force.spec.retention  # the version in force, never a future one
            if retention is None:
                continue
            cutoff = add_duration(when, retention, versions[0].tz, times=-1)
            out[domain] = self.store.erase_details(domain, cutoff, self.now())
        return out

    def erase_subject(self, domain: str, subject: str) -> dict[str, int]:
        versions = self.require_domain(domain)
        latest = versions[-1]
        if not latest.spec.erasure_on_request:
            retention = (
                latest.spec.retention.describe() if latest.spec.retention else "its retention"
            )
            raise ProcessError(
                f"the {domain} pack does not allow erasure on request (erasure_on_request: false); "
                f"the record's details are erased {retention} after each event by `pointbook retention run`"
            )
        return self.store.erase_subject(domain, subject, self.now())

    # -- pseudonyms and sharing ------------------------------------------------------------------
    def pseudonym(self, domain: str, external_id: str) -> str:
        """A subject id for ``external_id`` in ``domain``: an HMAC under the domain's own key, so
        the same person gets ids in two domains that cannot be joined (R4)."""
        self.require_domain(domain)
        key = self.store.domain_key(domain)
        digest = hmac.new(bytes.fromhex(key), external_id.encode(), hashlib.sha256).hexdigest()
        return f"p-{digest[:24]}"

    def create_share(self, domain: str, subject: str, valid: Duration) -> tuple[str, datetime]:
        """A single-use code the subject gives to someone who needs to check one record."""
        versions = self.require_domain(domain)
        now = self.now()
        expires = add_duration(now, valid, versions[0].tz)
        code = secrets.token_urlsafe(9)
        self.store.insert_share(_code_hash(code), domain, subject, now, expires)
        return code, expires

    def redeem_share(self, code: str) -> tuple[str, str]:
        found = self.store.use_share(_code_hash(code), self.now())
        if isinstance(found, str):
            raise ProcessError(f"share code refused: {found}")
        return found


class RecordImport(DueProcess):
    """Loading a subject's exported record into an empty store (R16: export round-trips)."""

    def publish(self, versions: Sequence[PackVersion]) -> Any:
        raise NotImplementedError

    def to_event(self, record: Any) -> Any:
        raise NotImplementedError

    def import_record(self, record: dict[str, Any]) -> int:
        """Publish the record's pack versions, then write its events with their original
        reporting times and its appeals with their original times. Returns the events written."""
        from pointbook.export_schema import ExportRecord
        from pointbook.intake import EventIn, RawRecord
        from pointbook.rules.pack import load_pack_text

        try:
            data = ExportRecord.model_validate(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ProcessError(f"not a pointbook export: {where}: {first['msg']}") from exc
        domain, subject = data.domain, data.subject
        if self.store.has_events(domain):
            raise ProcessError(f"import needs a store where {domain} has no events yet")
        versions = [
            v
            for pv in data.pack_versions
            for v in load_pack_text(pv.text, f"{domain}@{pv.version}")
        ]
        self.publish(versions)
        tz = versions[0].tz
        written = 0
        for n, ev in enumerate(data.events, start=1):
            if ev.details_erased:
                raise ProcessError(
                    f"event {ev.id} had its details erased after retention: an erased record "
                    "cannot be imported"
                )
            body = {
                "id": ev.id,
                "domain": domain,
                "subject": subject,
                "type": ev.type,
                "occurred_at": ev.occurred_at,
                "attributes": ev.attributes,
                "evidence": ev.evidence,
                "issuer": ev.issuer,
                "incident": ev.incident,
            }
            event, entries = self.to_event(RawRecord(n, "", EventIn.model_validate(body), None))
            reported = parse_instant(ev.reported_at, tz) if ev.reported_at else self.now()
            self.store.write_batch([(event, event.content_hash())], entries, reported)
            written += 1
        for ap in data.appeals:
            appeal = Appeal(
                id=ap.id,
                domain=domain,
                subject=subject,
                reason=ap.reason,
                filed_at=parse_instant(ap.filed_at, tz),
                event_id=ap.event_id,
                rule_id=ap.rule_id,
                decision_id=ap.decision_id,
            )
            self.store.insert_appeal(appeal)
            if ap.status != "open" and ap.decided_at and ap.reviewer:
                self.store.insert_appeal_decision(
                    appeal,
                    ap.status,
                    ap.reviewer,
                    ap.decision_reason or "",
                    parse_instant(ap.decided_at, tz),
                )
        self.refresh_decisions(domain)
        for dec in data.decisions:
            if dec.confirmed_at and dec.confirmed_by:
                self.store.insert_confirmation(
                    domain,
                    subject,
                    dec.id,
                    dec.confirmed_by,
                    "confirmed before the record was exported",
                    parse_instant(dec.confirmed_at, tz),
                )
        return written


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def _reason(text: str) -> str:
    text = text.strip()
    if not text:
        raise ProcessError("give a reason (--reason): it is kept and shown to the person")
    if len(text) > MAX_REASON:
        raise ProcessError(f"a reason is at most {MAX_REASON} characters")
    return text


def status_inputs(store: Store, domain: str) -> tuple[Any, ...]:
    return (store.confirmations(domain), store.appeals(domain), store.switch_state(domain))


__all__ += ["status_inputs"]
