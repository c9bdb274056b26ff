"""What-if: replay a domain's stored events under a candidate pack, touching nothing.

The candidate's versions replace the domain's published versions for the replay. Its first
version is taken as in force from the domain's first published version (or from its own
``effective_from`` if that is earlier), so that every stored event is judged by it; later
versions in the candidate file keep their own dates. The baseline is the same replay under
the published versions, so both sides see exactly the same events (``--from``/``--to``
restrict which events are replayed, on both sides) and the same appeals.

Points are compared as of ``as_of`` (the end of ``--to``, else now); decisions are those
triggered by then, matched by their id (a function of subject, threshold, level and instant),
and decisions cancelled by an upheld appeal are left out on both sides, as the ledger does.

Events whose details were erased after retention keep the entries they produced when they were
judged (there are no attributes left to judge again): they count the same on both sides.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from operator import itemgetter
from typing import Any

import polars as pl

from pointbook.analytics.privacy import DEFAULT_K, Cell, Shown, protect, protect_one
from pointbook.analytics.whatif_kernel import (
    Slice,
    decision_id,
    kernel_eligible,
    kernel_sides,
    rule_texts,
    split_by_appeals,
)
from pointbook.engine import Appeal, Entry, Event, SubjectState, evaluate_subject
from pointbook.engine.batch import judge_batch
from pointbook.errors import PointbookError
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, version_at

__all__ = [
    "AnalyticsError",
    "WhatIf",
    "counting_by_rule",
    "prepare_candidate",
    "run_whatif",
    "whatif_view",
]


class AnalyticsError(PointbookError):
    """A what-if, report or oversight question that cannot be answered as asked."""


@dataclass
class WhatIf:
    """The raw outcome of a replay. Holds subject-level data: never shown as such; see
    :func:`whatif_view` for the protected aggregate."""

    domain: str
    as_of: datetime
    start: datetime | None
    end: datetime | None
    baseline_versions: list[str]
    candidate_versions: list[str]
    subjects: int = 0
    events: int = 0
    changes: dict[str, int] = field(default_factory=dict)  # subject -> after - before
    affected: set[str] = field(default_factory=set)  # any entry's applied points or decision
    appeared_kind: dict[str, str] = field(default_factory=dict)
    appeared_subject: dict[str, str] = field(default_factory=dict)
    disappeared_kind: dict[str, str] = field(default_factory=dict)
    disappeared_subject: dict[str, str] = field(default_factory=dict)
    rules_before: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    rules_after: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    rule_subjects_changed: dict[str, set[str]] = field(default_factory=dict)
    rule_changes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # Subjects whose candidate fold was the baseline's (rules-only change): on the kernel
    # path, those whose entries (rule, points, end, cap) are the same on both sides.
    reused: int = 0
    path: str = "fold"  # "kernel": subjects without appeals folded by engine/kernel.py

    def appeared_by_kind(self) -> dict[str, int]:
        return dict(Counter(self.appeared_kind.values()))

    def disappeared_by_kind(self) -> dict[str, int]:
        return dict(Counter(self.disappeared_kind.values()))


def prepare_candidate(
    published: Sequence[PackVersion], candidate: Sequence[PackVersion]
) -> list[PackVersion]:
    """The candidate's versions as the replay uses them (see the module docstring)."""
    if not candidate:
        raise AnalyticsError("the candidate file holds no pack version")
    first = published[0]
    for v in candidate:
        if v.domain != first.domain:
            raise AnalyticsError(
                f"the candidate is a pack for domain {v.domain!r}, not {first.domain!r}"
            )
        if v.scheme.kind != first.scheme.kind or v.spec.timezone != first.spec.timezone:
            raise AnalyticsError(
                "the candidate changes the scheme kind or time zone: its figures could not be "
                "compared with the domain's"
            )
    out = sorted(candidate, key=lambda v: v.effective_from)
    if out[0].effective_from > first.effective_from:
        out[0] = dataclasses.replace(out[0], effective_from=first.effective_from)
    return out


