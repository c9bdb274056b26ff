"""The stateful half of the engine: a subject's figures are a fold over its own timeline.

Events are sorted by (occurred_at, id) and interleaved with the time-driven effects the pack
defines (expiries, window exits, restorations, course credits, grace checks). Same-instant
effects run in the documented phase order (docs/rule-packs.md, "Order of evaluation"), so the
result depends only on the data, never on arrival order. The fold runs past ``as_of`` with no
further events to tell what will change next (``upcoming``) and when entries stop counting.
"""

from __future__ import annotations

import hashlib
import heapq
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from pointbook.dates import Duration, add_duration, format_local, local_date
from pointbook.engine.judge import judge
from pointbook.engine.model import (
    Appeal,
    Decision,
    Entry,
    EntryStatus,
    Event,
    Line,
    LineKind,
    SubjectState,
    fast_maker,
)
from pointbook.rules.attributes import attribute_problems
from pointbook.rules.pack import PackVersion, version_at
from pointbook.rules.spec import (
    BalanceSchemeSpec,
    LevelSpec,
    RestorationSpec,
    ThresholdSpec,
    WindowSchemeSpec,
)

__all__ = ["evaluate_subject"]

# The fold projects at most this far past as_of ("upcoming"); far-future as-of times used to
# materialise decisions are not limited.
PROJECTION_LIMIT = Duration(years=100)
HORIZON_CAP = datetime(2900, 1, 1, tzinfo=UTC)

# The records a fold makes at nearly every step, made without the frozen __init__'s cost.
_line = fast_maker(Line)
_entry_status = fast_maker(EntryStatus)
_decision = fast_maker(Decision)

# Phases of one instant (docs/rule-packs.md, "Order of evaluation").
EXPIRE, RESTORE, EVENT, LATE_EXIT = 0, 1, 2, 3
_RESTORE_ORDER = {"clean-period": 0, "small-loss": 1, "entry-return": 2, "course": 3, "grace": 4}


@dataclass(slots=True)
class _Item:
    entry: Entry
    applied: int = 0
    settled_at: datetime | None = None
    settled_by: str | None = None
    settled_later: bool = False  # settled after as_of, in the projection
    in_window: bool = False
    suspended: bool = False  # an open appeal: its effect is out of the figure
    applied_at: datetime | None = None  # None: not (yet) final


@dataclass(slots=True)
class _While:
    pending_since: datetime | None = None
    active: int | None = None  # index into decisions


@dataclass
class _State:
    figure: int
    loss_seq: int = 0
    longer: bool = False
    settle_gen: int = 0
    terminal: bool = False
    cap_day: Any = None
    cap_total: int = 0
    last_course: datetime | None = None
    armed: dict[tuple[str, int], bool] = field(default_factory=dict)
    whiles: dict[str, _While] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)


def _decision_id(
    domain: str, subject: str, threshold: str, level: int, at: datetime, ordinal: int
) -> str:
    # The ordinal tells apart two decisions at one instant (several events
    # on the same day, each crossing after a reset): ids stay a function of the data.
    raw = f"{domain}\x1f{subject}\x1f{threshold}\x1f{level}\x1f{at.isoformat()}\x1f{ordinal}"
    return "d-" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def _beyond(direction: str, figure: int, value: int) -> bool:
    # An if-chain, not a dict of the four answers: this runs for every level a step passes.
    if direction == "at_or_above":
        return figure >= value
    if direction == "above":
        return figure > value
    if direction == "at_or_below":
        return figure <= value
    if direction == "below":
        return figure < value
    raise KeyError(direction)


def _back(direction: str, figure: int, value: int, margin: int) -> bool:
    """The figure has come back past the level by more than the margin (re-arm / end)."""
    if direction in ("at_or_above", "above"):
        return figure < value - margin if direction == "at_or_above" else figure <= value - margin
    return figure > value + margin if direction == "at_or_below" else figure >= value + margin


# How many points a figure is from being beyond a level, by direction: sign * (level - figure)
# + extra; the figure is beyond the level exactly when that is 0 or less.
_AWAY = {"at_or_above": (1, 0), "above": (1, 1), "at_or_below": (-1, 0), "below": (-1, 1)}


def _furthest(direction: str) -> int:
    return 1 if direction in ("at_or_above", "above") else -1


