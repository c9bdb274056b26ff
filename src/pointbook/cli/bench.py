"""`pointbook bench ingest | recompute | query | scale | whatif`: measure the engine against
baselines from the same run."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pointbook.cli.common import JsonOption, console, e, err_console

app = typer.Typer(
    help="Measure ingest, recompute, queries and scaling against baselines measured in the same run.",
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
JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Worker processes folding subjects (default: $POINTBOOK_JOBS, else 1, which folds "
        "in the benchmark's own process).",
    ),
]

# How each figure is shown in the table: (key, label, format).
_INGEST = [
    ("backend", "backend", "{}"),
    ("jobs", "worker processes", "{}"),
    ("events", "events", "{:,}"),
    ("subjects", "subjects", "{:,}"),
    ("late_fraction", "late fraction", "{}"),
    ("accepted", "accepted", "{:,}"),
    ("rejected", "rejected", "{:,}"),
    ("entries", "entries", "{:,}"),
    ("seconds", "engine seconds", "{:.2f}"),
    ("cpu_seconds", "engine CPU seconds", "{:.2f}"),
    ("events_per_s", "engine events/s", "{:,.0f}"),
    ("raw_insert_rows_per_s", "raw insert rows/s", "{:,.0f}"),
    ("ratio_to_raw", "engine / raw", "{:.3f}"),
    ("raw_ledger_rows", "ledger rows written", "{:,}"),
    ("raw_ledger_rows_per_s", "raw ledger rows/s", "{:,.0f}"),
    ("ratio_to_raw_ledger", "engine / raw ledger", "{:.3f}"),
    ("naive_events", "naive events (prefix)", "{:,}"),
    ("naive_events_per_s", "naive events/s", "{:,.0f}"),
    ("speedup_vs_naive", "engine / naive", "{:.1f}"),
    ("peer", "peer", "{}"),
    ("peer_events", "peer events (prefix)", "{:,}"),
    ("peer_events_per_s", "peer events/s", "{:,.1f}"),
    ("speedup_vs_peer", "engine / peer", "{:,.0f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
]
_RECOMPUTE = [
    ("backend", "backend", "{}"),
    ("jobs", "worker processes", "{}"),
    ("events", "events", "{:,}"),
    ("as_of", "as of", "{}"),
    ("subjects", "subjects", "{:,}"),
    ("entries", "entries", "{:,}"),
    ("seconds", "engine seconds", "{:.2f}"),
    ("subjects_per_s", "engine subjects/s", "{:,.0f}"),
    ("groupby_seconds", "Polars group-by seconds", "{:.3f}"),
    ("groupby_subjects_per_s", "Polars subjects/s", "{:,.0f}"),
    ("ratio_to_groupby", "engine / group-by", "{:.4f}"),
    ("kernel_seconds", "compiled re-score seconds", "{:.2f}"),
    ("kernel_subjects_per_s", "compiled re-score subjects/s", "{:,.0f}"),
    ("kernel_ratio_to_groupby", "compiled re-score / group-by", "{:.4f}"),
    ("kernel_same_points", "compiled re-score: same points", "{}"),
    ("groupby_arrow_seconds", "group-by, rows read into Arrow, seconds", "{:.3f}"),
    ("kernel_ratio_to_groupby_arrow", "compiled re-score / group-by read into Arrow", "{:.4f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
]


def _check_backend(backend: str) -> None:
    if backend not in ("sqlite", "postgres"):
        raise typer.BadParameter("use sqlite or postgres", param_hint="--backend")


def _print_json(result: dict[str, Any]) -> None:
    """One result as one compact JSON line: how every workload's `--json` prints its results."""
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")


