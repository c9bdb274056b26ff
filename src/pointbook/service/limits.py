"""Abuse limits on event intake through the API (OWASP API4 and API6: resource consumption and
mass reporting against one person).

Three limits, each a token bucket (``count`` reports per ``seconds``, refilled steadily):

    issuer          new events one issuer may report; over it the whole request is refused
                    with 429 and Retry-After, nothing applied
    subject_review  reports against one subject that count automatically; later ones in the
                    same window are accepted but held for a reviewer (they never deduct on
                    their own)
    subject_max     reports against one subject taken at all; later ones are refused item by
                    item (status ``limited``, retry the same id later), and a request where
                    every new report is refused answers 429

A hold is recorded as an appeal opened on the person's behalf against the held event, dated
from the event's own date: the engine already keeps out what an open appeal contests (an
appeal from before the entry was final means it never counted, at any date, so it cannot
trigger a decision either), the reviewer's queue already lists it, and deciding it is the
reviewer's existing act (upheld: the report is void; dismissed: it counts from the decision).
The hold is written before the event, so a crash in between never leaves a flagged report
counting.

Only new events are charged: a retry of an id already stored is answered ``duplicate`` and costs
nothing, so a client that timed out can always learn what happened (T16). The limiter's state is
bounded: at most ``max_keys`` buckets per limit, least recently used dropped first (a dropped
bucket is a full one, which is what an absent key means).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pointbook.engine import Appeal
from pointbook.errors import EventError, UnknownDomainError

if TYPE_CHECKING:
    from pointbook.intake import RawRecord
    from pointbook.ledger import Ledger

__all__ = [
    "DEFAULT_LIMITS",
    "Buckets",
    "IntakeLimiter",
    "IntakeLimits",
    "LimitExceeded",
    "Rate",
    "limited_ingest",
    "parse_rate",
]

HOLD_REASON = "held for review"


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` per ``seconds``: a bucket of ``count`` tokens refilled at count/seconds."""

    count: int
    seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or not self.seconds > 0 or not math.isfinite(self.seconds):
            raise ValueError("a rate is a positive count per a positive number of seconds")

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def describe(self) -> str:
        return f"{self.count} per {self.seconds:g} s"


def parse_rate(text: str) -> Rate | None:
    """``COUNT/SECONDS`` (e.g. ``20/3600``) or ``off``."""
    if text.strip().lower() == "off":
        return None
    count, sep, seconds = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return Rate(int(count), float(seconds.strip().removesuffix("s")))
    except ValueError as exc:
        raise ValueError(f"{text!r}: write COUNT/SECONDS, e.g. 20/3600, or off") from exc


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """The limits an app enforces; ``None`` turns one off."""

    issuer: Rate | None = Rate(6000, 60)
    subject_review: Rate | None = Rate(20, 3600)
    subject_max: Rate | None = Rate(200, 3600)
    max_keys: int = 50_000


DEFAULT_LIMITS = IntakeLimits()


class Buckets:
    """Token buckets keyed by anything hashable, at most ``max_keys`` of them."""

    def __init__(self, rate: Rate, max_keys: int) -> None:
        self.rate = rate
        self.max_keys = max(1, max_keys)
        # key -> (tokens, when they were counted); an absent key is a full bucket.
        self._state: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def level(self, key: Hashable, now: float) -> float:
        found = self._state.get(key)
        if found is None:
            return float(self.rate.count)
        tokens, at = found
        return min(float(self.rate.count), tokens + max(0.0, now - at) * self.rate.per_second)

    def wait(self, key: Hashable, n: float, now: float) -> float:
        """Seconds until ``n`` tokens are there (infinite when n is over the capacity)."""
        if n > self.rate.count:
            return math.inf
        return max(0.0, (n - self.level(key, now)) / self.rate.per_second)

    def take(self, key: Hashable, n: float, now: float) -> None:
        if n <= 0:
            return
        left = self.level(key, now) - n
        self._state[key] = (left, now)
        self._state.move_to_end(key)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)


