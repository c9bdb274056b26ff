"""Crash safety (issue 6 item 1, checklist T1): `pointbook ingest` and `pointbook serve` are
SIGKILLed at random moments and run again on the same input (HTTP clients retrying by event
id); the store must end equal to a clean single run into a fresh store: the same events and
entries, the same balance for every subject, the same current decisions, 0 lost, 0 doubled,
`audit verify` and SQLite's `PRAGMA integrity_check` ok after kills (every fifth at CI size,
every one at soak size) and at the end. Both backends.

What this simulates: a killed process (`kill -9`). The operating system and the disk keep
running, so whatever the process handed to the database before it died stays: SQLite's WAL
is in the page cache, PostgreSQL aborts the dead client's open transaction. It is NOT a power
loss (checklist T2), where writes not yet fsynced would vanish; that needs LazyFS or a VM.

Sizes: CI by default; with POINTBOOK_SOAK=1 (`make soak`) the full size. The seed is
POINTBOOK_CRASH_SEED (default below); every run prints its figures (`pytest -s` shows them).
The helpers here (stores, snapshots, checks) are shared with test_concurrency.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest

from pointbook.bench import DOMAINS, generate_workload, write_workload
from pointbook.demo import packs_dir
from pointbook.engine import Decision, Entry, Event
from pointbook.intake import read_records
from pointbook.ledger import Ledger
from pointbook.service.auth import hash_token, new_token
from pointbook.store import SQLiteStore, Store, open_store

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgres"]
SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
SEED = int(os.environ.get("POINTBOOK_CRASH_SEED", "20250601"))
# Balances are compared as of one fixed instant (the workload spans 2021-2025).
READ_AT = datetime(2026, 1, 1, tzinfo=UTC)
# No subprocess ever inherits a store from the environment.
ENV = {k: v for k, v in os.environ.items() if k != "POINTBOOK_DB"}


@dataclass(frozen=True)
class CrashSize:
    events: int
    subjects: int
    batch: int
    kills: int
    check_every: int  # the store is checked (audit verify, integrity) after every n-th kill


INGEST_SIZE = CrashSize(100_000, 10_000, 500, 200, 1) if SOAK else CrashSize(4_000, 600, 100, 20, 5)
SERVE_SIZE = CrashSize(40_000, 4_000, 50, 200, 1) if SOAK else CrashSize(3_200, 400, 40, 20, 5)


# -- stores ------------------------------------------------------------------------------------
def schema_url(url: str, schema: str) -> str:
    """A CLI --db URL for one schema of the test server (see store/postgres.py split_url)."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@pytest.fixture(params=BACKENDS)
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A maker of fresh --db values of one backend: a SQLite file in tmp_path, or a new
    PostgreSQL schema (dropped at teardown by conftest's pg_schemas)."""
    if request.param == "sqlite":
        return lambda name: str(tmp_path / f"{name}.db")
    url: str = request.getfixturevalue("pg_url")
    new_schema: Callable[[], str] = request.getfixturevalue("pg_schemas")
    return lambda name: schema_url(url, new_schema())


def backend_of(db: str) -> str:
    return "postgres" if db.startswith("postgresql://") else "sqlite"


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pointbook", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=timeout,
    )


def publish_workload_packs(db: str) -> None:
    """Publish the packs of the bench workload's domains, in this process (the store is
    created on the way; only what is under test runs as a killed subprocess)."""
    ledger = Ledger(open_store(db))
    try:
        for pack_file, _, _ in DOMAINS.values():
            ledger.publish_file(packs_dir() / pack_file)
    finally:
        ledger.close()


def write_events(path: Path, size: CrashSize, seed: int) -> list[dict[str, Any]]:
    """The seeded workload (5% late arrivals) written as JSON Lines; its events."""
    events = generate_workload(size.events, size.subjects, seed, late_fraction=0.05)
    write_workload(path, events)
    return events


def ingest_library(db: str, path: Path) -> None:
    """A clean single run through the library (the serial replay the others must equal)."""
    ledger = Ledger(open_store(db))
    try:
        with path.open("rb") as fh:
            report = ledger.ingest(read_records(fh, "jsonl"))
        assert not report.rejected, report.rejected[:3]
    finally:
        ledger.close()


def count_events(store: Store) -> int:
    return int(_rows(store, "SELECT count(*) FROM pb_events")[0][0])


def _rows(store: Store, query: str) -> list[tuple[Any, ...]]:
    # Raw counts are read straight from the tables: the Store protocol has no such query.
    found: list[tuple[Any, ...]] = store._query(query)  # type: ignore[attr-defined]
    return found


