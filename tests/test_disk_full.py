"""Item 6: a store whose disk fills up fails clearly, stays consistent and resumes.

The SQLite store lives on a small tmpfs mounted for the test (root is needed to mount it; the
test fails, never skips, when it cannot). A clean run on an ordinary disk sizes it: the tmpfs
holds about twice what the whole run needs, and a filler file takes all but about half of the
run's needs, so `pointbook ingest` runs out of space part way through. Then:

1. the ingest exits 1 with a one-line message saying the disk is full and what to do, and no
   traceback; a second attempt while the disk is still full fails the same way;
2. the store is consistent: `pointbook audit verify` passes, `PRAGMA integrity_check` is ok,
   and no batch is half written (the events stored are whole batches of the file, in order,
   each with its entry);
3. once the filler is deleted, the same command resumes (what was stored counts as
   duplicates, the rest is accepted) and the final events, entries, live decisions and
   balances equal the clean run's.

A second test fills the disk between an ingest and the refresh of its decisions (the write
that holds the store's lock and appends revisions, outbox rows and audit records), and then
files an appeal: both fail with the same message, the work list and the log are untouched,
and once space is freed the refresh gives the decisions of a run that never ran out.

Crash kind: ENOSPC / SQLITE_FULL on write (the process survives and reports it), SQLite only
(the PostgreSQL server is shared and its disk is not ours to fill). Sizes: CI 4,000 events in
batches of 400; POINTBOOK_SOAK=1: 60,000 in batches of 2,000.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pointbook.errors import StoreError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_text
from pointbook.store import SQLiteStore

SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
EVENTS = 60_000 if SOAK else 4_000
BATCH = 2_000 if SOAK else 400
SUBJECTS = 400
AS_OF = datetime(2024, 12, 31, tzinfo=UTC)

PACK = """\
domain: town
version: "1"
effective_from: 2023-01-01
timezone: UTC
title: Disk-full test scheme
purpose: Filling a disk with ordinary events.
retention: 2 years
scheme: {kind: balance, start: 20, floor: 0, ceiling: 20}
event_types:
  minor: {attributes: {note: {type: string, required: false}}}
  major: {attributes: {note: {type: string, required: false}}}
rules:
  - {id: minor, title: Minor offence, category: public-order, basis: Test ordinance 1, event: minor, points: -3, counts_for: 30 days}
  - {id: major, title: Major offence, category: public-order, basis: Test ordinance 2, event: major, points: -8, counts_for: 90 days}
thresholds:
  - {id: low, kind: warning, title: Low balance, basis: Test policy, direction: at_or_below, value: 8, mode: crossing}
"""


def write_events(path: Path) -> None:
    """Deterministic events; a note of ~190 bytes each (attribute strings are at most 200 characters) so that the store fills a disk fast."""
    first = date(2023, 1, 1)
    with path.open("w", encoding="utf-8") as out:
        for i in range(EVENTS):
            body = {
                "id": f"e{i:06d}",
                "domain": "town",
                "subject": f"s{(i * 7919) % SUBJECTS:04d}",
                "type": "major" if i % 5 == 0 else "minor",
                "occurred_at": (first + timedelta(days=(i * 37) % 700)).isoformat(),
                "attributes": {"note": f"{i:06d} " + "filler text " * 15},
                "evidence": f"ticket-{i}",
            }
            out.write(json.dumps(body) + "\n")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pointbook", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty directory to mount a tmpfs on; unmounted (if mounted) at the end."""
    where = tmp_path / "disk"
    where.mkdir()
    yield where
    if os.path.ismount(where):
        subprocess.run(["umount", str(where)], check=True)


def mount_tmpfs(where: Path, size: int) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {where} ({done.stderr.strip() or 'mount failed'}): this "
            "test needs root (or CAP_SYS_ADMIN) to mount a small filesystem; run the suite as "
            "root, or in a container started with --cap-add SYS_ADMIN",
            pytrace=False,
        )


def final_state(db: Path) -> dict[str, Any]:
    """Events, entries, live decisions and balances, without reception times and salts (a
    clean run and a resumed one receive at different times)."""
    led = Ledger.open(str(db), now=lambda: AS_OF)
    try:
        subjects = led.store.subjects("town")
        events = led.store.subject_events("town", subjects)
        out: dict[str, Any] = {
            "events": sorted(
                (e.id, e.subject, e.type, e.occurred_at, json.dumps(dict(e.attributes)))
                for lst in events.values()
                for e in lst
            ),
            "entries": sorted(
                json.dumps(asdict(n), default=str)
                for s in subjects
                for n in led.store.subject_entries("town", s)
            ),
            "decisions": sorted(
                json.dumps(asdict(r.decision), default=str)
                for r in led.store.current_decisions("town")
                if not r.withdrawn
            ),
            "balances": [led.state("town", s, AS_OF).points for s in subjects],
        }
        return out
    finally:
        led.close()


