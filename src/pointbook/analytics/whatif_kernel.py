"""What-if over columns: both sides of the replay folded by the compiled kernel.

`whatif.run_whatif` folds each subject twice with the reference fold. When the published
versions and the candidate's are both ones the kernel models (`engine.kernel.unsupported`:
balance schemes, restorations, several versions; no window scheme, contest window, notice
period, incident cap or grace), this module gives the same `WhatIf` from the stored rows
instead, a slice of subjects at a time:

* the baseline's entries are the stored ones (the ledger judged every event under the version
  in force at its date, and a version never takes effect before a recorded event; an erased
  event's entries are all that is left of it, as in the fold);
* the candidate's are the same for an event whose type has the same rules in the candidate's
  version in force at its date as in the published one, and for an erased event; the other
  live events are judged again column by column (`engine.batch.rule_frame`, as at ingest);
* course events (a type a course restoration names) are steps of their own on each side;
* both sides go through `engine.kernel`, and the comparison (points, decisions, applied
  points, points by rule) is made column by column.

The rows come from the store as it reads them fastest: a large population in bulk
(`Store.population_frames`: ADBC into Arrow on SQLite, COPY as CSV on PostgreSQL) regrouped
by a hash of the subject through a temporary folder; a small one through the subject index.
Two slices are folded at once.

Subjects with appeals are left to the reference fold (the kernel does not model appeals):
`run_whatif` replays them as before. tests/test_analytics.py checks this path against the
reference one on the same stores, on both backends.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from pointbook.dates import Duration, add_duration, to_micros
from pointbook.engine.batch import rule_frame
from pointbook.engine.fold import _decision_id
from pointbook.engine.kernel import (
    NEVER,
    Codes,
    KernelPack,
    course_types,
    make_columns,
    unsupported,
)
from pointbook.rules.pack import PackVersion
from pointbook.store.base import Store
from pointbook.store.sqlite_scan import ROW_SCHEMA, ROW_SCHEMA_INT_FLAGS

__all__ = [
    "Side",
    "Slice",
    "decision_id",
    "kernel_eligible",
    "kernel_sides",
    "population_scores",
    "rule_texts",
    "split_by_appeals",
]

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STEP_SCHEMA: dict[str, Any] = {
    "s": pl.Int64,
    "event_id": pl.String,
    "type": pl.String,
    "occurred_us": pl.Int64,
    "key": pl.Int64,
    "erased": pl.Boolean,
    "rule_id": pl.String,
    "delta": pl.Int64,
    "until": pl.Int64,
    "capped": pl.Boolean,
    "kind": pl.Int64,
    "pos": pl.Int64,
}
_COURSE_POS = 1 << 30  # a course credit is queued after the event's own entries


def kernel_eligible(published: Sequence[PackVersion], candidate: Sequence[PackVersion]) -> bool:
    """Both sides are versions the kernel folds."""
    return unsupported(published) is None and unsupported(candidate) is None


@dataclass(frozen=True)
class Side:
    """One side of the replay for a slice of subjects: per subject its points; per entry (in
    fold order) its subject index, rule, applied points and whether it counts; per decision
    its subject index, threshold, level, instant and ordinal at that instant."""

    points: np.ndarray[Any, np.dtype[np.int64]]
    entries: pl.DataFrame  # s, pos, rule_id, delta, until, capped, applied, counts
    decisions: pl.DataFrame  # s, threshold, kind, level, at, ordinal


@dataclass(frozen=True)
class Slice:
    """A slice of subjects as both sides see it."""

    subjects: list[str]
    events: int  # events by as_of
    before: Side
    after: Side


@dataclass(frozen=True)
class _Sides:
    """What both sides read of their versions, worked out once per what-if."""

    published: KernelPack
    candidate: KernelPack
    same: frozenset[tuple[int, int, str]]  # (published, candidate version, type): same rules
    # Over rows with the versions in force on each side (vb, va): whether the candidate keeps
    # the stored entries (the type has the same rules in both, or the event was erased).
    reuse: pl.Expr

    @classmethod
    def of(cls, published: Sequence[PackVersion], candidate: Sequence[PackVersion]) -> _Sides:
        same: dict[tuple[int, int], list[str]] = {}
        for b, pv in enumerate(published):
            for a, cv in enumerate(candidate):
                for t in sorted(pv.event_types.keys() | cv.event_types.keys()):
                    if rule_texts(pv, t) == rule_texts(cv, t):
                        same.setdefault((b, a), []).append(t)
        reuse = pl.col("erased")
        for (b, a), types in same.items():
            reuse = reuse | (
                (pl.col("vb") == b) & (pl.col("va") == a) & pl.col("type").is_in(types)
            )
        return cls(
            KernelPack.of(published),
            KernelPack.of(candidate),
            frozenset((b, a, t) for (b, a), types in same.items() for t in types),
            reuse.alias("reuse"),
        )


def rule_texts(version: PackVersion, event_type: str) -> list[dict[str, Any]]:
    """Everything judging an event of ``event_type`` reads of ``version``'s rules, in order."""
    out = []
    for rule in version.rules_for(event_type):
        spec = version.rule(rule.id)
        assert spec is not None
        out.append(spec.model_dump(mode="json", exclude={"examples"}))
    return out