class LimitExceeded(Exception):
    """The request is refused as a whole: answered as problem+json with Retry-After."""

    def __init__(self, status: int, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None or not math.isfinite(self.retry_after):
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


@dataclass
class Plan:
    """What one request may do: which new ids are held, which refused, and the charges."""

    held: set[str] = field(default_factory=set)
    limited: dict[str, float] = field(default_factory=dict)  # id -> seconds to wait
    charges: list[tuple[Buckets, Hashable, int]] = field(default_factory=list)


class IntakeLimiter:
    def __init__(
        self, limits: IntakeLimits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()

        def make(rate: Rate | None) -> Buckets | None:
            return None if rate is None else Buckets(rate, limits.max_keys)

        self.issuers = make(limits.issuer)
        self.review = make(limits.subject_review)
        self.maximum = make(limits.subject_max)

    def keys(self) -> int:
        """How many buckets are kept, all limits together (bounded by 3 × max_keys)."""
        return sum(len(b) for b in (self.issuers, self.review, self.maximum) if b is not None)

    def plan(self, domain: str, issuer: str, new: Sequence[tuple[str, str]]) -> Plan:
        """Plan a request's new events, given as (event id, subject) in request order. Raises
        LimitExceeded when nothing of it may be applied. Changes nothing until ``commit``."""
        with self._lock:
            now = self.clock()
            plan = Plan()
            by_subject: dict[str, list[str]] = {}
            for eid, subject in new:
                by_subject.setdefault(subject, []).append(eid)
            for subject, ids in by_subject.items():
                self._plan_subject(plan, (domain, subject), ids, now)
            admitted = len(new) - len(plan.limited)
            if new and admitted == 0:
                wait = min(plan.limited.values())
                raise LimitExceeded(
                    429,
                    f"every new report in this request is against a subject that already had "
                    f"{self._max_text()} reports: retry the same ids after {math.ceil(wait)} s",
                    wait,
                )
            if self.issuers is not None and admitted:
                self._plan_issuer(plan, (domain, issuer), admitted, now)
            return plan

    def _max_text(self) -> str:
        assert self.limits.subject_max is not None
        return self.limits.subject_max.describe()

    def _plan_subject(self, plan: Plan, key: Hashable, ids: list[str], now: float) -> None:
        room = math.inf if self.maximum is None else math.floor(self.maximum.level(key, now))
        auto = math.inf if self.review is None else math.floor(self.review.level(key, now))
        taken = counted = 0
        for eid in ids:
            if taken + 1 > room:
                assert self.maximum is not None
                plan.limited[eid] = self.maximum.wait(key, taken + 1, now)
                continue
            taken += 1
            if counted + 1 > auto:
                plan.held.add(eid)
            else:
                counted += 1
        if self.maximum is not None:
            plan.charges.append((self.maximum, key, taken))
        if self.review is not None:
            plan.charges.append((self.review, key, counted))

    def _plan_issuer(self, plan: Plan, key: tuple[str, str], admitted: int, now: float) -> None:
        assert self.issuers is not None and self.limits.issuer is not None
        rate = self.limits.issuer
        if admitted > rate.count:
            raise LimitExceeded(
                413,
                f"this request carries {admitted} new events; an issuer reports at most "
                f"{rate.describe()}: split it into batches of at most {rate.count}",
                None,
            )
        wait = self.issuers.wait(key, admitted, now)
        if wait > 0:
            raise LimitExceeded(
                429,
                f"issuer {key[1]!r} reached its limit of {rate.describe()} new events in "
                f"{key[0]}: retry the same request after {math.ceil(wait)} s (ids already "
                "stored answer duplicate and cost nothing)",
                wait,
            )
        plan.charges.append((self.issuers, key, admitted))

    def commit(self, plan: Plan) -> None:
        with self._lock:
            now = self.clock()
            for buckets, key, n in plan.charges:
                buckets.take(key, n, now)


def _hold(ledger: Ledger, records: Sequence[RawRecord], limits: IntakeLimits) -> set[str]:
    """Open a hold (an appeal on the person's behalf) on each record that would produce
    entries; before the event is written, so a flagged report never counts on its own."""
    held: set[str] = set()
    assert limits.subject_review is not None
    window = limits.subject_review.describe()
    for rec in records:
        assert rec.event is not None
        try:
            event, entries = ledger.to_event(rec)
        except (EventError, UnknownDomainError):
            continue  # the ingest rejects it and says why
        if not entries:
            continue  # nothing would count: nothing to hold
        mine = ledger.store.appeals(event.domain, [event.subject]).get(event.subject, [])
        if any(a.event_id == event.id and a.outcome is None for a in mine):
            held.add(event.id)  # a retry: the hold from the first attempt stands
            continue
        now = ledger.now()
        ledger.store.insert_appeal(
            Appeal(
                id="a-" + secrets.token_hex(6),
                domain=event.domain,
                subject=event.subject,
                reason=(
                    f"{HOLD_REASON}: opened by pointbook's intake limit on "
                    f"{now.isoformat(timespec='seconds')}, not by the person. More than {window} "
                    "reports against this record arrived; this one has not counted at any date "
                    "and does not count unless a reviewer dismisses this hold (upholding it "
                    "voids the report)."
                ),
                # From the event's own date: the held report never counted, not even for the
                # past (a decision must not be triggered by a report nobody has reviewed).
                filed_at=min(event.occurred_at, now),
                event_id=event.id,
            )
        )
        held.add(event.id)
    return held


def limited_ingest(
    ledger: Ledger,
    limiter: IntakeLimiter | None,
    domain: str,
    issuer: str,
    records: Sequence[RawRecord],
) -> dict[str, Any]:
    """Ingest one API request's records under the limits; the response body, one item per
    record: accepted, duplicate (already stored: nothing changed), held, limited or rejected.
    The caller holds the ledger's lock."""
    ids = list(dict.fromkeys(r.event.id for r in records if r.event is not None))
    known = ledger.store.event_hashes(domain, ids) if ids else {}
    subjects = {r.event.id: r.event.subject for r in reversed(records) if r.event is not None}
    new = [(eid, subjects[eid]) for eid in ids if eid not in known]
    plan = limiter.plan(domain, issuer, new) if limiter is not None else Plan()
    admitted = [r for r in records if r.event is None or r.event.id not in plan.limited]
    held: set[str] = set()
    if plan.held and limiter is not None:
        first: dict[str, RawRecord] = {}
        for r in admitted:
            if r.event is not None and r.event.id in plan.held:
                first.setdefault(r.event.id, r)
        held = _hold(ledger, list(first.values()), limiter.limits)
    report = ledger.ingest(admitted)
    if limiter is not None:
        limiter.commit(plan)
    return _answer(records, report.rejected, known, held, plan, report.accepted)


def _answer(
    records: Sequence[RawRecord],
    rejects: Sequence[Any],
    known: dict[str, str],
    held: set[str],
    plan: Plan,
    accepted: int,
) -> dict[str, Any]:
    rejected = {r.line: r for r in rejects}
    landed: set[str] = set()
    items: list[dict[str, Any]] = []
    for rec in records:
        eid = rec.event.id if rec.event is not None else None
        if eid is not None and eid in plan.limited:
            wait = max(1, math.ceil(plan.limited[eid]))
            items.append({"item": rec.line, "id": eid, "status": "limited", "retry_after": wait})
        elif rec.line in rejected:
            r = rejected[rec.line]
            items.append(
                {
                    "item": rec.line,
                    "id": r.event_id,
                    "status": "rejected",
                    "code": r.code,
                    "reason": r.reason,
                }
            )
        else:
            assert eid is not None
            status = "duplicate" if eid in known or eid in landed else "accepted"
            if status == "accepted" and eid in held:
                status = "held"
            landed.add(eid)
            items.append({"item": rec.line, "id": eid, "status": status})
    count = {s: sum(1 for i in items if i["status"] == s) for s in ("held", "limited")}
    return {
        "accepted": accepted,
        "duplicates": sum(1 for i in items if i["status"] == "duplicate"),
        "rejected": len(rejected),
        "held": count["held"],
        "limited": count["limited"],
        "items": items,
    }