def counting_by_rule(state: SubjectState) -> dict[str, int]:
    """Points each rule contributes to the figure as of the state's time (counting entries)."""
    out: dict[str, int] = defaultdict(int)
    for st in state.entries:
        if st.counts:
            out[st.entry.rule_id] += st.applied
    return dict(out)


def _rule_changes(before: PackVersion | None, after: PackVersion | None) -> list[dict[str, Any]]:
    """What the candidate changes in the rules and thresholds in force at as_of."""
    if before is None or after is None:
        return []
    out: list[dict[str, Any]] = []
    fields = ("event", "points", "when", "counts_for", "daily_cap", "requires_evidence")
    b = {r.id: r for r in before.spec.rules}
    a = {r.id: r for r in after.spec.rules}
    for rid in sorted(b.keys() | a.keys()):
        if rid not in a:
            out.append({"rule": rid, "change": "removed"})
        elif rid not in b:
            out.append({"rule": rid, "change": "added", "points": _plain(a[rid].points)})
        else:
            diffs = {
                f: {"before": _plain(getattr(b[rid], f)), "after": _plain(getattr(a[rid], f))}
                for f in fields
                if getattr(b[rid], f) != getattr(a[rid], f)
            }
            if diffs:
                out.append({"rule": rid, "change": "changed", "fields": diffs})
    bt = {t.id: t for t in before.spec.thresholds}
    at = {t.id: t for t in after.spec.thresholds}
    for tid in sorted(bt.keys() | at.keys()):
        if bt.get(tid) != at.get(tid):
            kind = "removed" if tid not in at else "added" if tid not in bt else "changed"
            out.append({"threshold": tid, "change": kind})
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def _live(state: SubjectState, cancelled: set[str]) -> dict[str, str]:
    return {d.id: d.kind for d in state.decisions if d.id not in cancelled}


_RULE_TEXT = {"rules", "version", "effective_from"}


def _rules_only_change(published: Sequence[PackVersion], versions: Sequence[PackVersion]) -> bool:
    """True when each side has one version and they differ at most in their rules: then the
    fold of a subject whose events get the same entries on both sides is the same fold."""
    if len(published) != 1 or len(versions) != 1:
        return False
    before = published[0].spec.model_dump(exclude=_RULE_TEXT)
    return bool(before == versions[0].spec.model_dump(exclude=_RULE_TEXT))


def _judgement(entries: Sequence[Entry]) -> list[tuple[Any, ...]]:
    """What the fold reads of an event's entries (not the version's name or hash)."""
    return [(n.rule_id, n.delta, n.counts_until, n.daily_cap, n.tags, n.title) for n in entries]


def _touched_types(published: PackVersion, candidate: PackVersion) -> frozenset[str]:
    """The event types whose rules differ between two versions of a rules-only change: an
    event of any other type is judged alike by both (same rules, same scheme and time zone),
    so only events of these types need judging twice."""
    types = published.rules_by_event.keys() | candidate.rules_by_event.keys()
    return frozenset(t for t in types if rule_texts(published, t) != rule_texts(candidate, t))


History = tuple[str, list[Event], list[Appeal]]


def _same_entries(
    published: PackVersion,
    candidate: PackVersion,
    touched: frozenset[str],
    found: Sequence[History],
) -> list[bool]:
    """For each history, whether every event with its details gets the same entries from both
    versions. One `judge_batch` call per side for the whole chunk, over the events of the
    touched types only."""
    owners: list[int] = []
    live: list[Event] = []
    for i, (_, evs, _) in enumerate(found):
        for e in evs:
            if e.judged is None and e.type in touched:
                owners.append(i)
                live.append(e)
    same = [True] * len(found)
    if live:
        before = judge_batch([(e, published) for e in live])
        after = judge_batch([(e, candidate) for e in live])
        for i, b, a in zip(owners, before, after, strict=True):
            if same[i] and _judgement(b) != _judgement(a):
                same[i] = False
    return same


def _in_window(e: Event, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or e.occurred_at >= start) and (end is None or e.occurred_at <= end)


def _count(rules: dict[str, list[Any]], counted: Mapping[str, int], subject: str) -> None:
    for rid, pts in counted.items():
        found = rules[rid]
        found[0] += pts
        found[1].add(subject)


