"""Load (issue 6 item 7): `pointbook serve` under a bounded loopback load for 60 s.

The server is a child process on a free loopback port, on a SQLite store seeded with the bench's
synthetic workload; 32 clients (one keep-alive connection each) mix balance and explain reads
with batch writes of new events for 60 s after a 5 s warm-up (bench/load.py, the driver behind
`pointbook bench load`). Pass criteria, none of them a timing: 0 errors; every write answered
(a timed-out write is sent again with the same ids until answered, and then answers accepted or
duplicate, never a second copy: T16); the server's resident memory at the end within 10% of
what it was after the warm-up (memory is a correctness property here: a leak fails); the store
holds exactly the acknowledged events and its audit log verifies. The figures are printed.

POINTBOOK_SOAK=1: 10 minutes, 64 clients, 50,000 seeded events.

Crash kind simulated: none (the server runs throughout).
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from pointbook.bench.load import LOAD_SERVE_ARGS, LoadServer, Mix, run_load
from pointbook.ledger import Ledger

SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
SECONDS = 600 if SOAK else 60
CLIENTS = 64 if SOAK else 32
EVENTS, SUBJECTS = (50_000, 10_000) if SOAK else (5_000, 1_000)
SEED = 2020


@pytest.mark.timeout(SECONDS + 300)
def test_sixty_seconds_of_load_with_no_error_and_no_leak() -> None:
    with LoadServer(EVENTS, SUBJECTS, SEED, LOAD_SERVE_ARGS) as server:
        result = run_load(
            server.base_url,
            server.tokens,
            server.subject_ids,
            SECONDS,
            CLIENTS,
            Mix(balance=0.6, explain=0.2, write=0.2, batch=10),
            server_pid=server.pid,
            warmup_s=5,
            seed=SEED,
        )
        alive = server.process is not None and server.process.poll() is None
        server.stop()
        with sqlite3.connect(server.db) as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM pb_events WHERE id LIKE 'load-%'")}
        ledger = Ledger.open(str(server.db))
        try:
            verified = ledger.verify()
        finally:
            ledger.close()
    figures = result.to_json()
    print("\nload:", json.dumps(figures, indent=1))
    assert alive, "the server died under load"
    assert result.errors == 0, result.error_samples
    assert result.requests > 0 and result.by_kind.keys() == {"balance", "explain", "write"}
    assert result.write_resolved == result.write_timeouts, "a write was never resolved"
    acknowledged = set(result.acknowledged_ids)
    assert len(acknowledged) == len(result.acknowledged_ids), "an event id was acknowledged twice"
    assert stored == acknowledged, (
        f"{len(acknowledged - stored)} acknowledged events lost, "
        f"{len(stored - acknowledged)} stored but never acknowledged"
    )
    assert verified.ok, verified.reason
    growth = result.rss_growth
    assert growth is not None, "the server's memory could not be read from /proc"
    assert growth <= 0.10, (
        f"server RSS grew {growth:.1%} under load ({result.rss_start_mb:.1f} MiB after the "
        f"warm-up, {result.rss_end_mb:.1f} MiB at the end)"
    )