# -- what a store holds ------------------------------------------------------------------------
def _event_key(e: Event) -> tuple[Any, ...]:
    # Everything but when it was received (and the per-row salt, which is not read back).
    return (
        e.subject,
        e.type,
        e.occurred_at,
        json.dumps(dict(e.attributes), sort_keys=True),
        e.evidence,
        e.issuer,
        e.incident,
        e.content_hash(),
    )


@dataclass
class Snapshot:
    """A store's content that must not depend on crashes or interleavings: events (without
    receipt times), entries, every subject's points as of READ_AT, and the materialised
    current decisions (withdrawn ones left out), read as stored, without refreshing."""

    events: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    entries: dict[tuple[str, str, str], Entry] = field(default_factory=dict)
    points: dict[tuple[str, str], int] = field(default_factory=dict)
    decisions: dict[tuple[str, str], Decision] = field(default_factory=dict)

    def differences(self, other: Snapshot) -> list[str]:
        """What differs from ``other`` (the reference), in words; empty when equal."""
        out: list[str] = []
        for name in ("events", "entries", "points", "decisions"):
            mine: dict[Any, Any] = getattr(self, name)
            ref: dict[Any, Any] = getattr(other, name)
            missing = sorted(set(ref) - set(mine), key=str)
            extra = sorted(set(mine) - set(ref), key=str)
            changed = sorted((k for k in set(ref) & set(mine) if ref[k] != mine[k]), key=str)
            if missing or extra or changed:
                out.append(
                    f"{name}: {len(missing)} missing {missing[:3]}, {len(extra)} extra "
                    f"{extra[:3]}, {len(changed)} changed {changed[:3]} (reference has {len(ref)})"
                )
        return out


def snapshot(db: str) -> Snapshot:
    snap = Snapshot()
    store = open_store(db)
    try:
        ledger = Ledger(store, now=lambda: READ_AT)
        for domain in store.domains():
            subjects = store.subjects(domain)
            for i in range(0, len(subjects), 500):
                part = subjects[i : i + 500]
                for subject, events in store.subject_events(domain, part).items():
                    for e in events:
                        snap.events[(domain, e.id)] = _event_key(e)
                    for n in store.subject_entries(domain, subject):
                        snap.entries[(domain, n.event_id, n.rule_id)] = n
            for state in ledger.states(domain, READ_AT):
                snap.points[(domain, state.subject)] = state.points
            for row in store.current_decisions(domain):
                if not row.withdrawn:
                    snap.decisions[(domain, row.decision.id)] = row.decision
    finally:
        store.close()
    return snap


def check_store(db: str, settled: bool = True) -> dict[str, int]:
    """The store's own consistency: the audit chain verifies, SQLite's integrity check passes,
    every event and decision revision is audited once, every revision is queued once in the
    outbox; ``settled``: no subject is left waiting for its decisions. Returns row counts."""
    store = open_store(db)
    try:
        result = store.verify()
        assert result.ok, f"audit verify failed: {result.reason} (record {result.first_bad})"
        if isinstance(store, SQLiteStore):
            integrity = store.conn.execute("PRAGMA integrity_check").fetchall()
            assert integrity == [("ok",)], integrity
        kinds = dict(_rows(store, "SELECT kind, count(*) FROM pb_audit GROUP BY kind"))
        events = count_events(store)
        revisions = int(_rows(store, "SELECT count(*) FROM pb_decisions")[0][0])
        queued = int(_rows(store, "SELECT count(*) FROM pb_outbox")[0][0])
        assert kinds.get("event", 0) == events, (kinds, events)
        assert kinds.get("decision", 0) == revisions == queued == kinds.get("outbox", 0), (
            kinds,
            revisions,
            queued,
        )
        if settled:
            assert store.dirty_subjects(None, 5) == [], "subjects left without their decisions"
        return {"events": events, "revisions": revisions, "audit": result.records}
    finally:
        store.close()


def assert_same(db: str, reference: str) -> Snapshot:
    mine, ref = snapshot(db), snapshot(reference)
    assert ref.events and ref.decisions, "the reference run holds no events or decisions"
    problems = mine.differences(ref)
    assert problems == [], "\n".join(problems)
    return ref


def figures(title: str, **values: object) -> None:
    """One line of figures for docs/reliability.md (shown with pytest -s)."""
    print(f"\n[{title}] " + " · ".join(f"{k}={v}" for k, v in values.items()), flush=True)


