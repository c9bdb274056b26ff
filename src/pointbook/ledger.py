"""The ledger: the library API the CLI (and later the HTTP service) are thin shells around.

It joins the pure engine to a store: publishing pack versions under the rules of principle 4,
ingesting events idempotently in atomic batches, and answering balance, explain, decisions and
export questions. The clock is injected (``now``) so that tests control time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pointbook.dates import parse_instant
from pointbook.due_process import RecordImport
from pointbook.engine import (
    Appeal,
    Decision,
    Entry,
    Event,
    SubjectState,
    evaluate_subject,
    validate_event,
)
from pointbook.engine.batch import judge_batch
from pointbook.engine.invariants import check_batch, check_revisions
from pointbook.errors import (
    ConflictError,
    EventError,
    InvalidTimeError,
    PublishError,
    UnknownDomainError,
)
from pointbook.intake import RawRecord
from pointbook.rules.categories import is_reserved_event_type
from pointbook.rules.pack import PackVersion, load_pack_file, load_pack_text
from pointbook.store.base import BatchRaceError, PackRow, Store

__all__ = ["HORIZON", "IngestReport", "Ledger", "PublishResult", "Reject"]

# Decisions are materialised from a fold that runs to the end of every known effect.
HORIZON = datetime(3000, 1, 1, tzinfo=UTC)
# A batch raced by another writer is checked again this many times before the error is raised.
RACE_ATTEMPTS = 12
# Events reported as happening in the future are refused (beyond clock skew).
FUTURE_TOLERANCE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class PublishResult:
    domain: str
    version: str
    effective_from: datetime
    status: str  # "published" | "unchanged"
    content_hash: str


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    event_id: str | None
    code: str
    reason: str
    text: str


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Reject] = field(default_factory=list)
    entries: int = 0
    subjects: set[tuple[str, str]] = field(default_factory=set)

    def add(self, part: IngestReport) -> None:
        """Add another report's counts and items to this one."""
        self.accepted += part.accepted
        self.duplicates += part.duplicates
        self.rejected.extend(part.rejected)
        self.entries += part.entries
        self.subjects.update(part.subjects)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "entries": self.entries,
        }


