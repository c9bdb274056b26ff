"""`pointbook bench ingest | recompute`: measure the engine against baselines from the same run."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

import typer
from rich.table import Table

from pointbook.cli.common import JsonOption, console, e, err_console

app = typer.Typer(
    help="Measure ingest and recompute against baselines measured in the same run.",
    no_args_is_help=True,
)

EventsOption = Annotated[int, typer.Option("--events", min=1, help="How many events.")]
SubjectsOption = Annotated[int, typer.Option("--subjects", min=2, help="How many subjects.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed: same seed, same events.")]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="sqlite (a file in a temporary folder) or postgres ($POINTBOOK_BENCH_PG, a fresh "
        "schema dropped afterwards).",
    ),
]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Events per ingest batch (one transaction).")
]

# How each figure is shown in the table: (key, label, format).
_INGEST = [
    ("backend", "backend", "{}"),
    ("events", "events", "{:,}"),
    ("subjects", "subjects", "{:,}"),
    ("late_fraction", "late fraction", "{}"),
    ("accepted", "accepted", "{:,}"),
    ("rejected", "rejected", "{:,}"),
    ("entries", "entries", "{:,}"),
    ("seconds", "engine seconds", "{:.2f}"),
    ("events_per_s", "engine events/s", "{:,.0f}"),
    ("raw_insert_rows_per_s", "raw insert rows/s", "{:,.0f}"),
    ("ratio_to_raw", "engine / raw", "{:.3f}"),
    ("naive_events", "naive events (prefix)", "{:,}"),
    ("naive_events_per_s", "naive events/s", "{:,.0f}"),
    ("speedup_vs_naive", "engine / naive", "{:.1f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
]
_RECOMPUTE = [
    ("backend", "backend", "{}"),
    ("events", "events", "{:,}"),
    ("as_of", "as of", "{}"),
    ("subjects", "subjects", "{:,}"),
    ("entries", "entries", "{:,}"),
    ("seconds", "engine seconds", "{:.2f}"),
    ("subjects_per_s", "engine subjects/s", "{:,.0f}"),
    ("groupby_seconds", "Polars group-by seconds", "{:.3f}"),
    ("groupby_subjects_per_s", "Polars subjects/s", "{:,.0f}"),
    ("ratio_to_groupby", "engine / group-by", "{:.4f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
]


def _check_backend(backend: str) -> None:
    if backend not in ("sqlite", "postgres"):
        raise typer.BadParameter("use sqlite or postgres", param_hint="--backend")


def _show(result: dict[str, Any], json_out: bool, fields: list[tuple[str, str, str]]) -> None:
    if json_out:
        sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
        return
    t = Table(title=f"bench {result['workload']}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key, label, fmt in fields:
        t.add_row(label, e(fmt.format(result[key])))
    console.print(t)


@app.command("ingest")
def ingest(
    events: EventsOption = 200_000,
    subjects: SubjectsOption = 20_000,
    backend: BackendOption = "sqlite",
    late_fraction: Annotated[
        float,
        typer.Option(
            "--late-fraction", min=0.0, max=1.0, help="Share of events moved later in the file."
        ),
    ] = 0.0,
    seed: SeedOption = 2020,
    naive_cap: Annotated[
        int,
        typer.Option("--naive-cap", min=1, help="The naive reference runs on this many events."),
    ] = 5000,
    batch_size: BatchOption = 10_000,
    json_out: JsonOption = False,
) -> None:
    """Time a seeded workload end to end into a fresh store, with raw-insert and naive baselines."""
    from pointbook.bench.ingest import run_ingest

    _check_backend(backend)
    if not json_out:
        err_console.print(f"bench ingest: {events:,} events, {subjects:,} subjects on {backend}…")
    result = run_ingest(events, subjects, backend, late_fraction, seed, naive_cap, batch_size)
    _show(result, json_out, _INGEST)


@app.command("recompute")
def recompute(
    events: EventsOption = 200_000,
    subjects: SubjectsOption = 20_000,
    backend: BackendOption = "sqlite",
    as_of: Annotated[
        str, typer.Option("--as-of", help="Re-score as of the end of this day (UTC).")
    ] = "2025-12-31",
    seed: SeedOption = 2020,
    json_out: JsonOption = False,
) -> None:
    """Ingest a workload, then time re-scoring every subject, with a Polars group-by baseline."""
    from pointbook.bench.recompute import run_recompute

    _check_backend(backend)
    try:
        day = date.fromisoformat(as_of)
    except ValueError as exc:
        raise typer.BadParameter("a date YYYY-MM-DD", param_hint="--as-of") from exc
    when = datetime.combine(day, time.max, tzinfo=UTC)
    if not json_out:
        err_console.print(
            f"bench recompute: {events:,} events, {subjects:,} subjects on {backend}…"
        )
    result = run_recompute(events, subjects, backend, seed, when)
    _show(result, json_out, _RECOMPUTE)
