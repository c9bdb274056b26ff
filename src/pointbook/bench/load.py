"""`bench load`: a bounded loopback load test against a running `pointbook serve`.

``run_load`` drives N concurrent clients (one keep-alive HTTP/1.1 connection each, asyncio,
no dependency beyond the standard library: the client must cost little CPU on a small machine
where it shares the cores with the server) for D seconds with a mix of balance and explain
reads and batch writes, and returns requests per second, p50/p99 latency per kind, the errors,
and the server's resident memory before, after a warm-up and at the end (read from
/proc/PID/status).

A write that times out has an unknown outcome, never a failed one (checklist T16): the client
sends the same batch again, with the same event ids, until it is answered; the answer is then
``accepted`` (it had not landed) or ``duplicate`` (it had), never a second copy.

``LoadServer`` seeds a temporary SQLite store with the bench's synthetic workload, creates a
reviewer and an issuer token and starts `pointbook serve` on a free loopback port as a child
process; `pointbook bench load` and tests/test_load.py use both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pointbook.demo import synthetic_event

__all__ = ["LOAD_SERVE_ARGS", "LoadResult", "LoadServer", "LoadTokens", "Mix", "rss_mb", "run_load"]

LOAD_DOMAIN = "fr-driving"
# The intake limits stay on (their cost is part of what is measured) but far above the load:
# `bench load` measures capacity; tests/test_limits.py tests the limits.
LOAD_SERVE_ARGS = (
    "--issuer-limit",
    "100000000/60",
    "--subject-review",
    "100000000/3600",
    "--subject-limit",
    "100000000/3600",
)
# Items a retried write may answer: it landed the first time (duplicate) or it had not.
RESOLVED = {"accepted", "duplicate"}


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of the three request kinds (normalised), and events per write."""

    balance: float = 0.6
    explain: float = 0.2
    write: float = 0.2
    batch: int = 10

    def kinds(self) -> tuple[list[str], list[float]]:
        weights = {"balance": self.balance, "explain": self.explain, "write": self.write}
        chosen = {k: w for k, w in weights.items() if w > 0}
        if not chosen:
            raise ValueError("a load mix needs at least one kind with a positive share")
        return list(chosen), list(chosen.values())


@dataclass(frozen=True, slots=True)
class LoadTokens:
    """A token that may read the subjects' records (a reviewer's), and one that may report
    events (an issuer's; only needed when the mix writes)."""

    reader: str
    issuer: str | None = None


@dataclass
class LoadResult:
    seconds: float
    clients: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    by_kind: dict[str, dict[str, float | int]]
    events_sent: int  # warm-up included
    write_timeouts: int  # writes whose outcome was unknown (client-side timeout)
    write_resolved: int  # of those, resolved by sending the same ids again
    duplicates_on_retry: int
    rss_idle_mb: float | None
    rss_start_mb: float | None  # after the warm-up
    rss_end_mb: float | None
    rss_peak_mb: float | None
    error_samples: list[str] = field(default_factory=list)
    acknowledged_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def rss_growth(self) -> float | None:
        """End over start (after the warm-up), minus one."""
        if not self.rss_start_mb or self.rss_end_mb is None:
            return None
        return self.rss_end_mb / self.rss_start_mb - 1

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("acknowledged_ids")
        out["rss_growth"] = self.rss_growth
        return out


def rss_mb(pid: int | None) -> float | None:
    """A process's resident set in MiB (VmRSS), or None without a pid or /proc."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not sorted_ms:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_ms)))
    return sorted_ms[rank - 1]


class _Connection:
    """One keep-alive HTTP/1.1 connection: requests with Content-Length, responses with
    Content-Length or chunked bodies."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, token: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Authorization: Bearer {token}",
            "Connection: keep-alive",
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        data = await self._chunked() if chunked else await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, data

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()
        await self.reader.readline()
        return b"".join(parts)


@dataclass
class _Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    events_sent: int = 0
    timeouts: int = 0
    resolved: int = 0
    duplicates_on_retry: int = 0
    acknowledged: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 10:
            self.samples.append(what[:300])


@dataclass
class _Run:
    host: str
    port: int
    tokens: LoadTokens
    subjects: Sequence[str]
    domain: str
    mix: Mix
    timeout_s: float
    run_id: str
    measuring: bool = False
    tally: _Tally = field(default_factory=_Tally)


async def _client(run: _Run, n: int, until: float, seed: int) -> None:
    rng = random.Random(seed * 1_000_003 + n)
    kinds, weights = run.mix.kinds()
    conn = _Connection(run.host, run.port)
    seq = 0
    try:
        while time.monotonic() < until:
            kind = rng.choices(kinds, weights)[0]
            subject = rng.choice(run.subjects)
            if kind == "write":
                seq += 1
                await _write(run, conn, rng, f"load-{run.run_id}-{n}-{seq}")
            else:
                path = f"/v1/domains/{run.domain}/subjects/{quote(subject, safe='')}/{kind}"
                await _read(run, conn, kind, path)
    finally:
        await conn.close()


