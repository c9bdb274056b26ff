"""The fold compiled: a balance scheme's figures and decisions for a whole population at once.

`fold.evaluate_subject` is the reference: it folds one subject's events into a `SubjectState`
with every line explained. Re-scoring a population (what-if, recompute) needs only the figures:
each subject's points as of an instant, what each entry applied, which entries still count,
and which decisions were triggered when. This module computes exactly those, over columns
(numpy arrays, one row per entry, subjects one after another), in a loop compiled by numba.

It covers the versions `unsupported` returns None for: a balance scheme (start, floor, ceiling,
step-wise clamping, daily cap), entries that end by their own terms (`counts_for`), and
crossing or `while` thresholds without grace; no restorations, contest window, notice or
incident cap. Subjects with appeals are left to the reference fold by the caller.
tests/test_kernel.py compares the two on random histories: same points, same applied points,
same decisions at the same instants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numba
import numpy as np
import numpy.typing as npt

from pointbook.dates import local_date, to_micros
from pointbook.engine.judge import judge
from pointbook.engine.model import Event
from pointbook.rules.pack import PackVersion
from pointbook.rules.spec import BalanceSchemeSpec

__all__ = [
    "NEVER",
    "Columns",
    "KernelPack",
    "KernelResult",
    "columns_of",
    "fold_population",
    "unsupported",
]

Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]

NEVER = np.iinfo(np.int64).max  # counts_until of an entry that does not end by its own terms
_DIRECTIONS = {"at_or_above": 0, "above": 1, "at_or_below": 2, "below": 3}


def unsupported(version: PackVersion) -> str | None:
    """Why the kernel cannot fold under ``version`` (None: it can)."""
    spec = version.spec
    if not isinstance(spec.scheme, BalanceSchemeSpec):
        return "a window scheme"
    if spec.restorations:
        return "restorations"
    if spec.contest_window is not None:
        return "a contest window"
    if spec.notice_within is not None:
        return "a notice period"
    if spec.incident_cap is not None:
        return "an incident cap"
    for th in spec.thresholds:
        if th.mode == "while" and th.grace is not None and not th.grace.is_zero():
            return f"threshold {th.id}: a grace period"
        if th.mode not in ("while", "crossing"):
            return f"threshold {th.id}: mode {th.mode}"
    return None


@dataclass(frozen=True)
class KernelPack:
    """What the kernel reads of one pack version, as arrays."""

    start: int
    floor: int
    ceiling: int
    daily_cap: int  # -1: none
    mode: Ints  # per threshold: 0 crossing, 1 while
    direction: Ints  # per threshold: _DIRECTIONS
    margin: Ints  # per threshold
    first_level: Ints  # per threshold + 1: where its levels start in `level`
    level: Ints  # level values, threshold after threshold
    threshold_ids: tuple[str, ...]
    threshold_kinds: tuple[str, ...]

    @classmethod
    def of(cls, version: PackVersion) -> KernelPack:
        why = unsupported(version)
        if why is not None:
            raise ValueError(f"the fold kernel cannot fold under {version.version}: {why}")
        scheme = version.spec.scheme
        assert isinstance(scheme, BalanceSchemeSpec)
        ths = version.spec.thresholds
        levels = [th.level_list() for th in ths]
        offsets = [0]
        for lv in levels:
            offsets.append(offsets[-1] + len(lv))
        cap = getattr(scheme, "daily_cap", None)
        return cls(
            start=scheme.start,
            floor=scheme.floor,
            ceiling=scheme.ceiling,
            daily_cap=-1 if cap is None else int(cap),
            mode=np.array([1 if th.mode == "while" else 0 for th in ths], dtype=np.int64),
            direction=np.array([_DIRECTIONS[th.direction] for th in ths], dtype=np.int64),
            margin=np.array([th.margin for th in ths], dtype=np.int64),
            first_level=np.array(offsets, dtype=np.int64),
            level=np.array([lv.value for ls in levels for lv in ls], dtype=np.int64),
            threshold_ids=tuple(th.id for th in ths),
            threshold_kinds=tuple(th.kind for th in ths),
        )


@dataclass(frozen=True)
class KernelResult:
    """Per subject its points; per entry what it applied and whether it counts at as_of; per
    decision (in the order made) its subject, threshold, level index, instant and figure."""

    points: Ints
    applied: Ints
    counts: Flags
    decision_subject: Ints
    decision_threshold: Ints
    decision_level: Ints
    decision_at: Ints
    decision_figure: Ints


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
def _less(heap: Ints, a: int, b: int) -> bool:
    """Row a of the heap sorts before row b: (instant, event id rank, order scheduled)."""
    if heap[a, 0] != heap[b, 0]:
        return bool(heap[a, 0] < heap[b, 0])
    if heap[a, 1] != heap[b, 1]:
        return bool(heap[a, 1] < heap[b, 1])
    return bool(heap[a, 2] < heap[b, 2])


@numba.njit(cache=True, inline="always")
def _swap(heap: Ints, a: int, b: int) -> None:
    for c in range(heap.shape[1]):
        tmp = heap[a, c]
        heap[a, c] = heap[b, c]
        heap[b, c] = tmp


@numba.njit(cache=True)
def _push(heap: Ints, size: int, at: int, key: int, seq: int, row: int) -> int:
    j = size
    heap[j, 0] = at
    heap[j, 1] = key
    heap[j, 2] = seq
    heap[j, 3] = row
    while j > 0:
        parent = (j - 1) // 2
        if not _less(heap, j, parent):
            break
        _swap(heap, j, parent)
        j = parent
    return size + 1


@numba.njit(cache=True)
def _pop(heap: Ints, size: int) -> int:
    """Remove the head (row 0); the new size."""
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
    return size


@numba.njit(cache=True, nogil=True)
def _kernel(
    subject_start: Ints,
    first_event: Ints,
    occurred: Ints,
    delta: Ints,
    until: Ints,
    capped: Flags,
    day: Ints,
    key: Ints,
    as_of: int,
    start: int,
    floor: int,
    ceiling: int,
    daily_cap: int,
    mode: Ints,
    direction: Ints,
    margin: Ints,
    first_level: Ints,
    level: Ints,
) -> tuple[Ints, Ints, Flags, Ints]:
    n_subjects = subject_start.shape[0] - 1
    n = occurred.shape[0]
    n_th = mode.shape[0]
    points = np.empty(n_subjects, dtype=np.int64)
    applied = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.bool_)
    cap_out = 16 + 4 * n_th + n // 4
    out = np.empty((cap_out, 5), dtype=np.int64)  # subject, threshold, level, at, figure
    made = 0
    armed = np.empty(level.shape[0], dtype=np.bool_)
    active = np.zeros(n_th, dtype=np.bool_)
    # The pending expiries of one subject: a binary heap ordered like the reference fold's
    # queue, (instant, event id rank, order scheduled); the payload is the entry's row.
    heap = np.empty((max(n, 1), 4), dtype=np.int64)
    for s in range(n_subjects):
        lo = subject_start[s]
        hi = subject_start[s + 1]
        figure = start
        for k in range(level.shape[0]):
            armed[k] = True
        for t in range(n_th):
            for k in range(first_level[t], first_level[t + 1]):
                armed[k] = not _beyond(direction[t], start, level[k])
            active[t] = False
        size = 0
        seq = 0
        cap_day = np.int64(-(2**62))
        cap_total = 0
        if made >= out.shape[0] - n_th - 1:
            out = _grow(out)
        if first_event[s] <= as_of:
            # The record starts at the subject's first event (fold.start): every threshold
            # sees the starting figure once, before the event's own entries.
            made = _check(
                s,
                first_event[s],
                start,
                mode,
                direction,
                margin,
                first_level,
                level,
                armed,
                active,
                out,
                made,
            )
        i = lo
        while True:
            if made >= out.shape[0] - n_th - 1:
                out = _grow(out)
            # The next step: the earliest expiry due by the next entry's instant (an expiry
            # runs before an event of the same instant), else the entry; nothing after as_of.
            take_heap = False
            if size > 0:
                take_heap = heap[0, 0] <= (occurred[i] if i < hi else as_of)
            if not take_heap and i >= hi:
                break
            before = figure
            if take_heap:
                at = heap[0, 0]
                row = heap[0, 3]
                size = _pop(heap, size)
                after = figure - applied[row]
                counts[row] = False
            else:
                at = occurred[i]
                row = i
                i += 1
                allowed = delta[row]
                if capped[row] and daily_cap >= 0:
                    if day[row] != cap_day:
                        cap_day = day[row]
                        cap_total = 0
                    if allowed > 0:
                        room = daily_cap - cap_total
                        if room < allowed:
                            allowed = room if room > 0 else 0
                    cap_total += allowed
                after = figure + allowed
                counts[row] = True
                if until[row] != NEVER:
                    due = until[row] if until[row] > at else at
                    size = _push(heap, size, due, key[row], seq, row)
                    seq += 1
            if after > ceiling:  # step-wise clamping, as fold.move
                after = ceiling
            if after < floor:
                after = floor
            if not take_heap:
                applied[row] = after - figure
            figure = after
            if figure != before:
                made = _check(
                    s,
                    at,
                    figure,
                    mode,
                    direction,
                    margin,
                    first_level,
                    level,
                    armed,
                    active,
                    out,
                    made,
                )
        points[s] = figure
    return points, applied, counts, out[:made]


@numba.njit(cache=True)
def _grow(out: Ints) -> Ints:
    bigger = np.empty((out.shape[0] * 2, out.shape[1]), dtype=np.int64)
    bigger[: out.shape[0]] = out
    return bigger


@numba.njit(cache=True)
def _check(
    s: int,
    at: int,
    figure: int,
    mode: Ints,
    direction: Ints,
    margin: Ints,
    first_level: Ints,
    level: Ints,
    armed: Flags,
    active: Flags,
    out: Ints,
    made: int,
) -> int:
    """Every threshold sees the step's figure, in pack order (fold.check_thresholds; a
    threshold whose levels the step did not pass keeps its state, so looking at all of them
    gives what looking at those the step met gives)."""
    for t in range(mode.shape[0]):
        d = direction[t]
        if mode[t] == 0:
            best = -1
            for k in range(first_level[t], first_level[t + 1]):
                if armed[k] and _beyond(d, figure, level[k]):
                    armed[k] = False
                    # The furthest level reached; the first of equal ones.
                    if best < 0 or (level[k] > level[best] if d < 2 else level[k] < level[best]):
                        best = k
                elif not armed[k] and _back(d, figure, level[k], margin[t]):
                    armed[k] = True
            if best >= 0:
                out[made, 0] = s
                out[made, 1] = t
                out[made, 2] = best - first_level[t]
                out[made, 3] = at
                out[made, 4] = figure
                made += 1
        else:
            value = level[first_level[t]]
            if active[t]:
                if _back(d, figure, value, margin[t]):
                    active[t] = False
            elif _beyond(d, figure, value):
                active[t] = True
                out[made, 0] = s
                out[made, 1] = t
                out[made, 2] = 0
                out[made, 3] = at
                out[made, 4] = figure
                made += 1
    return made


def fold_population(
    pack: KernelPack,
    subject_start: Ints,
    first_event: Ints,
    occurred: Ints,
    delta: Ints,
    until: Ints,
    capped: Flags,
    day: Ints,
    key: Ints,
    as_of: int,
) -> KernelResult:
    """Fold every subject's entries under ``pack`` as of ``as_of`` (microseconds, UTC).

    Rows are entries, subject after subject (``subject_start``: where each subject's rows
    begin, plus the end), each subject's in the reference fold's order: by instant, event id,
    then the rule's place in the pack; only entries that occurred by ``as_of``. ``first_event``
    is each subject's first event by ``as_of`` (an event with no entry starts the record too).
    ``until`` is an entry's counts_until (``NEVER`` if none), ``day`` its local day number in
    the pack's time zone, ``key`` the rank of its event id (orders expiries of one instant).
    """
    points, applied, counts, made = _kernel(
        subject_start,
        first_event,
        occurred,
        delta,
        until,
        capped,
        day,
        key,
        as_of,
        pack.start,
        pack.floor,
        pack.ceiling,
        pack.daily_cap,
        pack.mode,
        pack.direction,
        pack.margin,
        pack.first_level,
        pack.level,
    )
    return KernelResult(
        points,
        applied,
        counts,
        made[:, 0].copy(),
        made[:, 1].copy(),
        made[:, 2].copy(),
        made[:, 3].copy(),
        made[:, 4].copy(),
    )


@dataclass(frozen=True)
class Columns:
    """A population's entries as the kernel reads them (see `fold_population`), with each
    row's rule id."""

    subject_start: Ints
    first_event: Ints
    occurred: Ints
    delta: Ints
    until: Ints
    capped: Flags
    day: Ints
    key: Ints
    rule_ids: list[str]

    def fold(self, pack: KernelPack, as_of: datetime) -> KernelResult:
        return fold_population(
            pack,
            self.subject_start,
            self.first_event,
            self.occurred,
            self.delta,
            self.until,
            self.capped,
            self.day,
            self.key,
            to_micros(as_of),
        )