def run_whatif(
    ledger: Ledger,
    domain: str,
    candidate: Sequence[PackVersion],
    as_of: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    chunk: int = 500,
    use_kernel: bool = True,
    kernel_chunk: int = 10_000,
    progress: Callable[[int], None] | None = None,
    kernel_scan: bool | None = None,
    reading: Callable[[int], None] | None = None,
) -> WhatIf:
    """Replay every subject of ``domain`` under its versions and under ``candidate`` (with
    ``use_kernel``, by the compiled fold where both sides allow it; the same result).
    ``progress`` is called with the number of subjects each step of the work got through;
    ``reading`` with the number of stored rows each batch of a scanned read brought (the
    compiled fold's bulk read of a large population, done before the first subject is
    folded)."""
    t0 = time.perf_counter()
    published = ledger.require_domain(domain)
    versions = prepare_candidate(published, candidate)
    when = as_of or end or ledger.now()
    out = WhatIf(
        domain,
        when,
        start,
        end,
        [v.version for v in published],
        [v.version for v in versions],
    )
    touched = (
        _touched_types(published[0], versions[0])
        if _rules_only_change(published, versions)
        else None
    )
    before_rules: dict[str, list[Any]] = defaultdict(lambda: [0, set()])
    after_rules: dict[str, list[Any]] = defaultdict(lambda: [0, set()])
    windowed = start is not None or end is not None
    if use_kernel and kernel_eligible(published, versions):
        # Subjects without appeals: both sides over columns by the compiled fold; the others
        # (the kernel does not model appeals) by the reference fold below.
        out.path = "kernel"
        plain, contested = split_by_appeals(ledger.store, domain)
        rules_only = touched is not None
        for compared in kernel_sides(
            ledger.store,
            domain,
            published,
            versions,
            plain,
            when,
            start,
            end,
            lambda part: _compare_slice(part, domain, rules_only),
            kernel_chunk,
            progress,
            kernel_scan,
            reading,
        ):
            _merge(out, compared, before_rules, after_rules)
        histories = ledger.histories(domain, chunk, subjects=contested)
    else:
        histories = ledger.histories(domain, chunk)
    while part := list(islice(histories, chunk)):
        if progress is not None:
            progress(len(part))
        found: list[History] = []
        for subject, subject_events, aps in part:
            evs = (
                [e for e in subject_events if _in_window(e, start, end)]
                if windowed
                else subject_events
            )
            if evs:
                found.append((subject, evs, aps))
        same = (
            _same_entries(published[0], versions[0], touched, found)
            if touched is not None
            else [False] * len(found)
        )
        for (subject, evs, aps), reuse in zip(found, same, strict=True):
            b = evaluate_subject(published, evs, when, subject=subject, appeals=aps)
            out.subjects += 1
            out.events += sum(1 for e in evs if e.occurred_at <= when)
            br = counting_by_rule(b)
            _count(before_rules, br, subject)
            if reuse:
                # Same entries, same scheme and thresholds: the same fold (rules-only change),
                # so nothing differs for this subject.
                out.reused += 1
                _count(after_rules, br, subject)
                continue
            a = evaluate_subject(versions, evs, when, subject=subject, appeals=aps)
            ar = counting_by_rule(a)
            _count(after_rules, ar, subject)
            if a.points != b.points:
                out.changes[subject] = a.points - b.points
            cancelled = {p.decision_id for p in aps if p.outcome == "upheld" and p.decision_id}
            bd, ad = _live(b, cancelled), _live(a, cancelled)
            if (
                a.points != b.points
                or bd != ad
                or [x.applied for x in a.entries] != [x.applied for x in b.entries]
            ):
                out.affected.add(subject)
            for did in ad.keys() - bd.keys():
                out.appeared_kind[did] = ad[did]
                out.appeared_subject[did] = subject
            for did in bd.keys() - ad.keys():
                out.disappeared_kind[did] = bd[did]
                out.disappeared_subject[did] = subject
            for rid in br.keys() | ar.keys():
                if br.get(rid, 0) != ar.get(rid, 0):
                    out.rule_subjects_changed.setdefault(rid, set()).add(subject)
    out.rules_before = {k: (v[0], v[1]) for k, v in before_rules.items()}
    out.rules_after = {k: (v[0], v[1]) for k, v in after_rules.items()}
    out.rule_changes = _rule_changes(version_at(published, when), version_at(versions, when))
    out.seconds = time.perf_counter() - t0
    return out