async def _timed(
    run: _Run, conn: _Connection, kind: str, method: str, path: str, token: str, body: bytes | None
) -> tuple[int, bytes]:
    began = time.perf_counter()
    status, data = await asyncio.wait_for(
        conn.request(method, path, token, body), timeout=run.timeout_s
    )
    if run.measuring:
        run.tally.latencies.setdefault(kind, []).append((time.perf_counter() - began) * 1000)
    return status, data


async def _read(run: _Run, conn: _Connection, kind: str, path: str) -> None:
    try:
        status, data = await _timed(run, conn, kind, "GET", path, run.tokens.reader, None)
    except (TimeoutError, OSError, ConnectionError, ValueError, IndexError) as exc:
        await conn.close()
        if run.measuring:
            run.tally.error(f"{kind}: {type(exc).__name__}: {exc}")
        return
    if status != 200 and run.measuring:
        run.tally.error(f"{kind} {path}: {status} {data[:200]!r}")


async def _write(run: _Run, conn: _Connection, rng: random.Random, prefix: str) -> None:
    """A batch of new events; on an unknown outcome, the same batch again until answered."""
    assert run.tokens.issuer is not None, "a mix with writes needs an issuer token"
    events = [
        synthetic_event(rng, run.domain, f"{prefix}-{i}", rng.choice(run.subjects))
        for i in range(run.mix.batch)
    ]
    body = json.dumps(events, separators=(",", ":")).encode()
    path = f"/v1/domains/{run.domain}/events"
    retried = False
    for _attempt in range(20):
        try:
            status, data = await _timed(run, conn, "write", "POST", path, run.tokens.issuer, body)
        except (TimeoutError, OSError, ConnectionError, ValueError, IndexError):
            await conn.close()  # the answer may still come on that connection: drop it
            if not retried:
                run.tally.timeouts += 1
            retried = True
            continue
        _check_write(run, status, data, [e["id"] for e in events], retried)
        return
    run.tally.error(f"write {prefix}: no answer after 20 attempts")


def _check_write(run: _Run, status: int, data: bytes, ids: list[str], retried: bool) -> None:
    tally = run.tally
    tally.events_sent += len(ids)
    if status != 200:
        tally.error(f"write: {status} {data[:200]!r}")
        return
    answer = json.loads(data)
    statuses = [item["status"] for item in answer["items"]]
    allowed = RESOLVED if retried else {"accepted"}
    if not set(statuses) <= allowed or len(statuses) != len(ids):
        tally.error(f"write: unexpected item statuses {sorted(set(statuses))} (retry: {retried})")
        return
    if retried:
        tally.resolved += 1
        tally.duplicates_on_retry += statuses.count("duplicate")
    tally.acknowledged.extend(ids)


async def _run_async(
    run: _Run, seconds: float, clients: int, warmup_s: float, seed: int, pid: int | None
) -> tuple[float, dict[str, float | None]]:
    memory: dict[str, float | None] = {"idle": rss_mb(pid)}
    start = time.monotonic()
    until = start + warmup_s + seconds
    peak: list[float] = []

    async def sample() -> None:
        # The warm-up fills the server's caches; memory is measured from its end.
        await asyncio.sleep(warmup_s)
        run.measuring = True
        memory["start"] = rss_mb(pid)
        while time.monotonic() < until:
            if (now := rss_mb(pid)) is not None:
                peak.append(now)
            await asyncio.sleep(0.5)

    tasks = [asyncio.create_task(_client(run, n, until, seed)) for n in range(clients)]
    sampler = asyncio.create_task(sample())
    await asyncio.gather(*tasks)
    await sampler
    measured = time.monotonic() - start - warmup_s
    memory["end"] = rss_mb(pid)
    memory["peak"] = max(peak, default=None)
    return measured, memory


