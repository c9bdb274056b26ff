"""`bench query`: how fast one person's record is read, in the library and over HTTP.

A store is built through the real ingest path (the seeded workload through `Ledger.ingest`
into a fresh SQLite file, decisions refreshed), then, over subjects drawn at random (seeded)
from those with events:

- library `balance` and `explain`: `Ledger.view(domain, subject)` and
  `Ledger.view(domain, subject, explain=True)` as of now, each call timed on its own (wall
  clock, and this thread's CPU time, which on a shared machine leaves out waiting for a core);
  baseline: the sum of the subject's entry deltas read with one indexed SQL query on a plain
  read-only sqlite3 connection to the same file (the least any balance read can cost there);
- HTTP `balance`: `GET /v1/domains/forum/subjects/{subject}/balance` against a
  `pointbook serve` subprocess on a free loopback port with a reviewer token, driven by the
  loopback load driver of `bench load` (bench/load.py `run_load`: ``clients`` concurrent
  keep-alive connections, balance reads only, for a number of seconds after a warm-up);
  baseline: the same driver against a bare ASGI app under the same server (uvicorn, no
  framework, no engine) answering a fixed JSON body of the size of a balance answer.

Every figure is from one run on one machine; nothing here asserts a speed.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pointbook.bench import (
    DOMAINS,
    fresh_store,
    generate_workload,
    open_existing,
    open_ledger,
    peak_rss_mb,
    write_workload,
)
from pointbook.bench.ingest import time_engine
from pointbook.bench.load import LoadResult, LoadTokens, Mix, free_port, run_load
from pointbook.ledger import IngestReport, Ledger
from pointbook.service.auth import hash_token, new_token
from pointbook.store.base import Store

__all__ = ["HTTP_DOMAIN", "TARGETS", "floor_app", "percentiles", "run_query"]

# The targets, at 1M subjects / 10M entries and 32 concurrent clients (ms).
TARGETS = {"balance_p99_ms": 1.0, "explain_p99_ms": 5.0, "http_balance_p99_ms": 10.0}
HOST = "127.0.0.1"
WARMUP = 100  # library calls made before the clock starts
CHECKED = 20  # subjects whose HTTP balance is compared with the library's
# The HTTP load reads one domain (the driver takes one reader token): the one with 90% of the
# events, where histories are longest.
HTTP_DOMAIN = "forum"
BALANCE_ONLY = Mix(balance=1.0, explain=0.0, write=0.0)
# Named: without statistics (no ANALYZE) SQLite 3.40 would scan the domain by primary key.
_RAW = (
    "SELECT COALESCE(SUM(delta), 0) FROM pb_entries INDEXED BY pb_entries_subject"
    " WHERE domain = ? AND subject = ?"
)

Pick = tuple[str, str]  # (domain, subject)


def percentiles(ns: Sequence[int], prefix: str) -> dict[str, float]:
    """p50, p99, mean and max of durations in nanoseconds, in milliseconds (nearest rank)."""
    ordered = sorted(ns)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1e6

    return {
        f"{prefix}_p50_ms": rank(0.50),
        f"{prefix}_p99_ms": rank(0.99),
        f"{prefix}_mean_ms": statistics.fmean(ordered) / 1e6,
        f"{prefix}_max_ms": ordered[-1] / 1e6,
    }


def _time_calls(call: Callable[[str, str], object], picks: Sequence[Pick]) -> list[int]:
    return _time_both(call, picks)[0]


def _time_both(
    call: Callable[[str, str], object], picks: Sequence[Pick]
) -> tuple[list[int], list[int]]:
    """Each call's wall-clock and CPU (this thread's) duration, in nanoseconds."""
    wall, cpu = [], []
    clock, thread = time.perf_counter_ns, time.thread_time_ns
    for domain, subject in picks:
        c0 = thread()
        t0 = clock()
        call(domain, subject)
        wall.append(clock() - t0)
        cpu.append(thread() - c0)
    return wall, cpu


def _cpu_figures(ns: Sequence[int], prefix: str) -> dict[str, float]:
    """p50 and p99 of CPU durations: on a shared machine, the part no other process adds."""
    found = percentiles(ns, f"{prefix}_cpu")
    return {k: v for k, v in found.items() if k.endswith(("_p50_ms", "_p99_ms"))}


def _profile(ledger: Ledger, picks: Sequence[Pick], top: int = 25) -> str:
    """cProfile of `balance` over ``picks`` (not timed): the top functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for domain, subject in picks:
        ledger.view(domain, subject)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _raw_lookups(db: Path, warm: Sequence[Pick], picks: Sequence[Pick]) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:

        def lookup(d: str, s: str) -> object:
            return conn.execute(_RAW, (d, s)).fetchone()

        _time_calls(lookup, warm)
        return _time_calls(lookup, picks)
    finally:
        conn.close()