def kernel_sides(
    store: Store,
    domain: str,
    published: Sequence[PackVersion],
    candidate: Sequence[PackVersion],
    subjects: Sequence[str],
    when: datetime,
    start: datetime | None,
    end: datetime | None,
    then: Callable[[Slice], T],
    chunk: int = 10_000,
    progress: Callable[[int], None] | None = None,
    scan: bool | None = None,
    reading: Callable[[int], None] | None = None,
) -> Iterator[T]:
    """Each slice of ``subjects`` (``chunk`` at a time) folded under both sides' versions,
    and ``then`` applied to it where it was folded (what-if compares the sides there);
    ``progress`` hears how many subjects each slice covered (those with no event too);
    ``reading``, how many stored rows each batch of a scanned read brought (the scan reads
    every row before the first slice is folded).

    ``subjects`` may be a domain's subjects but some (those with appeals): with ``scan`` (by
    default for 5,000 subjects or more) the domain's stored rows are then read in bulk
    (`Store.population_frames`) and regrouped by subject, instead of subject by subject
    through the index."""
    sides = _Sides.of(published, candidate)
    when_us = to_micros(when)
    since = None if start is None else to_micros(start)
    until = None if end is None else to_micros(end)
    # Attributes are read only for the events some candidate version may judge otherwise.
    every = {t for v in (*published, *candidate) for t in v.event_types}
    types = sorted(
        t
        for t in every
        if not all(
            (b, a, t) in sides.same for b in range(len(published)) for a in range(len(candidate))
        )
    )

    rows = _rows(store, domain, subjects, since, until, types, chunk, scan, reading)
    yield from _two_at_once(rows, lambda found: then(_slice(found, sides, when_us)), progress)


