"""The fold compiled: a balance scheme's figures and decisions for a whole population at once.

`fold.evaluate_subject` is the reference: it folds one subject's events into a `SubjectState`
with every line explained. Re-scoring a population (what-if, recompute) needs only the figures:
each subject's points as of an instant, what each entry applied, which entries still count,
and which decisions were triggered when. This module computes exactly those over columns
(numpy arrays: one row per entry or course event, subjects one after another), in a loop
compiled by numba that takes the fold's steps in the fold's order.

It covers the version lists `unsupported` returns None for: balance schemes (start, floor,
ceiling, step-wise clamping, daily cap), one or several versions in force by date, entries
that end by their own terms (`counts_for`), the four restorations (clean period with its
longer delay, small loss, entry return, course credits with their interval), crossing and
`while` thresholds without grace, terminal decisions; no window scheme, contest window,
notice period or incident cap. Subjects with appeals are left to the reference fold by the
caller. tests/test_kernel.py compares the two on random histories under random packs and the
reference packs: same points, same applied points, same entries counting, same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from pointbook.dates import Duration, to_micros
from pointbook.engine.fold import _facts
from pointbook.engine.judge import judge
from pointbook.engine.localtime import local_days, shifted
from pointbook.engine.model import Event
from pointbook.rules.pack import PackVersion
from pointbook.rules.spec import BalanceSchemeSpec, RestorationSpec

__all__ = [
    "NEVER",
    "Codes",
    "Columns",
    "KernelPack",
    "KernelResult",
    "Row",
    "codes",
    "columns_of",
    "make_columns",
    "unsupported",
]

Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]
# Strings as codes: one code per row, and the names the codes stand for.
Codes = tuple[Ints, Sequence[str]]

NEVER = int(np.iinfo(np.int64).max)  # an end that never comes
_DAWN = int(np.iinfo(np.int64).min)
_DIRECTIONS = {"at_or_above": 0, "above": 1, "at_or_below": 2, "below": 3}
_RESTORATIONS = {"clean-period": 0, "small-loss": 1, "entry-return": 2}

# Queue kinds, phases and same-instant order (fold.py: EXPIRE 0, RESTORE 1 with the
# restorations' sub-order clean 0, small 1, return 2, course 3).
_EXPIRE, _CLEAN, _SMALL, _RETURN, _COURSE = 0, 1, 2, 3, 4


def unsupported(versions: PackVersion | Sequence[PackVersion]) -> str | None:
    """Why the kernel cannot fold under these versions (None: it can)."""
    listed = [versions] if isinstance(versions, PackVersion) else list(versions)
    if not listed:
        return "no version"
    if any(a.effective_from > b.effective_from for a, b in pairwise(listed)):
        return "versions out of date order"
    intervals: dict[str, Duration | None] = {}
    for version in listed:
        spec = version.spec
        if not isinstance(spec.scheme, BalanceSchemeSpec):
            return "a window scheme"
        if spec.contest_window is not None:
            return "a contest window"
        if spec.notice_within is not None:
            return "a notice period"
        if spec.incident_cap is not None:
            return "an incident cap"
        for th in spec.thresholds:
            if th.mode == "while" and th.grace is not None and not th.grace.is_zero():
                return f"threshold {th.id}: a grace period"
        for r in spec.restorations:
            # A course is refused within the interval of the last one credited: the kernel
            # carries the end of that interval, so every version must agree on it.
            if (
                r.kind == "course"
                and r.event is not None
                and intervals.setdefault(r.event, r.min_interval) != r.min_interval
            ):
                return f"restoration {r.id}: another course interval in another version"
    return None


@dataclass(frozen=True)
class KernelPack:
    """What the kernel reads of a domain's versions (sorted by effective_from), as arrays.
    Thresholds are rows over all versions (`th_first[v]` to `th_first[v + 1]` are version v's,
    in pack order); a level's state lives in a slot shared by every version's threshold of the
    same id and level position, as in the fold."""

    versions: tuple[PackVersion, ...]
    effective: Ints
    start: int
    floor: Ints
    ceiling: Ints
    daily_cap: Ints  # -1: none
    th_first: Ints
    th_gid: Ints
    th_mode: Ints  # 0 crossing, 1 while
    th_direction: Ints
    th_margin: Ints
    th_terminal: Flags
    lv_first: Ints
    lv_value: Ints
    lv_slot: Ints
    n_slots: int
    n_gids: int
    r_first: Ints  # restorations of version v (clean, small, return): r_first[v]..r_first[v+1]
    r_kind: Ints
    r_longer: Flags  # a clean period with a longer delay
    r_max_loss: Ints
    threshold_rows: tuple[tuple[str, str, tuple[int, ...]], ...]  # (id, kind, level values)

    @classmethod
    def of(cls, versions: PackVersion | Sequence[PackVersion]) -> KernelPack:
        listed = tuple([versions] if isinstance(versions, PackVersion) else versions)
        why = unsupported(listed)
        if why is not None:
            names = ", ".join(v.version for v in listed)
            raise ValueError(f"the fold kernel cannot fold under {names}: {why}")
        schemes = [v.spec.scheme for v in listed]
        assert all(isinstance(s, BalanceSchemeSpec) for s in schemes)
        gids: dict[str, int] = {}
        slots: dict[tuple[str, int], int] = {}
        th_first, rows, levels = [0], [], []
        lv_first = [0]
        r_first, rests = [0], []
        for version in listed:
            for th in version.spec.thresholds:
                gid = gids.setdefault(th.id, len(gids))
                values = [lv.value for lv in th.level_list()]
                rows.append((th, gid))
                for k, value in enumerate(values):
                    levels.append((value, slots.setdefault((th.id, k), len(slots))))
                lv_first.append(len(levels))
            th_first.append(len(rows))
            for r in version.spec.restorations:
                if r.kind in _RESTORATIONS:
                    rests.append(r)
            r_first.append(len(rests))
        first = schemes[0]
        assert isinstance(first, BalanceSchemeSpec)

        def ints(values: Sequence[int]) -> Ints:
            return np.array(values, dtype=np.int64)

        return cls(
            versions=listed,
            effective=ints([to_micros(v.effective_from) for v in listed]),
            start=first.start,
            floor=ints([s.floor for s in schemes]),  # type: ignore[union-attr]
            ceiling=ints([s.ceiling for s in schemes]),  # type: ignore[union-attr]
            daily_cap=ints([getattr(s, "daily_cap", None) or -1 for s in schemes]),
            th_first=ints(th_first),
            th_gid=ints([gid for _, gid in rows]),
            th_mode=ints([1 if th.mode == "while" else 0 for th, _ in rows]),
            th_direction=ints([_DIRECTIONS[th.direction] for th, _ in rows]),
            th_margin=ints([th.margin for th, _ in rows]),
            th_terminal=np.array([th.terminal for th, _ in rows], dtype=np.bool_),
            lv_first=ints(lv_first),
            lv_value=ints([v for v, _ in levels]),
            lv_slot=ints([s for _, s in levels]),
            n_slots=len(slots),
            n_gids=len(gids),
            r_first=ints(r_first),
            r_kind=ints([_RESTORATIONS[r.kind] for r in rests]),
            r_longer=np.array([r.longer_after is not None for r in rests], dtype=np.bool_),
            r_max_loss=ints([r.max_loss or 0 for r in rests]),
            threshold_rows=tuple(
                (th.id, th.kind, tuple(lv.value for lv in th.level_list())) for th, _ in rows
            ),
        )

    def version_index(self, at_us: Ints) -> Ints:
        """The index of the version in force at each instant (the first before any)."""
        return np.maximum(np.searchsorted(self.effective, at_us, side="right") - 1, 0)


@dataclass(frozen=True)
class KernelResult:
    """Per subject its points; per row what it applied and whether it counts at as_of (course
    rows: 0 and False); per decision (in the order made) its subject, threshold row (of
    `KernelPack.threshold_rows`), level index and instant."""

    points: Ints
    applied: Ints
    counts: Flags
    decision_subject: Ints
    decision_threshold: Ints
    decision_level: Ints
    decision_at: Ints


# -- the compiled loop ----------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _beyond(direction: int, figure: int, value: int) -> bool:
    if direction == 0:
        return figure >= value
    if direction == 1:
        return figure > value
    if direction == 2:
        return figure <= value
    return figure < value


@numba.njit(cache=True, inline="always")
def _back(direction: int, figure: int, value: int, margin: int) -> bool:
    if direction == 0:
        return figure < value - margin
    if direction == 1:
        return figure <= value - margin
    if direction == 2:
        return figure > value + margin
    return figure >= value + margin


@numba.njit(cache=True, inline="always")
def _clamp(figure: int, floor: int, ceiling: int) -> int:
    """fold.move's step-wise clamping: max(floor, min(ceiling, figure))."""
    if figure > ceiling:
        figure = ceiling
    if figure < floor:
        figure = floor
    return figure


