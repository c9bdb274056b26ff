"""Concurrency (issue 6 item 2, checklist T3 and T4): several `pointbook ingest` processes
write one store at once, and the result must equal a serial replay into a fresh store.

- T4: 4 processes into one SQLite file, 8 into one PostgreSQL schema, ingesting overlapping
  files (shared event ids, same content): the store equals a serial replay of the files, each
  event is counted accepted by exactly one process, and no "database is locked", serialization
  failure or traceback reaches a user (stderr empty, exit 0).
- T3: processes sending the same ids with different content at the same time: exactly one
  content is stored per id, its sender was told "accepted" and every other sender got an
  `event/conflict` reject for it; the store equals a serial replay of the winners.
- Two ledgers refreshing the same dirty subjects at once (the known issue: both wrote
  revision 1 and the second was refused by the key): both finish, and the decisions equal one
  refresh alone.

What is simulated: concurrent processes on one machine (no crash; see test_crash.py for
killed processes). Sizes: CI by default, POINTBOOK_SOAK=1 for the full size.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pointbook.bench import DOMAINS, generate_workload
from pointbook.intake import read_records
from pointbook.ledger import Ledger
from pointbook.store import open_store
from pointbook.store.base import BatchRaceError
from test_crash import (
    ENV,
    ROOT,
    SEED,
    SOAK,
    assert_same,
    backend_of,
    check_store,
    count_events,
    figures,
    new_db,
    publish_workload_packs,
)

__all__ = ["new_db"]  # the fixture, shared with test_crash.py


@dataclass(frozen=True)
class Contention:
    writers: dict[str, int]  # backend -> processes
    pool: int  # distinct events
    share: float  # of the pool in each writer's file
    batch: int


OVERLAP = (
    Contention({"sqlite": 16, "postgres": 16}, 20_000, 0.5, 200)
    if SOAK
    else Contention({"sqlite": 4, "postgres": 8}, 2_400, 0.5, 50)
)
CONFLICT = (
    Contention({"sqlite": 8, "postgres": 16}, 5_000, 1.0, 50)
    if SOAK
    else Contention({"sqlite": 4, "postgres": 4}, 300, 1.0, 20)
)


def write_lines(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


@dataclass
class Outcome:
    returncode: int
    stderr: str
    report: dict[str, int]
    rejects: list[dict[str, Any]]


def has_opened_store(pid: int, db: str) -> bool:
    """Whether a process holds the store open (SQLite: the file; PostgreSQL: a socket)."""
    want = os.path.realpath(db) if backend_of(db) == "sqlite" else "socket:"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(want):
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def run_writers(db: str, files: list[Path], batch: int) -> list[Outcome]:
    """Run one `pointbook ingest -` per file, all writing at the same moment: each process
    starts, opens the store and waits on its standard input; once all have, every file is
    fed at once. (Started one after the other, the first would be done before the last had
    imported pointbook, and they would never race.) What each told its user is collected."""
    procs = []
    for path in files:
        rejects = path.with_suffix(".rejects")
        command = ["ingest", "-", "--db", db, "--batch-size", str(batch), "--json"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pointbook", *command, "--rejects", str(rejects)],
                cwd=ROOT,
                env=ENV,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    deadline = time.monotonic() + 300
    while not all(has_opened_store(p.pid, db) for p in procs):
        assert all(p.poll() is None for p in procs), "a writer ended before reading its input"
        assert time.monotonic() < deadline, "the writers did not open the store in 300 s"
        time.sleep(0.05)
    answers: list[tuple[bytes, bytes]] = [(b"", b"")] * len(procs)

    def feed(i: int) -> None:
        answers[i] = procs[i].communicate(files[i].read_bytes(), timeout=600)

    feeders = [threading.Thread(target=feed, args=(i,)) for i in range(len(procs))]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    out: list[Outcome] = []
    for proc, path, (stdout, stderr) in zip(procs, files, answers, strict=True):
        rejects_file = path.with_suffix(".rejects")
        rejects = [json.loads(line) for line in rejects_file.read_text().splitlines()]
        report = json.loads(stdout) if stdout.strip() else {}
        out.append(Outcome(proc.returncode, stderr.decode(errors="replace"), report, rejects))
    return out


def serial_replay(db: str, files: list[Path]) -> None:
    """The reference: the same files one after the other, in one process, into ``db``."""
    publish_workload_packs(db)
    ledger = Ledger(open_store(db))
    try:
        for path in files:
            with path.open("rb") as fh:
                ledger.ingest(read_records(fh, "jsonl"))
    finally:
        ledger.close()


def assert_nothing_leaked_to_users(outcomes: list[Outcome]) -> None:
    """No lock, serialization or other store error, and no traceback, reached any user."""
    for i, o in enumerate(outcomes):
        assert o.stderr.strip() == "", f"writer {i} (exit {o.returncode}) said:\n{o.stderr}"
        assert o.report, f"writer {i} printed no report (exit {o.returncode})"


@pytest.mark.timeout(3600 if SOAK else 600)
def test_overlapping_writers_equal_a_serial_replay(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """T4: N processes ingest overlapping files (shared ids, same content) into one store."""
    shared = new_db("shared")
    backend = backend_of(shared)
    writers = OVERLAP.writers[backend]
    pool = generate_workload(OVERLAP.pool, OVERLAP.pool // 8, SEED, late_fraction=0.05)
    rng = random.Random(SEED)
    files = []
    for i in range(writers):
        # Even writers go through the pool in its order, odd ones backwards: writers meet on
        # the same ids at the same time, and one refreshes decisions while others still store
        # new events of the same subjects.
        chosen = sorted(rng.sample(range(len(pool)), round(len(pool) * OVERLAP.share)))
        if i % 2:
            chosen.reverse()
        files.append(tmp_path / f"writer-{i}.jsonl")
        write_lines(files[-1], [pool[j] for j in chosen])
    publish_workload_packs(shared)
    began = time.monotonic()
    outcomes = run_writers(shared, files, OVERLAP.batch)
    duration = time.monotonic() - began
    assert_nothing_leaked_to_users(outcomes)
    assert [o.returncode for o in outcomes] == [0] * writers
    lines = [len(p.read_text().splitlines()) for p in files]
    for o, n in zip(outcomes, lines, strict=True):
        assert o.report["accepted"] + o.report["duplicates"] == n, o.report
    distinct = {json.loads(line)["id"] for p in files for line in p.read_text().splitlines()}
    # Every event was accepted by exactly one writer; every other sending was a duplicate.
    assert sum(o.report["accepted"] for o in outcomes) == len(distinct)

    reference = new_db("serial")
    serial_replay(reference, files)
    counts = check_store(shared)
    ref = assert_same(shared, reference)
    assert counts["events"] == len(distinct) == len(ref.events)
    figures(
        f"concurrency/overlap/{backend}",
        seed=SEED,
        writers=writers,
        lines_sent=sum(lines),
        distinct_events=len(distinct),
        duplicates_absorbed=sum(o.report["duplicates"] for o in outcomes),
        decisions=len(ref.decisions),
        mismatches=0,
        errors_shown=0,
        duration_s=f"{duration:.1f}",
    )


@pytest.mark.timeout(3600 if SOAK else 600)
def test_concurrent_conflicting_ids_one_wins_the_others_are_told(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """T3: every writer sends the same ids at the same time, each with its own content (its
    own evidence reference). Exactly one content per id is stored; its writer counted it
    accepted; every other writer has it among its rejects as event/conflict."""
    shared = new_db("shared")
    backend = backend_of(shared)
    writers = CONFLICT.writers[backend]
    pool = generate_workload(CONFLICT.pool, CONFLICT.pool // 6, SEED + 7)
    files = []
    for i in range(writers):
        mine = [{**e, "evidence": f"writer-{i}-{e['evidence']}"} for e in pool]
        files.append(tmp_path / f"writer-{i}.jsonl")
        write_lines(files[-1], mine)
    publish_workload_packs(shared)
    began = time.monotonic()
    outcomes = run_writers(shared, files, CONFLICT.batch)
    duration = time.monotonic() - began
    assert_nothing_leaked_to_users(outcomes)
    ids = [e["id"] for e in pool]
    refused = [{r["id"] for r in o.rejects} for o in outcomes]
    for i, o in enumerate(outcomes):
        assert {r["code"] for r in o.rejects} <= {"event/conflict"}, o.rejects[:3]
        assert o.returncode == (1 if o.rejects else 0)
        assert o.report["accepted"] == len(ids) - len(refused[i]), o.report
    winners: dict[str, int] = {}
    for eid in ids:
        told_accepted = [i for i in range(writers) if eid not in refused[i]]
        assert len(told_accepted) == 1, f"{eid}: accepted by writers {told_accepted}"
        winners[eid] = told_accepted[0]
    # The store holds each winner's content (its evidence names the winning writer).
    store = open_store(shared)
    try:
        for domain in DOMAINS:
            for subject, events in store.subject_events(domain, store.subjects(domain)).items():
                for e in events:
                    assert e.evidence is not None and e.evidence.startswith(
                        f"writer-{winners.pop(e.id)}-"
                    ), (subject, e.id, e.evidence)
    finally:
        store.close()
    assert winners == {}, f"{len(winners)} ids not stored"

    by_writer = {i: [eid for eid in ids if eid not in refused[i]] for i in range(writers)}
    replay_file = tmp_path / "winners.jsonl"
    lines = [files[i].read_text().splitlines() for i in range(writers)]
    position = {eid: n for n, eid in enumerate(ids)}
    write_lines(
        replay_file,
        [json.loads(lines[i][position[eid]]) for i, won in by_writer.items() for eid in won],
    )
    reference = new_db("serial")
    serial_replay(reference, [replay_file])
    check_store(shared)
    assert_same(shared, reference)
    wins = sorted(len(won) for won in by_writer.values())
    figures(
        f"concurrency/conflicts/{backend}",
        seed=SEED + 7,
        writers=writers,
        ids=len(ids),
        submissions=len(ids) * writers,
        stored=len(ids),
        conflicts_reported=sum(len(r) for r in refused),
        wins_per_writer=wins,
        duration_s=f"{duration:.1f}",
    )


@pytest.mark.timeout(300)
def test_two_ledgers_refreshing_the_same_subjects_both_finish(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """The known issue: two ledgers refreshing the same dirty subjects at once both tried
    revision 1 of each decision and the second write was refused by the key. Now each chunk
    is refreshed under the store's write lock: both finish, each subject is refreshed once,
    and the decisions equal one refresh alone."""
    shared = new_db("shared")
    publish_workload_packs(shared)
    pool = generate_workload(1_500, 150, SEED + 3)
    path = tmp_path / "events.jsonl"
    write_lines(path, pool)
    loader = Ledger(open_store(shared))
    try:
        with path.open("rb") as fh:
            loader.ingest(read_records(fh, "jsonl"), refresh=False)
    finally:
        loader.close()
    # Two connections to one store, as two processes would have.
    ledgers = [Ledger(open_store(shared)), Ledger(open_store(shared))]
    barrier = threading.Barrier(len(ledgers))
    failures: list[BaseException] = []
    refreshed: list[int] = []

    def refresh(ledger: Ledger) -> None:
        try:
            barrier.wait()
            refreshed.append(ledger.refresh_decisions())
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=refresh, args=(led,)) for led in ledgers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
    finally:
        for led in ledgers:
            led.close()
    assert failures == []
    assert sum(refreshed) == len({(e["domain"], e["subject"]) for e in pool}), refreshed
    reference = new_db("reference")
    serial_replay(reference, [path])
    check_store(shared)
    assert_same(shared, reference)


@pytest.mark.timeout(300)
def test_an_event_stored_during_a_refresh_stays_on_the_work_list(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """The lost update behind the known issue: ledger A reads a chunk of dirty subjects'
    events; ledger B (another process) stores new events of the same subjects and marks them
    dirty (already marked); A writes decisions from what it read and clears the work list,
    and B's refresh then finds nothing to do: those subjects' decisions stay stale for good.
    The interleaving is forced: A pauses after reading (up to 2 s) while B ingests. With the
    refresh under the write lock, B's write waits for A instead, and the decisions end equal
    to a serial replay."""
    shared = new_db("shared")
    publish_workload_packs(shared)
    pool = generate_workload(1_500, 150, SEED + 5)
    rng = random.Random(SEED + 5)
    late = set(rng.sample(range(len(pool)), len(pool) // 10))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_lines(first, [e for i, e in enumerate(pool) if i not in late])
    write_lines(second, [e for i, e in enumerate(pool) if i in late])
    a, b = Ledger(open_store(shared)), Ledger(open_store(shared))
    read_done, b_done = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    try:
        with first.open("rb") as fh:
            a.ingest(read_records(fh, "jsonl"), refresh=False)
        original = a.store.subject_events

        def read_then_pause(domain: str, subjects: Any) -> Any:
            found = original(domain, subjects)
            if not read_done.is_set():
                read_done.set()
                b_done.wait(timeout=2)  # with the lock held, B cannot finish: go on
            return found

        a.store.subject_events = read_then_pause  # type: ignore[method-assign]

        def ingest_meanwhile() -> None:
            try:
                read_done.wait(timeout=60)
                with second.open("rb") as fh:
                    b.ingest(read_records(fh, "jsonl"), refresh=False)
                b_done.set()
            except BaseException as exc:  # handed to the main thread
                failures.append(exc)

        writer = threading.Thread(target=ingest_meanwhile)
        writer.start()
        a.refresh_decisions()
        writer.join(timeout=120)
        assert failures == []
        assert read_done.is_set() and b_done.is_set()
        b.refresh_decisions()  # what B's `pointbook ingest` does at its end
    finally:
        a.close()
        b.close()
    reference = new_db("reference")
    serial_replay(reference, [first, second])
    check_store(shared)
    assert_same(shared, reference)


@pytest.mark.timeout(120)
def test_a_raced_batch_is_refused_whole_then_each_id_is_decided(
    new_db: Callable[[str], str],
) -> None:
    """The race under T3/T4, forced: ledger A checks a batch's ids (none stored), then ledger
    B stores three of them (two with A's content, one with other content) before A writes.
    A's write is refused whole (BatchRaceError, nothing written; on PostgreSQL still the
    driver's UniqueViolation), and the ledger checks the batch again: the two become
    duplicates, the third a conflict, the rest accepted, with exact counts."""
    shared = new_db("shared")
    publish_workload_packs(shared)
    pool = generate_workload(40, 10, SEED + 11)
    lines = [json.dumps(e).encode() for e in pool]
    other = {**pool[5], "evidence": "another-report"}
    raced = [lines[3], lines[4], json.dumps(other).encode()]
    a, b = Ledger(open_store(shared)), Ledger(open_store(shared))
    try:
        original = a.store.event_hashes
        calls: list[int] = []

        def check_then_race(domain: str, ids: Any) -> dict[str, str]:
            found = original(domain, ids)
            if not calls:  # B stores its three events between A's check and A's write
                b.ingest(read_records(io.BytesIO(b"\n".join(raced)), "jsonl"), refresh=False)
            calls.append(len(ids))
            return found

        a.store.event_hashes = check_then_race  # type: ignore[method-assign]
        write = a.store.write_batch
        refusals: list[tuple[set[str], int]] = []

        def refused_whole(*args: Any) -> None:
            try:
                write(*args)
            except BatchRaceError as exc:
                refusals.append(({i for _, i in exc.ids}, count_events(a.store)))
                raise

        a.store.write_batch = refused_whole  # type: ignore[method-assign]
        report = a.ingest(read_records(io.BytesIO(b"\n".join(lines)), "jsonl"), refresh=False)
        a.refresh_decisions()
    finally:
        a.close()
        b.close()
    # Refused once, whole (only B's three events stored), then checked again by the ledger.
    assert len(refusals) == 1
    assert refusals[0][0] <= {e["id"] for e in pool[3:6]}
    assert refusals[0][1] == 3
    assert (report.accepted, report.duplicates) == (len(pool) - 3, 2)
    assert [(r.event_id, r.code) for r in report.rejected] == [(pool[5]["id"], "event/conflict")]
    check_store(shared)
