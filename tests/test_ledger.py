"""The ledger over each store backend: publication rules, idempotent atomic ingest, decisions."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import pack
from pointbook.engine import judge, validate_event
from pointbook.errors import ConflictError, PublishError, StoreError, UnknownDomainError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.store import PostgresStore, SQLiteStore, Store, open_store
from pointbook.store.sqlite import BULK_CACHE_SIZE, BULK_WAL_AUTOCHECKPOINT

BODY = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {attributes: {weight_kg: integer}}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -30}
thresholds:
  - {id: hearing, kind: hearing-notice, title: Hearing, basis: Due process, direction: below, value: 50, mode: crossing, notice: 14 days}
"""
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def record(n: int, id: str, at: str, subject: str = "s1", **extra: Any) -> RawRecord:
    body = {
        "id": id,
        "domain": "town",
        "subject": subject,
        "type": "littering",
        "occurred_at": at,
        "attributes": {"weight_kg": 1},
        "evidence": "ticket-1",
        **extra,
    }
    return RawRecord(n, str(body), EventIn.model_validate(body), None)


@pytest.fixture
def ledger(store_factory: Callable[[], Store]) -> Ledger:
    led = Ledger(store_factory(), now=lambda: NOW)
    led.publish(pack(BODY))
    return led


def test_the_same_event_again_is_a_duplicate_and_changes_nothing(ledger: Ledger) -> None:
    first = ledger.ingest([record(1, "e1", "2024-01-10")])
    again = ledger.ingest([record(1, "e1", "2024-01-10"), record(2, "e1", "2024-01-10")])
    assert (first.accepted, again.accepted, again.duplicates) == (1, 0, 2)
    assert ledger.state("town", "s1").points == 70
    assert len(ledger.store.subject_entries("town", "s1")) == 1


def test_the_same_id_with_other_content_is_a_conflict(ledger: Ledger) -> None:
    ledger.ingest([record(1, "e1", "2024-01-10")])
    report = ledger.ingest([record(7, "e1", "2024-01-11")])
    assert report.accepted == 0
    (rej,) = report.rejected
    assert (rej.line, rej.code) == (7, "event/conflict")
    with pytest.raises(ConflictError):
        ledger.ingest_one(record(1, "e1", "2024-01-12"))
    assert ledger.state("town", "s1").points == 70


def test_a_conflict_inside_one_batch_keeps_the_first_report(ledger: Ledger) -> None:
    report = ledger.ingest([record(1, "e1", "2024-01-10"), record(2, "e1", "2024-01-11")])
    assert report.accepted == 1 and report.rejected[0].line == 2
    assert "line 1" in report.rejected[0].reason


def test_good_lines_land_and_bad_lines_are_reported_with_their_reason(ledger: Ledger) -> None:
    bad_type = RawRecord(2, "", EventIn.model_validate({**_body("e2"), "type": "litering"}), None)
    unreadable = RawRecord(3, "{", None, "not valid JSON")
    report = ledger.ingest([record(1, "e1", "2024-01-10"), bad_type, unreadable])
    assert report.accepted == 1
    assert [(r.line, r.code) for r in report.rejected] == [
        (2, "event/unknown-type"),
        (3, "event/invalid"),
    ]
    assert "did you mean 'littering'" in report.rejected[0].reason


SCALED = """
scheme: {kind: balance, start: 0, floor: -1000, ceiling: 1000}
event_types:
  fine: {attributes: {n: integer}}
rules:
  - {id: fine, title: Fine, category: public-order, basis: Ordinance 5, event: fine,
     points: {attribute: n, scale: -1000000}, counts_for: 1 year}
"""