_W = 8  # queue columns: at, phase, sub, key, seq, kind, a, b


@numba.njit(cache=True, inline="always")
def _less(heap: Ints, a: int, b: int) -> bool:
    """Row a of the queue sorts before row b: (instant, phase, sub-order, event id, seq)."""
    for c in range(5):
        if heap[a, c] != heap[b, c]:
            return bool(heap[a, c] < heap[b, c])
    return False


@numba.njit(cache=True, inline="always")
def _swap(heap: Ints, a: int, b: int) -> None:
    for c in range(_W):
        tmp = heap[a, c]
        heap[a, c] = heap[b, c]
        heap[b, c] = tmp


@numba.njit(cache=True)
def _push(
    heap: Ints,
    size: int,
    at: int,
    phase: int,
    sub: int,
    key: int,
    seq: int,
    what: int,
    a: int,
    b: int,
) -> Ints:
    """Queue one effect (the heap grows when full); the heap, maybe a new one."""
    if size >= heap.shape[0]:
        bigger = np.empty((heap.shape[0] * 2, _W), dtype=np.int64)
        bigger[:size] = heap[:size]
        heap = bigger
    heap[size, 0] = at
    heap[size, 1] = phase
    heap[size, 2] = sub
    heap[size, 3] = key
    heap[size, 4] = seq
    heap[size, 5] = what
    heap[size, 6] = a
    heap[size, 7] = b
    j = size
    while j > 0:
        parent = (j - 1) // 2
        if not _less(heap, j, parent):
            break
        _swap(heap, j, parent)
        j = parent
    return heap


