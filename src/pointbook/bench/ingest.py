"""`bench ingest`: the whole ingest path timed end to end, with baselines from the same run.

- the engine: a JSON Lines file into a fresh store through `Ledger.ingest` (parse, validate,
  judge, entries, durable commit per batch, decisions refreshed), the packs published first;
- raw insert: the same number of rows shaped like `pb_events` inserted with the backend's
  fastest path and no engine (SQLite executemany, one transaction per batch; PostgreSQL binary
  COPY, one transaction per batch), rows built before the clock starts;
- raw ledger: bench/rawledger.py, every row the ingest stored, inserted again the same way
  into empty copies of its tables (the storage floor of the engine's own output);
- naive: bench/naive.py, one event per transaction, on a prefix of the file;
- the peer, when the `bench` extra is installed: pinax-points awarding the same points on
  SQLite in one transaction, on a prefix of the file (bench/peer.py).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pointbook.bench import (
    DOMAINS,
    bulk_sqlite,
    drop_schema,
    fresh_store,
    generate_workload,
    new_schema,
    open_ledger,
    peak_rss_mb,
    pg_url,
    write_workload,
)
from pointbook.bench.naive import run_naive
from pointbook.bench.peer import PEER_MISSING, peer_installed, peer_label, run_peer
from pointbook.bench.rawledger import time_raw_ledger
from pointbook.bench.stages import TOP, timed_stages
from pointbook.dates import parse_instant, to_micros
from pointbook.intake import read_records
from pointbook.ledger import IngestReport, Ledger

__all__ = ["SAMPLE_AS_OF", "raw_rows", "run_ingest", "time_engine", "time_raw_insert"]

# Balances reported for a few subjects, to compare runs (not timed).
SAMPLE_AS_OF = datetime(2023, 7, 1, tzinfo=UTC)
SAMPLE_PER_DOMAIN = 5
Row = tuple[Any, ...]

_EVENTS_DDL = [
    "CREATE TABLE raw_events (domain TEXT NOT NULL, id TEXT NOT NULL, subject TEXT NOT NULL,"
    " type TEXT NOT NULL, occurred_us {int} NOT NULL, attributes TEXT NOT NULL, evidence TEXT,"
    " issuer TEXT, content_hash TEXT NOT NULL, received_us {int} NOT NULL, incident TEXT,"
    " salt TEXT, erased_us {int}, PRIMARY KEY (domain, id)){suffix}",
    "CREATE INDEX raw_events_subject ON raw_events (domain, subject, occurred_us)",
]


def raw_rows(path: Path) -> list[Row]:
    """Rows of the shape of `pb_events` (13 columns) for every line of the file."""
    from zoneinfo import ZoneInfo

    utc = ZoneInfo("UTC")
    now = to_micros(datetime.now(UTC))
    out: list[Row] = []
    with path.open("rb") as f:
        for line in f:
            e = json.loads(line)
            out.append(
                (
                    e["domain"],
                    e["id"],
                    e["subject"],
                    e["type"],
                    to_micros(parse_instant(e["occurred_at"], utc)),
                    json.dumps(e["attributes"], sort_keys=True),
                    e.get("evidence"),
                    e.get("issuer"),
                    hashlib.sha256(line).hexdigest(),
                    now,
                    None,
                    secrets.token_hex(16),
                    None,
                )
            )
    return out


def _batches(found: Sequence[Row], size: int) -> list[Sequence[Row]]:
    return [found[i : i + size] for i in range(0, len(found), size)]


def time_raw_insert(found: Sequence[Row], backend: str, folder: Path, batch_size: int) -> float:
    """Seconds to insert ``found`` into a fresh table shaped like pb_events, no engine."""
    if backend == "sqlite":
        conn = bulk_sqlite(folder / "raw.db")
        try:
            for ddl in _EVENTS_DDL:
                conn.execute(ddl.format(int="INTEGER", suffix=" WITHOUT ROWID"))
            insert = f"INSERT INTO raw_events VALUES ({', '.join('?' * 13)})"
            t0 = time.perf_counter()
            for batch in _batches(found, batch_size):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, batch)
                conn.execute("COMMIT")
            return time.perf_counter() - t0
        finally:
            conn.close()
    import psycopg
    from psycopg import sql

    from pointbook.store.postgres import split_url
    from pointbook.store.postgres_db import COPY_TYPES

    schema = new_schema("pb_bench_raw")
    try:
        with psycopg.connect(split_url(pg_url())[0], autocommit=True) as pg:
            pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for ddl in _EVENTS_DDL:
                pg.execute(ddl.replace("TEXT", 'TEXT COLLATE "C"').format(int="BIGINT", suffix=""))
            t0 = time.perf_counter()
            for batch in _batches(found, batch_size):
                with (
                    pg.transaction(),
                    pg.cursor() as cur,
                    cur.copy("COPY raw_events FROM STDIN (FORMAT BINARY)") as cp,
                ):
                    cp.set_types(COPY_TYPES["pb_events"])
                    for r in batch:
                        cp.write_row(r)
            return time.perf_counter() - t0
    finally:
        drop_schema(schema)


def time_engine(
    ledger: Ledger, path: Path, batch_size: int, jobs: int | None = None
) -> tuple[IngestReport, float]:
    """The engine's figure: the JSON Lines file ``path`` through `Ledger.ingest` (decisions
    refreshed, by ``jobs`` worker processes when given, else the ledger's); (report, seconds).
    The workers start inside the timed part, as they do for `pointbook ingest`."""
    if jobs is not None:
        ledger.jobs = jobs
    t0 = time.perf_counter()
    with path.open("rb") as f:
        report = ledger.ingest(read_records(f, "jsonl"), batch_size, refresh=True)
    return report, time.perf_counter() - t0


def run_ingest(
    events: int,
    subjects: int,
    backend: str = "sqlite",
    late_fraction: float = 0.0,
    seed: int = 2020,
    naive_cap: int = 5000,
    batch_size: int = 10_000,
    peer: bool = True,
    peer_cap: int = 1000,
    jobs: int | None = None,
    stages: bool = False,
) -> dict[str, Any]:
    """One `bench ingest` run; the JSON-ready result. The peer runs when ``peer`` is set and
    the `bench` extra is installed; otherwise `peer` says why it did not. ``stages``: also the
    CPU seconds per stage of the timed ingest (bench/stages.py), under "stages"."""
    with tempfile.TemporaryDirectory(prefix="pointbook-bench-") as tmp:
        folder = Path(tmp)
        path = folder / "events.jsonl"
        n = write_workload(path, generate_workload(events, subjects, seed, late_fraction))
        with fresh_store(backend, folder) as store:
            ledger = open_ledger(store)
            with ExitStack() as timing:
                spent = timing.enter_context(timed_stages(ledger)) if stages else None
                cpu = time.process_time()
                report, seconds = time_engine(ledger, path, batch_size, jobs)
                # This process's CPU (worker processes, with --jobs, not counted): the wall
                # time less the waits for the disk or a core.
                cpu = time.process_time() - cpu
            rss = peak_rss_mb()  # before the baselines build their own rows
            balances: dict[str, int] = {}
            for domain in DOMAINS:
                for subject in store.subjects(domain)[:SAMPLE_PER_DOMAIN]:
                    balances[f"{domain}/{subject}"] = ledger.state(
                        domain, subject, SAMPLE_AS_OF
                    ).points
            used_jobs = ledger.jobs
            ledger.close()  # its workers and the store (fresh_store's close is then a no-op)
            # The same rows again, no engine: the storage floor of what the engine stores.
            ledger_rows, ledger_seconds = time_raw_ledger(
                store, backend, folder, max(1, -(-n // batch_size))
            )
        found = raw_rows(path)
        raw_seconds = time_raw_insert(found, backend, folder, batch_size)
        del found
        naive_events, naive_seconds = run_naive(path, min(n, naive_cap), backend, folder)
        installed = peer and peer_installed()
        peer_run = run_peer(path, min(n, peer_cap), folder) if installed else None
    events_per_s = report.accepted / seconds
    raw_per_s = n / raw_seconds
    naive_per_s = naive_events / naive_seconds
    peer_figures: dict[str, Any] = {"peer": PEER_MISSING if peer else "not run (--no-peer)"}
    if peer_run is not None:
        peer_per_s = peer_run.events / peer_run.seconds
        peer_figures = {
            "peer": peer_label(),
            "peer_events": peer_run.events,
            "peer_seconds": peer_run.seconds,
            "peer_events_per_s": peer_per_s,
            "speedup_vs_peer": events_per_s / peer_per_s,
            "peer_points": peer_run.points,
        }
    return {
        "workload": "ingest",
        "backend": backend,
        "jobs": used_jobs,
        "events": n,
        "subjects": subjects,
        "late_fraction": late_fraction,
        "seed": seed,
        "batch_size": batch_size,
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "rejected": len(report.rejected),
        "entries": report.entries,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "events_per_s": events_per_s,
        "raw_rows": n,
        "raw_seconds": raw_seconds,
        "raw_insert_rows_per_s": raw_per_s,
        "ratio_to_raw": events_per_s / raw_per_s,
        "raw_ledger_rows": ledger_rows,
        "raw_ledger_seconds": ledger_seconds,
        "raw_ledger_rows_per_s": ledger_rows / ledger_seconds,
        "ratio_to_raw_ledger": ledger_seconds / seconds,
        "naive_events": naive_events,
        "naive_seconds": naive_seconds,
        "naive_events_per_s": naive_per_s,
        "speedup_vs_naive": events_per_s / naive_per_s,
        **peer_figures,
        "peak_rss_mb": rss,
        "balances": balances,
        **({} if spent is None else {"stages": _stage_figures(spent, cpu)}),
    }


def _stage_figures(spent: dict[str, float], cpu: float) -> dict[str, float]:
    """The stages' CPU seconds, and `other`: the engine's CPU less the top-level stages."""
    top = sum(spent[key] for key, _ in TOP)
    return {**spent, "other": cpu - top}