_Levels = tuple[list[LevelSpec], int, int]
_Checked = tuple[ThresholdSpec, list[LevelSpec], int, int]


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the fold reads of one pack version, worked out once per version rather than on
    every step (the spec's properties, the thresholds' level lists and spans)."""

    version: PackVersion
    bounds: tuple[int, int] | None  # (floor, ceiling) of a balance scheme
    thresholds: tuple[_Checked, ...]  # (threshold, levels, span low, span high), pack order
    cuts: list[int]  # where some threshold's span starts or ends (sorted)
    spanning: tuple[tuple[int, ...], ...]  # per segment between cuts: who spans it (indices)
    segments: tuple[tuple[_Checked, ...], ...]  # the same, as the thresholds themselves
    levels: dict[int, _Levels]  # id(threshold) -> levels and span
    courses: dict[str, RestorationSpec]  # event type -> the first course restoration for it
    longer_tags: frozenset[str]  # every restoration's longer_if_tags
    start: int  # the figure a record starts at under this version's scheme
    armed: dict[tuple[str, int], bool]  # each level's state for a record at `start`
    whiles: tuple[str, ...]  # the ids of the while-thresholds
    nearest: tuple[tuple[ThresholdSpec, LevelSpec, int, int], ...]  # every level, _AWAY terms
    daily_cap: int | None
    incident_cap: int | None

    def met(self, lo: int, hi: int) -> Sequence[_Checked]:
        """The thresholds whose span a move between figures lo <= hi meets, in pack order."""
        first = bisect_right(self.cuts, lo)
        last = bisect_right(self.cuts, hi)
        if first == last:
            return self.segments[first]
        spanned = [j for j in range(first, last + 1) if self.spanning[j]]
        if len(spanned) <= 1:
            return self.segments[spanned[0]] if spanned else ()
        met = sorted({k for j in spanned for k in self.spanning[j]})
        return [self.thresholds[k] for k in met]


def _levels_of(th: ThresholdSpec) -> _Levels:
    """A threshold's levels and the span of figures (levels give or take the margin) inside
    which a move can change its state."""
    levels = th.level_list()
    values = [lv.value for lv in levels]
    reach = th.margin + 1
    return levels, min(values) - reach, max(values) + reach


def _make_facts(version: PackVersion) -> _Facts:
    scheme = version.scheme
    bounds = (scheme.floor, scheme.ceiling) if isinstance(scheme, BalanceSchemeSpec) else None
    levels = {id(th): _levels_of(th) for th in version.thresholds}
    checked = tuple((th, *levels[id(th)]) for th in version.thresholds)
    # Cut the figures into segments that each threshold's span (a range of integers) covers
    # whole or not at all: a move then meets exactly the thresholds of the segments it
    # touches, found by bisection rather than by testing every threshold. Segment j holds the
    # figures x with bisect_right(cuts, x) == j; the first and last are outside every span.
    cuts = sorted({c[2] for c in checked} | {c[3] + 1 for c in checked})
    spanning = tuple(
        tuple(k for k, c in enumerate(checked) if j and c[2] <= cuts[j - 1] <= c[3])
        for j in range(len(cuts) + 1)
    )
    segments = tuple(tuple(checked[k] for k in ks) for ks in spanning)
    courses: dict[str, RestorationSpec] = {}
    for r in version.restorations:
        if r.kind == "course" and r.event is not None:
            courses.setdefault(r.event, r)
    longer = frozenset(t for r in version.restorations for t in r.longer_if_tags)
    start = scheme.start if isinstance(scheme, BalanceSchemeSpec) else 0
    armed = {
        (th.id, idx): not _beyond(th.direction, start, lv.value)
        for th in version.thresholds
        for idx, lv in enumerate(levels[id(th)][0])
    }
    whiles = tuple(th.id for th in version.thresholds if th.mode == "while")
    nearest = tuple(
        (th, lv, *_AWAY[th.direction]) for th in version.thresholds for lv in levels[id(th)][0]
    )
    daily_cap = getattr(scheme, "daily_cap", None)
    return _Facts(
        version,
        bounds,
        checked,
        cuts,
        spanning,
        segments,
        levels,
        courses,
        longer,
        start,
        armed,
        whiles,
        nearest,
        daily_cap,
        version.spec.incident_cap,
    )


# Facts by id(version). A pack version is immutable and the entry holds the version itself
# (so its id cannot be reused while cached); the cache is bounded for long-lived processes
# that compile versions again and again. A memo, not state: results never depend on it.
_FACTS: dict[int, _Facts] = {}
_FACTS_MAX = 64


def _facts(version: PackVersion) -> _Facts:
    found = _FACTS.get(id(version))
    if found is not None and found.version is version:
        return found
    made = _make_facts(version)
    if len(_FACTS) >= _FACTS_MAX:
        _FACTS.clear()
    _FACTS[id(version)] = made
    return made


_SORT_KEY = attrgetter("occurred_at", "id")
_DAWN = datetime.min.replace(tzinfo=UTC)
_DUSK = datetime.max.replace(tzinfo=UTC)


class _Fold:
    def __init__(
        self,
        versions: Sequence[PackVersion],
        events: Sequence[Event],
        as_of: datetime,
        appeals: Sequence[Appeal] = (),
    ) -> None:
        self.versions = versions
        self.as_of = as_of
        self.first = versions[0]
        self.window = self.first.scheme.kind == "window"
        self.tz = self.first.tz
        # attrgetter makes the tuple Event.sort_key makes, without a Python call per event.
        ordered = sorted((e for e in events if e.occurred_at <= as_of), key=_SORT_KEY)
        self.events = ordered
        start = 0 if self.window else self.first.scheme.start  # type: ignore[union-attr]
        self.state = _State(figure=start)
        self.queue: list[tuple[datetime, int, int, str, int, Any]] = []
        self.seq = 0
        self.items: list[_Item] = []
        self.lines: list[Line] = []
        self.upcoming: list[Line] = []
        self.decisions: list[Decision] = []
        self.ordinals: dict[datetime, int] = {}  # decisions made so far at each instant
        self.projecting = False
        self.figure_at_as_of: int | None = None
        self.started = False
        self.checked_version: PackVersion | None = None
        self.current: datetime | None = None  # the instant being folded
        self.pending_reset: ThresholdSpec | None = None
        self.facts = [_facts(v) for v in versions]
        self.effective = [v.effective_from for v in versions]
        # version_at scans versions in order; bisecting gives the same answer only when they
        # are sorted by effective_from (as evaluate_subject requires). Otherwise: scan.
        self.in_order = all(
            a <= b for a, b in zip(self.effective, self.effective[1:], strict=False)
        )
        self.latest = max(self.effective)
        # The version in force over [span_from, span_until): most steps fall inside it.
        self.span_from, self.span_until, self.span_facts = _DUSK, _DAWN, self.facts[0]
        if len(versions) == 1:
            self._levels = self.facts[0].levels
        else:
            self._levels = {}
            for f in self.facts:
                self._levels.update(f.levels)
        self.domain = self.first.domain
        self.subject = events[0].subject if events else ""
        self.incident_of = {e.id: e.incident for e in ordered if e.incident is not None}
        self.suspended_at_as_of: set[int] = set()
        self.entry_appeals: dict[str, list[Appeal]] = {}
        for ap in sorted(appeals, key=lambda a: (a.filed_at, a.id)):
            # An upheld appeal corrects the record at every date; others count from filing.
            if ap.event_id is not None and (
                ap.outcome == "upheld" or ap.state(as_of) != "not-filed"
            ):
                self.entry_appeals.setdefault(ap.event_id, []).append(ap)

    # -- scheduling ----------------------------------------------------------------------
    def schedule(self, at: datetime, phase: int, sub: int, key: str, payload: Any) -> None:
        if self.current is not None and at < self.current:
            at = self.current  # a clock started in the past runs out now, never earlier
        self.seq += 1
        heapq.heappush(self.queue, (at, phase, sub, key, self.seq, payload))

    def facts_at(self, at: datetime) -> _Facts:
        """The facts of the version in force at ``at`` (the first one before any)."""
        if self.span_from <= at < self.span_until:
            return self.span_facts
        if not self.in_order:
            found = version_at(self.versions, at)
            return self.facts[0] if found is None else _facts(found)
        effective = self.effective
        i = bisect_right(effective, at)  # versions[i - 1] is the latest in force at `at`
        self.span_from = effective[i - 1] if i else _DAWN
        self.span_until = effective[i] if i < len(effective) else _DUSK
        self.span_facts = self.facts[i - 1] if i else self.facts[0]
        return self.span_facts

    def levels(self, th: ThresholdSpec) -> _Levels:
        """A threshold's levels and the span of figures (levels give or take the margin)
        inside which a move can change its state."""
        found = self._levels.get(id(th))
        return _levels_of(th) if found is None else found

    def bounds(self, at: datetime) -> tuple[int, int] | None:
        return self.facts_at(at).bounds

    # -- recording -----------------------------------------------------------------------
    def line(
        self,
        at: datetime,
        kind: LineKind,
        reason: str,
        delta: int,
        applied: int,
        event_id: str | None = None,
        rule_id: str | None = None,
        version: str | None = None,
    ) -> None:
        rec = _line(at, kind, event_id, rule_id, version, delta, applied, self.state.figure, reason)
        (self.upcoming if self.projecting else self.lines).append(rec)

    def move(self, at: datetime, delta: int) -> int:
        """Apply a delta with step-wise clamping; return what actually moved."""
        st = self.state
        before = st.figure
        after = before + delta
        b = self.facts_at(at).bounds
        if b is not None:
            floor, ceiling = b
            if after > ceiling:  # max(floor, min(ceiling, after)), spelt out
                after = ceiling
            if after < floor:
                after = floor
            if after == ceiling:
                st.longer = False
        st.figure = after
        return after - before

    def fmt(self, at: datetime) -> str:
        return format_local(at, self.tz)

    # -- the fold ------------------------------------------------------------------------
    def run(self) -> None:
        i = 0
        n = len(self.events)
        limit = _projection_end(self.as_of, self.tz) if self.as_of < HORIZON_CAP else None
        events, queue = self.events, self.queue
        while i < n or queue:
            # The next step is the queue's head when it sorts before the next event: the
            # tuple comparison (head at, head phase) < (occurred_at, EVENT), spelt out.
            if not queue:
                take_queue = False
            elif i < n:
                head_at, occurred = queue[0][0], events[i].occurred_at
                take_queue = head_at < occurred or (head_at == occurred and queue[0][1] < EVENT)
            else:
                take_queue = True
            if take_queue:
                if limit is not None and queue[0][0] > limit:
                    break  # what may happen over a century ahead is not worth projecting
                at, phase, _sub, _key, _seq, payload = heapq.heappop(queue)
                self.current = at
                if not self.projecting and (
                    at > self.as_of or (at == self.as_of and phase == LATE_EXIT)
                ):
                    self.projecting = True
                    self.figure_at_as_of = self.state.figure
                    self.suspended_at_as_of = {id(it) for it in self.items if it.suspended}
                self.effect(at, payload)
            else:
                next_event = events[i]
                self.current = next_event.occurred_at
                self.event(next_event)
                i += 1

    def start(self, at: datetime) -> None:
        if self.started:
            return
        self.started = True
        first = self.facts[0]
        if self.state.figure == first.start and not self.state.armed:
            self.state.armed = dict(first.armed)  # worked out once for the version
        else:
            for th in self.first.thresholds:
                for idx, lv in enumerate(self.levels(th)[0]):
                    self.state.armed[(th.id, idx)] = not _beyond(
                        th.direction, self.state.figure, lv.value
                    )
        for th_id in first.whiles:
            self.state.whiles[th_id] = _While()
        self.check_thresholds(at, "the start of the record", self.state.figure)

    def event(self, event: Event) -> None:
        if not self.started:
            self.start(event.occurred_at)
        facts = self.facts_at(event.occurred_at)
        version = facts.version
        course = None if self.window else facts.courses.get(event.type)
        if self.void_for_notice(event, version):
            return
        entries, version = self.judged(event, version)
        if not entries and course is None:
            self.line(
                event.occurred_at,
                "no-rule",
                f"{event.type.replace('_', ' ')}: no rule of version {version.version} gives "
                "points for this event",
                0,
                0,
                event.id,
                None,
                version.version,
            )
        for entry in entries:
            self.admit(entry, version, event)
        if course is not None:
            delay = course.delay
            at = (
                event.occurred_at
                if delay is None
                else add_duration(event.occurred_at, delay, self.tz)
            )
            self.schedule(
                at, RESTORE, _RESTORE_ORDER["course"], event.id, ("course", event, course, version)
            )

    def void_for_notice(self, event: Event, version: PackVersion) -> bool:
        """R9: an entry is valid only if the person was noticed in time (the event recorded,
        which sends the notice, within the pack's `notice_within`)."""
        limit = version.spec.notice_within
        if limit is None or event.reported_at is None:
            return False
        deadline = add_duration(event.occurred_at, limit, self.tz)
        if event.reported_at <= deadline:
            return False
        self.line(
            event.occurred_at,
            "void",
            f"{event.type.replace('_', ' ')}: void, no notice within {limit.describe()} "
            f"(recorded {self.fmt(event.reported_at)})",
            0,
            0,
            event.id,
            None,
            version.version,
        )
        return True

    def final_at(self, event: Event, version: PackVersion) -> datetime:
        window = version.spec.contest_window
        if window is None:
            return event.occurred_at
        return add_duration(event.occurred_at, window, self.tz)

    def judged(self, event: Event, version: PackVersion) -> tuple[list[Entry], PackVersion]:
        """The entries of ``event``: under the version in force at its date, or under a later,
        lighter version that took effect before the entry became final (lex mitior, ICCPR
        art. 15(1)). Never under a harsher one."""
        if event.judged is not None:
            return list(event.judged), version
        base = judge(event, version)
        if event.occurred_at >= self.latest:
            return base, version  # no version takes effect after the event: none to weigh
        final = self.final_at(event, version)
        for ap in self.entry_appeals.get(event.id, []):
            state = ap.state(self.as_of)
            final = max(final, self.as_of if state == "open" else (ap.decided_at or final))
        best, best_version = base, version
        sign = -1 if self.window else 1  # the side that favours the person
        for later in self.versions:
            if not (event.occurred_at < later.effective_from <= min(final, self.as_of)):
                continue
            if later.event_types.get(event.type) is None:
                candidate: list[Entry] = []  # the later version dropped the event type
            elif attribute_problems(event.type, later.event_types[event.type], event.attributes):
                continue
            else:
                candidate = judge(event, later)
            if sign * sum(n.delta for n in candidate) > sign * sum(n.delta for n in best):
                best, best_version = candidate, later
        if best_version is not version:
            self.line(
                event.occurred_at,
                "rejudged",
                f"{event.type.replace('_', ' ')}: judged under version {best_version.version}, "
                f"lighter than {version.version} and in force before the entry was final",
                0,
                0,
                event.id,
                None,
                best_version.version,
            )
        return best, best_version

    def admit(self, entry: Entry, version: PackVersion, event: Event) -> None:
        """Apply an entry when it is final and not under appeal: now, at the end of the
        contest window, or when an appeal is dismissed; never if an appeal is upheld."""
        # One appeal at a time is open; another may be filed once the last is decided. An
        # upheld one reverses the entry at every date; otherwise the first shapes when the
        # entry first counts and each later one suspends it from its filing (as one filed
        # after the entry became final).
        contested = self.entry_appeals.get(entry.event_id)
        if contested is None:  # the common case: no appeal names the event
            appeal: Appeal | None = None
            later: list[Appeal] = []
            state: str | None = None
        else:
            covering = sorted(
                (a for a in contested if a.covers(entry.event_id, entry.rule_id)),
                key=lambda a: (a.filed_at, a.id),
            )
            upheld = next((a for a in covering if a.outcome == "upheld"), None)
            appeal = upheld or (covering[0] if covering else None)
            later = [] if upheld is not None else covering[1:]
            state = appeal.state(self.as_of) if appeal else None
        if appeal is not None and appeal.outcome == "upheld":
            # An upheld appeal corrects the record: the entry never counted, at any date.
            assert appeal.decided_at is not None
            self.line(
                entry.occurred_at,
                "reversed",
                f"{entry.title}: reversed, appeal {appeal.id} upheld on {self.fmt(appeal.decided_at)}"
                + (f" ({appeal.decision_reason})" if appeal.decision_reason else ""),
                entry.delta,
                0,
                entry.event_id,
                entry.rule_id,
                entry.pack_version,
            )
            self.items.append(
                _Item(entry, settled_at=appeal.decided_at, settled_by="appeal upheld")
            )
            return
        item = _Item(entry)
        self.items.append(item)
        final: datetime | None = self.final_at(event, version)
        assert final is not None
        clocks_from = final  # a dismissed appeal must not leave the person worse off (R2)
        if appeal is not None and appeal.filed_at <= final:
            # Contested before it became final: it counts only if and when the appeal fails.
            if state == "dismissed" and appeal.decided_at is not None:
                final = max(final, appeal.decided_at)
            else:
                final = None
            appeal = None
        if final is None or final > entry.occurred_at:
            self.line(
                entry.occurred_at,
                "pending",
                f"{entry.title}: {_pts(entry.delta)} once final"
                + ("" if final is None else f", on {self.fmt(final)}, unless contested")
                + (
                    " (contested: does not count while the appeal is open)" if final is None else ""
                ),
                entry.delta,
                0,
                entry.event_id,
                entry.rule_id,
                entry.pack_version,
            )
            if final is not None:
                self.schedule(
                    final, RESTORE, 5, entry.event_id, ("apply", item, version, clocks_from)
                )
        else:
            self.apply_entry(item, version, entry.occurred_at)
        for a in [appeal, *later] if appeal is not None else later:
            # Contested after it became final: suspended from the filing on.
            self.schedule(a.filed_at, RESTORE, 6, entry.event_id, ("suspend", item, a))

    def apply_entry(
        self, item: _Item, version: PackVersion, at: datetime, clocks_from: datetime | None = None
    ) -> None:
        st = self.state
        entry = item.entry
        item.applied_at = at
        before = st.figure
        nominal = entry.delta
        allowed = nominal
        note = ""
        facts = _facts(version)
        cap_incident = facts.incident_cap
        incident = self.incident_of.get(entry.event_id)
        if cap_incident is not None and incident is not None and nominal < 0:
            used = st.incidents.get(incident, 0)
            allowed = max(nominal, -(cap_incident - used))
            st.incidents[incident] = used - allowed
            if allowed != nominal:
                note = f" (at most {cap_incident} points for one incident: {allowed} counted)"
        cap = facts.daily_cap
        if entry.daily_cap and cap is not None:
            day = local_date(at, self.tz)
            if day != st.cap_day:
                st.cap_day, st.cap_total = day, 0
            if nominal > 0:
                allowed = max(0, min(nominal, cap - st.cap_total))
                if allowed < nominal:
                    note += f" (daily cap of {cap}: {allowed} of {nominal} counted)"
            st.cap_total += allowed
        if self.window:
            st.figure += allowed
            item.applied = allowed
            item.in_window = True
            scheme = version.scheme
            assert isinstance(scheme, WindowSchemeSpec)
            window_end = add_duration(entry.occurred_at, scheme.length, self.tz)
            until = entry.counts_until or window_end
            inclusive = until == window_end and scheme.boundary == "inclusive"
            phase = LATE_EXIT if inclusive else EXPIRE
            self.schedule(until, phase, 0, entry.event_id, ("exit", item))
        else:
            item.applied = self.move(at, allowed)
            if item.applied != allowed:
                b = self.bounds(at)
                edge = "floor" if allowed < 0 else "ceiling"
                lim = b[0] if (b and allowed < 0) else (b[1] if b else 0)
                note += f" (the balance cannot go {'below' if allowed < 0 else 'above'} the {edge} of {lim})"
            if entry.counts_until is not None:
                self.schedule(entry.counts_until, EXPIRE, 0, entry.event_id, ("expire", item))
            if nominal < 0:
                self.on_loss(item, version, at, clocks_from or at)
        self.line(
            at,
            "entry",
            f"{entry.title}: {_pts(nominal)}{note}",
            nominal,
            st.figure - before,
            entry.event_id,
            entry.rule_id,
            entry.pack_version,
        )
        self.check_thresholds(at, f"event {entry.event_id}", before)

    def on_loss(
        self, item: _Item, version: PackVersion, now: datetime, clocks_from: datetime
    ) -> None:
        """A loss starts the restoration clocks (from ``clocks_from``; what would already have
        come back by ``now`` comes back now)."""
        st = self.state
        st.loss_seq += 1
        seq = st.loss_seq
        at = clocks_from
        if not _facts(version).longer_tags.isdisjoint(item.entry.tags):
            st.longer = True
        for rest in version.restorations:
            if rest.kind == "clean-period":
                assert rest.after is not None
                delay = rest.longer_after if (st.longer and rest.longer_after) else rest.after
                self.schedule(
                    add_duration(at, delay, self.tz),
                    RESTORE,
                    0,
                    item.entry.event_id,
                    ("clean", seq, rest),
                )
            elif rest.kind == "small-loss":
                assert rest.after is not None and rest.max_loss is not None
                if -item.entry.delta <= rest.max_loss and item.applied < 0:
                    self.schedule(
                        add_duration(at, rest.after, self.tz),
                        RESTORE,
                        1,
                        item.entry.event_id,
                        ("small", seq, rest, item),
                    )
            elif rest.kind == "entry-return":
                assert rest.after is not None
                if item.entry.tags & set(rest.tags) and item.applied < 0:
                    self.schedule(
                        add_duration(at, rest.after, self.tz),
                        RESTORE,
                        2,
                        item.entry.event_id,
                        ("return", st.settle_gen, rest, item),
                    )

    # -- time-driven effects -------------------------------------------------------------
    def effect(self, at: datetime, payload: tuple[Any, ...]) -> None:
        kind = payload[0]
        st = self.state
        before = st.figure
        if kind == "apply":
            _, item, version, clocks_from = payload
            # A final entry applies even after a terminal decision (clamped like any step).
            self.apply_entry(item, version, at, clocks_from)
            return
        if kind == "suspend":
            _, item, appeal = payload
            self.suspend(at, item, appeal)
        elif kind == "reinstate":
            _, item, appeal = payload
            self.reinstate(at, item, appeal)
        elif kind == "exit":
            item = payload[1]
            if not item.in_window:
                return
            item.in_window = False
            if item.suspended:
                self.settle(item, at, "left the window")
                return
            st.figure -= item.applied
            self.settle(item, at, "left the window")
            self.line(
                at,
                "window-exit",
                f"{item.entry.title}: no longer inside the window",
                -item.entry.delta,
                st.figure - before,
                item.entry.event_id,
                item.entry.rule_id,
                item.entry.pack_version,
            )
        elif kind == "expire":
            item = payload[1]
            if item.settled_at is not None:
                return
            if item.suspended:
                self.settle(item, at, "stopped counting")
                return
            applied = self.move(at, -item.applied)
            self.settle(item, at, "stopped counting")
            self.line(
                at,
                "expiry",
                f"{item.entry.title}: stops counting",
                -item.applied,
                applied,
                item.entry.event_id,
                item.entry.rule_id,
                item.entry.pack_version,
            )
        elif kind == "clean":
            _, seq, rest = payload
            if seq != st.loss_seq or st.terminal:
                return
            b = self.bounds(at)
            assert b is not None
            applied = self.move(at, b[1] - st.figure)
            st.settle_gen += 1
            for it in self.items:
                if it.entry.delta < 0 and it.settled_at is None:
                    self.settle(it, at, rest.id)
            if applied:
                self.line(
                    at,
                    "restoration",
                    f"{rest.title}: back to {b[1]} points",
                    applied,
                    applied,
                    None,
                    rest.id,
                    None,
                )
        elif kind in ("small", "return"):
            # small-loss: void once a newer loss came; entry-return: void after a clean period.
            _, clock, rest, item = payload
            current = st.loss_seq if kind == "small" else st.settle_gen
            if clock != current or st.terminal or item.settled_at is not None:
                return
            if item.suspended:
                self.settle(item, at, rest.id)
                return
            applied = self.move(at, -item.applied)
            self.settle(item, at, rest.id)
            self.line(
                at,
                "restoration",
                f"{rest.title}: {_pts(-item.applied)} back",
                -item.applied,
                applied,
                item.entry.event_id,
                rest.id,
                None,
            )
        elif kind == "course":
            _, event, rest, version = payload
            self.course(at, event, rest, version)
            return
        elif kind == "grace":
            _, th, since = payload
            w = st.whiles[th.id]
            if w.pending_since == since and w.active is None:
                w.pending_since = None
                self.open_decision(th, 0, at, f"{_describe(th)} since {self.fmt(since)}")
            return
        self.check_thresholds(at, "a time-driven change", before)

    def suspend(self, at: datetime, item: _Item, appeal: Appeal) -> None:
        if item.applied_at is None or item.settled_at is not None or item.suspended:
            return
        item.suspended = True
        if self.window:
            if not item.in_window:
                return
            self.state.figure -= item.applied
            moved = -item.applied
        else:
            moved = self.move(at, -item.applied)
        self.line(
            at,
            "contested",
            f"{item.entry.title}: contested (appeal {appeal.id}), does not count while the appeal is open",
            -item.applied,
            moved,
            item.entry.event_id,
            item.entry.rule_id,
            item.entry.pack_version,
        )
        state = appeal.state(self.as_of)
        if state == "dismissed" and appeal.decided_at is not None:
            self.schedule(
                appeal.decided_at, RESTORE, 6, item.entry.event_id, ("reinstate", item, appeal)
            )
        elif state == "upheld":
            self.settle(item, at, "appeal upheld")

    def reinstate(self, at: datetime, item: _Item, appeal: Appeal) -> None:
        if not item.suspended:
            return
        item.suspended = False
        if item.settled_at is not None and not (self.window and item.in_window):
            return  # it ended (expired, restored, left the window) while contested
        if self.window:
            self.state.figure += item.applied
            moved = item.applied
        else:
            moved = self.move(at, item.applied)
        self.line(
            at,
            "reinstated",
            f"{item.entry.title}: appeal {appeal.id} dismissed, counts again"
            + (f" ({appeal.decision_reason})" if appeal.decision_reason else ""),
            item.applied,
            moved,
            item.entry.event_id,
            item.entry.rule_id,
            item.entry.pack_version,
        )

    def course(
        self, at: datetime, event: Event, rest: RestorationSpec, version: PackVersion
    ) -> None:
        st = self.state
        assert rest.points is not None
        b = self.bounds(at)
        refusal = None
        if st.terminal:
            refusal = "not credited: no course counts after a terminal decision"
        elif (
            st.last_course is not None
            and rest.min_interval is not None
            and event.occurred_at < add_duration(st.last_course, rest.min_interval, self.tz)
        ):
            refusal = (
                f"not credited: less than {rest.min_interval.describe()} after the course of "
                f"{self.fmt(st.last_course)}"
            )
        elif b is not None and st.figure <= b[0]:
            refusal = "not credited: a course does not count at the floor"
        before = st.figure
        if refusal is None:
            applied = self.move(at, rest.points)
            st.last_course = event.occurred_at
            reason = f"{rest.title}: {_pts(rest.points)}"
            if applied < rest.points:
                reason += f" ({applied} counted: never above the ceiling)"
        else:
            applied = 0
            reason = f"{rest.title}: {refusal}"
        self.line(at, "course", reason, rest.points, applied, event.id, rest.id, version.version)
        self.check_thresholds(at, f"course {event.id}", before)

    def settle(self, item: _Item, at: datetime, by: str) -> None:
        item.settled_at = at
        item.settled_by = by
        item.settled_later = self.projecting

    # -- thresholds ----------------------------------------------------------------------
    def check_thresholds(self, at: datetime, trigger: str, before: int) -> None:
        st = self.state
        fig = st.figure
        facts = self.facts_at(at)
        version = facts.version
        full = version is not self.checked_version  # first check, or a new version in force
        if fig == before and not full:
            return  # nothing moved: no threshold can change state
        self.checked_version = version
        lo, hi = (before, fig) if before < fig else (fig, before)
        # A level changes state only when the move passes it (give or take the margin): only
        # the thresholds whose span the move meets are looked at, in pack order.
        checked = facts.thresholds if full else facts.met(lo, hi)
        for th, levels, _span_lo, _span_hi in checked:
            if th.mode == "crossing":
                reached = []
                for idx, lv in enumerate(levels):
                    key = (th.id, idx)
                    armed = st.armed.get(key, not _beyond(th.direction, before, lv.value))
                    if armed and _beyond(th.direction, fig, lv.value):
                        reached.append(idx)
                        st.armed[key] = False
                    elif not armed and _back(th.direction, fig, lv.value, th.margin):
                        st.armed[key] = True
                    else:
                        st.armed[key] = armed
                if reached:
                    sign = _furthest(th.direction)
                    best = max(reached, key=lambda j: sign * levels[j].value)
                    self.open_decision(th, best, at, trigger)
            else:
                w = st.whiles.get(th.id)
                if w is None:
                    w = st.whiles[th.id] = _While()
                value = levels[0].value
                if w.active is not None:
                    if _back(th.direction, fig, value, th.margin):
                        self.close_decision(w.active, at)
                        w.active = None
                elif _beyond(th.direction, fig, value):
                    if th.grace is None or th.grace.is_zero():
                        self.open_decision(th, 0, at, trigger)
                    elif w.pending_since is None:
                        w.pending_since = at
                        self.schedule(
                            add_duration(at, th.grace, self.tz),
                            RESTORE,
                            _RESTORE_ORDER["grace"],
                            th.id,
                            ("grace", th, at),
                        )
                else:
                    w.pending_since = None
        if self.pending_reset is not None:
            # Every threshold saw the step's figure; now the points used stop counting, and
            # the thresholds see the figure after the reset (re-arming, ending while-decisions).
            reset, self.pending_reset = self.pending_reset, None
            before_reset = st.figure
            for item in self.items:
                if item.in_window:
                    item.in_window = False
                    st.figure -= item.applied
                    self.settle(item, at, f"used for {reset.kind}")
            self.line(
                at,
                "reset",
                f"{reset.title}: the points counted for it stop counting",
                0,
                st.figure - before_reset,
            )
            self.check_thresholds(at, f"{reset.kind} reset", before_reset)

    def open_decision(self, th: ThresholdSpec, level_idx: int, at: datetime, trigger: str) -> None:
        st = self.state
        lv = self.levels(th)[0][level_idx]
        effective = at if th.notice is None else add_duration(at, th.notice, self.tz)
        ends = None if th.duration is None else add_duration(effective, th.duration, self.tz)
        ordinal = self.ordinals.get(at, 0)  # decisions made earlier at this instant
        self.ordinals[at] = ordinal + 1
        decision = _decision(
            id=_decision_id(self.domain, self.subject, th.id, lv.value, at, ordinal),
            ordinal=ordinal,
            domain=self.domain,
            subject=self.subject,
            threshold_id=th.id,
            kind=th.kind,
            title=th.title,
            level=lv.value,
            figure=st.figure,
            triggered_at=at,
            effective_at=effective,
            ends_at=ends,
            attributes=dict(lv.attributes),
            trigger=trigger,
            pack_version=self.facts_at(at).version.version,
            requires_review=th.review != "none",
        )
        self.decisions.append(decision)
        if th.mode == "while":
            st.whiles[th.id].active = len(self.decisions) - 1
        if th.terminal:
            st.terminal = True
        if th.resets and self.window:
            self.pending_reset = th

    def close_decision(self, index: int, at: datetime) -> None:
        d = self.decisions[index]
        if d.ends_at is None or at < d.ends_at:
            self.decisions[index] = _replace_end(d, at)

    # -- result --------------------------------------------------------------------------
    def result(self) -> SubjectState:
        if not self.projecting:
            self.suspended_at_as_of = {id(it) for it in self.items if it.suspended}
        statuses = []
        for it in self.items:
            if it.settled_by == "appeal upheld":
                state = "reversed"
            elif it.applied_at is None or it.applied_at > self.as_of:
                state = "pending"
            elif id(it) in self.suspended_at_as_of:
                state = "contested"
            elif it.settled_at is not None and not it.settled_later:
                state = "ended"
            else:
                state = "counts"
            statuses.append(
                _entry_status(
                    it.entry, it.applied, state == "counts", it.settled_at, it.settled_by, state
                )
            )
        figure = self.state.figure if self.figure_at_as_of is None else self.figure_at_as_of
        decisions = tuple(d for d in self.decisions if d.triggered_at <= self.as_of)
        current = version_at(self.versions, self.as_of)
        return SubjectState(
            domain=self.domain,
            subject=self.subject,
            as_of=self.as_of,
            scheme=self.first.scheme.kind,
            points=figure,
            lines=tuple(self.lines),
            upcoming=tuple(self.upcoming),
            entries=tuple(statuses),
            decisions=decisions,
            pack_version=current.version if current else None,
            next_threshold=self.next_threshold(current or self.first, figure),
        )

    def next_threshold(self, version: PackVersion, figure: int) -> tuple[str, int, int] | None:
        """The nearest level the figure is not beyond: how many points away it is (R17)."""
        best: tuple[str, int, int] | None = None
        for th, lv, sign, extra in _facts(version).nearest:
            away = sign * (lv.value - figure) + extra
            if away <= 0:
                continue  # the figure is beyond the level
            if best is None or away < best[2]:
                best = (th.kind, lv.value, away)
        return best


@lru_cache(maxsize=64)  # a population is folded as of one instant: one sum, not one a subject
def _projection_end(as_of: datetime, tz: ZoneInfo) -> datetime:
    return add_duration(as_of, PROJECTION_LIMIT, tz)


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))