def test_points_beyond_what_a_ledger_holds_refuse_that_event_alone(
    store_factory: Callable[[], Store],
) -> None:
    """An unbounded attribute times a large scale (the pack only gets a lint warning): the
    event whose product passes 2**53 is rejected with its own code, the rest of its batch
    lands; an attribute past 2**53 says so (it is an integer, only too large)."""
    led = Ledger(store_factory(), now=lambda: NOW)
    led.publish(pack(SCALED, forgive=False))

    def fine(n: int, id: str, value: int) -> RawRecord:
        body = {
            "id": id,
            "domain": "town",
            "subject": "s1",
            "type": "fine",
            "occurred_at": "2024-01-10",
            "attributes": {"n": value},
        }
        return RawRecord(n, str(body), EventIn.model_validate(body), None)

    report = led.ingest([fine(1, "a", 3), fine(2, "b", 2**53 - 1), fine(3, "c", 2**60)])
    assert report.accepted == 1
    assert [(r.line, r.code) for r in report.rejected] == [
        (2, "event/points-out-of-range"),
        (3, "event/attributes"),
    ]
    assert "rule 'fine' would give -9007199254740991000000 points" in report.rejected[0].reason
    assert "must be below 2**53 in magnitude" in report.rejected[1].reason
    assert led.state("town", "s1").points == -1000  # -3,000,000 clamped at the floor


def _body(id: str) -> dict[str, Any]:
    return {
        "id": id,
        "domain": "town",
        "subject": "s1",
        "type": "littering",
        "occurred_at": "2024-01-10",
        "attributes": {"weight_kg": 1},
    }


def test_events_before_the_first_version_or_in_the_future_are_rejected(ledger: Ledger) -> None:
    report = ledger.ingest([record(1, "old", "2019-12-31"), record(2, "future", "2024-07-01")])
    assert [r.code for r in report.rejected] == ["event/before-first-version", "event/future"]


def test_a_batch_that_fails_to_write_leaves_nothing_behind(ledger: Ledger) -> None:
    store = ledger.store
    ledger.ingest([record(1, "e1", "2024-01-10")])
    # A trigger makes the entries insert fail after the events insert ran in the same batch.
    failure = _fail_entries_of(store, "e3")
    with pytest.raises(failure):
        ledger.ingest([record(1, "e2", "2024-02-10"), record(2, "e3", "2024-03-10")])
    assert store.event_hashes("town", ["e1", "e2", "e3"]).keys() == {"e1"}
    assert len(store.subject_entries("town", "s1")) == 1


def _fail_entries_of(store: Store, event_id: str) -> type[Exception]:
    """Install a trigger refusing the entries of ``event_id``; the error the write then raises."""
    if isinstance(store, SQLiteStore):
        store.conn.execute(
            f"CREATE TRIGGER boom BEFORE INSERT ON pb_entries WHEN NEW.event_id = '{event_id}' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        return sqlite3.DatabaseError
    assert isinstance(store, PostgresStore)
    store.conn.execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.event_id = '{event_id}' THEN RAISE EXCEPTION 'disk on fire'; END IF; "
        "RETURN NEW; END $$"
    )
    store.conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON pb_entries FOR EACH ROW EXECUTE FUNCTION boom()"
    )
    return psycopg.DatabaseError


def test_stored_entries_are_what_the_engine_judges(ledger: Ledger) -> None:
    ledger.ingest([record(1, "e1", "2024-01-10"), record(2, "e2", "2024-02-10")])
    versions = ledger.versions("town")
    stored = ledger.store.subject_entries("town", "s1")
    events = ledger.store.subject_events("town", ["s1"])["s1"]
    judged = [n for e in events for n in judge(e, validate_event(e, versions))]
    assert stored == judged


def test_decisions_are_materialised_and_withdrawn_when_a_late_event_changes_history(
    store_factory: Callable[[], Store],
) -> None:
    led = Ledger(store_factory(), now=lambda: NOW)
    led.publish(pack(BODY))
    led.ingest([record(1, "e1", "2024-01-10"), record(2, "e2", "2024-03-10")])
    (before,) = led.decisions("town", "s1")
    assert before[0].triggered_at == datetime(2024, 3, 10, tzinfo=UTC)
    # A late report dated before e2 crosses the line first: the decision moves earlier.
    led.ingest([record(3, "e0", "2024-02-01")])
    (after,) = led.decisions("town", "s1", include_cancelled=False)
    statuses = {d.id: status for d, status in led.decisions("town", "s1")}
    assert statuses[before[0].id] == "cancelled"
    assert after[0].triggered_at == datetime(2024, 2, 1, tzinfo=UTC)
    assert after[0].id != before[0].id
    rows = led.store.current_decisions("town", ["s1"])
    assert {r.decision.id: r.withdrawn for r in rows} == {before[0].id: True, after[0].id: False}