def run_load(
    base_url: str,
    tokens: LoadTokens | str,
    subjects: Sequence[str],
    seconds: float,
    clients: int,
    mix: Mix | None = None,
    *,
    domain: str = LOAD_DOMAIN,
    server_pid: int | None = None,
    warmup_s: float = 5.0,
    timeout_s: float = 10.0,
    seed: int = 2020,
) -> LoadResult:
    """Drive ``clients`` concurrent clients against ``base_url`` for ``seconds`` (after a
    warm-up of ``warmup_s`` that is not counted) and measure. Reads go to the records of
    ``subjects`` in ``domain``; writes report new events for them. ``tokens``: a LoadTokens,
    or one reader's token for a mix without writes (e.g. ``Mix(balance=1, explain=0,
    write=0)`` for an HTTP balance figure)."""
    if isinstance(tokens, str):
        tokens = LoadTokens(tokens)
    if not subjects:
        raise ValueError("run_load needs at least one subject to read and write")
    parts = urlsplit(base_url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{base_url!r}: give http://HOST:PORT")
    run = _Run(
        parts.hostname,
        parts.port,
        tokens,
        list(subjects),
        domain,
        mix or Mix(),
        timeout_s,
        secrets.token_hex(4),
    )
    measured, memory = asyncio.run(_run_async(run, seconds, clients, warmup_s, seed, server_pid))
    return _result(run.tally, measured, clients, memory)


def _result(
    tally: _Tally, measured: float, clients: int, memory: dict[str, float | None]
) -> LoadResult:
    every = sorted(ms for values in tally.latencies.values() for ms in values)
    by_kind: dict[str, dict[str, float | int]] = {}
    for kind, values in sorted(tally.latencies.items()):
        values.sort()
        by_kind[kind] = {
            "requests": len(values),
            "p50_ms": _percentile(values, 0.5),
            "p99_ms": _percentile(values, 0.99),
        }
    return LoadResult(
        seconds=measured,
        clients=clients,
        requests=len(every),
        requests_per_s=len(every) / measured if measured > 0 else 0.0,
        p50_ms=_percentile(every, 0.5),
        p99_ms=_percentile(every, 0.99),
        max_ms=every[-1] if every else 0.0,
        errors=tally.errors,
        by_kind=by_kind,
        events_sent=tally.events_sent,
        write_timeouts=tally.timeouts,
        write_resolved=tally.resolved,
        duplicates_on_retry=tally.duplicates_on_retry,
        rss_idle_mb=memory.get("idle"),
        rss_start_mb=memory.get("start"),
        rss_end_mb=memory.get("end"),
        rss_peak_mb=memory.get("peak"),
        error_samples=tally.samples,
        acknowledged_ids=tally.acknowledged,
    )


# -- a server to load ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LoadServer:
    """`pointbook serve` on a seeded temporary SQLite store, as a child process.

    ``serve_args`` are added to the command line (e.g. intake limits). Use as a context
    manager: the server is stopped and the folder removed on exit.
    """

    events: int = 20_000
    subjects: int = 2_000
    seed: int = 2020
    serve_args: Sequence[str] = ()
    folder: Path | None = None
    base_url: str = ""
    db: Path = field(default_factory=Path)
    tokens: LoadTokens = field(default_factory=lambda: LoadTokens(""))
    subject_ids: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def __enter__(self) -> LoadServer:
        if self.folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pointbook-load-")
            self.folder = Path(self._tmp.name)
        self.db = self.folder / "load.db"
        self._seed()
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _seed(self) -> None:
        from pointbook.bench import generate_workload, open_ledger
        from pointbook.intake import read_records
        from pointbook.service.auth import hash_token, new_token
        from pointbook.store.sqlite import SQLiteStore

        workload = generate_workload(self.events, self.subjects, self.seed)
        lines = b"".join(json.dumps(e).encode() + b"\n" for e in workload)
        ledger = open_ledger(SQLiteStore(self.db))
        try:
            import io

            ledger.ingest(read_records(io.BytesIO(lines), "jsonl"))
            reader, issuer = new_token(), new_token()
            store = ledger.store
            store.insert_token(hash_token(reader), "reviewer", LOAD_DOMAIN, None, "load-reader")
            store.insert_token(hash_token(issuer), "issuer", LOAD_DOMAIN, None, "load-issuer")
        finally:
            ledger.close()
        self.tokens = LoadTokens(reader, issuer)
        self.subject_ids = sorted({e["subject"] for e in workload if e["domain"] == LOAD_DOMAIN})

    def _start(self) -> None:
        assert self.folder is not None
        port = free_port()
        command = [sys.executable, "-m", "pointbook", "serve", "--port", str(port)]
        command += ["--db", str(self.db), *self.serve_args]
        log = (self.folder / "serve.log").open("wb")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
        log.close()
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.base_url + "/v1/packs", timeout=2).close()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        text = (self.folder / "serve.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"pointbook serve did not answer on {self.base_url}: {text}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def serve_and_load(
    seconds: float,
    clients: int,
    mix: Mix,
    events: int,
    subjects: int,
    seed: int,
    warmup_s: float,
    serve_args: Sequence[str] = (),
) -> dict[str, Any]:
    """`pointbook bench load`: seed, serve, load, stop; the figures as JSON-ready data."""
    with LoadServer(events, subjects, seed, serve_args) as server:
        result = run_load(
            server.base_url,
            server.tokens,
            server.subject_ids,
            seconds,
            clients,
            mix,
            server_pid=server.pid,
            warmup_s=warmup_s,
            seed=seed,
        )
    out = {"workload": "load", "seed_events": events, "seed_subjects": subjects, "seed": seed}
    out.update(mix=asdict(mix), warmup_s=warmup_s, **result.to_json())
    return out
