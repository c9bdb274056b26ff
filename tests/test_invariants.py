"""T15: runtime invariants crash-stop instead of writing on (engine/invariants.py).

A breach is seeded where a real bug would be (the judge emitting a bad entry, the fold a bad
decision); the write that would carry it must fail with InvariantError and leave nothing of
itself behind: the events, entries, decisions, dirty marks and audit log are as they were, and
earlier batches of the same ingest stay committed. The CLI turns the breach into exit 1 with
a message, not a traceback. Crash kind: a controlled abort of the write (the process itself
stays up and the store is never left mid-transaction), on both backends.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers import pack
from pointbook.engine import Decision, Entry, Event, SubjectState
from pointbook.engine.invariants import check_batch, check_revisions
from pointbook.errors import InvariantError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion
from pointbook.store import Store

BODY = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {attributes: {weight_kg: integer}}
  dumping: {attributes: {weight_kg: {type: integer, minimum: 1, maximum: 40}}}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -30, counts_for: 1 year}
  - {id: dump, title: Dumping, category: environment, basis: Ordinance 5, event: dumping, points: {attribute: weight_kg, scale: -1}, counts_for: 1 year}
thresholds:
  - {id: hearing, kind: hearing-notice, title: Hearing, basis: Due process, direction: below, value: 50, mode: crossing, notice: 14 days}
max_points_per_event: 40
"""
NOW = datetime(2024, 6, 1, tzinfo=UTC)
BAD = "e-bad"


def record(n: int, id: str, day: str, subject: str = "s1", kind: str = "littering") -> RawRecord:
    body = {
        "id": id,
        "domain": "town",
        "subject": subject,
        "type": kind,
        "occurred_at": day,
        "attributes": {"weight_kg": 3},
        "evidence": "ticket",
    }
    return RawRecord(n, json.dumps(body), EventIn.model_validate(body), None)


@pytest.fixture
def ledger(store_factory: Callable[[], Store]) -> Iterator[Ledger]:
    led = Ledger(store_factory(), now=lambda: NOW)
    led.publish(pack(BODY))
    yield led


def snapshot(led: Ledger) -> dict[str, Any]:
    """Everything a write could leave behind, read through the store's interface."""
    subjects = led.store.subjects("town")
    events = led.store.subject_events("town", subjects)
    return {
        "events": sorted((e.id, e.subject) for lst in events.values() for e in lst),
        "entries": sorted(
            (n.event_id, n.rule_id, n.delta)
            for s in subjects
            for n in led.store.subject_entries("town", s)
        ),
        "decisions": sorted(
            (r.decision.id, r.revision, r.withdrawn) for r in led.store.current_decisions("town")
        ),
        "dirty": sorted(led.store.dirty_subjects("town", 1000)),
        "audit": led.store.verify().records,
    }


# -- the judge emits a bad entry -------------------------------------------------------------


def _corrupt(kind: str, entry: Entry) -> Entry:
    """One seeded breach of an entry the judge made for the event ``BAD``."""
    if kind == "foreign-event":
        return dataclasses.replace(entry, event_id="e-not-in-this-batch")
    if kind == "over-cap":
        return dataclasses.replace(entry, delta=-400)
    if kind == "not-the-rule's-points":
        return dataclasses.replace(entry, delta=entry.delta + 1)
    if kind == "other-subject":
        return dataclasses.replace(entry, subject="someone-else")
    if kind == "retroactive-version":
        return dataclasses.replace(entry, pack_version="2099", pack_hash="sha256:0")
    if kind == "unknown-rule":
        return dataclasses.replace(entry, rule_id="no-such-rule")
    if kind == "ends-before-it-starts":
        return dataclasses.replace(entry, counts_until=entry.occurred_at - timedelta(days=1))
    raise AssertionError(kind)


BREACHES = [
    "foreign-event",
    "over-cap",
    "not-the-rule's-points",
    "other-subject",
    "retroactive-version",
    "unknown-rule",
    "ends-before-it-starts",
]