def _coerce_csv(value: Any, kind: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value  # left as text: the attribute check then says what is wrong
    if kind == "boolean":
        return {"true": True, "false": False}.get(value.lower(), value)
    return value


class Ledger(RecordImport):
    def __init__(self, store: Store, now: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.now = now or (lambda: datetime.now(UTC))
        self._versions: dict[str, list[PackVersion]] = {}

    @classmethod
    def open(cls, db: str, now: Callable[[], datetime] | None = None) -> Ledger:
        from pointbook.store import open_store

        return cls(open_store(db), now)

    def close(self) -> None:
        self.store.close()

    # -- packs -------------------------------------------------------------------------------
    def versions(self, domain: str) -> list[PackVersion]:
        if domain not in self._versions:
            out = []
            for row in self.store.pack_rows(domain):
                (v,) = load_pack_text(row.text, f"{domain}@{row.version}")
                out.append(v)
            self._versions[domain] = out
        return self._versions[domain]

    def require_domain(self, domain: str) -> list[PackVersion]:
        versions = self.versions(domain)
        if not versions:
            known = ", ".join(self.store.domains()) or "none yet"
            raise UnknownDomainError(
                f"no pack is published for domain {domain!r} (published: {known}); publish one "
                "with `pointbook pack publish FILE`"
            )
        return versions

    def publish_file(self, path: str | Path) -> list[PublishResult]:
        return self.publish(load_pack_file(path))

    def publish(self, versions: Sequence[PackVersion]) -> list[PublishResult]:
        """Publish versions in order. Principle 4: once a domain has events, no version may take
        effect before the moment it is published; versions are published in date order."""
        results = []
        for v in versions:
            # A version reaches the store only through the linter, however it was built.
            load_pack_text(v.text, f"{v.domain}@{v.version}")
            existing = {r.version: r for r in self.store.pack_rows(v.domain)}
            if v.version in existing:
                row = existing[v.version]
                if row.content_hash != v.content_hash:
                    raise PublishError(
                        f"{v.domain} version {v.version!r} is already published with different "
                        f"content ({row.content_hash[:19]}…); published versions never change: "
                        "give the new text a new version name and a future effective_from"
                    )
                results.append(
                    PublishResult(
                        v.domain, v.version, v.effective_from, "unchanged", v.content_hash
                    )
                )
                continue
            now = self.now()
            current = self.versions(v.domain)
            if current:
                last = current[-1]
                if v.effective_from <= last.effective_from:
                    raise PublishError(
                        f"{v.domain} version {v.version!r} takes effect "
                        f"{v.effective_from.isoformat()}, not after the latest published version "
                        f"{last.version!r} ({last.effective_from.isoformat()}): versions are "
                        "published in date order"
                    )
                if v.scheme.kind != last.scheme.kind or v.spec.timezone != last.spec.timezone:
                    raise PublishError(
                        f"{v.domain} version {v.version!r} changes the scheme kind or time zone; "
                        "a domain keeps one of each"
                    )
            if v.effective_from < now and self.store.has_events(v.domain):
                raise PublishError(
                    f"{v.domain} version {v.version!r} would take effect "
                    f"{v.effective_from.isoformat()}, before now ({now.isoformat(timespec='seconds')}),"
                    " and the domain already has events: no retroactive rules (principle 4). Set "
                    "effective_from to a future date."
                )
            self.store.insert_pack(
                PackRow(v.domain, v.version, v.effective_from, now, v.content_hash, v.text)
            )
            self._versions.pop(v.domain, None)
            results.append(
                PublishResult(v.domain, v.version, v.effective_from, "published", v.content_hash)
            )
        return results

    # -- ingest ------------------------------------------------------------------------------
    def to_event(self, record: RawRecord) -> tuple[Event, list[Entry]]:
        """Check one parsed record against the domain's packs; the event and its entries."""
        event, version = self.check_event(record)
        return event, judge_batch([(event, version)])[0]

    def check_event(self, record: RawRecord) -> tuple[Event, PackVersion]:
        """Check one parsed record against the domain's packs; the event and the version in
        force at its date (EventError saying what is wrong if it is not acceptable)."""
        assert record.event is not None
        e = record.event
        versions = self.require_domain(e.domain)
        tz = versions[0].tz
        try:
            occurred = parse_instant(e.occurred_at, tz)
        except InvalidTimeError as exc:
            raise EventError(f"occurred_at: {exc}", code="event/time") from exc
        if occurred > self.now() + FUTURE_TOLERANCE:
            raise EventError(
                f"occurred_at {e.occurred_at} is in the future: events are reported after they happen",
                code="event/future",
            )
        attributes = dict(e.attributes)
        attributes = {k: v for k, v in attributes.items() if v is not None}
        if record.from_csv:
            from pointbook.rules.pack import version_at

            v = version_at(versions, occurred)
            et = v.event_types.get(e.type) if v else None
            if et is not None:
                attributes = {
                    k: _coerce_csv(val, et.attributes[k].type) if k in et.attributes else val
                    for k, val in attributes.items()
                }
        if is_reserved_event_type(e.type):
            raise EventError(
                f"event type {e.type!r} is the exercise of a right: it is never an input to a rule "
                "(principle 9)",
                code="event/reserved-type",
            )
        event = Event(
            e.id,
            e.domain,
            e.subject,
            e.type,
            occurred,
            attributes,
            e.evidence,
            e.issuer,
            incident=e.incident,
            reported_at=self.now(),
        )
        return event, validate_event(event, versions)

    def ingest(
        self,
        records: Iterable[RawRecord],
        batch_size: int = 5000,
        progress: Callable[[int], None] | None = None,
        refresh: bool = True,
    ) -> IngestReport:
        """Ingest records in atomic batches: every good record lands, every bad one is reported.

        The same id with the same content is a duplicate and changes nothing; with different
        content it is a conflict and is rejected. A batch that fails to write is rolled back
        whole and the error raised (earlier batches stay committed).
        """
        report = IngestReport()
        batch: list[RawRecord] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_size:
                self._ingest_batch(batch, report)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self._ingest_batch(batch, report)
            if progress:
                progress(len(batch))
        if refresh:
            self.refresh_decisions()
        return report

    def _ingest_batch(self, batch: list[RawRecord], report: IngestReport) -> None:
        """One atomic batch. Another process may store some of its ids between the check and
        the write: the store then refuses the batch whole (BatchRaceError) and it is checked
        again after a short random pause, so those ids come back as duplicates or conflicts."""
        for attempt in range(RACE_ATTEMPTS):
            part = IngestReport()
            try:
                self._check_and_write(batch, part)
            except BatchRaceError:
                if attempt == RACE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            report.add(part)
            return

    def _check_and_write(self, batch: list[RawRecord], report: IngestReport) -> None:
        good: dict[tuple[str, str], tuple[RawRecord, Event, str, PackVersion]] = {}

        def reject(rec: RawRecord, code: str, reason: str) -> None:
            eid = rec.event.id if rec.event else None
            report.rejected.append(Reject(rec.line, eid, code, reason, rec.text))

        for rec in batch:
            if rec.event is None:
                reject(rec, "event/invalid", rec.error or "unreadable")
                continue
            try:
                event, version = self.check_event(rec)
            except EventError as exc:
                reject(rec, exc.code, str(exc))
                continue
            except UnknownDomainError as exc:
                reject(rec, "event/unknown-domain", str(exc))
                continue
            h = event.content_hash()
            key = (event.domain, event.id)
            if key in good:
                if good[key][2] == h:
                    report.duplicates += 1
                else:
                    reject(rec, "event/conflict", _conflict(event.id, f"line {good[key][0].line}"))
                continue
            good[key] = (rec, event, h, version)
        by_domain: dict[str, list[str]] = {}
        for dom, eid in good:
            by_domain.setdefault(dom, []).append(eid)
        for dom, ids in by_domain.items():
            for eid, h in self.store.event_hashes(dom, ids).items():
                rec, _event, mine, _ = good.pop((dom, eid))
                if mine == h:
                    report.duplicates += 1
                else:
                    reject(rec, "event/conflict", _conflict(eid, "an earlier report"))
        if not good:
            return
        # Only new events are judged: the whole batch at once, column by column.
        judged = judge_batch([(ev, version) for _, ev, _, version in good.values()])
        events = [(ev, h) for _, ev, h, _ in good.values()]
        entries = [n for ns in judged for n in ns]
        check_batch(events, entries, self.versions)
        self.store.write_batch(events, entries, self.now())
        report.accepted += len(events)
        report.entries += len(entries)
        report.subjects.update((e.domain, e.subject) for e, _ in events)

    def ingest_one(self, record: RawRecord) -> str:
        """One event through the same path as a batch; returns accepted/duplicate, raises if not."""
        report = self.ingest([record])
        if report.rejected:
            r = report.rejected[0]
            if r.code == "event/conflict":
                raise ConflictError(r.reason)
            raise EventError(r.reason, code=r.code)
        return "accepted" if report.accepted else "duplicate"

    # -- decisions -----------------------------------------------------------------------------
    def refresh_decisions(
        self, domain: str | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Re-derive decisions for every subject dirtied by new events; append what changed.

        Each chunk of the work list is read, re-derived and written under the store's write
        lock (`Store.refreshing`): ledgers of other processes refreshing at the same time never
        write the same revision twice, and a subject dirtied meanwhile stays on the list."""
        done = 0
        while True:
            # A look without the lock first: most calls (every read of decisions) find nothing.
            pending = self.store.dirty_subjects(domain, 1)
            if not pending:
                return done
            dom = pending[0][0]
            with self.store.refreshing(dom):
                # Read again under the lock: another process may have refreshed them already.
                subjects = [s for _, s in self.store.dirty_subjects(dom, 500)]
                if subjects:
                    self._refresh(dom, subjects)
            done += len(subjects)
            if subjects and progress:
                progress(len(subjects))

    def _refresh(self, domain: str, subjects: list[str]) -> None:
        versions = self.require_domain(domain)
        events = self.store.subject_events(domain, subjects)
        current = {row.decision.id: row for row in self.store.current_decisions(domain, subjects)}
        revisions: list[tuple[Decision, int, bool, str]] = []
        seen: set[str] = set()
        appeals = self.store.appeals(domain, subjects)
        for subject in subjects:
            state = evaluate_subject(
                versions,
                events[subject],
                HORIZON,
                subject=subject,
                appeals=appeals.get(subject, []),
            )
            upheld = {
                a.decision_id
                for a in appeals.get(subject, [])
                if a.outcome == "upheld" and a.decision_id
            }
            for d in state.decisions:
                if d.id in upheld:
                    continue  # cancelled on appeal: stays withdrawn
                seen.add(d.id)
                row = current.get(d.id)
                if row is None:
                    revisions.append((d, 1, False, "threshold reached"))
                elif row.withdrawn or row.decision != d:
                    revisions.append((d, row.revision + 1, False, "history changed"))
        for did, row in current.items():
            if did not in seen and not row.withdrawn:
                revisions.append(
                    (
                        row.decision,
                        row.revision + 1,
                        True,
                        self._withdrawal_reason(row.decision, appeals),
                    )
                )
        check_revisions(domain, subjects, revisions, versions, current)
        self.store.write_decisions(domain, subjects, revisions, self.now())

    def decisions(
        self,
        domain: str,
        subject: str | None = None,
        as_of: datetime | None = None,
        include_cancelled: bool = True,
    ) -> list[tuple[Decision, str]]:
        """A domain's decisions (or one subject's) with their status as of a time."""
        self.require_domain(domain)
        self.refresh_decisions(domain)
        when = as_of or self.now()
        rows = self.store.current_decisions(domain, None if subject is None else [subject])
        confirmations = self.store.confirmations(domain)
        appeals = self.store.appeals(domain, None if subject is None else [subject])
        stop = self.store.switch_state(domain)
        out = []
        for r in rows:
            if r.decision.triggered_at > when:
                continue
            status = self.decision_status(
                r.decision, r.withdrawn, when, confirmations, appeals, stop
            )
            if status == "cancelled" and not include_cancelled:
                continue
            out.append((r.decision, status))
        return out

    # -- reading one subject ---------------------------------------------------------------------
    def state(self, domain: str, subject: str, as_of: datetime | None = None) -> SubjectState:
        versions = self.require_domain(domain)
        events = self.store.subject_events(domain, [subject])[subject]
        appeals = self.store.appeals(domain, [subject]).get(subject, [])
        return evaluate_subject(
            versions, events, as_of or self.now(), subject=subject, appeals=appeals
        )

    def histories(
        self, domain: str, chunk: int = 500
    ) -> Iterator[tuple[str, list[Event], list[Appeal]]]:
        """Every subject of a domain with its events and appeals, read chunk by chunk: the one
        way population-wide work (reports, what-if, recompute) walks a domain."""
        subjects = self.store.subjects(domain)
        for i in range(0, len(subjects), chunk):
            part = subjects[i : i + chunk]
            events = self.store.subject_events(domain, part)
            appeals = self.store.appeals(domain, part)
            for subject in part:
                yield subject, events.get(subject, []), appeals.get(subject, [])

    def states(self, domain: str, as_of: datetime, chunk: int = 500) -> Iterator[SubjectState]:
        """Every subject of a domain as of a time."""
        versions = self.require_domain(domain)
        for subject, events, appeals in self.histories(domain, chunk):
            yield evaluate_subject(versions, events, as_of, subject=subject, appeals=appeals)

    def view(
        self, domain: str, subject: str, as_of: datetime | None = None, explain: bool = False
    ) -> dict[str, Any]:
        """`balance` (or with ``explain``, `explain`) as JSON-ready data, with the decisions'
        statuses as the store knows them (confirmations, appeals, cancellations)."""
        from pointbook.views import balance_view, explain_view

        when = as_of or self.now()
        versions = self.require_domain(domain)
        state = self.state(domain, subject, when)
        decisions = self.decisions(domain, subject, when)
        render = explain_view if explain else balance_view
        return render(state, versions, decisions)

    def export(self, domain: str, subject: str) -> dict[str, Any]:
        """The subject's whole record in this domain (principle 6), as JSON-ready data."""
        from pointbook.views import export_record

        versions = self.require_domain(domain)
        now = self.now()
        events = self.store.subject_events(domain, [subject])[subject]
        entries = self.store.subject_entries(domain, subject)
        state = self.state(domain, subject, now)
        decisions = self.decisions(domain, subject, now)
        appeals = self.store.appeals(domain, [subject]).get(subject, [])
        mine = {d.id for d, _ in decisions}
        confirmations = {k: v for k, v in self.store.confirmations(domain).items() if k in mine}
        return export_record(
            versions, events, entries, state, now, decisions, appeals, confirmations
        )


def _conflict(event_id: str, where: str) -> str:
    return (
        f"event id {event_id!r} was already reported ({where}) with different content; an id is "
        "reported once: send a new id for a new event"
    )
