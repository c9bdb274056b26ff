"""The engine's records. All frozen: an entry is never updated, a correction is a new record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar, cast

__all__ = [
    "CANONICAL",
    "Appeal",
    "Decision",
    "Entry",
    "EntryStatus",
    "Event",
    "Line",
    "SubjectState",
]


# Canonical JSON (sorted keys, no spaces, UTF-8 as is), the form every hash is taken over. One
# encoder made once: `json.dumps` with options builds a new encoder on every call.
CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Event:
    """An immutable fact reported by an issuer.

    id: the idempotency key, unique within the domain. occurred_at: aware UTC instant.
    attributes: the event type's declared attributes only. evidence: the issuer's reference
    to its evidence (a ticket number, a referee's report). issuer: who reported it.
    incident: events sharing an incident id are one occasion (a per-incident cap applies).
    reported_at: when pointbook recorded it (and noticed the person); None in pure tests.
    judged: for an event whose details were erased after retention, the entries it produced
    (the fold uses them instead of judging attributes that no longer exist).
    """

    id: str
    domain: str
    subject: str
    type: str
    occurred_at: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)
    evidence: str | None = None
    issuer: str | None = None
    incident: str | None = None
    reported_at: datetime | None = None
    judged: tuple[Entry, ...] | None = None

    def sort_key(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.id)

    def content_hash(self) -> str:
        """What makes two reports with the same id the same report (or a conflict)."""
        body = {
            "domain": self.domain,
            "subject": self.subject,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "attributes": dict(self.attributes),
            "evidence": self.evidence,
            "issuer": self.issuer,
        }
        if self.incident is not None:
            body["incident"] = self.incident
        raw = CANONICAL.encode(body)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """The ledger line one event produced under one rule of the version in force at its date.

    delta: the rule's nominal points (what the rule says; clamping happens in the fold).
    counts_until: when the entry stops counting by its own terms (counts_for or the window),
    None when only a restoration ends it.
    """

    event_id: str
    domain: str
    subject: str
    rule_id: str
    pack_version: str
    pack_hash: str
    delta: int
    occurred_at: datetime
    counts_until: datetime | None
    title: str
    evidence: str | None
    tags: frozenset[str] = frozenset()
    daily_cap: bool = False


LineKind = Literal[
    "entry",
    "no-rule",
    "expiry",
    "window-exit",
    "restoration",
    "course",
    "reset",
    "pending",
    "void",
    "reversed",
    "contested",
    "reinstated",
    "rejudged",
]


@dataclass(frozen=True, slots=True)
class Line:
    """One step of a subject's timeline, in plain words.

    delta is what the rule or restoration says; applied is what it actually moved after the
    daily cap and clamping; figure is the balance or window sum after the step.
    """

    at: datetime
    kind: LineKind
    event_id: str | None
    rule_id: str | None
    pack_version: str | None
    delta: int
    applied: int
    figure: int
    reason: str


@dataclass(frozen=True, slots=True)
class EntryStatus:
    """An entry as of a time: whether it still counts and when it stops (or stopped)."""

    entry: Entry
    applied: int
    counts: bool
    ends_at: datetime | None
    ended_by: str | None
    state: str = "counts"  # counts | ended | pending | contested | reversed | void


@dataclass(frozen=True, slots=True)
class Decision:
    """A consequence a threshold produced. Derived: same inputs, same decisions."""

    id: str
    domain: str
    subject: str
    threshold_id: str
    kind: str
    title: str
    level: int
    figure: int
    triggered_at: datetime
    ordinal: int  # decisions made earlier on the same instant: the order of the steps
    effective_at: datetime
    ends_at: datetime | None
    attributes: Mapping[str, Any]
    trigger: str
    pack_version: str

    requires_review: bool = False

    def status(
        self,
        as_of: datetime,
        confirmed_at: datetime | None = None,
        appeal: Appeal | None = None,
    ) -> str:
        """pending until the notice period passes (and, where the pack requires it, a reviewer
        confirms); in_force until ends_at; ended after; cancelled when an upheld appeal removed
        it or it ended before taking force."""
        if appeal is not None:
            state = appeal.state(as_of)
            if appeal.outcome == "upheld":
                return "cancelled"  # the correction holds for every date
            if state == "open":
                return "pending"
        if self.ends_at is not None and self.ends_at <= as_of:
            return "cancelled" if self.ends_at <= self.effective_at else "ended"
        if as_of < self.effective_at:
            return "pending"
        if self.requires_review and (confirmed_at is None or confirmed_at > as_of):
            return "pending"
        return "in_force"


@dataclass(frozen=True, slots=True)
class Appeal:
    """A subject's appeal against an entry (an event's entries, or one rule's) or a decision.

    While open it suspends what it contests; upheld, the contested entry is reversed (it never
    counts) or the decision cancelled; dismissed, the entry counts again from the decision.
    """

    id: str
    domain: str
    subject: str
    reason: str
    filed_at: datetime
    event_id: str | None = None
    rule_id: str | None = None
    decision_id: str | None = None
    decided_at: datetime | None = None
    outcome: Literal["upheld", "dismissed"] | None = None
    reviewer: str | None = None
    decision_reason: str | None = None

    def state(self, as_of: datetime) -> Literal["not-filed", "open", "upheld", "dismissed"]:
        if self.filed_at > as_of:
            return "not-filed"
        if self.decided_at is None or self.outcome is None or self.decided_at > as_of:
            return "open"
        return self.outcome

    def covers(self, event_id: str, rule_id: str) -> bool:
        return self.event_id == event_id and self.rule_id in (None, rule_id)


@dataclass(frozen=True, slots=True)
class SubjectState:
    """Everything about one subject in one domain as of a time."""

    domain: str
    subject: str
    as_of: datetime
    scheme: str
    points: int
    lines: tuple[Line, ...]
    upcoming: tuple[Line, ...]
    entries: tuple[EntryStatus, ...]
    decisions: tuple[Decision, ...]
    pack_version: str | None
    next_threshold: tuple[str, int, int] | None = None  # (kind, level, points away)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def fast_maker(record: Callable[_P, _R]) -> Callable[_P, _R]:
    """A faster ``record(...)`` for one of the frozen records above, for the engine's hot
    paths (a fold makes an Entry, a Line and an EntryStatus for nearly every event).

    A frozen dataclass's __init__ stores each field through ``object.__setattr__``, several
    times the cost of a plain store. The maker is a mutable twin of ``record`` (the same fields,
    defaults and slots) whose __init__ ends by making the new object a ``record``: what it
    returns is what ``record(...)`` returns (equal, same hash and repr, frozen from then on).
    Where the layouts could not be swapped (a record without slots), it is ``record`` itself.
    """
    cls = cast(type, record)
    own = fields(cls)
    plain = all(f.init and f.kw_only is not True for f in own)
    if (
        not plain
        or hasattr(cls, "__post_init__")
        or cls.__bases__ != (object,)
        or getattr(cls, "__slots__", None) != tuple(f.name for f in own)
    ):
        return record
    specs: list[tuple[str, Any, Any]] = []
    for f in own:
        if f.default_factory is not MISSING:
            spec = field(default_factory=f.default_factory)
        elif f.default is not MISSING:
            spec = field(default=f.default)
        else:
            spec = field()
        specs.append((f.name, f.type, spec))

    def become(self: object) -> None:
        self.__class__ = cls

    twin = make_dataclass(
        cls.__name__,
        specs,
        slots=True,
        eq=False,
        repr=False,
        namespace={"__post_init__": become},
    )
    try:
        become(object.__new__(twin))  # the swap is refused if the layouts differ
    except TypeError:
        return record
    return cast(Callable[_P, _R], twin)
