"""The ledger: the library API the CLI (and later the HTTP service) are thin shells around.

It joins the pure engine to a store: publishing pack versions under the rules of principle 4,
ingesting events idempotently in atomic batches, and answering balance, explain, decisions and
export questions. The clock is injected (``now``) so that tests control time.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count, islice
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
from pointbook.engine.canonical import content_hash
from pointbook.engine.invariants import check_batch, check_revisions
from pointbook.engine.model import fast_maker
from pointbook.errors import (
    ConflictError,
    EventError,
    InvalidTimeError,
    PublishError,
    UnknownDomainError,
)
from pointbook.intake import RawRecord
from pointbook.parallel import CHUNK, MIN_EVENTS, FoldPool, History, default_jobs, fold_all
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
# Subjects whose refreshed decisions are written at once; with worker processes, chunks taken
# under one hold of the write lock (so that folds overlap the reads and writes around them).
REFRESH_CHUNK = 500
REFRESH_CHUNKS_PARALLEL = 4


_event = fast_maker(Event)  # an Event per record checked: the frozen __init__ is costly


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
    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime] | None = None,
        jobs: int | None = None,
        parallel_min_events: int = MIN_EVENTS,
    ) -> None:
        """``jobs``: worker processes folding subjects for the decision refresh and `states`
        (default $POINTBOOK_JOBS, else 1: fold in this process). Work lists
        of fewer than ``parallel_min_events`` events are folded in this process anyway."""
        self.store = store
        self.now = now or (lambda: datetime.now(UTC))
        self._versions: dict[str, list[PackVersion]] = {}
        self.jobs = default_jobs() if jobs is None else jobs
        if self.jobs < 1:
            raise ValueError("jobs: at least 1")
        self.parallel_min_events = parallel_min_events
        self._pool: FoldPool | None = None  # started on the first work list big enough

    @classmethod
    def open(
        cls, db: str, now: Callable[[], datetime] | None = None, jobs: int | None = None
    ) -> Ledger:
        from pointbook.store import open_store

        return cls(open_store(db), now, jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
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
            if self.store.has_events(v.domain, since=v.effective_from):
                # The clock alone is not enough: it may have been set back, or events dated
                # ahead of it recorded. A version never reaches events already on record.
                raise PublishError(
                    f"{v.domain} version {v.version!r} would take effect "
                    f"{v.effective_from.isoformat()}, and the domain already has events on or "
                    "after that date: they were judged by the version in force when they were "
                    "recorded, and no rule applies retroactively (principle 4). Set "
                    "effective_from after the latest recorded event."
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

    def check_event(
        self, record: RawRecord, now: datetime | None = None
    ) -> tuple[Event, PackVersion]:
        """Check one parsed record against the domain's packs; the event and the version in
        force at its date (EventError saying what is wrong if it is not acceptable). ``now``:
        the time it is checked and reported at (the ledger's clock if not given; a batch reads
        the clock once for all its records)."""
        assert record.event is not None
        e = record.event
        # The cached list, without two calls per event; require_domain says what is missing.
        versions = self._versions.get(e.domain) or self.require_domain(e.domain)
        if now is None:
            now = self.now()
        tz = versions[0].tz
        try:
            occurred = parse_instant(e.occurred_at, tz)
        except InvalidTimeError as exc:
            raise EventError(f"occurred_at: {exc}", code="event/time") from exc
        if occurred > now + FUTURE_TOLERANCE:
            raise EventError(
                f"occurred_at {e.occurred_at} is in the future: events are reported after they happen",
                code="event/future",
            )
        attributes = {k: v for k, v in e.attributes.items() if v is not None}
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
        event = _event(
            e.id,
            e.domain,
            e.subject,
            e.type,
            occurred,
            attributes,
            e.evidence,
            e.issuer,
            incident=e.incident,
            reported_at=now,
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
        found = iter(records)
        with ExitStack() as bulk:
            for n in count():
                with _gc_paused():
                    batch = list(islice(found, max(1, batch_size)))
                    if batch and n == 1:  # a second batch: a bulk load (not one API request)
                        bulk.enter_context(self.store.bulk())
                    if batch:
                        self._ingest_batch(batch, report)
                if not batch:
                    break
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

        now = self.now()
        for rec in batch:
            if rec.event is None:
                reject(rec, "event/invalid", rec.error or "unreadable")
                continue
            try:
                event, version = self.check_event(rec, now)
            except EventError as exc:
                reject(rec, exc.code, str(exc))
                continue
            except UnknownDomainError as exc:
                reject(rec, "event/unknown-domain", str(exc))
                continue
            h = content_hash(event)  # event.content_hash(), without its per-call dict
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
        # With workers, one lock holds several writes so that folds overlap reads and writes.
        limit = REFRESH_CHUNK * (REFRESH_CHUNKS_PARALLEL if self.jobs > 1 else 1)
        while True:
            # A look without the lock first: most calls (every read of decisions) find nothing.
            pending = self.store.dirty_subjects(domain, 1)
            if not pending:
                return done
            dom = pending[0][0]
            with self.store.refreshing(dom):
                # Read again under the lock: another process may have refreshed them already.
                subjects = [s for _, s in self.store.dirty_subjects(dom, limit)]
                if subjects:
                    self._refresh(dom, subjects)
            done += len(subjects)
            if subjects and progress:
                progress(len(subjects))

    def _refresh(self, domain: str, subjects: list[str]) -> None:
        """Re-derive the decisions of ``subjects`` (the caller holds the write lock) and append
        what changed: one checked write per REFRESH_CHUNK subjects of the work list, in its
        order, whether the folds ran here or on workers (the same writes, the same records).
        With workers, the next subjects are read and folded while one chunk is written."""
        versions = self.require_domain(domain)
        reads = min(REFRESH_CHUNK, CHUNK) if self.jobs > 1 else REFRESH_CHUNK

        def serial(h: History) -> tuple[Decision, ...]:
            return evaluate_subject(versions, h[1], HORIZON, subject=h[0], appeals=h[2]).decisions

        def parallel(hs: Iterator[History]) -> Iterator[tuple[History, tuple[Decision, ...]]]:
            return self._fold_pool().decisions(domain, hs, HORIZON)

        folded = fold_all(
            self.histories(domain, reads, subjects),
            serial,
            parallel if self.jobs > 1 else None,
            self.parallel_min_events,
        )
        with closing(folded):
            for _ in range(0, len(subjects), REFRESH_CHUNK):
                self._write_refresh(domain, versions, list(islice(folded, REFRESH_CHUNK)))

    def _fold_pool(self) -> FoldPool:
        """The worker processes, started on first use, holding every domain's versions."""
        if self._pool is None:
            self._pool = FoldPool(self.jobs)
        self._pool.load({d: self.versions(d) for d in self.store.domains()})
        return self._pool

    def _write_refresh(
        self,
        domain: str,
        versions: list[PackVersion],
        folded: list[tuple[History, tuple[Decision, ...]]],
    ) -> None:
        """Append the revisions one chunk of refreshed subjects calls for, checked first."""
        subjects = [subject for (subject, _, _), _ in folded]
        current = {row.decision.id: row for row in self.store.current_decisions(domain, subjects)}
        revisions: list[tuple[Decision, int, bool, str]] = []
        seen: set[str] = set()
        appeals = {subject: list(mine) for (subject, _, mine), _ in folded if mine}
        for (subject, _, _), decisions in folded:
            upheld = {
                a.decision_id
                for a in appeals.get(subject, [])
                if a.outcome == "upheld" and a.decision_id
            }
            for d in decisions:
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
        return self._decisions(domain, subject, as_of, include_cancelled)[0]

    def _decisions(
        self,
        domain: str,
        subject: str | None,
        as_of: datetime | None,
        include_cancelled: bool = True,
        appeals: list[Appeal] | None = None,
    ) -> tuple[list[tuple[Decision, str]], dict[str, tuple[datetime, str]]]:
        """`decisions`, with the confirmations read for them. ``appeals``: the subject's,
        when the caller has read them already (one read of a record reads them once)."""
        self.require_domain(domain)
        self.refresh_decisions(domain)
        when = as_of or self.now()
        rows = self.store.current_decisions(domain, None if subject is None else [subject])
        if not rows:
            return [], {}  # nothing to give a status: confirmations and the switch are not read
        if subject is None:
            confirmations = self.store.confirmations(domain)
            by_subject = self.store.appeals(domain)
        else:
            # Only this subject's decisions: the read does not grow with the domain.
            confirmations = self.store.confirmations(domain, [r.decision.id for r in rows])
            if appeals is None:
                by_subject = self.store.appeals(domain, [subject])
            else:
                by_subject = {subject: appeals} if appeals else {}
        stop = self.store.switch_state(domain)
        out = []
        for r in rows:
            if r.decision.triggered_at > when:
                continue
            status = self.decision_status(
                r.decision, r.withdrawn, when, confirmations, by_subject, stop
            )
            if status == "cancelled" and not include_cancelled:
                continue
            out.append((r.decision, status))
        return out, confirmations

    # -- reading one subject ---------------------------------------------------------------------
    def state(
        self,
        domain: str,
        subject: str,
        as_of: datetime | None = None,
        *,
        events: list[Event] | None = None,
        appeals: list[Appeal] | None = None,
    ) -> SubjectState:
        """One subject as of a time. ``events`` and ``appeals``: the subject's, when the
        caller has read them already (they are then not read again)."""
        versions = self.require_domain(domain)
        if events is None:
            events = self.store.subject_events(domain, [subject])[subject]
        if appeals is None:
            appeals = self.store.appeals(domain, [subject]).get(subject, [])
        return evaluate_subject(
            versions, events, as_of or self.now(), subject=subject, appeals=appeals
        )

    def histories(
        self, domain: str, chunk: int = 500, subjects: Sequence[str] | None = None
    ) -> Iterator[tuple[str, list[Event], list[Appeal]]]:
        """Every subject of a domain (or only ``subjects``, in their order: the decision
        refresh's work list) with its events and appeals, read chunk by chunk: the one way
        population-wide work (reports, what-if, recompute, the refresh) walks a domain."""
        if subjects is None:
            subjects = self.store.subjects(domain)
        for i in range(0, len(subjects), chunk):
            part = subjects[i : i + chunk]
            events = self.store.subject_events(domain, part)
            appeals = self.store.appeals(domain, part)
            for subject in part:
                yield subject, events.get(subject, []), appeals.get(subject, [])

    def states(self, domain: str, as_of: datetime, chunk: int = 500) -> Iterator[SubjectState]:
        """Every subject of a domain as of a time, in the order of `histories` (folded on the
        worker processes when there are enough events; the next chunk is read meanwhile)."""
        versions = self.require_domain(domain)

        def serial(h: History) -> SubjectState:
            return evaluate_subject(versions, h[1], as_of, subject=h[0], appeals=h[2])

        def parallel(hs: Iterator[History]) -> Iterator[tuple[History, SubjectState]]:
            return self._fold_pool().states(domain, hs, as_of)

        folded = fold_all(
            self.histories(domain, chunk),
            serial,
            parallel if self.jobs > 1 else None,
            self.parallel_min_events,
        )
        for _, state in folded:
            yield state

    def view(
        self, domain: str, subject: str, as_of: datetime | None = None, explain: bool = False
    ) -> dict[str, Any]:
        """`balance` (or with ``explain``, `explain`) as JSON-ready data, with the decisions'
        statuses as the store knows them (confirmations, appeals, cancellations)."""
        from pointbook.views import balance_view, explain_view

        when = as_of or self.now()
        versions = self.require_domain(domain)
        # Each table is read once: the appeals the fold used also give the decisions' statuses.
        appeals = self.store.appeals(domain, [subject]).get(subject, [])
        state = self.state(domain, subject, when, appeals=appeals)
        decisions, _ = self._decisions(domain, subject, when, appeals=appeals)
        render = explain_view if explain else balance_view
        return render(state, versions, decisions)

    def export(self, domain: str, subject: str) -> dict[str, Any]:
        """The subject's whole record in this domain (principle 6), as JSON-ready data."""
        from pointbook.views import export_record

        versions = self.require_domain(domain)
        now = self.now()
        events = self.store.subject_events(domain, [subject])[subject]
        entries = self.store.subject_entries(domain, subject)
        appeals = self.store.appeals(domain, [subject]).get(subject, [])
        state = self.state(domain, subject, now, events=events, appeals=appeals)
        decisions, confirmed = self._decisions(domain, subject, now, appeals=appeals)
        mine = {d.id for d, _ in decisions}
        confirmations = {k: v for k, v in confirmed.items() if k in mine}
        return export_record(
            versions, events, entries, state, now, decisions, appeals, confirmations
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a batch is read, checked and written: the
    batch's objects all live until it is written, and the collector would walk them again and
    again for nothing (about a tenth of the ingest's time). Any cyclic garbage a batch leaves
    is collected after it, as usual. Left as it is if the caller turned it off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _conflict(event_id: str, where: str) -> str:
    return (
        f"event id {event_id!r} was already reported ({where}) with different content; an id is "
        "reported once: send a new id for a new event"
    )