@numba.njit(cache=True)
def _pop(heap: Ints, size: int) -> None:
    """Remove the head (row 0) of a queue of ``size`` rows."""
    size -= 1
    if size > 0:
        heap[0, :] = heap[size, :]
        j = 0
        while True:
            small = 2 * j + 1
            if small >= size:
                break
            if small + 1 < size and _less(heap, small + 1, small):
                small += 1
            if not _less(heap, small, j):
                break
            _swap(heap, j, small)
            j = small


@numba.njit(cache=True, inline="always")
def _version_at(effective: Ints, at: int) -> int:
    lo, hi = 0, effective.shape[0]
    while lo < hi:  # bisect_right
        mid = (lo + hi) // 2
        if at < effective[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo - 1 if lo > 0 else 0


@numba.njit(cache=True, nogil=True)
def _kernel(
    subject_start: Ints,
    first_event: Ints,
    kind: Ints,
    occurred: Ints,
    key: Ints,
    vrow: Ints,
    delta: Ints,
    until: Ints,
    capped: Flags,
    day: Ints,
    longer: Flags,
    due: Ints,
    due_longer: Ints,
    match: Flags,
    interval_end: Ints,
    course_points: Ints,
    as_of: int,
    effective: Ints,
    start: int,
    floor: Ints,
    ceiling: Ints,
    daily_cap: Ints,
    th_first: Ints,
    th_gid: Ints,
    th_mode: Ints,
    th_direction: Ints,
    th_margin: Ints,
    th_terminal: Flags,
    lv_first: Ints,
    lv_value: Ints,
    lv_slot: Ints,
    n_slots: int,
    n_gids: int,
    r_first: Ints,
    r_kind: Ints,
    r_longer: Flags,
) -> tuple[Ints, Ints, Flags, Ints]:
    n_subjects = subject_start.shape[0] - 1
    n = occurred.shape[0]
    points = np.empty(n_subjects, dtype=np.int64)
    applied = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.bool_)
    settled = np.zeros(n, dtype=np.bool_)
    n_th = th_mode.shape[0]
    out = np.empty((16 + 4 * n_th + n // 4, 4), dtype=np.int64)  # subject, row, level, at
    made = 0
    armed = np.empty(max(n_slots, 1), dtype=np.int8)  # -1: not seen yet
    active = np.zeros(max(n_gids, 1), dtype=np.bool_)
    heap = np.empty((64, _W), dtype=np.int64)
    ths = (
        th_first,
        th_gid,
        th_mode,
        th_direction,
        th_margin,
        th_terminal,
        lv_first,
        lv_value,
        lv_slot,
    )
    for s in range(n_subjects):
        lo = subject_start[s]
        hi = subject_start[s + 1]
        figure = start
        armed[:] = -1
        for t in range(th_first[0], th_first[1]):  # the first version's levels (fold.start)
            for k in range(lv_first[t], lv_first[t + 1]):
                armed[lv_slot[k]] = 0 if _beyond(th_direction[t], start, lv_value[k]) else 1
        active[:] = False
        size = 0
        seq = 0
        loss_seq = 0
        settle_gen = 0
        is_longer = False
        terminal = False
        checked = -1  # the version the thresholds were last checked under
        cap_day = np.int64(-(2**62))
        cap_total = 0
        last_course_end = np.int64(_DAWN)
        if first_event[s] <= as_of:
            # The record starts at the first event: every threshold sees the start figure.
            out, made, checked, terminal = _check(
                s,
                first_event[s],
                start,
                start,
                checked,
                terminal,
                effective,
                ths,
                armed,
                active,
                out,
                made,
            )
        i = lo
        while True:
            # The next step: the queue's head when due by the next row's instant (every
            # queued phase runs before an event of the same instant), else the row.
            take = False
            if size > 0:
                take = heap[0, 0] <= (occurred[i] if i < hi else as_of)
            if not take and i >= hi:
                break
            if take:
                at = heap[0, 0]
                what = heap[0, 5]
                a = heap[0, 6]
                b = heap[0, 7]
                _pop(heap, size)
                size -= 1
                v = _version_at(effective, at)
                before = figure
                moves = True
                if what == _EXPIRE:
                    if settled[a]:
                        continue
                    target = figure - applied[a]
                    settled[a] = True
                    counts[a] = False
                elif what == _CLEAN:
                    if a != loss_seq or terminal:
                        continue
                    target = ceiling[v]
                    settle_gen += 1
                    for j in range(lo, i):
                        if kind[j] == 0 and delta[j] < 0 and not settled[j]:
                            settled[j] = True
                            counts[j] = False
                elif what in (_SMALL, _RETURN):
                    clock = loss_seq if what == _SMALL else settle_gen
                    if a != clock or terminal or settled[b]:
                        continue
                    target = figure - applied[b]
                    settled[b] = True
                    counts[b] = False
                else:  # _COURSE: row a, credited unless refused (fold.course)
                    moves = not terminal and occurred[a] >= last_course_end and figure > floor[v]
                    target = figure + course_points[a]
                    if moves:
                        last_course_end = interval_end[a]
                # fold.move: step-wise clamping; at the ceiling the longer delay is spent. (A
                # refused course does not move: a figure above a new ceiling stays there.)
                if moves:
                    target = _clamp(target, floor[v], ceiling[v])
                    if target == ceiling[v]:
                        is_longer = False
                    figure = target
            else:
                row = i
                i += 1
                at = occurred[row]
                v = vrow[row]
                if kind[row] == 1:
                    # A course event: its credit is queued (restoration phase, sub-order 3).
                    credit = due[row, 0]  # the credit's instant (make_columns)
                    heap = _push(heap, size, credit, 1, 3, key[row], seq, _COURSE, row, 0)
                    seq += 1
                    size += 1
                    continue
                before = figure
                allowed = delta[row]
                if capped[row] and daily_cap[v] >= 0:
                    if day[row] != cap_day:
                        cap_day = day[row]
                        cap_total = 0
                    if allowed > 0:
                        room = daily_cap[v] - cap_total
                        if room < allowed:
                            allowed = room if room > 0 else 0
                    cap_total += allowed
                target = _clamp(figure + allowed, floor[v], ceiling[v])
                if target == ceiling[v]:
                    is_longer = False
                applied[row] = target - figure
                figure = target
                counts[row] = True
                if until[row] != NEVER:
                    end = until[row] if until[row] > at else at
                    heap = _push(heap, size, end, 0, 0, key[row], seq, _EXPIRE, row, 0)
                    seq += 1
                    size += 1
                if delta[row] < 0:
                    # fold.on_loss: a new loss restarts the clocks of its version.
                    loss_seq += 1
                    if longer[row]:
                        is_longer = True
                    for r in range(r_first[v], r_first[v + 1]):
                        c = r - r_first[v]
                        rk = r_kind[r]
                        if rk == 0:
                            slow = is_longer and r_longer[r]
                            when = due_longer[row, c] if slow else due[row, c]
                            clock = loss_seq
                        elif applied[row] < 0 and match[row, c]:
                            when = due[row, c]
                            clock = loss_seq if rk == 1 else settle_gen
                        else:
                            continue
                        heap = _push(
                            heap, size, when, 1, rk, key[row], seq, _CLEAN + rk, clock, row
                        )
                        seq += 1
                        size += 1
            out, made, checked, terminal = _check(
                s, at, before, figure, checked, terminal, effective, ths, armed, active, out, made
            )
        points[s] = figure
    return points, applied, counts, out[:made]


@numba.njit(cache=True)
def _check(
    s: int,
    at: int,
    before: int,
    figure: int,
    checked: int,
    terminal: bool,
    effective: Ints,
    ths: tuple[Ints, Ints, Ints, Ints, Ints, Flags, Ints, Ints, Ints],
    armed: npt.NDArray[np.int8],
    active: Flags,
    out: Ints,
    made: int,
) -> tuple[Ints, int, int, bool]:
    """fold.check_thresholds: the thresholds of the version in force see the step's figure,
    in pack order; nothing moved and no new version in force: nothing to see. (A threshold
    the step did not pass keeps its state, so looking at all of the version's gives what
    looking at those the step met gives.)"""
    th_first, th_gid, th_mode, th_direction, th_margin, th_terminal, lv_first, lv_value, lv_slot = (
        ths
    )
    v = _version_at(effective, at)
    full = v != checked
    if figure == before and not full:
        return out, made, checked, terminal
    if made + (th_first[v + 1] - th_first[v]) >= out.shape[0]:
        bigger = np.empty((out.shape[0] * 2 + th_first[v + 1], 4), dtype=np.int64)
        bigger[:made] = out[:made]
        out = bigger
    for t in range(th_first[v], th_first[v + 1]):
        d = th_direction[t]
        if th_mode[t] == 0:
            best = -1
            for k in range(lv_first[t], lv_first[t + 1]):
                slot = lv_slot[k]
                state = armed[slot]
                is_armed = (not _beyond(d, before, lv_value[k])) if state < 0 else state == 1
                if is_armed and _beyond(d, figure, lv_value[k]):
                    armed[slot] = 0
                    # The furthest level reached (levels are distinct).
                    if best < 0 or (
                        lv_value[k] > lv_value[best] if d < 2 else lv_value[k] < lv_value[best]
                    ):
                        best = k
                elif not is_armed and _back(d, figure, lv_value[k], th_margin[t]):
                    armed[slot] = 1
                else:
                    armed[slot] = 1 if is_armed else 0
            if best >= 0:
                out[made, 0] = s
                out[made, 1] = t
                out[made, 2] = best - lv_first[t]
                out[made, 3] = at
                made += 1
                if th_terminal[t]:
                    terminal = True
        else:
            g = th_gid[t]
            value = lv_value[lv_first[t]]
            if active[g]:
                if _back(d, figure, value, th_margin[t]):
                    active[g] = False
            elif _beyond(d, figure, value):
                active[g] = True
                out[made, 0] = s
                out[made, 1] = t
                out[made, 2] = 0
                out[made, 3] = at
                made += 1
                if th_terminal[t]:
                    terminal = True
    return out, made, v, terminal


# -- columns ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One step of a subject's fold as the column builders give it: an entry (``rule_id``
    set) or a course event (``rule_id`` None)."""

    subject: int
    occurred_us: int
    key: int  # the rank of its event id among the subject's (any consistent rank will do)
    event_type: str
    rule_id: str | None
    delta: int
    until_us: int | None
    capped: bool


@dataclass(frozen=True)
class Columns:
    """A population's steps as the kernel reads them, in the fold's order."""

    subject_start: Ints
    first_event: Ints
    kind: Ints
    occurred: Ints
    key: Ints
    vrow: Ints
    delta: Ints
    until: Ints
    capped: Flags
    day: Ints
    longer: Flags
    due: Ints
    due_longer: Ints
    match: Flags
    interval_end: Ints
    course_points: Ints

    def fold(self, pack: KernelPack, as_of: datetime | int) -> KernelResult:
        """Fold every subject as of ``as_of`` (an instant, or microseconds since the epoch)."""
        when = as_of if isinstance(as_of, int) else to_micros(as_of)
        points, applied, counts, made = _kernel(
            self.subject_start,
            self.first_event,
            self.kind,
            self.occurred,
            self.key,
            self.vrow,
            self.delta,
            self.until,
            self.capped,
            self.day,
            self.longer,
            self.due,
            self.due_longer,
            self.match,
            self.interval_end,
            self.course_points,
            when,
            pack.effective,
            pack.start,
            pack.floor,
            pack.ceiling,
            pack.daily_cap,
            pack.th_first,
            pack.th_gid,
            pack.th_mode,
            pack.th_direction,
            pack.th_margin,
            pack.th_terminal,
            pack.lv_first,
            pack.lv_value,
            pack.lv_slot,
            pack.n_slots,
            pack.n_gids,
            pack.r_first,
            pack.r_kind,
            pack.r_longer,
        )
        return KernelResult(
            points,
            applied,
            counts,
            made[:, 0].copy(),
            made[:, 1].copy(),
            made[:, 2].copy(),
            made[:, 3].copy(),
        )


def make_columns(
    pack: KernelPack,
    n_subjects: int,
    first_event: Sequence[int],
    subject: Ints,
    kind: Ints,
    occurred: Ints,
    key: Ints,
    event_types: Codes,
    rule_ids: Codes,
    delta: Ints,
    until: Ints,
    capped: Flags,
) -> Columns:
    """The kernel's columns from steps already in the fold's order (subject, instant, event id,
    then the event's entries in pack order, then its course credit if any): ``kind`` 0 for an
    entry, 1 for a course event; ``until`` NEVER where an entry has no end of its own; each
    step's event type and rule id as codes into their names (rule code -1 for a course
    event), so that a population's millions of steps carry no Python string each. Works out
    what depends on the versions: the version in force, the local day of the daily cap, when
    each restoration a loss starts falls due, whether it applies, and course credits."""
    type_code, type_names = event_types
    rule_code, rule_names = rule_ids
    n = len(occurred)
    versions = pack.versions
    tz = versions[0].tz
    vrow = pack.version_index(occurred) if n else np.zeros(0, dtype=np.int64)
    day = local_days(occurred, tz)
    width = max(1, int(np.max(np.diff(pack.r_first))) if len(pack.r_first) > 1 else 1)
    due = np.full((n, width), NEVER, dtype=np.int64)
    due_longer = np.full((n, width), NEVER, dtype=np.int64)
    match = np.zeros((n, width), dtype=np.bool_)
    longer = np.zeros(n, dtype=np.bool_)
    interval_end = np.full(n, _DAWN, dtype=np.int64)
    course_points = np.zeros(n, dtype=np.int64)
    tags_of = [
        {r.id: r.tags for rules in v.rules_by_event.values() for r in rules} for v in versions
    ]
    longer_tags = [_facts(v).longer_tags for v in versions]
    courses = course_types(versions)
    rests = [[r for r in v.restorations if r.kind in _RESTORATIONS] for v in versions]
    losses = np.flatnonzero((kind == 0) & (delta < 0))
    for v in range(len(versions)):
        # Vectorised per version: what a loss starts depends on its rule (tags), its points
        # and its instant, each worked out once per distinct value.
        rows = losses[vrow[losses] == v]
        if not len(rows):
            continue
        codes, which = np.unique(rule_code[rows], return_inverse=True)
        tags = [tags_of[v].get(rule_names[c], frozenset()) for c in codes.tolist()]
        longer[rows] = np.array([not longer_tags[v].isdisjoint(t) for t in tags])[which]
        instants, when = np.unique(occurred[rows], return_inverse=True)
        for c, r in enumerate(rests[v]):
            assert r.after is not None
            due[rows, c] = shifted(instants, r.after, tz)[when]
            if r.kind == "clean-period":
                if r.longer_after is not None:
                    due_longer[rows, c] = shifted(instants, r.longer_after, tz)[when]
            elif r.kind == "small-loss":
                match[rows, c] = -delta[rows] <= (r.max_loss or 0)
            else:
                match[rows, c] = np.array([not t.isdisjoint(r.tags) for t in tags])[which]
    credits = np.flatnonzero(kind == 1)
    placed = 0
    for v in range(len(versions)):
        # Vectorised per version and type: a course credit's instant, the end of its interval
        # and its points come from the course restoration its event type names.
        here = credits[vrow[credits] == v]
        for code, event_type in enumerate(type_names):
            course = courses[v].get(event_type)
            rows = here[type_code[here] == code]
            if course is None or not len(rows):
                continue
            at = occurred[rows]
            due[rows, 0] = at if course.delay is None else shifted(at, course.delay, tz)
            if course.min_interval is not None:
                interval_end[rows] = shifted(at, course.min_interval, tz)
            assert course.points is not None  # a course restoration needs points (the spec)
            course_points[rows] = course.points
            placed += len(rows)
    # Every course step is an event of a type its version's course restoration names.
    assert placed == len(credits), "a course step whose type no course restoration names"
    starts = np.searchsorted(subject, np.arange(n_subjects + 1)).astype(np.int64)
    return Columns(
        subject_start=starts,
        first_event=np.asarray(first_event, dtype=np.int64),
        kind=kind.astype(np.int64),
        occurred=occurred.astype(np.int64),
        key=key.astype(np.int64),
        vrow=vrow.astype(np.int64),
        delta=delta.astype(np.int64),
        until=until.astype(np.int64),
        capped=capped.astype(np.bool_),
        day=day.astype(np.int64),
        longer=longer,
        due=due,
        due_longer=due_longer,
        match=match,
        interval_end=interval_end,
        course_points=course_points,
    )


def course_types(versions: Sequence[PackVersion]) -> list[Mapping[str, RestorationSpec]]:
    """Per version, the event types that credit a course and the course restoration for each
    (the fold's own reading: the first course restoration naming the type)."""
    return [_facts(v).courses for v in versions]


def columns_of(pack: KernelPack, histories: Sequence[Sequence[Event]], as_of: datetime) -> Columns:
    """The kernel's columns for each subject's events (one sequence per subject), judged one
    event at a time under the version in force at its date (an erased event keeps the entries
    it was given). The builder for small populations and tests; bulk callers build the same
    columns from stored rows."""
    versions = pack.versions
    courses = course_types(versions)
    first: list[int] = []
    subject, kind, occurred, key, types, rules, delta, until, capped = ([] for _ in range(9))
    for s, events in enumerate(histories):
        ordered = sorted((e for e in events if e.occurred_at <= as_of), key=Event.sort_key)
        first.append(to_micros(ordered[0].occurred_at) if ordered else NEVER)
        ranks = {eid: k for k, eid in enumerate(sorted(e.id for e in ordered))}
        for e in ordered:
            at = to_micros(e.occurred_at)
            v = int(pack.version_index(np.array([at], dtype=np.int64))[0])
            version = versions[v]
            entries = list(e.judged) if e.judged is not None else judge(e, version)
            steps: list[tuple[int, str | None, int, datetime | None, bool]] = [
                (0, n.rule_id, n.delta, n.counts_until, n.daily_cap) for n in entries
            ]
            if e.type in courses[v]:
                steps.append((1, None, 0, None, False))
            for k, rule, points, end, cap in steps:
                subject.append(s)
                kind.append(k)
                occurred.append(at)
                key.append(ranks[e.id])
                types.append(e.type)
                rules.append(rule)
                delta.append(points)
                until.append(NEVER if end is None else to_micros(end))
                capped.append(cap)

    def ints(values: list[Any]) -> Ints:
        return np.array(values, dtype=np.int64)

    return make_columns(
        pack,
        len(histories),
        first,
        ints(subject),
        ints(kind),
        ints(occurred),
        ints(key),
        codes(types),
        codes(rules),
        ints(delta),
        ints(until),
        np.array(capped, dtype=np.bool_),
    )


def codes(values: Sequence[str | None]) -> Codes:
    """``values`` as codes into their sorted distinct names (-1 for None)."""
    names = sorted({v for v in values if v is not None})
    index = {name: k for k, name in enumerate(names)}
    return np.array([-1 if v is None else index[v] for v in values], dtype=np.int64), names
