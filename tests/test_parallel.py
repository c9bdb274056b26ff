"""Folding on worker processes (pointbook/parallel.py): the same results as folding in process.

- A store ingested and refreshed with jobs=2 holds exactly the decisions (every revision: id,
  revision, content, withdrawal and its reason) and the outbox of the same events refreshed
  with jobs=1, through late events and upheld appeals, on both backends.
- `Ledger.states` with jobs=2 equals jobs=1 for every subject.
- A worker that raises surfaces as the same exception type in the caller, the refresh writes
  nothing, and the pool goes on working (no hang, no BrokenProcessPool).

The size threshold is set to 1 event so that the workers really run on these small stores, and
the refresh chunk to 40 subjects so that one hold of the lock spans several writes.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pointbook.ledger as ledger_module
from pointbook.bench import DOMAINS, generate_workload
from pointbook.demo import packs_dir
from pointbook.engine import Appeal, Event, SubjectState, evaluate_subject
from pointbook.errors import InvariantError
from pointbook.intake import read_records
from pointbook.ledger import Ledger
from pointbook.parallel import JOBS_ENV, FoldPool, History, default_jobs
from pointbook.rules.pack import PackVersion, load_pack_file
from pointbook.store import SQLiteStore, Store

NOW = datetime(2030, 1, 1, tzinfo=UTC)
AS_OF = datetime(2024, 6, 30, tzinfo=UTC)
EVENTS, SUBJECTS = 3000, 300

pytestmark = pytest.mark.timeout(300)


def workload() -> list[bytes]:
    """Seeded events, a tenth of them arriving late (revisions and withdrawals follow)."""
    found = generate_workload(EVENTS, SUBJECTS, seed=7, late_fraction=0.1)
    return [json.dumps(e).encode() for e in found]


def ledger_on(store: Store, jobs: int) -> Ledger:
    led = Ledger(store, now=lambda: NOW, jobs=jobs, parallel_min_events=1)
    folder = packs_dir()
    for pack_file, _, _ in DOMAINS.values():
        led.publish_file(folder / pack_file)
    return led


def build(store: Store, jobs: int, lines: list[bytes]) -> Ledger:
    """The same history whatever ``jobs``: two ingests, then an entry and a decision appealed
    and upheld (each decision refreshes what it changed)."""
    led = ledger_on(store, jobs)
    half = len(lines) // 2
    for part in (lines[:half], lines[half:]):
        report = led.ingest(read_records(io.BytesIO(b"\n".join(part)), "jsonl"))
        assert report.accepted == len(part)
    rows = sorted(
        (r for d in DOMAINS for r in store.current_decisions(d) if not r.withdrawn),
        key=lambda r: (r.decision.domain, r.decision.subject, r.decision.id),
    )
    assert len(rows) >= 4, "the workload must trigger decisions"
    first, second = rows[0].decision, rows[-1].decision
    contested = led.file_appeal(first.domain, first.subject, "not me", decision_id=first.id)
    event = store.subject_events(second.domain, [second.subject])[second.subject][0]
    wrong = led.file_appeal(second.domain, second.subject, "never happened", event_id=event.id)
    for appeal in (contested, wrong):
        led.decide_appeal(appeal.id, "upheld", "reviewer-1", "the evidence does not hold")
    return led


def stored(store: Store, query: str) -> list[tuple[Any, ...]]:
    conn: Any = getattr(store, "conn")  # noqa: B009 - both stores keep a DB-API connection
    return [tuple(r) for r in conn.execute(query).fetchall()]


DECISIONS = "SELECT * FROM pb_decisions ORDER BY domain, id, revision"
OUTBOX = "SELECT domain, key, decision_id, payload FROM pb_outbox ORDER BY seq"


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Appeal ids (and salts) from a counter, restarted per store: two builds get the same."""
    counter = itertools.count()

    def restart() -> None:
        nonlocal counter
        counter = itertools.count()

    def token_hex(n: int = 32) -> str:
        return f"{next(counter):0{2 * n}x}"

    monkeypatch.setattr("secrets.token_hex", token_hex)
    return restart