# -- HTTP ---------------------------------------------------------------------------------------
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def _get(port: int, path: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with _DIRECT.open(request, timeout=30) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""


@contextmanager
def _server(args: Sequence[str], port: int, folder: Path) -> Iterator[int]:
    """A server subprocess on ``port``, ready when `/v1/packs` answers 200; its pid. Stopped
    (by its handle) on exit."""
    log = (folder / f"server-{port}.log").open("w+b")
    proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited: {log.read().decode(errors='replace')}")
            try:
                if _get(port, "/v1/packs", "")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {port} did not answer")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def _reviewer_token(db: Path, token: str) -> Iterator[None]:
    """``token``, a reviewer token of HTTP_DOMAIN, in the store ``db`` while the block runs
    (the server checks each request's token against the store), removed after it: the store
    keeps only the audit records of its addition and removal."""
    with closing(open_existing(str(db), read_only=False)) as store:
        store.insert_token(hash_token(token), "reviewer", HTTP_DOMAIN, None, "bench query")
    try:
        yield
    finally:
        with closing(open_existing(str(db), read_only=False)) as store:
            store.delete_token(HTTP_DOMAIN, hash_token(token))


def _http_figures(prefix: str, r: LoadResult) -> dict[str, Any]:
    return {
        f"{prefix}_requests": r.requests,
        f"{prefix}_errors": r.errors,
        f"{prefix}_p50_ms": r.p50_ms,
        f"{prefix}_p99_ms": r.p99_ms,
        f"{prefix}_max_ms": r.max_ms,
        f"{prefix}_requests_per_s": r.requests_per_s,
    }


# The HTTP floor: a bare ASGI app answering a fixed body (its size set from the command line).
_FLOOR_BODY = b"{}"


async def floor_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _FLOOR_BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _floor_main() -> None:
    """`python -m pointbook.bench.query PORT SIZE`: serve the floor app on loopback."""
    import uvicorn

    global _FLOOR_BODY
    port, size = int(sys.argv[1]), int(sys.argv[2])
    _FLOOR_BODY = json.dumps({"pad": "x" * max(0, size - 11)}).encode()
    uvicorn.run(floor_app, host=HOST, port=port, log_level="warning")


# -- the run -------------------------------------------------------------------------------------
def run_query(
    subjects: int = 100_000,
    entries: int = 1_000_000,
    seed: int = 2020,
    samples: int = 2000,
    clients: int = 32,
    seconds: float = 20.0,
    batch_size: int = 10_000,
    profile: bool = False,
    existing: Path | None = None,
) -> dict[str, Any]:
    """One `bench query` run; the JSON-ready result (and, with ``profile``, a cProfile
    listing of `balance` under the key `profile`). The HTTP load lasts ``seconds`` after a
    warm-up of a quarter of that (at most 5 s), against the server and then the floor.

    ``existing``: a SQLite store built before (by `bench memory`, say) is read instead of
    building one (refused if opening it would upgrade it); the reviewer token labelled
    "bench query" the HTTP load uses is added to it for the load and removed after."""
    warmup_s = min(5.0, seconds / 4)
    with tempfile.TemporaryDirectory(prefix="pointbook-bench-") as tmp:
        folder = Path(tmp)
        rng = random.Random(seed)
        if existing is None:
            path = folder / "events.jsonl"
            n: int | None = write_workload(path, generate_workload(entries, subjects, seed))
            db = folder / "engine.db"
            opened: AbstractContextManager[Store] = fresh_store("sqlite", folder)
        else:
            n, db = None, existing
            # Writable: a subject still on the refresh work list is refreshed on its first
            # read, as `pointbook serve` would refresh it.
            opened = closing(open_existing(str(existing), read_only=False))
        with opened as store:
            report: IngestReport | None = None
            build_seconds: float | None = None
            if existing is None:
                ledger = open_ledger(store)
                report, build_seconds = time_engine(ledger, path, batch_size)
            else:
                ledger = Ledger(store)
            population = [(d, s) for d in DOMAINS for s in store.subjects(d)]
            picks = [rng.choice(population) for _ in range(samples)]
            warm = [rng.choice(population) for _ in range(min(WARMUP, samples))]
            conn: Any = getattr(store, "conn")  # noqa: B009 - the SQLite store's connection
            entry_count = int(conn.execute("SELECT COUNT(*) FROM pb_entries").fetchone()[0])
            sizes = [
                int(c)
                for (c,) in conn.execute("SELECT COUNT(*) FROM pb_events GROUP BY domain, subject")
            ]

            def balance(d: str, s: str) -> object:
                return ledger.view(d, s)

            def explain(d: str, s: str) -> object:
                return ledger.view(d, s, explain=True)

            _time_calls(balance, warm)
            balance_ns, balance_cpu = _time_both(balance, picks)
            _time_calls(explain, warm)
            explain_ns, explain_cpu = _time_both(explain, picks)
            listing = _profile(ledger, picks[:500]) if profile else None

            # What the HTTP answers are checked against: the library's points at one instant.
            http_subjects = [s for d, s in population if d == HTTP_DOMAIN]
            at = datetime.now(UTC).replace(microsecond=0)
            checked = rng.sample(http_subjects, min(CHECKED, len(http_subjects)))
            expected = [ledger.view(HTTP_DOMAIN, s, at)["points"] for s in checked]
            body_size = len(json.dumps(ledger.view(HTTP_DOMAIN, checked[0])).encode())
            if n is None:
                n = int(conn.execute("SELECT COUNT(*) FROM pb_events").fetchone()[0])
        rss = peak_rss_mb()
        store_mb = sum(f.stat().st_size for f in db.parent.glob(f"{db.name}*")) / 2**20

        raw_ns = _raw_lookups(db, warm, picks)
        token = new_token()

        def load(port: int, pid: int) -> LoadResult:
            return run_load(
                f"http://{HOST}:{port}",
                LoadTokens(token),
                http_subjects,
                seconds,
                clients,
                BALANCE_ONLY,
                domain=HTTP_DOMAIN,
                server_pid=pid,
                warmup_s=warmup_s,
                seed=seed,
            )

        port = free_port()
        serve = ["-m", "pointbook", "serve", "--db", str(db), "--host", HOST, "--port", str(port)]
        with _reviewer_token(db, token), _server(serve, port, folder) as pid:
            served = load(port, pid)
            when = quote(at.isoformat())
            answers = []
            for s in checked:
                url = f"/v1/domains/{HTTP_DOMAIN}/subjects/{quote(s, safe='')}/balance"
                status, body = _get(port, f"{url}?as_of={when}", token)
                answers.append(int(json.loads(body)["points"]) if status == 200 else None)
        floor_port = free_port()
        floor_args = ["-m", "pointbook.bench.query", str(floor_port), str(body_size)]
        with _server(floor_args, floor_port, folder) as pid:
            floor = load(floor_port, pid)

    return {
        "workload": "query",
        "backend": "sqlite",
        "seed": seed,
        "subjects": subjects if existing is None else len(population),
        "events": n,
        "store": "built" if existing is None else str(existing),
        "accepted": n if report is None else report.accepted,
        "rejected": 0 if report is None else len(report.rejected),
        "entries": entry_count,
        "subjects_with_events": len(population),
        "store_mb": store_mb,
        **(
            {}
            if report is None or build_seconds is None
            else {
                "build_seconds": build_seconds,
                "build_events_per_s": report.accepted / build_seconds,
            }
        ),
        "samples": samples,
        "subject_events_mean": statistics.fmean(sizes) if sizes else 0.0,
        "subject_events_max": max(sizes, default=0),
        **percentiles(balance_ns, "balance"),
        **percentiles(explain_ns, "explain"),
        **_cpu_figures(balance_cpu, "balance"),
        **_cpu_figures(explain_cpu, "explain"),
        **percentiles(raw_ns, "raw_balance"),
        "balance_ratio_to_raw": statistics.median(balance_ns) / statistics.median(raw_ns),
        "http_domain": HTTP_DOMAIN,
        "http_clients": clients,
        "http_seconds": served.seconds,
        "http_warmup_s": warmup_s,
        **_http_figures("http_balance", served),
        **({} if served.rss_peak_mb is None else {"http_server_rss_mb": served.rss_peak_mb}),
        "http_points_match": answers == expected,
        **_http_figures("http_floor", floor),
        "peak_rss_mb": rss,
        "targets": TARGETS,
        **({} if listing is None else {"profile": listing}),
    }


if __name__ == "__main__":
    _floor_main()