@dataclass(frozen=True)
class _Compared:
    """A kernel slice's comparison, worked out column by column where the slice was folded:
    what the per-subject loop of `run_whatif` adds for each of its subjects, by name."""

    subjects: int
    events: int
    changes: list[tuple[str, int]]
    appeared: list[tuple[str, str, str]]  # (decision id, kind, subject)
    disappeared: list[tuple[str, str, str]]
    affected: list[str]
    rules_before: list[tuple[str, int, list[str]]]  # (rule, points, subjects counting it)
    rules_after: list[tuple[str, int, list[str]]]
    moved: list[tuple[str, str]]  # (rule, subject) whose points from the rule differ
    reused: int


def _compare_slice(part: Slice, domain: str, rules_only: bool) -> _Compared:
    """Compare a kernel slice's two sides (see `_Compared`)."""
    names = part.subjects
    b, a = part.before, part.after
    affected: list[pl.Series] = []
    changed = (a.points != b.points).nonzero()[0]
    changes = list(zip(_pick(names, changed), (a.points - b.points)[changed].tolist(), strict=True))
    affected.append(pl.Series(changed, dtype=pl.Int64))
    keys = ["s", "threshold", "level", "at", "ordinal"]
    made: list[list[tuple[str, str, str]]] = []
    for side, other in ((a, b), (b, a)):
        only = side.decisions.join(other.decisions.select(keys), on=keys, how="anti")
        rows = []
        for row in only.iter_rows(named=True):
            subject = names[row["s"]]
            rows.append((decision_id(domain, subject, row), row["kind"], subject))
        made.append(rows)
        affected.append(only["s"])
    # Entries are compared by their place in the subject's fold. Where both sides have as
    # many entries for every subject (a candidate that changes points or thresholds, not
    # which rules match), the two tables are row for row the same places: no join needed.
    aligned = b.entries.height == a.entries.height and b.entries["s"].equals(a.entries["s"])
    if aligned:
        affected.append(b.entries["s"].filter(b.entries["applied"] != a.entries["applied"]))
    else:
        pair = b.entries.join(a.entries, on=["s", "pos"], how="full", coalesce=True, suffix="_a")
        differs = (
            pl.col("applied").is_null()
            | pl.col("applied_a").is_null()
            | (pl.col("applied") != pl.col("applied_a"))
        )
        affected.append(pair.filter(differs)["s"])
    touched = pl.concat(affected).unique()
    sums = []
    totals: list[list[tuple[str, int, list[str]]]] = []
    for side in (b, a):
        per = (
            side.entries.filter(pl.col("counts"))
            .group_by("s", "rule_id")
            .agg(pl.col("applied").sum())
        )
        sums.append(per)
        by_rule = per.group_by("rule_id").agg(pl.col("applied").sum(), pl.col("s"))
        totals.append(
            [(rid, total, _pick(names, members)) for rid, total, members in by_rule.iter_rows()]
        )
    moved = (
        sums[0]
        .join(sums[1], on=["s", "rule_id"], how="full", coalesce=True, suffix="_a")
        .fill_null(0)
        .filter(pl.col("applied") != pl.col("applied_a"))
    )
    reused = 0
    if rules_only:
        cols = ["rule_id", "delta", "until", "capped"]
        if aligned:
            unlike = b.entries["s"].filter(_unlike(b.entries, a.entries, cols))
        else:
            left = b.entries.select("s", "pos", *cols).fill_null(-1)
            right = a.entries.select("s", "pos", *cols).fill_null(-1)
            on = ["s", "pos", *cols]
            unlike = pl.concat(
                [
                    left.join(right, on=on, how="anti").select("s"),
                    right.join(left, on=on, how="anti").select("s"),
                ]
            )["s"]
        reused = len(names) - unlike.n_unique()
    return _Compared(
        subjects=len(names),
        events=part.events,
        changes=changes,
        appeared=made[0],
        disappeared=made[1],
        affected=_pick(names, touched),
        rules_before=totals[0],
        rules_after=totals[1],
        moved=list(
            zip(
                moved["rule_id"].to_list(),
                _pick(names, moved["s"]),
                strict=True,
            )
        ),
        reused=reused,
    )