@pytest.fixture
def folds_on_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the histories folded on workers, so a test knows the parallel path ran."""
    counted: list[int] = []
    real = FoldPool._map

    def counting(self: FoldPool, *args: Any) -> Iterator[tuple[History, Any]]:
        for item in real(self, *args):
            counted.append(1)
            yield item

    monkeypatch.setattr(FoldPool, "_map", counting)
    return counted


def test_a_refresh_on_workers_writes_what_a_serial_refresh_writes(
    store_factory: Callable[[], Store],
    tokens: Callable[[], None],
    folds_on_workers: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger_module, "REFRESH_CHUNK", 40)
    lines = workload()
    serial_store, parallel_store = store_factory(), store_factory()
    tokens()
    build(serial_store, 1, lines)
    assert folds_on_workers == []
    tokens()
    parallel = build(parallel_store, 2, lines)
    assert len(folds_on_workers) >= SUBJECTS, "the refresh must have run on the workers"
    revisions = [r.revision for d in DOMAINS for r in parallel_store.current_decisions(d)]
    withdrawn = [r for d in DOMAINS for r in parallel_store.current_decisions(d) if r.withdrawn]
    assert max(revisions) > 1 and withdrawn, "late events and appeals must revise decisions"
    assert stored(parallel_store, DECISIONS) == stored(serial_store, DECISIONS)
    assert stored(parallel_store, OUTBOX) == stored(serial_store, OUTBOX)
    assert parallel_store.dirty_subjects(None, 1) == []
    parallel.close()


def test_states_on_workers_equal_states_in_process(
    store_factory: Callable[[], Store], folds_on_workers: list[int]
) -> None:
    store = store_factory()
    serial = ledger_on(store, 1)
    serial.ingest(read_records(io.BytesIO(b"\n".join(workload())), "jsonl"))
    parallel = Ledger(store, now=lambda: NOW, jobs=2, parallel_min_events=1)
    for domain in DOMAINS:
        for as_of in (AS_OF, NOW):
            want = list(serial.states(domain, as_of))
            before = len(folds_on_workers)
            got = list(parallel.states(domain, as_of))
            assert len(folds_on_workers) - before == len(got) > 0
            assert [s.subject for s in got] == store.subjects(domain)
            assert got == want
    # Stopping early leaves the pool usable.
    assert next(parallel.states("forum", NOW)) == next(serial.states("forum", NOW))
    assert list(parallel.states("forum", NOW))[-1] == list(serial.states("forum", NOW))[-1]
    parallel.close()


def test_small_work_lists_and_one_job_fold_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pool(*args: Any, **kwargs: Any) -> FoldPool:
        raise AssertionError("no worker should start")

    monkeypatch.setattr(ledger_module, "FoldPool", no_pool)
    lines = workload()[:1000]
    one = ledger_on(SQLiteStore(tmp_path / "one.db"), 1)
    one.ingest(read_records(io.BytesIO(b"\n".join(lines)), "jsonl"))
    assert len(list(one.states("forum", NOW))) > 0
    one.close()
    # The default threshold: a few hundred events stay in process however many jobs.
    small = Ledger(SQLiteStore(tmp_path / "small.db"), now=lambda: NOW, jobs=4)
    for pack_file, _, _ in DOMAINS.values():
        small.publish_file(packs_dir() / pack_file)
    small.ingest(read_records(io.BytesIO(b"\n".join(lines[:300])), "jsonl"))
    assert [s.points for s in small.states("forum", NOW)]
    small.close()


def test_jobs_default_to_the_environment_then_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(JOBS_ENV, raising=False)
    assert default_jobs() == 1  # in process unless asked
    monkeypatch.setenv(JOBS_ENV, "3")
    assert Ledger(SQLiteStore(tmp_path / "a.db")).jobs == 3
    assert Ledger(SQLiteStore(tmp_path / "b.db"), jobs=1).jobs == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(JOBS_ENV, bad)
        with pytest.raises(ValueError, match=JOBS_ENV):
            default_jobs()


# -- failures on the workers ------------------------------------------------------------------
class TwoPartError(Exception):
    """An exception that pickles but does not unpickle (its constructor takes two arguments)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def failing_fold(
    versions: Sequence[PackVersion],
    events: Sequence[Event],
    as_of: datetime,
    subject: str | None = None,
    appeals: Sequence[Appeal] = (),
) -> SubjectState:
    """evaluate_subject, except for the subjects named to fail (run on the workers)."""
    if subject is not None and subject.endswith("-000003"):
        raise InvariantError(f"invariant breached for {subject}")
    if subject is not None and subject.endswith("-000005"):
        raise TwoPartError(subject, "cannot come back as itself")
    return evaluate_subject(versions, events, as_of, subject=subject, appeals=appeals)


def histories(n: int, prefix: str = "s") -> list[History]:
    return [(f"{prefix}-{i:06d}", [], []) for i in range(n)]


def test_a_worker_that_raises_surfaces_as_the_same_exception_and_the_pool_goes_on() -> None:
    versions = {d: load_pack_file(packs_dir() / f) for d, (f, _, _) in DOMAINS.items()}
    pool = FoldPool(2, chunk=2)
    try:
        # No version to fold with: evaluate_subject's ValueError, raised on a worker.
        pool.load({**versions, "empty": []})
        with pytest.raises(ValueError, match="at least one pack version"):
            list(pool.states("empty", histories(9), NOW))
        with pytest.raises(RuntimeError, match="must be given 'unknown'"):
            list(pool.states("unknown", histories(3), NOW))
        good = list(pool.states("forum", histories(9), NOW))
        assert [s for _, s in good] == [
            evaluate_subject(versions["forum"], [], NOW, subject=s) for s, _, _ in histories(9)
        ]
    finally:
        pool.close()

    failing = FoldPool(2, fold=failing_fold, chunk=2)
    try:
        failing.load(versions)
        with pytest.raises(InvariantError, match="invariant breached for s-000003"):
            list(failing.decisions("forum", histories(20), NOW))
        with pytest.raises(RuntimeError, match="TwoPartError: s-000005: cannot come back"):
            list(failing.decisions("forum", histories(6)[4:], NOW))
        assert len(list(failing.decisions("forum", histories(3), NOW))) == 3
    finally:
        failing.close()


def test_a_refresh_whose_worker_raises_writes_nothing_and_keeps_its_work_list(
    store_factory: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_factory()
    monkeypatch.setattr(ledger_module, "FoldPool", functools.partial(FoldPool, fold=failing_fold))
    led = ledger_on(store, 2)
    lines = workload()
    led.ingest(read_records(io.BytesIO(b"\n".join(lines)), "jsonl"), refresh=False)
    dirty = sorted(store.dirty_subjects(None, 10_000))
    # A failing subject in each domain: whichever is refreshed first fails.
    assert {s for _, s in dirty} >= {"fo-000003", "fr-000003"}
    with pytest.raises(InvariantError, match="invariant breached"):
        led.refresh_decisions()
    assert sorted(store.dirty_subjects(None, 10_000)) == dirty
    assert all(store.current_decisions(d) == [] for d in DOMAINS)
    monkeypatch.undo()
    # The same store, refreshed by workers that do not fail: every subject.
    fresh = Ledger(store, now=lambda: NOW, jobs=2, parallel_min_events=1)
    assert fresh.refresh_decisions() == len(dirty)
    assert store.dirty_subjects(None, 1) == []
    fresh.close()
    led.close()