def check_consistent(db: Path, first_ids: list[str], by_cli: bool = False) -> int:
    """`audit verify` passes (the command, or the same check in this process), the file is
    intact, and what is stored is whole batches of the file, each event with its entry.
    Returns how many events are stored."""
    if by_cli:
        verify = cli("audit", "verify", "--db", str(db))
        assert verify.returncode == 0, verify.stdout + verify.stderr
    else:
        led = Ledger.open(str(db))
        try:
            result = led.verify()
        finally:
            led.close()
        assert result.ok, result
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = [r[0] for r in conn.execute("SELECT id FROM pb_events ORDER BY id")]
        ((entries,),) = conn.execute("SELECT count(*) FROM pb_entries").fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM pb_entries n LEFT JOIN pb_events e"
            " ON e.domain = n.domain AND e.id = n.event_id WHERE e.id IS NULL"
        ).fetchone()
    finally:
        conn.close()
    assert len(stored) % BATCH == 0, f"{len(stored)} events stored: a batch is half written"
    assert stored == first_ids[: len(stored)], "the stored events are not the file's first batches"
    assert entries == len(stored) and orphans == (0,)
    return len(stored)


@pytest.mark.timeout(3600 if SOAK else 600)
def test_a_full_disk_fails_clearly_leaves_the_store_consistent_and_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    pack = tmp_path / "town.yaml"
    pack.write_text(PACK, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    write_events(events)
    ids = [f"e{i:06d}" for i in range(EVENTS)]

    # A clean run on an ordinary disk: the expected end state, and how much room a run needs.
    clean = tmp_path / "clean" / "store.db"
    clean.parent.mkdir()
    assert cli("pack", "publish", str(pack), "--db", str(clean)).returncode == 0
    run = cli("ingest", str(events), "--db", str(clean), "--batch-size", str(BATCH))
    assert run.returncode == 0, run.stderr
    need = store_bytes(clean)
    expected = final_state(clean)

    size = 2 * need + (1 << 20)
    mount_tmpfs(small_disk, size)
    db = small_disk / "store.db"
    assert cli("pack", "publish", str(pack), "--db", str(db)).returncode == 0
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - need // 2))

    for attempt in (1, 2):  # the second attempt: the disk is still full
        run = cli("ingest", str(events), "--db", str(db), "--batch-size", str(BATCH))
        assert run.returncode == 1, (attempt, run.stdout, run.stderr)
        assert "disk is full" in run.stderr and "free space" in run.stderr.lower(), run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        stored = check_consistent(db, ids, by_cli=attempt == 1)
        assert 0 < stored < EVENTS or attempt == 2, stored
        print(f"disk full, attempt {attempt}: {stored:,} of {EVENTS:,} events stored")

    filler.unlink()
    run = cli("ingest", str(events), "--db", str(db), "--batch-size", str(BATCH), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["accepted"] + report["duplicates"], report["rejected"]) == (EVENTS, 0)
    assert report["duplicates"] == stored
    check_consistent(db, ids)
    assert final_state(db) == expected
    print(
        f"disk full: {EVENTS:,} events, tmpfs {size / 2**20:.1f} MiB, run needs "
        f"{need / 2**20:.1f} MiB; resumed with {report['duplicates']:,} duplicates and "
        f"{report['accepted']:,} accepted; final state equals the clean run"
    )


def fill(where: Path) -> Path:
    """Take every free byte of the filesystem at ``where``."""
    filler = where / "filler"
    chunk = b"\0" * (64 << 10)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def records(n: int) -> list[RawRecord]:
    out = []
    for i in range(n):
        body = {
            "id": f"r{i:04d}",
            "domain": "town",
            "subject": f"s{i % 20:02d}",
            "type": "major" if i % 3 == 0 else "minor",
            "occurred_at": (date(2024, 1, 1) + timedelta(days=i % 60)).isoformat(),
            "evidence": f"t-{i}",
        }
        out.append(RawRecord(i + 1, "", EventIn.model_validate(body), None))
    return out


@pytest.mark.timeout(300)
def test_a_full_disk_during_the_refresh_keeps_the_work_list(small_disk: Path) -> None:
    mount_tmpfs(small_disk, 4 << 20)
    versions = load_pack_text(PACK, "town.yaml")
    expected = Ledger.open(":memory:", now=lambda: AS_OF)
    expected.publish(versions)
    expected.ingest(records(300))
    led = Ledger.open(str(small_disk / "store.db"), now=lambda: AS_OF)
    try:
        led.publish(versions)
        led.ingest(records(300), refresh=False)
        dirty = led.store.dirty_subjects("town", 100)
        assert len(dirty) == 20
        # Empty the write-ahead log into the file, so the next write needs new disk space.
        assert isinstance(led.store, SQLiteStore)
        led.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        audited = led.verify().records
        filler = fill(small_disk)
        with pytest.raises(StoreError, match="disk is full") as caught:
            led.refresh_decisions()
        assert "Free space" in str(caught.value)
        with pytest.raises(StoreError, match="disk is full"):
            led.file_appeal("town", "s00", "not me", event_id="r0000")
        assert led.store.dirty_subjects("town", 100) == dirty
        assert led.store.current_decisions("town") == []
        assert led.store.appeals("town") == {}
        result = led.verify()
        assert result.ok and result.records == audited, result
        filler.unlink()
        assert led.refresh_decisions() == 20
        found = {(r.decision.id, r.revision) for r in led.store.current_decisions("town")}
        want = {(r.decision.id, r.revision) for r in expected.store.current_decisions("town")}
        assert found == want and found
        assert led.verify().ok
    finally:
        led.close()
        expected.close()