def _pick(names: list[str], at: Any) -> list[str]:
    """``names`` at the places ``at`` (a column or list of ints): the same string objects, so
    that the sets of subjects the result keeps share them (a subject's name is held once)."""
    places = at.to_list() if hasattr(at, "to_list") else list(at)
    if not places:
        return []
    found = itemgetter(*places)(names)
    return [found] if len(places) == 1 else list(found)


def _merge(
    out: WhatIf,
    part: _Compared,
    before_rules: dict[str, list[Any]],
    after_rules: dict[str, list[Any]],
) -> None:
    """Add a compared slice to ``out``."""
    out.subjects += part.subjects
    out.events += part.events
    out.changes.update(part.changes)
    for found, kinds, subjects in (
        (part.appeared, out.appeared_kind, out.appeared_subject),
        (part.disappeared, out.disappeared_kind, out.disappeared_subject),
    ):
        for did, kind, subject in found:
            kinds[did] = kind
            subjects[did] = subject
    out.affected.update(part.affected)
    for totals, rules in ((part.rules_before, before_rules), (part.rules_after, after_rules)):
        for rid, total, members in totals:
            entry = rules[rid]
            entry[0] += total
            entry[1].update(members)
    for rid, subject in part.moved:
        out.rule_subjects_changed.setdefault(rid, set()).add(subject)
    out.reused += part.reused


def _unlike(left: pl.DataFrame, right: pl.DataFrame, cols: Sequence[str]) -> pl.Series:
    """Row by row, whether two frames of the same places differ in any of ``cols``."""
    found = left[cols[0]].ne_missing(right[cols[0]])
    for c in cols[1:]:
        found = found | left[c].ne_missing(right[c])
    return found