def kill(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL one process this test started (by its id) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


# -- pointbook ingest, killed -------------------------------------------------------------------
@dataclass
class KillLog:
    kills: int = 0
    completed_runs: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    recoveries: list[float] = field(default_factory=list)  # start to first new commit, s

    def startup_s(self) -> float:
        """How long a run takes to get going: the median recovery so far, or a guess."""
        if not self.recoveries:
            return 2.0
        return sorted(self.recoveries)[len(self.recoveries) // 2]


def count_dirty(store: Store) -> int:
    return int(_rows(store, "SELECT count(*) FROM pb_dirty")[0][0])


@dataclass(frozen=True)
class KillPoint:
    """When one run is killed, drawn from the seeded RNG and the store's state:

    - write: once ``events_at`` events are stored, ``after_s`` later (lands in judging,
      writing or committing a following batch);
    - refresh: once the work list is shorter than ``dirty_below`` (a chunk of decisions was
      committed), ``after_s`` later (lands in the next chunk);
    - any: ``after_s`` after the start (startup, the duplicate scan, anything)."""

    mode: str
    after_s: float
    events_at: int = 0
    dirty_below: int = 0

    def reached(self, store: Store) -> bool:
        if self.mode == "write":
            return count_events(store) >= self.events_at
        if self.mode == "refresh":
            return count_dirty(store) < self.dirty_below
        return True


def draw_kill_point(
    rng: random.Random, size: CrashSize, events: int, dirty: int, startup_s: float
) -> KillPoint:
    """Mostly kills while new batches are written; once all are stored, mostly while
    decisions are refreshed; otherwise up to a little after the run gets going (a later
    "any" kill would mostly let the run finish, leaving nothing for the next kills)."""
    roll, after = rng.random(), rng.random()
    if events < size.events and roll < 0.85:
        return KillPoint("write", after * 0.1, events_at=events + rng.randint(1, 3 * size.batch))
    if events == size.events and dirty and roll < 0.7:
        return KillPoint("refresh", after * 0.5, dirty_below=dirty)
    return KillPoint("any", 0.05 + after * startup_s)


def _kill_ingest_once(
    db: str, path: Path, rng: random.Random, size: CrashSize, log: KillLog
) -> None:
    """Run `pointbook ingest` on the file and SIGKILL it at a drawn KillPoint; then check that
    nothing committed was lost and (every ``check_every`` kills) that the store checks out."""
    store = open_store(db)
    try:
        before = count_events(store)
        point = draw_kill_point(rng, size, before, count_dirty(store), log.startup_s())
        command = ["ingest", str(path), "--db", db, "--batch-size", str(size.batch), "--json"]
        stderr_path = path.with_suffix(".stderr")
        start = time.monotonic()
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pointbook", *command],
                cwd=ROOT,
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        reached: float | None = None
        first_commit: float | None = None
        while proc.poll() is None:
            now = time.monotonic() - start
            if point.mode == "write" and first_commit is None and count_events(store) > before:
                first_commit = now
            if reached is None and point.reached(store):
                reached = now
            if reached is not None and now >= reached + point.after_s:
                break
            time.sleep(0.02)
        killed = proc.poll() is None
        kill(proc)
        if killed:
            log.kills += 1
            log.modes[point.mode] = log.modes.get(point.mode, 0) + 1
            if first_commit is not None:
                log.recoveries.append(first_commit)
        else:
            assert proc.returncode == 0, stderr_path.read_text(errors="replace")
            log.completed_runs += 1
        # Committed batches are durable: nothing acknowledged by a commit is ever lost.
        assert count_events(store) >= before
    finally:
        store.close()
    if killed and log.kills % size.check_every == 0:
        check_store(db, settled=False)


@pytest.mark.timeout(3600 if SOAK else 900)
def test_killed_ingest_rerun_equals_a_clean_run(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """T1 for `pointbook ingest`: SIGKILL at random moments (at least INGEST_SIZE.kills
    times), the same file run again after each kill, then once to the end; the store equals a
    clean single run. Committed events never go missing after a kill, and the store checks
    out (audit verify, integrity check) after every `check_every`-th kill and at the end."""
    size = INGEST_SIZE
    path = tmp_path / "events.jsonl"
    write_events(path, size, SEED)
    crashed = new_db("crashed")
    publish_workload_packs(crashed)
    rng = random.Random(SEED)
    log = KillLog()
    began = time.monotonic()
    for _ in range(size.kills * 3):
        if log.kills >= size.kills:
            break
        _kill_ingest_once(crashed, path, rng, size, log)
    assert log.kills >= size.kills, f"only {log.kills} kills landed in {size.kills * 3} runs"
    final = cli("ingest", str(path), "--db", crashed, "--batch-size", str(size.batch), "--json")
    assert final.returncode == 0, final.stderr
    report = json.loads(final.stdout)
    assert report["accepted"] + report["duplicates"] == size.events, report
    duration = time.monotonic() - began
    clean = new_db("clean")
    publish_workload_packs(clean)
    ingest_library(clean, path)
    counts = check_store(crashed)
    ref = assert_same(crashed, clean)
    assert counts["events"] == size.events == len(ref.events)
    recoveries = sorted(log.recoveries)
    figures(
        f"crash/ingest/{backend_of(crashed)}",
        seed=SEED,
        events=size.events,
        batch=size.batch,
        kills=log.kills,
        modes=log.modes,
        completed_runs=log.completed_runs,
        lost=0,
        doubled=0,
        decisions=len(ref.decisions),
        recovery_median_s=f"{recoveries[len(recoveries) // 2]:.2f}" if recoveries else "-",
        recovery_max_s=f"{recoveries[-1]:.2f}" if recoveries else "-",
        duration_s=f"{duration:.0f}",
    )


# -- pointbook serve, killed --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(
    url: str, token: str | None = None, body: bytes | None = None, timeout: float = 20
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# What a client sees when the server dies under its request: the outcome is unknown.
UNKNOWN_OUTCOME = (urllib.error.URLError, ConnectionError, HTTPException, TimeoutError, OSError)


class Server:
    """`pointbook serve` on a loopback port, started, SIGKILLed and started again."""

    def __init__(self, db: str, log: Path) -> None:
        self.db = db
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            # Intake limits off: they hold or refuse bursts (T10, tested elsewhere), and
            # here every event must land as in the replay.
            limits = ["--issuer-limit", "off", "--subject-review", "off", "--subject-limit", "off"]
            command = ["serve", "--port", str(self.port), "--db", self.db, *limits]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pointbook", *command],
                cwd=ROOT,
                env=ENV,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                if http(f"{self.base}/v1/packs", timeout=2)[0] == 200:
                    return
            except UNKNOWN_OUTCOME:
                time.sleep(0.05)
        raise AssertionError(f"pointbook serve did not answer in 120 s: see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        kill(self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill(self.proc)


def batches_of(events: Sequence[dict[str, Any]], size: int) -> list[tuple[str, list[str]]]:
    """Client batches in file order, one domain each: (domain, event ids)."""
    out: list[tuple[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    for e in events:
        ids = current.setdefault(e["domain"], [])
        ids.append(e["id"])
        if len(ids) == size:
            out.append((e["domain"], current.pop(e["domain"])))
    out += [(d, ids) for d, ids in current.items() if ids]
    return out


@dataclass
class ClientLog:
    posts: int = 0
    cut_off: int = 0  # requests in flight when the server died: outcome unknown, sent again
    refused: int = 0  # requests sent while the server was down, sent again
    answered_duplicates: int = 0  # batches answered "all duplicates": already written
    acknowledged: set[str] = field(default_factory=set)


def issuer_tokens(db: str) -> dict[str, str]:
    """An issuer token for each of the workload's domains, stored as `token create` does."""
    tokens = {}
    store = open_store(db)
    try:
        for domain in DOMAINS:
            tokens[domain] = new_token()
            store.insert_token(hash_token(tokens[domain]), "issuer", domain, None, "crash-test")
    finally:
        store.close()
    return tokens


class Client:
    """Posts every batch until acknowledged; a request cut off by a kill has an unknown
    outcome and is sent again with the same event ids. A batch is atomic, so an answer to a
    batch is all accepted (first time) or all duplicates (already written). ``gave_up`` is
    set when the server cannot be started again: the client stops waiting for it."""

    def __init__(
        self,
        server: Server,
        tokens: dict[str, str],
        by_id: dict[str, bytes],
        gave_up: threading.Event,
    ) -> None:
        self.server = server
        self.tokens = tokens
        self.by_id = by_id
        self.gave_up = gave_up
        self.log = ClientLog()

    def post(self, domain: str, ids: list[str]) -> None:
        body = b"[" + b",".join(self.by_id[i] for i in ids) + b"]"
        url = f"{self.server.base}/v1/domains/{domain}/events"
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline, f"no answer to a batch for 300 s: {url}"
            assert not self.gave_up.is_set(), "the server was not started again (see above)"
            self.log.posts += 1
            try:
                status, answer = http(url, self.tokens[domain], body)
            except UNKNOWN_OUTCOME as exc:
                refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
                if refused:
                    self.log.refused += 1
                else:
                    self.log.cut_off += 1
                time.sleep(0.05)  # the server is being restarted: send the same ids again
                continue
            assert status == 200, (status, answer)
            statuses = {item["status"] for item in answer["items"]}
            counts = (answer["accepted"], answer["duplicates"], answer["rejected"])
            # A batch is the unit of durability: all of it was written before, or none.
            assert counts in ((len(ids), 0, 0), (0, len(ids), 0)), answer
            assert statuses == {"accepted" if counts[0] else "duplicate"}, answer
            if counts[1]:
                self.log.answered_duplicates += 1
            self.log.acknowledged.update(ids)
            return


@dataclass
class KillerLog:
    restarts: list[float] = field(default_factory=list)  # seconds until it answered again
    error: BaseException | None = None
    failed: threading.Event = field(default_factory=threading.Event)


def _killer(
    server: Server, rng: random.Random, size: CrashSize, stop: threading.Event, log: KillerLog
) -> None:
    """SIGKILL the server at seeded random moments while the client streams, check the store
    while it is down (every ``check_every`` kills), and start it again. Whatever goes wrong is
    handed to the main thread."""
    try:
        for n in range(1, size.kills + 1):
            time.sleep(rng.uniform(0.05, 0.6))
            server.kill()
            if n % size.check_every == 0:
                check_store(server.db, settled=False)
            began = time.monotonic()
            server.start()
            log.restarts.append(time.monotonic() - began)
    except BaseException as exc:
        log.error = exc
        log.failed.set()
    finally:
        stop.set()


@pytest.mark.timeout(7200 if SOAK else 900)
def test_killed_server_with_retrying_clients_equals_a_clean_run(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """T1 for `pointbook serve`: a client streams batch POSTs while the server is SIGKILLed
    mid-flight and restarted (at least SERVE_SIZE.kills times); the client sends every
    unanswered batch again with the same ids. 0 acknowledged events lost, 0 doubled, and the
    store equals a clean single run of the same events."""
    size = SERVE_SIZE
    path = tmp_path / "events.jsonl"
    events = write_events(path, size, SEED + 1)
    db, clean = new_db("served"), new_db("clean")
    publish_workload_packs(db)
    publish_workload_packs(clean)
    tokens = issuer_tokens(db)
    by_id = {e["id"]: json.dumps(e, separators=(",", ":")).encode() for e in events}
    batches = batches_of(events, size.batch)

    server = Server(db, tmp_path / "serve.log")
    server.start()
    rng = random.Random(SEED)
    stop = threading.Event()
    killed = KillerLog()
    client = Client(server, tokens, by_id, killed.failed)
    began = time.monotonic()
    killer = threading.Thread(target=_killer, args=(server, rng, size, stop, killed))
    try:
        killer.start()
        for domain, ids in batches:
            client.post(domain, ids)
        # Every batch answered: keep resending old ones (all duplicates) until the last kill,
        # so that every kill lands while requests are in flight, then one more after it.
        picker = random.Random(SEED + 2)
        while not stop.is_set():
            client.post(*picker.choice(batches))
        killer.join()
        client.post(*batches[-1])
    finally:
        killer.join(timeout=180)
        server.stop()
        assert killed.error is None, f"killing and restarting the server failed: {killed.error}"
    duration = time.monotonic() - began
    assert len(killed.restarts) == size.kills
    assert client.log.acknowledged == set(by_id)

    ingest_library(clean, path)
    counts = check_store(db)
    ref = assert_same(db, clean)
    assert counts["events"] == len(by_id) == len(ref.events)
    figures(
        f"crash/serve/{backend_of(db)}",
        seed=SEED,
        events=len(by_id),
        batches=len(batches),
        kills=size.kills,
        posts=client.log.posts,
        cut_off_mid_flight=client.log.cut_off,
        refused_while_down=client.log.refused,
        answered_all_duplicates=client.log.answered_duplicates,
        lost=0,
        doubled=0,
        decisions=len(ref.decisions),
        restart_median_s=f"{sorted(killed.restarts)[len(killed.restarts) // 2]:.2f}",
        duration_s=f"{duration:.0f}",
    )


def test_batches_of_keeps_every_id_once_in_file_order() -> None:
    events = [{"id": f"e{i}", "domain": "ab"[i % 2]} for i in range(7)]
    got = batches_of(events, 2)
    assert got == [("a", ["e0", "e2"]), ("b", ["e1", "e3"]), ("a", ["e4", "e6"]), ("b", ["e5"])]