def columns_of(
    version: PackVersion, histories: Sequence[Sequence[Event]], as_of: datetime
) -> Columns:
    """The kernel's columns for each subject's events (one sequence per subject), judged
    under ``version`` one event at a time (an erased event keeps the entries it was given).
    The column builder for small populations and tests; bulk callers build the same columns
    from stored rows."""
    starts = [0]
    first: list[int] = []
    rows: list[tuple[int, int, int, int, bool, int, str]] = []
    for events in histories:
        ordered = sorted((e for e in events if e.occurred_at <= as_of), key=Event.sort_key)
        first.append(to_micros(ordered[0].occurred_at) if ordered else NEVER)
        ranks = {eid: k for k, eid in enumerate(sorted(e.id for e in ordered))}
        for e in ordered:
            entries = list(e.judged) if e.judged is not None else judge(e, version)
            for n in entries:
                rows.append(
                    (
                        to_micros(n.occurred_at),
                        n.delta,
                        NEVER if n.counts_until is None else to_micros(n.counts_until),
                        ranks[e.id],
                        n.daily_cap,
                        local_date(n.occurred_at, version.tz).toordinal(),
                        n.rule_id,
                    )
                )
        starts.append(len(rows))

    def col(k: int) -> Ints:
        return np.array([r[k] for r in rows], dtype=np.int64)

    return Columns(
        subject_start=np.array(starts, dtype=np.int64),
        first_event=np.array(first, dtype=np.int64),
        occurred=col(0),
        delta=col(1),
        until=col(2),
        key=col(3),
        capped=np.array([r[4] for r in rows], dtype=np.bool_),
        day=col(5),
        rule_ids=[r[6] for r in rows],
    )