def _bins(values: Sequence[int], max_bins: int = 10) -> list[tuple[str, int, int]]:
    """(label, low, high) bins covering the values: one per value when few, else equal width."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    distinct = sorted(set(values))
    if len(distinct) <= max_bins:
        return [(f"{v:+d}", v, v) for v in distinct]
    width = max(1, -(-(hi - lo + 1) // max_bins))
    out = []
    x = lo
    while x <= hi:
        out.append((f"{x:+d} to {x + width - 1:+d}", x, x + width - 1))
        x += width
    return out


def change_distribution(changes: Mapping[str, int]) -> dict[str, Cell]:
    """Subjects per band of change (each band a cell)."""
    cells: dict[str, Cell] = {}
    for label, lo, hi in _bins(list(changes.values())):
        n = sum(1 for v in changes.values() if lo <= v <= hi)
        cells[label] = Cell(n, n)
    return cells


def _by_kind(kinds: Mapping[str, str], subjects: Mapping[str, str]) -> dict[str, Cell]:
    found: dict[str, list[str]] = defaultdict(list)
    for did, kind in kinds.items():
        found[kind].append(subjects[did])
    return {kind: Cell.of(len(subj), subj) for kind, subj in sorted(found.items())}


def whatif_view(w: WhatIf, k: int = DEFAULT_K) -> dict[str, Any]:
    """The protected aggregate: JSON-ready, no subject id, no cell under k subjects."""
    changed = list(w.changes.values())
    n = len(changed)
    summary: dict[str, Shown] = {
        "subjects_replayed": protect_one(Cell(w.subjects, w.subjects), k),
        "subjects_changed": protect_one(Cell(n, n), k),
        "subjects_affected_at_any_time": protect_one(Cell(len(w.affected), len(w.affected)), k),
    }
    if n:
        summary["mean_change"] = protect_one(Cell(round(statistics.fmean(changed), 2), n), k)
        summary["median_change"] = protect_one(Cell(statistics.median(changed), n), k)
    rules = sorted(w.rules_before.keys() | w.rules_after.keys())
    before = protect(
        {
            r: Cell.of(w.rules_before.get(r, (0, set()))[0], w.rules_before.get(r, (0, set()))[1])
            for r in rules
        },
        k,
    )
    after = protect(
        {
            r: Cell.of(w.rules_after.get(r, (0, set()))[0], w.rules_after.get(r, (0, set()))[1])
            for r in rules
        },
        k,
    )
    moved = protect({r: Cell.of(len(s), s) for r, s in sorted(w.rule_subjects_changed.items())}, k)
    drivers = []
    for r in rules:
        diff = w.rules_after.get(r, (0, set()))[0] - w.rules_before.get(r, (0, set()))[0]
        if r in w.rule_subjects_changed:
            nsub = len(w.rule_subjects_changed[r])
            drivers.append(
                {
                    "rule": r,
                    "points_difference": protect_one(Cell(diff, nsub), k),
                    "subjects_changed": moved[r],
                    "_order": abs(diff),
                }
            )
    drivers.sort(key=lambda d: -int(d.pop("_order")))
    return {
        "domain": w.domain,
        "as_of": w.as_of.isoformat(),
        "from": w.start.isoformat() if w.start else None,
        "to": w.end.isoformat() if w.end else None,
        "k": k,
        "published_versions": w.baseline_versions,
        "candidate_versions": w.candidate_versions,
        "summary": summary,
        "change_distribution": protect(change_distribution(w.changes), k),
        "decisions_appearing": protect(_by_kind(w.appeared_kind, w.appeared_subject), k),
        "decisions_disappearing": protect(_by_kind(w.disappeared_kind, w.disappeared_subject), k),
        "points_by_rule": {r: {"before": before[r], "after": after[r]} for r in rules},
        "drivers": drivers,
        "rule_changes": w.rule_changes,
        "seconds": round(w.seconds, 3),
    }


def whatif_html(view: Mapping[str, Any]) -> str:
    """The what-if view as one self-contained HTML page (plots embedded)."""
    from pointbook.analytics.report import bar_chart, esc, html_page, img, table

    k = int(view["k"])
    dist = view["change_distribution"]
    before = {r: v["before"] for r, v in view["points_by_rule"].items()}
    after = {r: v["after"] for r, v in view["points_by_rule"].items()}
    window = f" replaying events from {view['from'] or 'the start'} to {view['to'] or 'now'}"
    sections = [
        ("Summary", table(["figure", "value"], list(view["summary"].items()))),
        (
            "Change in points",
            img(bar_chart("Subjects by change in points", dist, "change", "subjects", k), "change")
            + table(["change", "subjects"], list(dist.items())),
        ),
        (
            "Decisions appearing and disappearing",
            table(["kind", "appearing"], list(view["decisions_appearing"].items()))
            + table(["kind", "disappearing"], list(view["decisions_disappearing"].items())),
        ),
        (
            "Points by rule",
            img(bar_chart("Points by rule, published", before, "rule", "points", k), "before")
            + img(bar_chart("Points by rule, candidate", after, "rule", "points", k), "after")
            + table(
                ["rule", "published", "candidate"],
                [[r, before[r], after[r]] for r in view["points_by_rule"]],
            ),
        ),
        (
            "Rules that drive the difference",
            table(
                ["rule", "points difference", "subjects changed"],
                [
                    [d["rule"], d["points_difference"], d["subjects_changed"]]
                    for d in view["drivers"]
                ],
            )
            + table(
                ["rule or threshold", "change"],
                [[c.get("rule") or c.get("threshold"), c["change"]] for c in view["rule_changes"]],
            ),
        ),
    ]
    intro = (
        f"Domain <b>{esc(view['domain'])}</b>: candidate versions "
        f"{esc(', '.join(view['candidate_versions']))} in place of "
        f"{esc(', '.join(view['published_versions']))}, as of {esc(view['as_of'])},{esc(window)}. "
        "Nothing was written to the ledger."
    )
    return html_page(f"pointbook what-if: {view['domain']}", intro, sections, k)