def test_publishing_the_same_version_twice_is_unchanged(ledger: Ledger) -> None:
    (result,) = ledger.publish(pack(BODY))
    assert result.status == "unchanged"


def test_a_published_version_never_changes(ledger: Ledger) -> None:
    changed = BODY.replace("points: -30", "points: -40")
    with pytest.raises(PublishError, match="never change"):
        ledger.publish(pack(changed))


def _version(n: str, when: str) -> str:
    return f"""
domain: town
version: "{n}"
effective_from: {when}
title: Test scheme
purpose: Testing the ledger.
retention: 5 years
"""


def test_history_may_be_loaded_while_the_domain_has_no_events(ledger: Ledger) -> None:
    (r,) = ledger.publish(pack(BODY, head=_version("2", "2021-01-01")))
    assert r.status == "published"


def test_no_retroactive_version_once_the_domain_has_events(ledger: Ledger) -> None:
    ledger.ingest([record(1, "e1", "2024-01-10")])
    with pytest.raises(PublishError, match="principle 4"):
        ledger.publish(pack(BODY, head=_version("2", "2024-05-31")))
    (r,) = ledger.publish(pack(BODY, head=_version("2", "2024-06-02")))
    assert r.status == "published"


def test_no_version_takes_effect_before_a_recorded_event_even_with_the_clock_set_back(
    store_factory: Callable[[], Store],
) -> None:
    # Principle 4 (docs/principles.md P4/R8): an event of 2024-05-20 is on record; a clock set
    # back to 2024-05-01 must not let a version effective 2024-05-10 reach it.
    store = store_factory()
    Ledger(store, now=lambda: NOW).publish(pack(BODY))
    Ledger(store, now=lambda: NOW).ingest([record(1, "e1", "2024-05-20")])
    back = Ledger(store, now=lambda: datetime(2024, 5, 1, tzinfo=UTC))
    with pytest.raises(PublishError, match="on or after that date"):
        back.publish(pack(BODY, head=_version("2", "2024-05-10")))
    with pytest.raises(PublishError, match="on or after that date"):
        back.publish(pack(BODY, head=_version("2", "2024-05-20")))
    (r,) = back.publish(pack(BODY, head=_version("2", "2024-05-21")))
    assert r.status == "published"


def test_versions_are_published_in_date_order(ledger: Ledger) -> None:
    with pytest.raises(PublishError, match="date order"):
        ledger.publish(pack(BODY, head=_version("0", "2019-01-01")))


def test_an_unknown_domain_is_named(ledger: Ledger) -> None:
    with pytest.raises(UnknownDomainError, match="'nowhere'"):
        ledger.state("nowhere", "s1")


