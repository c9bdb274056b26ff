"""The straightforward reference implementation `bench ingest` compares the engine with.

One event at a time, as a first version of a points system might be written: parse the line,
find the pack version in force, read the subject's balance row, evaluate the version's rules in
plain Python (the compiled rule predicates), write the event's row and the new balance, and
commit, so each event is durable when it is acknowledged. It does less than the engine (no
expiry, restoration, daily cap, decisions or audit chain): its rate flatters it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointbook.bench import DOMAINS, drop_schema, new_schema, pg_url
from pointbook.dates import parse_instant, to_micros
from pointbook.demo import packs_dir
from pointbook.rules.pack import PackVersion, load_pack_file, version_at

__all__ = ["run_naive"]

_TABLES = [
    "CREATE TABLE naive_balances (domain TEXT NOT NULL, subject TEXT NOT NULL,"
    " points BIGINT NOT NULL, PRIMARY KEY (domain, subject))",
    "CREATE TABLE naive_events (domain TEXT NOT NULL, id TEXT NOT NULL, subject TEXT NOT NULL,"
    " type TEXT NOT NULL, occurred_us BIGINT NOT NULL, attributes TEXT NOT NULL,"
    " delta BIGINT NOT NULL, points BIGINT NOT NULL, PRIMARY KEY (domain, id))",
]
_READ = "SELECT points FROM naive_balances WHERE domain = ? AND subject = ?"
_EVENT = "INSERT INTO naive_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_BALANCE = (
    "INSERT INTO naive_balances VALUES (?, ?, ?) ON CONFLICT (domain, subject)"
    " DO UPDATE SET points = excluded.points"
)


def _versions() -> dict[str, list[PackVersion]]:
    return {d: load_pack_file(packs_dir() / f) for d, (f, _, _) in DOMAINS.items()}


def _score(
    versions: dict[str, list[PackVersion]], event: dict[str, Any], balance: int | None
) -> tuple[int, int, int]:
    """(occurred_us, delta, new balance) of one event: the rules of the version in force."""
    vs = versions[event["domain"]]
    occurred = parse_instant(event["occurred_at"], vs[0].tz)
    version = version_at(vs, occurred)
    if version is None:
        raise ValueError(f"no version in force for {event['id']}")
    attrs = event["attributes"]
    delta = sum(r.delta(attrs) for r in version.rules_for(event["type"]) if r.matches(attrs))
    scheme = version.scheme
    if scheme.kind == "balance":
        start = scheme.start if balance is None else balance
        points = min(scheme.ceiling, max(scheme.floor, start + delta))
    else:
        points = (balance or 0) + delta
    return to_micros(occurred), delta, points


def _row(event: dict[str, Any], occurred_us: int, delta: int, points: int) -> tuple[Any, ...]:
    attrs = json.dumps(event["attributes"], sort_keys=True)
    return (
        event["domain"],
        event["id"],
        event["subject"],
        event["type"],
        occurred_us,
        attrs,
        delta,
        points,
    )


def _sqlite(lines: Sequence[bytes], folder: Path) -> float:
    conn = sqlite3.connect(folder / "naive.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # durable per event, as the engine's store
        for ddl in _TABLES:
            conn.execute(ddl)
        versions = _versions()
        t0 = time.perf_counter()
        for line in lines:
            event = json.loads(line)
            conn.execute("BEGIN IMMEDIATE")
            found = conn.execute(_READ, (event["domain"], event["subject"])).fetchone()
            occurred_us, delta, points = _score(
                versions, event, None if found is None else found[0]
            )
            conn.execute(_EVENT, _row(event, occurred_us, delta, points))
            conn.execute(_BALANCE, (event["domain"], event["subject"], points))
            conn.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        conn.close()


def _postgres(lines: Sequence[bytes]) -> float:
    import psycopg
    from psycopg import sql

    from pointbook.store.postgres import split_url

    schema = new_schema("pb_bench_naive")
    try:
        with psycopg.connect(split_url(pg_url())[0], autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for ddl in _TABLES:
                conn.execute(ddl.replace("TEXT", 'TEXT COLLATE "C"'))
            versions = _versions()
            read, write_event, write_balance = (
                q.replace("?", "%s") for q in (_READ, _EVENT, _BALANCE)
            )
            t0 = time.perf_counter()
            for line in lines:
                event = json.loads(line)
                with conn.transaction():
                    found = conn.execute(read, (event["domain"], event["subject"])).fetchone()
                    occurred_us, delta, points = _score(
                        versions, event, None if found is None else int(found[0])
                    )
                    conn.execute(write_event, _row(event, occurred_us, delta, points))
                    conn.execute(write_balance, (event["domain"], event["subject"], points))
            return time.perf_counter() - t0
    finally:
        drop_schema(schema)


def run_naive(path: Path, limit: int, backend: str, folder: Path) -> tuple[int, float]:
    """Run the reference implementation on the first ``limit`` events of the JSON Lines file
    ``path``; (events, seconds)."""
    with path.open("rb") as f:
        lines = [line for _, line in zip(range(limit), f, strict=False)]
    seconds = _sqlite(lines, folder) if backend == "sqlite" else _postgres(lines)
    return len(lines), seconds