def seed_judge_breach(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Every judge path builds its entries with make_entry (the scalar judge, and the batch
    judge where it exists): wrap it wherever it is bound, so the breach reaches the ledger
    whichever path judges the batch."""
    # The package re-exports the function `judge`, which hides the module of that name.
    judge_module = importlib.import_module("pointbook.engine.judge")
    real = judge_module.make_entry

    def bad_make_entry(event: Event, version: PackVersion, rule: Any, delta: int) -> Entry:
        entry = real(event, version, rule, delta)
        return _corrupt(kind, entry) if event.id == BAD else entry

    monkeypatch.setattr(judge_module, "make_entry", bad_make_entry)
    try:
        batch_module = importlib.import_module("pointbook.engine.batch")
    except ModuleNotFoundError:
        return
    if hasattr(batch_module, "make_entry"):
        monkeypatch.setattr(batch_module, "make_entry", bad_make_entry)


@pytest.mark.parametrize("kind", BREACHES)
def test_a_bad_entry_stops_its_batch_and_only_its_batch(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    ledger.ingest([record(1, "e0", "2024-01-02")])
    records = [
        record(1, "e1", "2024-01-05"),
        record(2, "e2", "2024-01-06", subject="s2"),
        record(3, "e3", "2024-01-07"),  # batch 2: e3 and the bad one
        record(4, BAD, "2024-01-08", kind="dumping"),
        record(5, "e5", "2024-01-09"),  # batch 3: never reached
    ]
    before = snapshot(ledger)
    seed_judge_breach(monkeypatch, kind)
    with pytest.raises(InvariantError, match="invariant breached") as caught:
        ledger.ingest(records, batch_size=2)
    assert "nothing of this write was stored" in str(caught.value)
    after = snapshot(ledger)
    # Batch 1 (e1, e2) is committed whole; batch 2 left nothing; batch 3 never ran. The
    # decisions were not refreshed (the ingest stopped), so batch 1's subjects stay dirty.
    assert after["events"] == sorted([*before["events"], ("e1", "s1"), ("e2", "s2")])
    assert after["entries"] == sorted(
        [*before["entries"], ("e1", "litter", -30), ("e2", "litter", -30)]
    )
    assert after["decisions"] == before["decisions"]
    assert after["dirty"] == [("town", "s1"), ("town", "s2")]
    assert after["audit"] == before["audit"] + 2  # one record per event of batch 1
    assert ledger.verify().ok
    # With the bug gone, the same input lands whole: batch 1 is recognised as duplicates.
    monkeypatch.undo()
    report = ledger.ingest(records, batch_size=2)
    assert (report.accepted, report.duplicates, len(report.rejected)) == (3, 2, 0)
    assert ledger.state("town", "s1").points == 0
    assert ledger.verify().ok


# -- the fold emits a bad decision -------------------------------------------------------------


def _bad_decision(kind: str, d: Decision) -> Decision:
    if kind == "other-subject":
        return dataclasses.replace(d, subject="someone-else")
    if kind == "figure-below-the-floor":
        return dataclasses.replace(d, figure=-5)
    if kind == "unknown-threshold":
        return dataclasses.replace(d, threshold_id="no-such-threshold")
    if kind == "other-domain":
        return dataclasses.replace(d, domain="elsewhere")
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["other-subject", "figure-below-the-floor", "unknown-threshold", "other-domain"]
)
def test_a_bad_decision_stops_the_refresh_and_keeps_the_work_list(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import pointbook.ledger as ledger_module

    ledger.ingest([record(1, "e1", "2024-01-05")])
    real = ledger_module.evaluate_subject

    def bad_fold(*args: Any, **kwargs: Any) -> SubjectState:
        state = real(*args, **kwargs)
        return dataclasses.replace(
            state, decisions=tuple(_bad_decision(kind, d) for d in state.decisions)
        )

    monkeypatch.setattr(ledger_module, "evaluate_subject", bad_fold)
    # Two more losses cross the threshold (100 -> 10): the refresh would write a decision.
    ledger.ingest([record(1, "e2", "2024-01-06"), record(2, "e3", "2024-01-07")], refresh=False)
    before = snapshot(ledger)
    assert before["dirty"] == [("town", "s1")]
    with pytest.raises(InvariantError, match="invariant breached"):
        ledger.refresh_decisions()
    assert snapshot(ledger) == before  # no revision, no outbox row, the mark still there
    assert ledger.verify().ok
    monkeypatch.undo()
    assert ledger.refresh_decisions() == 1
    (row,) = ledger.store.current_decisions("town")
    assert (row.decision.subject, row.revision, row.withdrawn) == ("s1", 1, False)


# -- the checks themselves, on hand-made batches ------------------------------------------------


def _versions() -> Callable[[str], list[PackVersion]]:
    versions = pack(BODY)
    return lambda domain: versions if domain == "town" else []


def _judged(id: str = "e1", subject: str = "s1") -> tuple[Event, list[Entry]]:
    from pointbook.engine import judge

    versions = _versions()("town")
    event = Event(
        id, "town", subject, "littering", datetime(2024, 1, 5, tzinfo=UTC), {"weight_kg": 3}, "t"
    )
    return event, judge(event, versions[0])


def test_a_correct_batch_passes() -> None:
    e1, n1 = _judged("e1")
    e2, n2 = _judged("e2", "s2")
    check_batch([(e1, "h1"), (e2, "h2")], [*n1, *n2], _versions())


def test_an_entry_written_twice_or_an_event_twice_is_a_breach() -> None:
    event, entries = _judged()
    with pytest.raises(InvariantError, match="written twice"):
        check_batch([(event, "h")], [*entries, *entries], _versions())
    with pytest.raises(InvariantError, match="appears twice"):
        check_batch([(event, "h"), (event, "h")], entries, _versions())


def test_an_entry_for_an_unknown_domain_is_a_breach() -> None:
    event, entries = _judged()
    moved = dataclasses.replace(event, domain="elsewhere")
    with pytest.raises(InvariantError, match="not the version in force"):
        check_batch(
            [(moved, "h")], [dataclasses.replace(entries[0], domain="elsewhere")], _versions()
        )


def _decision(**changes: Any) -> Decision:
    base = Decision(
        id="d-1",
        domain="town",
        subject="s1",
        threshold_id="hearing",
        kind="hearing-notice",
        title="Hearing",
        level=50,
        figure=40,
        triggered_at=NOW,
        ordinal=0,
        effective_at=NOW,
        ends_at=None,
        attributes={},
        trigger="event e1",
        pack_version="1",
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass(frozen=True)
class _Stored:
    revision: int


@pytest.mark.parametrize(
    ("revisions", "current", "message"),
    [
        ([(_decision(), 1, False, "new")], {}, None),
        ([(_decision(), 3, False, "changed")], {"d-1": _Stored(2)}, None),
        ([(_decision(), 2, False, "skips")], {}, "does not follow"),
        ([(_decision(), 1, True, "withdrawn")], {}, "does not follow"),
        ([(_decision(), 2, False, "same")], {"d-1": _Stored(2)}, "does not follow"),
        ([(_decision(), 1, False, "a"), (_decision(), 1, False, "b")], {}, "two revisions"),
        ([(_decision(subject="s9"), 1, False, "x")], {}, "not of a subject being refreshed"),
        ([(_decision(pack_version="9"), 1, False, "x")], {}, "no threshold"),
        ([(_decision(figure=101), 1, False, "x")], {}, "outside the balance"),
    ],
)
def test_decision_revisions(revisions: Any, current: Any, message: str | None) -> None:
    versions = _versions()("town")
    if message is None:
        check_revisions("town", ["s1"], revisions, versions, current)
    else:
        with pytest.raises(InvariantError, match=message):
            check_revisions("town", ["s1"], revisions, versions, current)


# -- the command line ----------------------------------------------------------------------------

SEED_BREACH = textwrap.dedent(
    """
    # Loaded at interpreter start by tests/test_invariants.py only: seeds a judge breach.
    import os
    if os.environ.get("POINTBOOK_TEST_BREACH") == "1":
        import dataclasses
        import importlib
        judge_module = importlib.import_module("pointbook.engine.judge")
        real = judge_module.make_entry
        def bad(event, version, rule, delta):
            entry = real(event, version, rule, delta)
            return dataclasses.replace(entry, delta=-400) if event.id == "e-bad" else entry
        judge_module.make_entry = bad
        try:
            import pointbook.engine.batch as batch_module
            batch_module.make_entry = bad
        except ModuleNotFoundError:
            pass
    """
)


@pytest.mark.timeout(120)
def test_the_cli_stops_with_a_message_and_exit_1(tmp_path: Path) -> None:
    pack_file = tmp_path / "town.yaml"
    pack_file.write_text("\n".join(v.text for v in pack(BODY)), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(r.text for r in [record(1, "e1", "2024-01-05"), record(2, BAD, "2024-01-06")])
        + "\n",
        encoding="utf-8",
    )
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SEED_BREACH, encoding="utf-8")
    db = str(tmp_path / "store.db")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
        "POINTBOOK_TEST_BREACH": "1",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pointbook", *args, "--db", db],
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
        )

    assert cli("pack", "publish", str(pack_file)).returncode == 0
    run = cli("ingest", str(events))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "invariant breached" in run.stderr and "Traceback" not in run.stderr
    listed = Ledger.open(db, now=lambda: NOW)
    try:
        assert not listed.store.has_events("town")  # one batch: e1 went down with e-bad
        assert listed.verify().ok
    finally:
        listed.close()
