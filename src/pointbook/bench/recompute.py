"""`bench recompute`: re-scoring the whole population as of a date, from the ledger.

The engine: `Ledger.states` over every subject of each domain (reads each subject's events and
folds them: expiries, restorations, caps, clamping, decisions). The baseline, measured in the
same run: a plain Polars group-by sum of the same entries' deltas per subject, read from
`pb_entries` (the read is included in its time, as the engine's reads are in its own). The
baseline answers a simpler question (no clamping, expiry or restoration): it is the floor any
columnar path could reach, not an equivalent.

``jobs`` worker processes fold the subjects (the ledger's default: $POINTBOOK_JOBS, else
1); they are started by the ingest's decision refresh, before the clock starts.

A second engine figure, in the same run: the compiled re-score (`population_scores`, the
kernel of what-if) over the domains whose packs it models, the others by `Ledger.states`
(`kernel_…` fields). It gives each subject's points, entries counting and decisions, not the
explanations `Ledger.states` builds; `kernel_same_points` says whether every subject's points
equal the ones `Ledger.states` gave. The compiled re-score reads a SQLite file through ADBC
into Arrow columns; so a second baseline reads the group-by's rows the same way
(`groupby_arrow_…`, `kernel_ratio_to_groupby_arrow`), the stricter comparison.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pointbook.analytics.whatif_kernel import population_scores, split_by_appeals
from pointbook.bench import fresh_store, generate_workload, open_ledger, peak_rss_mb, write_workload
from pointbook.dates import to_micros
from pointbook.engine import evaluate_subject
from pointbook.engine.kernel import unsupported
from pointbook.intake import read_records
from pointbook.ledger import Ledger
from pointbook.store import SQLiteStore
from pointbook.store.base import Store
from pointbook.store.sqlite_scan import in_memory, read_frame

__all__ = ["DEFAULT_AS_OF", "groupby_sums", "run_recompute"]

DEFAULT_AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def groupby_sums(store: Store, as_of: datetime) -> pl.DataFrame:
    """Per (domain, subject), the sum of the deltas of the entries that occurred by ``as_of``."""
    conn: Any = getattr(store, "conn")  # noqa: B009 - both stores keep a DB-API connection
    mark = "%s" if type(store).__name__ == "PostgresStore" else "?"
    found = conn.execute(
        f"SELECT domain, subject, delta FROM pb_entries WHERE occurred_us <= {mark}",
        (to_micros(as_of),),
    ).fetchall()
    frame = pl.DataFrame(
        found, schema={"domain": pl.String, "subject": pl.String, "delta": pl.Int64}, orient="row"
    )
    return frame.group_by("domain", "subject").agg(pl.col("delta").sum().alias("points"))


def groupby_arrow_sums(store: Store, as_of: datetime) -> pl.DataFrame | None:
    """`groupby_sums` with the rows read through ADBC into Arrow (the read the compiled
    re-score uses on a SQLite file); None for a store that is not one."""
    if not isinstance(store, SQLiteStore) or in_memory(store.path):
        return None
    frame = read_frame(
        store.path,
        "SELECT domain, subject, delta FROM pb_entries WHERE occurred_us <= ?",
        (to_micros(as_of),),
    )
    return frame.group_by("domain", "subject").agg(pl.col("delta").sum().alias("points"))


def run_recompute(
    events: int,
    subjects: int,
    backend: str = "sqlite",
    seed: int = 2020,
    as_of: datetime = DEFAULT_AS_OF,
    batch_size: int = 10_000,
    jobs: int | None = None,
) -> dict[str, Any]:
    """One `bench recompute` run; the JSON-ready result."""
    with tempfile.TemporaryDirectory(prefix="pointbook-bench-") as tmp:
        folder = Path(tmp)
        path = folder / "events.jsonl"
        n = write_workload(path, generate_workload(events, subjects, seed))
        with fresh_store(backend, folder) as store:
            ledger = open_ledger(store)
            if jobs is not None:
                ledger.jobs = jobs
            t0 = time.perf_counter()
            with path.open("rb") as f:
                report = ledger.ingest(read_records(f, "jsonl"), batch_size, refresh=True)
            ingest_seconds = time.perf_counter() - t0

            t0 = time.perf_counter()
            scored = 0
            points: dict[tuple[str, str], int] = {}
            for domain in store.domains():
                for state in ledger.states(domain, as_of):
                    scored += 1
                    points[(domain, state.subject)] = state.points
            seconds = time.perf_counter() - t0
            kernel = _kernel_rescore(ledger, as_of)
            kernel["kernel_same_points"] = kernel.pop("points") == points
            rss = peak_rss_mb()  # before the baseline reads its own rows
            used_jobs = ledger.jobs

            t0 = time.perf_counter()
            sums = groupby_sums(store, as_of)
            groupby_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            arrow = groupby_arrow_sums(store, as_of)
            arrow_seconds = time.perf_counter() - t0 if arrow is not None else None
            same_sums = arrow is None or arrow.sort("domain", "subject").equals(
                sums.sort("domain", "subject")
            )
            entries = int(
                getattr(store, "conn").execute("SELECT COUNT(*) FROM pb_entries").fetchone()[0]  # noqa: B009
            )
            ledger.close()  # its workers and the store (fresh_store's close is then a no-op)
    subjects_per_s = scored / seconds
    groupby_per_s = sums.height / groupby_seconds
    return {
        "workload": "recompute",
        "backend": backend,
        "jobs": used_jobs,
        "events": n,
        "accepted": report.accepted,
        "rejected": len(report.rejected),
        "ingest_seconds": ingest_seconds,
        "as_of": as_of.isoformat(),
        "subjects": scored,
        "entries": entries,
        "seconds": seconds,
        "subjects_per_s": subjects_per_s,
        "groupby_subjects": sums.height,
        "groupby_seconds": groupby_seconds,
        "groupby_subjects_per_s": groupby_per_s,
        "ratio_to_groupby": subjects_per_s / groupby_per_s,
        "kernel_domains": kernel["kernel_domains"],
        "kernel_seconds": kernel["kernel_seconds"],
        "kernel_subjects_per_s": kernel["kernel_subjects"] / kernel["kernel_seconds"],
        "kernel_ratio_to_groupby": kernel["kernel_subjects"]
        / kernel["kernel_seconds"]
        / groupby_per_s,
        "kernel_same_points": kernel["kernel_same_points"],
        # The same group-by with its rows read into Arrow as the compiled re-score reads
        # them (SQLite): the stricter baseline for it.
        "groupby_arrow_seconds": arrow_seconds,
        "groupby_arrow_same_sums": same_sums,
        "kernel_ratio_to_groupby_arrow": None
        if arrow_seconds is None
        else kernel["kernel_subjects"] / kernel["kernel_seconds"] / (sums.height / arrow_seconds),
        "peak_rss_mb": rss,
    }


def _kernel_rescore(ledger: Ledger, as_of: datetime) -> dict[str, Any]:
    """Every subject re-scored by the compiled fold where the domain's packs allow it (and
    the subject has no appeal), by `Ledger.states` otherwise; timed, with the points."""
    points: dict[tuple[str, str], int] = {}
    kernel_domains = []
    t0 = time.perf_counter()
    for domain in ledger.store.domains():
        versions = ledger.require_domain(domain)
        if unsupported(versions) is not None:
            for state in ledger.states(domain, as_of):
                points[(domain, state.subject)] = state.points
            continue
        kernel_domains.append(domain)
        plain, contested = split_by_appeals(ledger.store, domain)
        for names, side in population_scores(ledger.store, domain, versions, plain, as_of):
            points.update(((domain, n), int(p)) for n, p in zip(names, side.points, strict=True))
        for subject, events, aps in ledger.histories(domain, subjects=contested):
            points[(domain, subject)] = evaluate_subject(
                versions, events, as_of, subject=subject, appeals=aps
            ).points
    seconds = time.perf_counter() - t0
    return {
        "kernel_domains": kernel_domains,
        "kernel_seconds": seconds,
        "kernel_subjects": len(points),
        "points": points,
    }