def _show(result: dict[str, Any], json_out: bool, fields: list[tuple[str, str, str]]) -> None:
    if json_out:
        _print_json(result)
        return
    t = Table(title=f"bench {result['workload']}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key, label, fmt in fields:
        if result.get(key) is not None:  # e.g. the peer's figures, only when it ran
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
    peer: Annotated[
        bool,
        typer.Option(
            "--peer/--no-peer",
            help="Also time the pinax-points peer (when the bench extra is installed).",
        ),
    ] = True,
    peer_cap: Annotated[
        int,
        typer.Option("--peer-cap", min=1, help="The peer runs on this many events."),
    ] = 1000,
    jobs: JobsOption = None,
    stages: Annotated[
        bool,
        typer.Option(
            "--stages",
            help="Also the CPU seconds per stage of the timed ingest (check, hash, judge, "
            "write, refresh...; this process only).",
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Time a seeded workload end to end into a fresh store, with raw-insert and naive baselines
    and the pinax-points peer."""
    from pointbook.bench.ingest import run_ingest
    from pointbook.bench.stages import INNER, TOP

    _check_backend(backend)
    if not json_out:
        err_console.print(f"bench ingest: {events:,} events, {subjects:,} subjects on {backend}…")
    result = run_ingest(
        events,
        subjects,
        backend,
        late_fraction,
        seed,
        naive_cap,
        batch_size,
        peer,
        peer_cap,
        jobs,
        stages,
    )
    _show(result, json_out, _INGEST)
    if stages and not json_out:
        t = Table(title="CPU per stage of the timed ingest")
        t.add_column("stage")
        t.add_column("CPU s", justify="right")
        t.add_column("µs per event", justify="right")
        spent = result["stages"]
        for key, label in [*TOP, *INNER, ("other", "other: reading lines, the loops")]:
            us = spent[key] / max(1, result["accepted"]) * 1e6
            t.add_row(e(label), f"{spent[key]:.2f}", f"{us:,.1f}")
        console.print(t)


@app.command("recompute")
def recompute(
    events: EventsOption = 200_000,
    subjects: SubjectsOption = 20_000,
    backend: BackendOption = "sqlite",
    as_of: Annotated[
        str, typer.Option("--as-of", help="Re-score as of the end of this day (UTC).")
    ] = "2025-12-31",
    seed: SeedOption = 2020,
    jobs: JobsOption = None,
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
    result = run_recompute(events, subjects, backend, seed, when, jobs=jobs)
    _show(result, json_out, _RECOMPUTE)


_WHATIF = [
    ("candidate", "candidate", "{}"),
    ("path", "path (kernel: compiled fold)", "{}"),
    ("backend", "backend", "{}"),
    ("store", "store", "{}"),
    ("as_of", "as of", "{:.10}"),
    ("events", "events", "{:,}"),
    ("subjects", "subjects", "{:,}"),
    ("reused", "subjects reused (one fold)", "{:,}"),
    ("subjects_changed", "subjects changed", "{:,}"),
    ("seconds", "what-if seconds", "{:.2f}"),
    ("cpu_seconds", "what-if CPU seconds", "{:.2f}"),
    ("events_per_s", "what-if events/s", "{:,.0f}"),
    ("one_fold_seconds", "one fold seconds", "{:.2f}"),
    ("one_fold_cpu_seconds", "one fold CPU seconds", "{:.2f}"),
    ("ratio_to_one_fold", "what-if / one fold", "{:.2f}"),
    ("cpu_ratio_to_one_fold", "what-if / one fold, CPU", "{:.2f}"),
    ("fold_path_seconds", "what-if by the reference fold, seconds", "{:.2f}"),
    ("speedup_vs_fold_path", "speedup vs the reference fold", "{:.1f}"),
    ("same_as_fold_path", "same figures as the reference fold", "{}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
]


@app.command("whatif")
def whatif(
    events: EventsOption = 200_000,
    subjects: SubjectsOption = 20_000,
    backend: BackendOption = "sqlite",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Time an existing store instead (a SQLite file or a PostgreSQL URL), opened "
            "read-only; --events, --subjects, --backend and --seed are then unused.",
        ),
    ] = None,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Compare as of the end of this day (UTC).")
    ] = "2025-12-31",
    seed: SeedOption = 2020,
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", help="Time only this domain (forum, fr-driving); repeatable."),
    ] = None,
    fold_baseline: Annotated[
        bool,
        typer.Option(
            "--fold-baseline/--no-fold-baseline",
            help="Where what-if takes the compiled fold, also time it by the reference fold "
            "(minutes on a large store).",
        ),
    ] = True,
    json_out: JsonOption = False,
) -> None:
    """Time `whatif` for forum (a rules-only candidate) and fr-driving (a moved threshold)
    against one plain fold of every subject, on a seeded store or an existing one."""
    from pointbook.bench.whatif import run_bench_whatif

    _check_backend(backend)
    try:
        day = date.fromisoformat(as_of)
    except ValueError as exc:
        raise typer.BadParameter("a date YYYY-MM-DD", param_hint="--as-of") from exc
    when = datetime.combine(day, time.max, tzinfo=UTC)
    if not json_out:
        where = db if db is not None else f"{events:,} events, {subjects:,} subjects on {backend}"
        err_console.print(f"bench whatif: {e(where)}…")
    results = run_bench_whatif(events, subjects, backend, seed, when, db, domain, fold_baseline)
    if json_out:
        for result in results:
            _print_json(result)
        return
    t = Table(title="bench whatif")
    t.add_column("measure")
    for result in results:
        t.add_column(e(result["domain"]), justify="right")
    for key, label, fmt in _WHATIF:
        t.add_row(label, *(e(fmt.format(r[key])) if key in r else "-" for r in results))
    console.print(t)


_QUERY = [
    ("subjects", "subjects (requested)", "{:,}"),
    ("events", "events ingested", "{:,}"),
    ("entries", "entries in the store", "{:,}"),
    ("subjects_with_events", "subjects with events", "{:,}"),
    ("store_mb", "store MiB", "{:,.0f}"),
    ("build_seconds", "build seconds", "{:.1f}"),
    ("samples", "library samples", "{:,}"),
    ("balance_p50_ms", "balance p50 ms", "{:.3f}"),
    ("balance_p99_ms", "balance p99 ms", "{:.3f}"),
    ("explain_p50_ms", "explain p50 ms", "{:.3f}"),
    ("explain_p99_ms", "explain p99 ms", "{:.3f}"),
    ("balance_cpu_p99_ms", "balance p99 CPU ms", "{:.3f}"),
    ("explain_cpu_p99_ms", "explain p99 CPU ms", "{:.3f}"),
    ("raw_balance_p50_ms", "raw SQL sum p50 ms", "{:.3f}"),
    ("raw_balance_p99_ms", "raw SQL sum p99 ms", "{:.3f}"),
    ("http_domain", "HTTP domain", "{}"),
    ("http_clients", "HTTP clients", "{}"),
    ("http_balance_requests", "HTTP balance requests", "{:,}"),
    ("http_balance_errors", "HTTP balance errors", "{:,}"),
    ("http_balance_p50_ms", "HTTP balance p50 ms", "{:.2f}"),
    ("http_balance_p99_ms", "HTTP balance p99 ms", "{:.2f}"),
    ("http_balance_requests_per_s", "HTTP balance requests/s", "{:,.0f}"),
    ("http_floor_p50_ms", "HTTP floor p50 ms", "{:.2f}"),
    ("http_floor_p99_ms", "HTTP floor p99 ms", "{:.2f}"),
    ("http_floor_requests_per_s", "HTTP floor requests/s", "{:,.0f}"),
    ("http_points_match", "HTTP points = library", "{}"),
    ("http_server_rss_mb", "server peak RSS MiB", "{:,.0f}"),
    ("peak_rss_mb", "peak RSS MiB", "{:,.0f}"),
]


@app.command("query")
def query(
    subjects: Annotated[
        int, typer.Option("--subjects", min=2, help="Subjects of the generated store.")
    ] = 100_000,
    entries: Annotated[
        int,
        typer.Option(
            "--entries",
            min=1,
            help="Events ingested to build the store (each gives about one entry).",
        ),
    ] = 1_000_000,
    seed: SeedOption = 2020,
    samples: Annotated[
        int, typer.Option("--samples", min=1, help="Random subjects timed in the library.")
    ] = 2000,
    clients: Annotated[int, typer.Option("--clients", min=1, help="Concurrent HTTP clients.")] = 32,
    seconds: Annotated[
        float,
        typer.Option(
            "--seconds", min=0.1, help="Seconds of HTTP load (after a warm-up of a quarter)."
        ),
    ] = 20.0,
    batch_size: BatchOption = 10_000,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Also print a cProfile listing of balance (stderr)."),
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            exists=True,
            dir_okay=False,
            help="Read this SQLite store (built before, e.g. by `bench memory`) instead of "
            "building one; the reviewer token the HTTP load uses is removed from it afterwards.",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Build a store through ingest, then time balance and explain in the library and balance
    over HTTP (`pointbook serve` on loopback), with raw-SQL and bare-HTTP baselines."""
    from pointbook.bench.query import run_query

    if not json_out:
        err_console.print(
            f"bench query: reading {db}…"
            if db is not None
            else f"bench query: building {entries:,} events over {subjects:,} subjects on sqlite…"
        )
    result = run_query(
        subjects, entries, seed, samples, clients, seconds, batch_size, profile, existing=db
    )
    listing = result.pop("profile", None)
    _show(result, json_out, _QUERY)
    if listing:
        sys.stderr.write(listing)


@app.command("scale")
def scale(
    sizes: Annotated[
        str,
        typer.Option("--sizes", help="Comma-separated event counts, each into a fresh store."),
    ] = "1000000,2000000,4000000",
    subjects: Annotated[
        int | None,
        typer.Option(
            "--subjects", min=2, help="A fixed population (default: one subject per ten events)."
        ),
    ] = None,
    backend: BackendOption = "sqlite",
    seed: SeedOption = 2020,
    batch_size: BatchOption = 10_000,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write µs per event against size to this SVG file."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Ingest at several sizes and report the time per event at each (it should stay flat)."""
    from pointbook.bench.scale import run_scale

    _check_backend(backend)
    try:
        counts = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    except ValueError as exc:
        raise typer.BadParameter("comma-separated whole numbers", param_hint="--sizes") from exc
    if not counts or min(counts) < 1:
        raise typer.BadParameter("at least one size, each at least 1", param_hint="--sizes")
    if not json_out:
        err_console.print(
            f"bench scale: {', '.join(f'{c:,}' for c in counts)} events on {backend}…"
        )
    result = run_scale(counts, subjects, backend, seed, batch_size, plot)
    if json_out:
        _print_json(result)
        return
    t = Table(title="bench scale")
    labels = ("events", "subjects", "entries", "seconds", "events/s", "µs/event", "CPU µs/event")
    for label in labels:
        t.add_column(label, justify="right")
    for r in result["sizes"]:
        t.add_row(
            f"{r['events']:,}",
            f"{r['subjects']:,}",
            f"{r['entries']:,}",
            f"{r['seconds']:.2f}",
            f"{r['events_per_s']:,.0f}",
            f"{r['us_per_event']:,.1f}",
            f"{r['cpu_us_per_event']:,.1f}",
        )
    console.print(t)
    ratio, cpu = result["ratio_largest_to_smallest"], result["cpu_ratio_largest_to_smallest"]
    console.print(
        f"largest / smallest µs per event: {ratio:.3f}, CPU {cpu:.3f} "
        f"(target ≤ {result['target_ratio']:.2f})"
        + (f"; plot: {e(result['plot'])}" if result["plot"] else "")
    )


_MEMORY = [
    ("events", "events", "{:,}"),
    ("subjects", "subjects", "{:,}"),
    ("accepted", "accepted", "{:,}"),
    ("file_mb", "file MiB", "{:,.0f}"),
    ("store_mb", "store MiB", "{:,.0f}"),
    ("generate_seconds", "generate seconds", "{:.1f}"),
    ("seconds", "ingest seconds", "{:.1f}"),
    ("events_per_s", "ingest events/s", "{:,.0f}"),
    ("peak_rss_mb", "ingest peak RSS MiB", "{:,.0f}"),
]


@app.command("memory")
def memory(
    events: EventsOption = 10_000_000,
    subjects: SubjectsOption = 1_000_000,
    seed: SeedOption = 2020,
    batch_size: BatchOption = 10_000,
    json_out: JsonOption = False,
) -> None:
    """Stream a file larger than memory through `pointbook ingest` (SQLite) and report its peak
    resident memory. The default, 10 million events, takes about half an hour on 2 cores."""
    from pointbook.bench.memory import run_memory
    from pointbook.cli.records import progress_bar

    if json_out:
        result = run_memory(events, subjects, seed, batch_size)
    else:
        err_console.print(f"bench memory: writing {events:,} events, then ingesting them…")
        with progress_bar() as bar:
            task = bar.add_task("generating", total=events)
            result = run_memory(
                events, subjects, seed, batch_size, progress=lambda n: bar.advance(task, n)
            )
    _show(result, json_out, _MEMORY)


_LOAD = [
    ("seconds", "measured seconds", "{:.1f}"),
    ("clients", "clients", "{}"),
    ("requests", "requests", "{:,}"),
    ("requests_per_s", "requests/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("errors", "errors", "{}"),
    ("events_sent", "events written", "{:,}"),
    ("write_timeouts", "writes timed out (unknown)", "{}"),
    ("write_resolved", "resolved by retry", "{}"),
    ("rss_start_mb", "server RSS after warm-up MiB", "{:.1f}"),
    ("rss_end_mb", "server RSS at end MiB", "{:.1f}"),
    ("rss_growth", "RSS growth", "{:+.1%}"),
]


@app.command("load")
def load(
    seconds: Annotated[float, typer.Option("--seconds", min=1, help="Measured duration.")] = 60,
    clients: Annotated[int, typer.Option("--clients", min=1, help="Concurrent clients.")] = 32,
    write_share: Annotated[
        float, typer.Option("--write-share", min=0.0, max=1.0, help="Share of batch writes.")
    ] = 0.2,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Events per write.")] = 10,
    events: Annotated[int, typer.Option("--events", min=1, help="Events seeded first.")] = 20_000,
    subjects: SubjectsOption = 2_000,
    warmup: Annotated[
        float, typer.Option("--warmup", min=0, help="Seconds of load before measuring.")
    ] = 5,
    seed: SeedOption = 2020,
    json_out: JsonOption = False,
) -> None:
    """Serve a seeded SQLite store on a free loopback port and load it: balance and explain
    reads and batch writes from concurrent clients; requests/s, p50/p99, errors, server memory."""
    from pointbook.bench.load import LOAD_SERVE_ARGS, Mix, serve_and_load

    reads = 1.0 - write_share
    mix = Mix(balance=reads * 0.75, explain=reads * 0.25, write=write_share, batch=batch)
    if not json_out:
        err_console.print(
            f"bench load: {clients} clients for {seconds:g} s (+{warmup:g} s warm-up) against "
            f"pointbook serve on {events:,} seeded events…"
        )
    result = serve_and_load(seconds, clients, mix, events, subjects, seed, warmup, LOAD_SERVE_ARGS)
    _show(result, json_out, _LOAD)