def _replace_end(d: Decision, at: datetime) -> Decision:
    # dataclasses.replace(d, ends_at=at), through the fast maker.
    values = {name: getattr(d, name) for name in _DECISION_FIELDS}
    values["ends_at"] = at
    return _decision(**values)


@lru_cache(maxsize=1024)  # a handful of distinct deltas, formatted for nearly every line
def _pts(n: int) -> str:
    word = "point" if abs(n) == 1 else "points"
    return f"{n:+d} {word}"


def _describe(th: ThresholdSpec) -> str:
    return f"{th.title} ({th.direction.replace('_', ' ')} {th.level_list()[0].value})"


def evaluate_subject(
    versions: Sequence[PackVersion],
    events: Sequence[Event],
    as_of: datetime,
    subject: str | None = None,
    appeals: Sequence[Appeal] = (),
) -> SubjectState:
    """Fold one subject's events (one domain) under its pack versions, as of ``as_of``.

    ``versions`` must be the domain's versions sorted by effective_from; ``events`` all belong
    to one subject, in any order. Events after ``as_of`` are ignored; time-driven effects after
    it are reported as ``upcoming`` (assuming no further events).
    """
    if not versions:
        raise ValueError("evaluate_subject needs at least one pack version")
    fold = _Fold(versions, events, as_of, appeals)
    if subject is not None:
        fold.subject = subject
    fold.run()
    return fold.result()
