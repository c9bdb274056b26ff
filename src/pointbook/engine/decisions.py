"""Many subjects' decisions at once: what the decision refresh folds.

The refresh needs each subject's decisions exactly as the reference fold
(`fold.evaluate_subject`) makes them, and nothing else of its state. For subjects without
appeals, under versions the compiled fold models (`kernel.unsupported`), the kernel folds a
chunk of the work list at once and each decision is made here from its row: the threshold and level,
the instant, the figure, what triggered it, the threshold's notice and duration, and when a
`while` decision was closed. The others go through the reference fold.
tests/test_kernel.py and tests/test_parallel.py compare the two paths decision for decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pointbook.dates import add_duration, from_micros, to_micros
from pointbook.engine.fold import (
    HORIZON_CAP,
    TRIGGER_START,
    TRIGGER_TIME,
    _decision,
    _decision_id,
    _projection_end,
    evaluate_subject,
)
from pointbook.engine.model import Appeal, Decision, Event
from pointbook.rules.pack import PackVersion
from pointbook.rules.spec import LevelSpec, ThresholdSpec

if TYPE_CHECKING:
    from pointbook.engine.kernel import KernelPack

__all__ = ["population_decisions"]


def population_decisions(
    versions: Sequence[PackVersion],
    histories: Sequence[tuple[str, Sequence[Event], Sequence[Appeal]]],
    as_of: datetime,
    compiled: bool = True,
) -> list[tuple[Decision, ...]]:
    """Each history's decisions as of ``as_of`` (``versions``: the domain's, in date order;
    a history: subject, its events, its appeals), those `evaluate_subject` gives. Without
    ``compiled``, all by the reference fold (the compiled code takes about 0.4 s to load in a
    process: not worth it for a few thousand events)."""
    out: list[tuple[Decision, ...] | None] = [None] * len(histories)
    plain = [k for k, (_, _, appeals) in enumerate(histories) if not appeals]
    if compiled and plain:
        from pointbook.engine.kernel import KernelPack, unsupported  # numba, loaded on need

        if unsupported(versions) is None:
            made = _compiled(KernelPack.of(versions), [histories[k] for k in plain], as_of)
            for k, decisions in zip(plain, made, strict=True):
                out[k] = decisions
    return [
        evaluate_subject(versions, events, as_of, subject=subject, appeals=appeals).decisions
        if found is None
        else found
        for found, (subject, events, appeals) in zip(out, histories, strict=True)
    ]


def _compiled(
    pack: KernelPack,
    histories: Sequence[tuple[str, Sequence[Event], Sequence[Appeal]]],
    as_of: datetime,
) -> list[tuple[Decision, ...]]:
    """The decisions of subjects without appeals, from one run of the kernel."""
    from pointbook.engine.kernel import COURSE, EVENT, NEVER, START, TIME, columns_of

    versions = pack.versions
    tz = versions[0].tz
    columns = columns_of(pack, [events for _, events, _ in histories], as_of)
    # As the reference fold, time-driven effects run on past as_of (to the end of its
    # projection) where they may close a `while` decision; decisions made there are not kept.
    end = NEVER if as_of >= HORIZON_CAP else to_micros(_projection_end(as_of, tz))
    result = columns.fold(pack, end)
    cut = to_micros(as_of)
    rows: list[tuple[ThresholdSpec, str, list[LevelSpec]]] = [
        (th, version.version, th.level_list())
        for version in versions
        for th in version.spec.thresholds
    ]
    ids: dict[int, list[str]] = {}  # per subject, its event ids by the kernel's rank (key)
    ordinals: dict[tuple[int, int], int] = {}
    out: list[list[Decision]] = [[] for _ in histories]
    domain = versions[0].domain
    for s, t, k, at_us, figure, trigger, row, closed in zip(
        result.decision_subject.tolist(),
        result.decision_threshold.tolist(),
        result.decision_level.tolist(),
        result.decision_at.tolist(),
        result.decision_figure.tolist(),
        result.decision_trigger.tolist(),
        result.decision_trigger_row.tolist(),
        result.decision_closed.tolist(),
        strict=True,
    ):
        if at_us > cut:
            continue
        th, version, levels = rows[t]
        level = levels[k]
        at = from_micros(at_us)
        ordinal = ordinals.get((s, at_us), 0)  # decisions made earlier at this instant
        ordinals[(s, at_us)] = ordinal + 1
        if trigger == START:
            text = TRIGGER_START
        elif trigger == TIME:
            text = TRIGGER_TIME
        else:
            if s not in ids:
                ids[s] = sorted(e.id for e in histories[s][1] if e.occurred_at <= as_of)
            event_id = ids[s][int(columns.key[row])]
            text = f"event {event_id}" if trigger == EVENT else f"course {event_id}"
            assert trigger in (EVENT, COURSE)
        effective = at if th.notice is None else add_duration(at, th.notice, tz)
        ends = None if th.duration is None else add_duration(effective, th.duration, tz)
        if closed != NEVER:
            close = from_micros(closed)
            if ends is None or close < ends:  # fold.close_decision
                ends = close
        subject = histories[s][0]
        out[s].append(
            _decision(
                id=_decision_id(domain, subject, th.id, level.value, at, ordinal),
                ordinal=ordinal,
                domain=domain,
                subject=subject,
                threshold_id=th.id,
                kind=th.kind,
                title=th.title,
                level=level.value,
                figure=figure,
                triggered_at=at,
                effective_at=effective,
                ends_at=ends,
                attributes=dict(level.attributes),
                trigger=text,
                pack_version=version,
                requires_review=th.review != "none",
            )
        )
    return [tuple(decisions) for decisions in out]
