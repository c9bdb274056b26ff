"""`pointbook bench`: measurements of the engine against baselines measured in the same run.

Shared here: the seeded workload over the `fr-driving` and `forum` reference packs, fresh
stores for one run (a SQLite file in a temporary folder, or a fresh PostgreSQL schema dropped
afterwards), existing stores given with `--db` (opened as they are), and the process's peak
resident memory. Nothing here asserts a speed: the figures are printed, and
docs/benchmarks.md records what one machine measured.
"""

from __future__ import annotations

import json
import os
import random
import resource
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pointbook.demo import packs_dir, synthetic_event
from pointbook.errors import PointbookError
from pointbook.ledger import Ledger
from pointbook.store import SQLiteStore, open_store
from pointbook.store.base import Store
from pointbook.store.schema import MIGRATIONS
from pointbook.store.sqlite import BULK_CACHE_SIZE, BULK_WAL_AUTOCHECKPOINT

__all__ = [
    "BACKENDS",
    "DOMAINS",
    "PG_DEFAULT",
    "BenchStoreError",
    "bulk_sqlite",
    "drop_schema",
    "fresh_store",
    "generate_workload",
    "make_read_only",
    "new_schema",
    "open_existing",
    "open_ledger",
    "peak_rss_mb",
    "pg_url",
    "write_workload",
]

BACKENDS = ("sqlite", "postgres")
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
# domain -> (pack file, share of subjects, share of events)
DOMAINS: dict[str, tuple[str, float, float]] = {
    "fr-driving": ("fr-driving.yaml", 0.5, 0.1),
    "forum": ("forum-reputation.yaml", 0.5, 0.9),
}


def pg_url() -> str:
    """The PostgreSQL server the benchmarks use: $POINTBOOK_BENCH_PG or the local default."""
    return os.environ.get("POINTBOOK_BENCH_PG", PG_DEFAULT)


def bulk_sqlite(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` set as the engine's store writes a bulk load
    (WAL, every commit synced, `SQLiteStore.bulk`'s page cache and checkpoint interval): what
    the raw baselines insert with."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA cache_size={BULK_CACHE_SIZE}")
    conn.execute(f"PRAGMA wal_autocheckpoint={BULK_WAL_AUTOCHECKPOINT}")
    return conn


def peak_rss_mb() -> float:
    """The process's peak resident set so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_workload(
    events: int, subjects: int, seed: int, late_fraction: float = 0.0
) -> list[dict[str, Any]]:
    """The workload's events in file order: by date, then ``late_fraction`` of them moved to
    a later place in the file (late arrivals). The events themselves depend only on
    ``events``, ``subjects`` and ``seed``: the same events whatever the late fraction."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for domain, (_, subj_share, ev_share) in DOMAINS.items():
        n_subj = max(1, round(subjects * subj_share))
        n_ev = round(events * ev_share) if domain == "forum" else events - round(events * 0.9)
        weights = [min(rng.paretovariate(1.5), 12.0) for _ in range(n_subj)]
        names = [f"{domain[:2]}-{i:06d}" for i in range(n_subj)]
        chosen = rng.choices(names, weights=weights, k=n_ev)
        for i, subject in enumerate(chosen):
            out.append(synthetic_event(rng, domain, f"{domain}-{i:08d}", subject))
    out.sort(key=lambda e: (e["occurred_at"][:10], e["id"]))
    if late_fraction > 0 and out:
        late = random.Random(seed + 1)
        n = len(out)
        keys = [float(i) for i in range(n)]
        for i in late.sample(range(n), round(n * late_fraction)):
            keys[i] = i + late.randrange(1, max(2, n // 10)) + 0.5
        order = sorted(range(n), key=keys.__getitem__)
        out = [out[i] for i in order]
    return out


def write_workload(path: Path, events: list[dict[str, Any]]) -> int:
    with path.open("w", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")
    return len(events)


def new_schema(prefix: str = "pb_bench") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    from pointbook.store.postgres import split_url

    with psycopg.connect(split_url(pg_url())[0], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_store(backend: str, folder: Path, name: str = "engine") -> Iterator[Store]:
    """An empty store for one run: a new SQLite file in ``folder``, or a new PostgreSQL schema
    (dropped with everything in it afterwards)."""
    if backend == "sqlite":
        sqlite_store = SQLiteStore(folder / f"{name}.db")
        try:
            yield sqlite_store
        finally:
            sqlite_store.close()
        return
    from pointbook.store.postgres import PostgresStore

    schema = new_schema()
    try:
        pg_store = PostgresStore(pg_url(), schema=schema)
        try:
            yield pg_store
        finally:
            pg_store.close()
    finally:
        drop_schema(schema)


class BenchStoreError(PointbookError):
    """A store given to a benchmark with `--db` that it cannot read as it is."""


def make_read_only(store: Store) -> None:
    """Make every later write on ``store``'s connection fail (SQLite `PRAGMA query_only`,
    PostgreSQL read-only transactions)."""
    conn: Any = getattr(store, "conn")  # noqa: B009 - both stores keep a DB-API connection
    if isinstance(store, SQLiteStore):
        conn.execute("PRAGMA query_only=ON")
    else:
        conn.execute("SET default_transaction_read_only = on")


def _check_sqlite(path: Path) -> None:
    """Opening a store may upgrade it (journal mode, migrations): refuse one that would need it,
    checked on a read-only connection."""
    if not path.is_file():
        raise BenchStoreError(f"{path}: no such store")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        done = {r[0] for r in conn.execute("SELECT name FROM pb_migrations")}
    except sqlite3.DatabaseError as exc:
        raise BenchStoreError(f"{path}: not a pointbook store ({exc})") from exc
    finally:
        conn.close()
    if mode != "wal" or any(name not in done for name, _ in MIGRATIONS):
        raise BenchStoreError(
            f"{path}: this store needs an upgrade first (open it once with `pointbook verify`): "
            "a benchmark leaves the store it is given as it is"
        )


def open_existing(db: str, read_only: bool = True) -> Store:
    """The existing store ``db`` (as `--db` names stores: a SQLite file or a PostgreSQL URL),
    for a benchmark that leaves it as it is: a SQLite file opening would upgrade is refused.
    ``read_only``: every write on its connection then fails (`bench whatif`); without, the
    caller removes again whatever it writes (`bench query`'s token)."""
    if not db.startswith(("postgresql://", "postgres://")):
        _check_sqlite(Path(db.removeprefix("sqlite:///")))
    store = open_store(db)
    if read_only:
        make_read_only(store)
    return store


def open_ledger(store: Store) -> Ledger:
    """A ledger on ``store`` with the workload's packs published."""
    ledger = Ledger(store)
    folder = packs_dir()
    for pack_file, _, _ in DOMAINS.values():
        ledger.publish_file(folder / pack_file)
    return ledger