def test_open_store_refuses_what_it_cannot_open(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(str(bad))
    # Nothing listens on port 1: the error names PostgreSQL and says how to fix the URL.
    with pytest.raises(StoreError, match="PostgreSQL"):
        open_store("postgresql://127.0.0.1:1/test")


@pytest.mark.parametrize("zeta_first", [True, False])
def test_decisions_of_one_step_are_listed_in_the_order_of_the_thresholds(
    store_factory: Callable[[], Store], zeta_first: bool
) -> None:
    zeta = (
        "  - {id: zeta, kind: warning, title: Warning, basis: Policy, direction: below,"
        " value: 60, mode: crossing}\n"
    )
    rules, thresholds = BODY.split("thresholds:\n")
    body = rules + "thresholds:\n" + (zeta + thresholds if zeta_first else thresholds + zeta)
    led = Ledger(store_factory(), now=lambda: NOW)
    led.publish(pack(body))
    # 100 -> 70 -> 40: the second step passes 60 (zeta) and 50 (hearing) at once.
    led.ingest([record(1, "e1", "2024-01-10"), record(2, "e2", "2024-02-10")])
    kinds = [d.threshold_id for d, _ in led.decisions("town", "s1")]
    assert kinds == (["zeta", "hearing"] if zeta_first else ["hearing", "zeta"])


# -- reading one record: each table once, only this subject's rows ---------------------------------
REVIEWED = BODY.replace("notice: 14 days}", "notice: 14 days, review: required}")


def _reviewed_ledger(store_factory: Callable[[], Store]) -> tuple[Ledger, dict[str, str]]:
    """s1, s2, s3 each cross the hearing line (a decision a reviewer must confirm); s1's is
    confirmed, s2 appeals its own; s4 has one event and no decision."""
    led = Ledger(store_factory(), now=lambda: NOW)
    led.publish(pack(REVIEWED))
    led.ingest(
        [
            record(n, f"e{n}", at, subject=s)
            for n, (s, at) in enumerate(
                [(s, at) for s in ("s1", "s2", "s3") for at in ("2024-01-10", "2024-02-10")]
                + [("s4", "2024-01-10")]
            )
        ]
    )
    ids = {s: led.decisions("town", s)[0][0].id for s in ("s1", "s2", "s3")}
    led.confirm_decision("town", ids["s1"], "rev-1", "seen")
    led.file_appeal("town", "s2", "not me", decision_id=ids["s2"])
    return led, ids


def test_confirmations_of_some_decisions_are_the_domain_s_confirmations_of_them(
    store_factory: Callable[[], Store],
) -> None:
    led, ids = _reviewed_ledger(store_factory)
    everything = led.store.confirmations("town")
    assert set(everything) == {ids["s1"]}
    assert everything[ids["s1"]] == (NOW, "rev-1")
    assert led.store.confirmations("town", [*ids.values(), "unknown"]) == everything
    assert led.store.confirmations("town", [ids["s2"], ids["s3"]]) == {}
    assert led.store.confirmations("town", []) == {}
    assert led.store.confirmations("other", [ids["s1"]]) == {}  # one domain at a time


def test_a_record_read_gives_the_decisions_the_statuses_decisions_gives_them(
    store_factory: Callable[[], Store],
) -> None:
    from pointbook.views import decision_view

    led, ids = _reviewed_ledger(store_factory)
    tz = led.versions("town")[0].tz
    for as_of in (datetime(2024, 2, 20, tzinfo=UTC), NOW):
        for s in ("s1", "s2", "s3", "s4"):
            expected = [decision_view(d, st, tz) for d, st in led.decisions("town", s, as_of)]
            for explain in (False, True):
                assert led.view("town", s, as_of, explain=explain)["decisions"] == expected
    statuses = {d["subject"]: d["status"] for s in ids for d in led.view("town", s)["decisions"]}
    assert statuses == {"s1": "in_force", "s2": "pending", "s3": "pending"}
    exported = {s: led.export("town", s)["decisions"] for s in ("s1", "s3", "s4")}
    assert exported["s1"][0]["confirmed_by"] == "rev-1"
    assert "confirmed_by" not in exported["s3"][0]
    assert exported["s4"] == []


def test_erased_events_are_read_with_the_entries_that_judged_them(
    store_factory: Callable[[], Store],
) -> None:
    led, _ = _reviewed_ledger(store_factory)
    before = {s: led.view("town", s, explain=True) for s in ("s1", "s2", "s3")}
    assert led.store.erase_details("town", datetime(2024, 3, 1, tzinfo=UTC), NOW) == 7
    found = led.store.subject_events("town", ["s1", "s2", "s3", "nobody"])
    assert found["nobody"] == []
    for s in ("s1", "s2", "s3"):
        entries = led.store.subject_entries("town", s)
        assert len(found[s]) == 2
        for e in found[s]:
            assert e.attributes == {} and e.evidence is None
            assert e.judged == tuple(n for n in entries if n.event_id == e.id)
            assert e.judged
        assert led.view("town", s, explain=True) == before[s]


def test_a_stored_event_reads_back_as_it_was_reported(ledger: Ledger) -> None:
    from pointbook.engine import Event

    ledger.ingest([record(1, "e1", "2024-01-10T08:30:00.000123Z", issuer="po-7", incident="i-1")])
    (stored,) = ledger.store.subject_events("town", ["s1"])["s1"]
    assert stored == Event(
        id="e1",
        domain="town",
        subject="s1",
        type="littering",
        occurred_at=datetime(2024, 1, 10, 8, 30, 0, 123, tzinfo=UTC),
        attributes={"weight_kg": 1},
        evidence="ticket-1",
        issuer="po-7",
        incident="i-1",
        reported_at=NOW,
        judged=None,
    )


def test_a_bulk_load_gets_a_bigger_page_cache_only_while_it_lasts(tmp_path: Path) -> None:
    # A load of several batches holds SQLiteStore.bulk() from its second batch (a bigger page
    # cache, rarer checkpoints); one batch (an API request) never does, and both are put back
    # after (a server must not keep them).
    store = SQLiteStore(tmp_path / "bulk.db")
    led = Ledger(store, now=lambda: NOW)
    led.publish(pack(BODY))
    seen: list[tuple[int, int]] = []
    write = store.write_batch

    def settings() -> tuple[int, int]:
        (cache,) = store.conn.execute("PRAGMA cache_size").fetchone()
        (pages,) = store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        return cache, pages

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(settings())
        return write(*args, **kwargs)

    store.write_batch = spy  # type: ignore[method-assign]
    default = settings()
    bulk = (BULK_CACHE_SIZE, BULK_WAL_AUTOCHECKPOINT)
    assert bulk[0] < default[0] and bulk[1] > default[1]  # KiB as negative: more is lower
    led.ingest([record(1, "one", "2024-01-10")], batch_size=2)
    led.ingest([record(i, f"e{i}", "2024-01-10", subject=f"s{i}") for i in range(5)], batch_size=2)
    assert seen == [default, default, bulk, bulk]
    assert settings() == default


def test_histories_of_given_subjects_are_read_in_their_order(ledger: Ledger) -> None:
    # The decision refresh walks its work list with `histories(..., subjects=...)`: the given
    # subjects only, in the given order, chunk after chunk, read as the whole domain's walk.
    ledger.ingest([record(i, f"e{i}", f"2024-0{i}-10", subject=f"s{i % 3}") for i in range(1, 8)])
    whole = {s: (events, appeals) for s, events, appeals in ledger.histories("town")}
    given = list(ledger.histories("town", 2, ["s2", "s0", "nobody", "s1"]))
    assert [s for s, _, _ in given] == ["s2", "s0", "nobody", "s1"]
    assert given[2][1:] == ([], [])
    assert {s: (events, appeals) for s, events, appeals in given if s != "nobody"} == whole


def test_a_deleted_token_no_longer_authenticates_and_the_chain_verifies(ledger: Ledger) -> None:
    store = ledger.store
    store.insert_token("h" * 64, "reviewer", "town", None, "bench query")
    assert not store.delete_token("forum", "h" * 64), "a token of another domain stays"
    assert store.find_token("h" * 64) == ("reviewer", "town", None, "bench query")
    assert store.delete_token("town", "h" * 64)
    assert store.find_token("h" * 64) is None
    assert not store.delete_token("town", "h" * 64), "nothing left to delete"
    assert store.verify().ok, "the removal is recorded: the chain expects the row gone"


def test_a_subjects_current_decisions_are_read_through_the_subject_index(tmp_path: Path) -> None:
    """The decision refresh reads the current decisions of a list of subjects: through the
    subject index, whatever the list's length, never by scanning every decision of the
    domain (which made each read grow with the store)."""
    from pointbook.store.sqlite import current_decisions_sql

    store = SQLiteStore(tmp_path / "plan.db")
    led = Ledger(store, now=lambda: NOW)
    led.publish(pack(BODY))
    led.ingest([record(i, f"e{i}", "2024-01-10", subject=f"s{i % 40}") for i in range(120)])
    for n in (1, 10, 500):
        plan = " ".join(
            str(r[3])
            for r in store.conn.execute(
                "EXPLAIN QUERY PLAN " + current_decisions_sql(n),
                ("town", *[f"s{i}" for i in range(n)], "town"),
            )
        )
        assert "pb_decisions_subject" in plan, plan
    subjects = [f"s{i}" for i in range(40)]
    assert {r.decision.subject for r in store.current_decisions("town", subjects)} == set(subjects)
    store.close()
