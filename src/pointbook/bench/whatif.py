"""`bench whatif`: `run_whatif` timed over a whole store, against one plain fold of every subject.

One candidate per domain of the workload, derived from its reference pack:

- `forum`: the `downvoted` penalty raised from -2 to -3 points, a rules-only change (about one
  event in eight of the workload is a downvote): a subject with no downvote keeps its baseline
  fold (`reused`), the others are folded under both packs;
- `fr-driving`: the licence-invalidation threshold moved from 0 to 2 points in every version,
  not a rules-only change: every subject is folded under both.

The baseline, measured in the same run and process: `Ledger.states` as of the same instant over
every subject of the domain (one fold each, the store's reads included as they are in
what-if), on one process as what-if is (``jobs`` 1). `ratio_to_one_fold` is what-if's seconds
over the baseline's: about 2 means what-if costs two folds per subject.

What-if takes the compiled fold (`path` "kernel", analytics/whatif_kernel.py) where both packs
allow it (forum does; fr-driving, with restorations, does not). A second baseline, the same
what-if by the reference fold (``fold_baseline``, on by default), is then timed in the same run:
`speedup_vs_fold_path` is its seconds over the kernel's, and `same_as_fold_path` says whether
the two gave the same figures.

The store is built from the seeded workload (not timed), or is an existing one (``db``). Either
way it is made read-only before anything is timed (SQLite `PRAGMA query_only`, PostgreSQL
read-only transactions): what-if writes nothing, and a write would fail rather than happen.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pointbook.analytics.whatif import WhatIf, run_whatif
from pointbook.bench import (
    DOMAINS,
    fresh_store,
    generate_workload,
    make_read_only,
    open_existing,
    open_ledger,
    peak_rss_mb,
    write_workload,
)
from pointbook.bench.ingest import time_engine
from pointbook.demo import packs_dir
from pointbook.errors import PointbookError
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, load_pack_text
from pointbook.store import SQLiteStore

__all__ = [
    "CANDIDATES",
    "DEFAULT_AS_OF",
    "BenchWhatIfError",
    "forum_candidate",
    "fr_driving_candidate",
    "run_bench_whatif",
    "time_whatif",
]

# The end of the workload's last day (it spans 2021-01-01 to 2025-12-31).
DEFAULT_AS_OF = datetime.combine(date(2025, 12, 31), datetime.max.time(), tzinfo=UTC)


class BenchWhatIfError(PointbookError):
    """The store or the reference pack cannot give this benchmark."""


def _reference(domain: str) -> str:
    return (packs_dir() / DOMAINS[domain][0]).read_text(encoding="utf-8")


def forum_candidate() -> list[PackVersion]:
    """The forum reference pack with the `downvoted` penalty raised from -2 to -3 points."""
    head, rule, tail = _reference("forum").partition("  - id: downvoted\n")
    old = "    points: -2\n"
    if not rule or old not in tail:
        raise BenchWhatIfError("the forum reference pack no longer has `downvoted` at -2 points")
    return load_pack_text(head + rule + tail.replace(old, "    points: -3\n", 1), "forum-whatif")


def fr_driving_candidate() -> list[PackVersion]:
    """The fr-driving reference pack with licence invalidation at 2 points instead of 0."""
    text = _reference("fr-driving")
    old = "    direction: at_or_below\n    value: 0\n"
    if old not in text:
        raise BenchWhatIfError("the fr-driving reference pack no longer invalidates at 0 points")
    new = "    direction: at_or_below\n    value: 2\n"
    return load_pack_text(text.replace(old, new), "fr-driving-whatif")


# domain -> (what the candidate changes, the candidate's versions)
CANDIDATES: dict[str, tuple[str, Callable[[], list[PackVersion]]]] = {
    "forum": ("downvoted -2 -> -3 (rules only)", forum_candidate),
    "fr-driving": ("invalidation at 2, not 0 points", fr_driving_candidate),
}


def _figures(w: WhatIf) -> dict[str, Any]:
    skip = ("seconds", "path", "reused")
    return {k: v for k, v in vars(w).items() if k not in skip}


def time_whatif(
    ledger: Ledger, domain: str, as_of: datetime, fold_baseline: bool = True
) -> dict[str, Any]:
    """What-if of ``domain``'s candidate, then the one-fold baseline, both as of ``as_of``
    (and, when what-if took the kernel and ``fold_baseline``, what-if by the reference fold)."""
    change, make = CANDIDATES[domain]
    candidate = make()
    c0, t0 = time.process_time(), time.perf_counter()
    w = run_whatif(ledger, domain, candidate, as_of=as_of)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra: dict[str, Any] = {}
    if w.path == "kernel" and fold_baseline:
        c0, t0 = time.process_time(), time.perf_counter()
        slow = run_whatif(ledger, domain, candidate, as_of=as_of, use_kernel=False)
        fold_path_seconds = time.perf_counter() - t0
        extra = {
            "fold_path_seconds": fold_path_seconds,
            "fold_path_cpu_seconds": time.process_time() - c0,
            "speedup_vs_fold_path": fold_path_seconds / seconds,
            "same_as_fold_path": _figures(slow) == _figures(w),
        }
    c0, t0 = time.process_time(), time.perf_counter()
    folded = sum(1 for _ in ledger.states(domain, as_of))
    fold_seconds, fold_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "workload": "whatif",
        "domain": domain,
        "candidate": change,
        "path": w.path,
        "as_of": as_of.isoformat(),
        "events": w.events,
        "subjects": w.subjects,
        "reused": w.reused,
        "subjects_changed": len(w.changes),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "events_per_s": w.events / seconds,
        "one_fold_subjects": folded,
        "one_fold_seconds": fold_seconds,
        "one_fold_cpu_seconds": fold_cpu,
        "ratio_to_one_fold": seconds / fold_seconds,
        "cpu_ratio_to_one_fold": cpu / fold_cpu,
        **extra,
    }


@contextmanager
def _built(events: int, subjects: int, backend: str, seed: int) -> Iterator[Ledger]:
    """A fresh store holding the seeded workload (ingested, decisions refreshed; not timed)."""
    with tempfile.TemporaryDirectory(prefix="pointbook-bench-") as tmp:
        folder = Path(tmp)
        path = folder / "events.jsonl"
        write_workload(path, generate_workload(events, subjects, seed))
        with fresh_store(backend, folder) as store:
            ledger = open_ledger(store)
            try:
                time_engine(ledger, path, 10_000)
                make_read_only(store)
                yield ledger
            finally:
                ledger.close()  # its workers and the store (fresh_store's close is then a no-op)


def run_bench_whatif(
    events: int = 200_000,
    subjects: int = 20_000,
    backend: str = "sqlite",
    seed: int = 2020,
    as_of: datetime = DEFAULT_AS_OF,
    db: str | None = None,
    domains: Sequence[str] | None = None,
    fold_baseline: bool = True,
) -> list[dict[str, Any]]:
    """One `bench whatif` run: one JSON-ready result per domain of the workload the store
    holds (a ``db`` lacking one of them is timed on the others), or of ``domains`` only."""
    unknown = sorted(set(domains or ()) - set(CANDIDATES))
    if unknown:
        raise BenchWhatIfError(
            f"no what-if candidate for {', '.join(unknown)}: choose among {', '.join(CANDIDATES)}"
        )
    context = _built(events, subjects, backend, seed) if db is None else _existing(db)
    out = []
    with context as ledger:
        ledger.jobs = 1  # what-if folds in this process: so does its baseline
        published = set(ledger.store.domains())
        for domain in CANDIDATES:
            if domain in published and (not domains or domain in domains):
                result = time_whatif(ledger, domain, as_of, fold_baseline)
                result["backend"] = (
                    "sqlite" if isinstance(ledger.store, SQLiteStore) else "postgres"
                )
                result["store"] = "built" if db is None else "given"
                result["peak_rss_mb"] = peak_rss_mb()
                out.append(result)
    if not out:
        raise BenchWhatIfError(f"{db}: neither forum nor fr-driving is published in this store")
    return out


@contextmanager
def _existing(db: str) -> Iterator[Ledger]:
    ledger = Ledger(open_existing(db), jobs=1)
    try:
        yield ledger
    finally:
        ledger.close()