def _two_at_once(
    rows: Iterator[tuple[pl.DataFrame, int]],
    work: Callable[[pl.DataFrame], T],
    progress: Callable[[int], None] | None = None,
) -> Iterator[T]:
    """``work`` on each slice's rows, two slices at once (Polars and the compiled loop release
    the GIL, so the two cores share the work), the results in order, two at most in memory;
    ``progress`` hears each slice's subjects once its result is out."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kernel-slice") as pool:
        pending: deque[tuple[Future[T] | None, int]] = deque()

        def oldest() -> Iterator[T]:
            done, seen = pending.popleft()
            if done is not None:
                yield done.result()
            if progress is not None:
                progress(seen)

        for found, covered in rows:
            pending.append((None if found.is_empty() else pool.submit(work, found), covered))
            while pending and (len(pending) > 1 or pending[0][0] is None):
                yield from oldest()
        while pending:
            yield from oldest()


def split_by_appeals(store: Store, domain: str) -> tuple[list[str], list[str]]:
    """A domain's subjects in store order: those without an appeal (the compiled fold's) and
    those with one (the reference fold's, which models appeals)."""
    contested = store.appeals(domain)
    everyone = store.subjects(domain)
    return [s for s in everyone if s not in contested], [s for s in everyone if s in contested]


def population_scores(
    store: Store,
    domain: str,
    versions: Sequence[PackVersion],
    subjects: Sequence[str],
    when: datetime,
    chunk: int = 10_000,
    scan: bool | None = None,
) -> Iterator[tuple[list[str], Side]]:
    """Every one of ``subjects`` re-scored as of ``when`` from its stored entries by the
    compiled fold, a slice at a time: the names and their `Side` (points, entries, decisions).
    For subjects without appeals, under versions `kernel.unsupported` accepts."""
    pack = KernelPack.of(versions)
    when_us = to_micros(when)

    def score(rows: pl.DataFrame) -> tuple[list[str], Side]:
        names, events, first, stored = _prepare(rows, when_us)
        steps = _stored_steps(stored, events, pack)
        return names, _fold(pack, steps, first, len(names), when_us)

    yield from _two_at_once(_rows(store, domain, subjects, None, None, [], chunk, scan), score)


SCAN_MIN_SUBJECTS = 5_000
SCAN_BATCH = 250_000  # events per read of the tables' own order (tests make it small)


def _rows(
    store: Store,
    domain: str,
    subjects: Sequence[str],
    since: int | None,
    until: int | None,
    types: Sequence[str],
    chunk: int,
    scan: bool | None,
    reading: Callable[[int], None] | None = None,
) -> Iterator[tuple[pl.DataFrame, int]]:
    """The stored rows of ``subjects`` slice by slice, the way the store reads fastest."""
    if scan is None:
        scan = len(subjects) >= SCAN_MIN_SUBJECTS
    if scan:
        # The bulk read brings the whole domain: the subjects left out (those with appeals,
        # usually few) are the ones to drop.
        wanted = set(subjects)
        skip = [s for s in store.subjects(domain) if s not in wanted]
        frames = store.population_frames
        return _scan(frames, domain, len(subjects), skip, since, until, types, chunk, reading)
    return _read_ahead(store, domain, subjects, since, until, types, chunk)


def _scan(
    scanner: Callable[..., Iterator[pl.DataFrame]],
    domain: str,
    subjects: int,
    skip: Sequence[str],
    since: int | None,
    until: int | None,
    types: Sequence[str],
    chunk: int,
    reading: Callable[[int], None] | None = None,
) -> Iterator[tuple[pl.DataFrame, int]]:
    """The same rows as `_read_ahead` for the domain's ``subjects`` subjects but ``skip``,
    read in bulk (`population_frames`) and cut by a hash of the subject into slices of about
    ``chunk`` subjects. The pieces are spilled to a temporary folder (Arrow IPC) by a second
    thread while the next batch is read, so memory holds a batch or two and a slice, not the
    domain."""
    dropped = pl.Series("subject", list(skip), dtype=pl.String).implode()
    slices = max(1, -(-subjects // chunk))
    which = (pl.col("subject").hash(seed=7) % slices).alias("slice")

    def spill(i: int, batch: pl.DataFrame) -> None:
        frame = batch.filter(~pl.col("subject").is_in(dropped)) if skip else batch
        for (k,), piece in frame.with_columns(which).partition_by("slice", as_dict=True).items():
            piece.drop("slice").write_ipc(folder / f"rows-{k}-{i}.arrow")

    with (
        tempfile.TemporaryDirectory(prefix="pointbook-scan-") as tmp,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-spill") as writer,
    ):
        folder = Path(tmp)
        written: Future[None] | None = None
        for i, batch in enumerate(scanner(domain, since, until, types, SCAN_BATCH)):
            if reading is not None:
                reading(batch.height)
            if written is not None:
                written.result()  # one batch waits to be spilled at most
            written = writer.submit(spill, i, batch)
        if written is not None:
            written.result()
        seen = 0
        for k in range(slices):
            rows = _read_pieces(folder, f"rows-{k}-", ROW_SCHEMA)
            if rows.is_empty():
                continue
            covered = rows["subject"].n_unique()
            seen += covered
            yield rows, covered
    # Subjects with no event in [since, until] come in no slice: they are done all the same.
    yield pl.DataFrame(schema=ROW_SCHEMA), subjects - seen


def _read_pieces(folder: Path, prefix: str, schema: dict[str, Any]) -> pl.DataFrame:
    pieces = [pl.read_ipc(p) for p in sorted(folder.glob(prefix + "*.arrow"))]
    return pl.concat(pieces) if pieces else pl.DataFrame(schema=schema)


def _read_ahead(
    store: Store,
    domain: str,
    subjects: Sequence[str],
    since: int | None,
    until: int | None,
    types: Sequence[str],
    chunk: int,
) -> Iterator[tuple[pl.DataFrame, int]]:
    """The stored rows of ``subjects``, ``chunk`` subjects at a time, with how many subjects
    each read covered."""

    def read(part: Sequence[str]) -> pl.DataFrame:
        found = store.population_rows(domain, part, since, until, types)
        return pl.DataFrame(found, schema=ROW_SCHEMA_INT_FLAGS, orient="row").cast(ROW_SCHEMA)  # type: ignore[arg-type]

    parts = [subjects[i : i + chunk] for i in range(0, len(subjects), chunk)]
    # The next slice is read while this one is folded: the store's connection is used by the
    # reading thread only, one read at a time; the fold releases the GIL (numba nogil), so
    # reading and folding share the two cores.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-read") as pool:
        ahead = pool.submit(read, parts[0]) if parts else None
        for k in range(len(parts)):
            assert ahead is not None
            rows = ahead.result()
            ahead = pool.submit(read, parts[k + 1]) if k + 1 < len(parts) else None
            yield rows, len(parts[k])


def _prepare(
    rows: pl.DataFrame, when_us: int
) -> tuple[list[str], pl.DataFrame, np.ndarray[Any, np.dtype[np.int64]], pl.DataFrame]:
    """A slice's subject names, its events by as_of, each subject's first event and the
    stored entries, with each row's subject index and event id rank."""
    names = rows["subject"].unique(maintain_order=True).to_list()
    index = pl.DataFrame({"subject": names, "s": np.arange(len(names), dtype=np.int64)})
    rows = rows.join(index, on="subject", how="left").filter(pl.col("occurred_us") <= when_us)
    # Expiries of one instant run in event id order: each event's rank stands for its id.
    rows = rows.with_columns(pl.col("event_id").rank("dense").cast(pl.Int64).alias("key"))
    events = rows.unique("event_id", maintain_order=True)
    first = (
        index.join(
            events.group_by("s").agg(pl.col("occurred_us").min().alias("first")),
            on="s",
            how="left",
        )
        .sort("s")["first"]
        .fill_null(NEVER)
        .to_numpy()
    )
    return names, events, first, rows.filter(pl.col("rule_id").is_not_null())


def _slice(rows: pl.DataFrame, sides: _Sides, when_us: int) -> Slice:
    names, events, first, stored = _prepare(rows, when_us)
    pub, cand = sides.published, sides.candidate
    base = _stored_steps(stored, events, pub)
    # The candidate: stored entries where its version in force judges the event's type as
    # the published one does (and for erased events); the other live events judged again.
    events = _reusable(events, sides)
    kept = _reusable(stored, sides).filter(pl.col("reuse"))
    redo = events.filter(~pl.col("reuse"))
    after = pl.concat(
        [
            _positioned(kept, pub),
            _judge(redo, stored, pub.versions, cand.versions),
            _courses(events, cand),
        ],
        how="vertical_relaxed",
    )
    n = len(names)
    return Slice(
        names,
        events.height,
        _fold(pub, base, first, n, when_us),
        _fold(cand, after, first, n, when_us),
    )


def _reusable(frame: pl.DataFrame, sides: _Sides) -> pl.DataFrame:
    """``frame`` (rows of events) with the versions in force on each side at each row's date
    (vb, va) and whether the candidate keeps the stored entries (`_Sides.reuse`)."""
    at = frame["occurred_us"].to_numpy()
    frame = frame.with_columns(
        pl.Series("vb", sides.published.version_index(at), dtype=pl.Int64),
        pl.Series("va", sides.candidate.version_index(at), dtype=pl.Int64),
    )
    return frame.with_columns(sides.reuse)


def _stored_steps(stored: pl.DataFrame, events: pl.DataFrame, pack: KernelPack) -> pl.DataFrame:
    """The published side's steps: the stored entries and the course events."""
    return pl.concat([_positioned(stored, pack), _courses(events, pack)], how="vertical_relaxed")


def _sorted(steps: pl.DataFrame) -> pl.DataFrame:
    """Steps in the fold's order: subject, instant, event id, then the event's entries in
    pack order and its course credit last."""
    return steps.sort("s", "occurred_us", "key", "pos")


def _positioned(entries: pl.DataFrame, pack: KernelPack) -> pl.DataFrame:
    """Stored entries as steps: each at its rule's place in the pack of the version in force
    at its date (an erased event's entries, read back from the store, in rule id order)."""
    version_of = pack.version_index(entries["occurred_us"].to_numpy())
    names = sorted({r.id for v in pack.versions for r in v.spec.rules})
    code_of = {rid: k for k, rid in enumerate(names)}
    # Per version and rule (by code): its place in pack order and in rule id order; -1 for a
    # rule the version does not have.
    live = np.full((len(pack.versions), len(names) + 1), -1, dtype=np.int64)
    by_id = live.copy()
    for v, version in enumerate(pack.versions):
        ids = [r.id for r in version.spec.rules]
        for k, rid in enumerate(ids):
            live[v, code_of[rid]] = k
        for k, rid in enumerate(sorted(ids)):
            by_id[v, code_of[rid]] = k
    # A rule no version has (code -1) takes the last column: -1 in both tables.
    code = _coded(entries["rule_id"], names)
    place = np.where(entries["erased"].to_numpy(), by_id[version_of, code], live[version_of, code])
    return entries.with_columns(
        pl.lit(0, dtype=pl.Int64).alias("kind"), pl.Series("pos", place, dtype=pl.Int64)
    ).select(list(_STEP_SCHEMA))


def _courses(events: pl.DataFrame, pack: KernelPack) -> pl.DataFrame:
    """A step for each event whose type a course restoration of the version in force names."""
    found = course_types(pack.versions)
    if not any(found):
        return pl.DataFrame(schema=_STEP_SCHEMA)
    at = pack.version_index(events["occurred_us"].to_numpy())
    credits = pl.Series(
        [t in found[int(v)] for t, v in zip(events["type"], at, strict=True)], dtype=pl.Boolean
    )
    return (
        events.filter(credits)
        .with_columns(
            pl.lit(None, dtype=pl.String).alias("rule_id"),
            pl.lit(0, dtype=pl.Int64).alias("delta"),
            pl.lit(None, dtype=pl.Int64).alias("until"),
            pl.lit(False).alias("capped"),
            pl.lit(1, dtype=pl.Int64).alias("kind"),
            pl.lit(_COURSE_POS, dtype=pl.Int64).alias("pos"),
        )
        .select(list(_STEP_SCHEMA))
    )


def _judge(
    events: pl.DataFrame,
    stored: pl.DataFrame,
    published: Sequence[PackVersion],
    candidate: Sequence[PackVersion],
) -> pl.DataFrame:
    """The candidate's entries for live events its versions judge otherwise, one step each:
    the rules matched column by column (`engine.batch.rule_frame`, as ingest judges); an
    entry's end taken from the stored entry of the same event and rule where the published
    rule ends alike, else worked out as `judge.make_entry` does."""
    parts = [pl.DataFrame(schema=_STEP_SCHEMA)]
    ends = stored.select("event_id", "rule_id", pl.col("until").alias("stored_until"))
    for (vb, va, event_type), group in events.group_by("vb", "va", "type", maintain_order=True):
        version = candidate[int(va)]
        assert isinstance(event_type, str)
        if version.event_types.get(event_type) is None or not version.rules_for(event_type):
            continue  # the candidate dropped the type, or gives it no rule: no entry
        attributes = [json.loads(a) if a else {} for a in group["attributes"].to_list()]
        result = rule_frame(version, event_type, attributes)
        old = {r.id: r.counts_for for r in published[int(vb)].rules_for(event_type)}
        for k, rule in enumerate(version.rules_for(event_type)):
            hit = group.with_columns(
                pl.Series("delta", result[f"d{k}"], dtype=pl.Int64),
                pl.lit(rule.id).alias("rule_id"),
                pl.lit(rule.daily_cap).alias("capped"),
            ).filter(result[f"m{k}"])
            if hit.is_empty():
                continue
            # The linter makes a points attribute a required integer: never missing here.
            assert hit["delta"].null_count() == 0, rule.id
            if rule.counts_for is not None and old.get(rule.id) == rule.counts_for:
                hit = (
                    hit.drop("until")
                    .join(ends, on=["event_id", "rule_id"], how="left")
                    .rename({"stored_until": "until"})
                )
            else:
                hit = hit.with_columns(pl.lit(None, dtype=pl.Int64).alias("until"))
            if rule.counts_for is not None and hit["until"].null_count():
                hit = hit.with_columns(_work_out_ends(hit, rule.counts_for, version))
            parts.append(
                hit.with_columns(
                    pl.lit(0, dtype=pl.Int64).alias("kind"),
                    pl.lit(k, dtype=pl.Int64).alias("pos"),
                ).select(list(_STEP_SCHEMA))
            )
    return pl.concat(parts, how="vertical_relaxed")


def _work_out_ends(hit: pl.DataFrame, counts_for: Duration, version: PackVersion) -> pl.Series:
    """Each row's end where it has none yet, as `judge.make_entry` works it out."""
    tz = version.tz
    ends = [
        until
        if until is not None
        else to_micros(add_duration(_EPOCH + timedelta(microseconds=at), counts_for, tz))
        for at, until in zip(hit["occurred_us"].to_list(), hit["until"].to_list(), strict=True)
    ]
    return pl.Series("until", ends, dtype=pl.Int64)


def _fold(
    pack: KernelPack,
    steps: pl.DataFrame,
    first: np.ndarray[Any, np.dtype[np.int64]],
    n_subjects: int,
    when_us: int,
) -> Side:
    steps = _sorted(steps)
    s = steps["s"].to_numpy().astype(np.int64)
    kind = steps["kind"].to_numpy().astype(np.int64)
    columns = make_columns(
        pack,
        n_subjects,
        first.astype(np.int64).tolist(),
        s,
        kind,
        steps["occurred_us"].to_numpy().astype(np.int64),
        steps["key"].to_numpy().astype(np.int64),
        _codes(steps["type"]),
        _codes(steps["rule_id"]),
        steps["delta"].to_numpy().astype(np.int64),
        steps["until"].fill_null(NEVER).to_numpy().astype(np.int64),
        steps["capped"].fill_null(False).to_numpy().astype(np.bool_),
    )
    result = columns.fold(pack, when_us)
    entry = kind == 0
    es = s[entry]
    starts = np.searchsorted(es, np.arange(n_subjects + 1))
    table = (
        steps.filter(pl.Series(entry))
        .select("s", "rule_id", "delta", "until", "capped")
        .with_columns(
            pl.Series("pos", np.arange(len(es), dtype=np.int64) - starts[es]),
            pl.Series("applied", result.applied[entry]),
            pl.Series("counts", result.counts[entry]),
        )
    )
    t = result.decision_threshold
    ds, at = result.decision_subject, result.decision_at
    # Decisions made earlier at the same instant (the id's ordinal): they come out in the
    # order made, subject after subject, so each run of one (subject, instant) counts up.
    new = np.ones(len(ds), dtype=np.bool_)
    new[1:] = (ds[1:] != ds[:-1]) | (at[1:] != at[:-1])
    runs = np.flatnonzero(new)
    ordinal = np.arange(len(ds), dtype=np.int64) - runs[np.cumsum(new) - 1]
    rows = pack.threshold_rows
    # Looked up column-wise: a threshold's id and kind by its row, a level's value by its
    # place in the flat table of every threshold's levels.
    level_first = np.cumsum([0] + [len(r[2]) for r in rows], dtype=np.int64)
    level_values = np.array([v for r in rows for v in r[2]], dtype=np.int64)
    decisions = pl.DataFrame(
        {
            "s": ds,
            "threshold": pl.Series([r[0] for r in rows], dtype=pl.String).gather(t),
            "kind": pl.Series([r[1] for r in rows], dtype=pl.String).gather(t),
            "level": level_values[level_first[t] + result.decision_level],
            "at": at,
            "ordinal": ordinal,
        },
        schema={
            "s": pl.Int64,
            "threshold": pl.String,
            "kind": pl.String,
            "level": pl.Int64,
            "at": pl.Int64,
            "ordinal": pl.Int64,
        },
    )
    return Side(result.points, table, decisions)


def _codes(column: pl.Series) -> Codes:
    """A string column as codes into its sorted distinct values (-1 for null), column-wise."""
    names = column.drop_nulls().unique().sort().to_list()
    return _coded(column, names), names


def _coded(column: pl.Series, names: Sequence[str]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Each value's place in ``names``, -1 where it is null or not there, column-wise."""
    found = column.replace_strict(names, pl.int_range(len(names), eager=True), default=-1)
    return found.cast(pl.Int64).to_numpy()


def decision_id(domain: str, subject: str, row: dict[str, Any]) -> str:
    """The id the reference fold gives the decision of ``row`` (a `Side.decisions` row)."""
    at = _EPOCH + timedelta(microseconds=row["at"])
    return _decision_id(domain, subject, row["threshold"], row["level"], at, row["ordinal"])
