"""What-if over columns: both sides of the replay folded by the compiled kernel.

`whatif.run_whatif` folds each subject twice with the reference fold. When both the published
pack and the candidate are one version the kernel models (`engine.kernel.unsupported`), this
module gives the same `WhatIf` from the stored rows instead, a slice of subjects at a time:

* the baseline's entries are the stored ones (the ledger judged every event under the one
  published version; an erased event's entries are all that is left of it, as in the fold);
* the candidate's are the same, except for the live events of the types whose rules the
  candidate changes (`whatif._touched_types`): those are judged again by `judge_batch`, the
  function every event is judged by at ingest;
* both sides go through `engine.kernel`, and the comparison (points, decisions, applied
  points, points by rule) is made column by column.

Subjects with appeals are left to the reference fold (the kernel does not model appeals):
`run_whatif` replays them as before. tests/test_analytics.py checks this path against the
reference one on the same stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from pointbook.dates import Duration, add_duration, local_date, to_micros
from pointbook.engine.batch import rule_frame
from pointbook.engine.fold import _decision_id
from pointbook.engine.kernel import NEVER, KernelPack, fold_population, unsupported
from pointbook.rules.pack import PackVersion
from pointbook.store.base import Store

__all__ = ["Side", "Slice", "decision_id", "kernel_eligible", "kernel_sides"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
_ROW_SCHEMA: dict[str, Any] = {
    "subject": pl.String,
    "event_id": pl.String,
    "type": pl.String,
    "occurred_us": pl.Int64,
    "erased": pl.Int64,
    "attributes": pl.String,
    "rule_id": pl.String,
    "delta": pl.Int64,
    "until": pl.Int64,
    "capped": pl.Int64,
}


def kernel_eligible(published: Sequence[PackVersion], candidate: Sequence[PackVersion]) -> bool:
    """Both sides are one version the kernel folds."""
    return (
        len(published) == 1
        and len(candidate) == 1
        and unsupported(published[0]) is None
        and unsupported(candidate[0]) is None
    )


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


def kernel_sides(
    store: Store,
    domain: str,
    published: PackVersion,
    candidate: PackVersion,
    touched: frozenset[str],
    subjects: Sequence[str],
    when: datetime,
    start: datetime | None,
    end: datetime | None,
    chunk: int = 10_000,
) -> Iterator[Slice]:
    """Each slice of ``subjects`` (``chunk`` at a time) folded under both versions."""
    kb, ka = KernelPack.of(published), KernelPack.of(candidate)
    when_us = to_micros(when)
    since = None if start is None else to_micros(start)
    until = None if end is None else to_micros(end)
    pos_b = _positions(published)
    pos_a = _positions(candidate)
    types = sorted(touched)

    def read(part: Sequence[str]) -> pl.DataFrame:
        found = store.population_rows(domain, part, since, until, types)
        return pl.DataFrame(found, schema=_ROW_SCHEMA, orient="row").with_columns(
            pl.col("erased").cast(pl.Boolean), pl.col("capped").cast(pl.Boolean)
        )

    parts = [subjects[i : i + chunk] for i in range(0, len(subjects), chunk)]
    # The next slice is read while this one is folded: the store's connection is used by the
    # reading thread only, one read at a time; the fold releases the GIL (numba nogil), so
    # reading and folding share the two cores.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="whatif-read") as pool:
        ahead = pool.submit(read, parts[0]) if parts else None
        for k in range(len(parts)):
            assert ahead is not None
            rows = ahead.result()
            ahead = pool.submit(read, parts[k + 1]) if k + 1 < len(parts) else None
            if rows.is_empty():
                continue
            yield _slice(rows, touched, published, candidate, kb, ka, pos_b, pos_a, when_us)


def _slice(
    rows: pl.DataFrame,
    touched: frozenset[str],
    published: PackVersion,
    candidate: PackVersion,
    kb: KernelPack,
    ka: KernelPack,
    pos_b: dict[str, int],
    pos_a: dict[str, int],
    when_us: int,
) -> Slice:
    names = rows["subject"].unique(maintain_order=True).to_list()
    index = pl.DataFrame({"subject": names, "s": np.arange(len(names), dtype=np.int64)})
    rows = rows.join(index, on="subject", how="left").filter(pl.col("occurred_us") <= when_us)
    events = rows.unique("event_id")
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
    # Expiries of one instant run in event id order: each event's rank stands for its id.
    rows = rows.with_columns(pl.col("event_id").rank("dense").cast(pl.Int64).alias("key"))
    stored = rows.filter(pl.col("rule_id").is_not_null())
    base = _order(stored, pos_b)
    redo = pl.col("type").is_in(list(touched)) & ~pl.col("erased")
    kept = stored.filter(~redo)
    judged = _judge(
        rows.filter(redo).unique("event_id", maintain_order=True), stored, published, candidate
    )
    cand = _order(pl.concat([kept, judged], how="diagonal_relaxed"), pos_a)
    return Slice(
        names,
        events.height,
        _fold(kb, published, base, first, len(names), when_us),
        _fold(ka, candidate, cand, first, len(names), when_us),
    )


def _positions(version: PackVersion) -> dict[str, int]:
    return {r.id: k for k, r in enumerate(version.spec.rules)}


def _order(entries: pl.DataFrame, positions: dict[str, int]) -> pl.DataFrame:
    """Entries in the fold's order: by subject, instant, event id, then the rule's place in
    the pack (an erased event's entries, read back from the store, in rule id order)."""
    by_id = {rid: k for k, rid in enumerate(sorted(positions))}
    live = pl.col("rule_id").replace_strict(positions, default=-1, return_dtype=pl.Int64)
    erased = pl.col("rule_id").replace_strict(by_id, default=-1, return_dtype=pl.Int64)
    return entries.with_columns(
        pl.when(pl.col("erased")).then(erased).otherwise(live).alias("pos")
    ).sort("s", "occurred_us", "key", "pos")  # key: the event id's rank


def _judge(
    events: pl.DataFrame, stored: pl.DataFrame, published: PackVersion, version: PackVersion
) -> pl.DataFrame:
    """The candidate's entries for live events of the changed types, one row each: the rules
    matched column by column (`engine.batch.rule_frame`, as ingest judges), an entry's end
    taken from the stored entry of the same event and rule where the rule's `counts_for` is
    the published one's, else worked out as `judge.make_entry` does."""
    schema = {
        **_ROW_SCHEMA,
        "erased": pl.Boolean,
        "capped": pl.Boolean,
        "s": pl.Int64,
        "key": pl.Int64,
    }
    parts = [pl.DataFrame(schema=schema)]
    ends = stored.select("event_id", "rule_id", pl.col("until").alias("stored_until"))
    for (event_type,), group in events.group_by("type", maintain_order=True):
        assert isinstance(event_type, str)
        if version.event_types.get(event_type) is None or not version.rules_for(event_type):
            continue  # the candidate dropped the type, or gives it no rule: no entry
        attributes = [json.loads(a) if a else {} for a in group["attributes"].to_list()]
        result = rule_frame(version, event_type, attributes)
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
            if rule.counts_for is None:
                hit = hit.with_columns(pl.lit(None, dtype=pl.Int64).alias("until"))
            elif _counts_for(published, rule.id) == rule.counts_for:
                hit = (
                    hit.drop("until")
                    .join(ends, on=["event_id", "rule_id"], how="left")
                    .rename({"stored_until": "until"})
                )
            else:
                hit = hit.with_columns(pl.lit(None, dtype=pl.Int64).alias("until"))
            if rule.counts_for is not None and hit["until"].null_count():
                hit = hit.with_columns(_work_out_ends(hit, rule.counts_for, version))
            parts.append(hit.select(list(schema)))
    return pl.concat(parts, how="vertical_relaxed")


def _counts_for(version: PackVersion, rule_id: str) -> Duration | None:
    for rules in version.rules_by_event.values():
        for r in rules:
            if r.id == rule_id:
                return r.counts_for
    return None


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


def _days(occurred: pl.Series, version: PackVersion) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Each instant's local day number in the version's time zone (only equality matters)."""
    if version.tz.key in ("UTC", "Etc/UTC"):
        return (occurred // _DAY_US).to_numpy()
    memo: dict[int, int] = {}
    out = np.empty(len(occurred), dtype=np.int64)
    for k, us in enumerate(occurred.to_list()):
        day = memo.get(us)
        if day is None:
            day = memo[us] = local_date(_EPOCH + timedelta(microseconds=us), version.tz).toordinal()
        out[k] = day
    return out


def _fold(
    pack: KernelPack,
    version: PackVersion,
    entries: pl.DataFrame,
    first: np.ndarray[Any, np.dtype[np.int64]],
    n_subjects: int,
    when_us: int,
) -> Side:
    s = entries["s"].to_numpy()
    starts = np.searchsorted(s, np.arange(n_subjects + 1)).astype(np.int64)
    capped = entries["capped"].fill_null(False).to_numpy().astype(np.bool_)
    result = fold_population(
        pack,
        starts,
        first.astype(np.int64),
        entries["occurred_us"].to_numpy().astype(np.int64),
        entries["delta"].to_numpy().astype(np.int64),
        entries["until"].fill_null(NEVER).to_numpy().astype(np.int64),
        capped,
        _days(entries["occurred_us"], version),
        entries["key"].to_numpy().astype(np.int64),
        when_us,
    )
    table = entries.select(
        "s",
        "rule_id",
        "delta",
        "until",
        "capped",
        pl.Series("pos", np.arange(len(s), dtype=np.int64) - starts[s]),
        pl.Series("applied", result.applied),
        pl.Series("counts", result.counts),
    )
    t = result.decision_threshold
    ds, at = result.decision_subject, result.decision_at
    # Decisions made earlier at the same instant (the id's ordinal): they come out in the
    # order made, subject after subject, so each run of one (subject, instant) counts up.
    new = np.ones(len(ds), dtype=np.bool_)
    new[1:] = (ds[1:] != ds[:-1]) | (at[1:] != at[:-1])
    runs = np.flatnonzero(new)
    ordinal = np.arange(len(ds), dtype=np.int64) - runs[np.cumsum(new) - 1]
    decisions = pl.DataFrame(
        {
            "s": ds,
            "threshold": pl.Series(pack.threshold_ids, dtype=pl.String).gather(t),
            "kind": pl.Series(pack.threshold_kinds, dtype=pl.String).gather(t),
            "level": pack.level[pack.first_level[t] + result.decision_level],
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


def decision_id(domain: str, subject: str, row: dict[str, Any]) -> str:
    """The id the reference fold gives the decision of ``row`` (a `Side.decisions` row)."""
    at = _EPOCH + timedelta(microseconds=row["at"])
    return _decision_id(domain, subject, row["threshold"], row["level"], at, row["ordinal"])
