"""The bulk read of a store (`population_frames`): a domain's events with their entries in
event id order, batch by batch; on SQLite in the tables' own order through ADBC for a file
and through sqlite3 for an in-memory store (store/sqlite_scan.py), on PostgreSQL joined by
the server and sent by COPY as CSV (store/postgres_scan.py). Whatever the backend, batch size
and reader, the rows are those of the subject-by-subject read through the index
(`Store.population_rows`, an independent query)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pointbook.bench import generate_workload, open_ledger
from pointbook.dates import to_micros
from pointbook.errors import StoreError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.store import PostgresStore, SQLiteStore
from pointbook.store.base import Store
from pointbook.store.sqlite_scan import ROW_SCHEMA, read_frame

DOMAIN = "fr-driving"


def _ledger(store: Store) -> Ledger:
    led = open_ledger(store)
    bodies = [b for b in generate_workload(1500, 150, 11) if b["domain"] == DOMAIN]
    records = [
        RawRecord(n, json.dumps(b), EventIn.model_validate(b), None)
        for n, b in enumerate(bodies, 1)
    ]
    report = led.ingest(iter(records))
    assert not report.rejected and report.accepted == len(bodies) > 100
    # Some events erased (their entries stay), so the erased flag and the absent attributes
    # are read too.
    assert led.store.erase_details(DOMAIN, datetime(2022, 1, 1, tzinfo=UTC), led.now()) > 0
    return led


@pytest.fixture(params=["file", "memory", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store: Store
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        new_schema: Callable[[], str] = request.getfixturevalue("pg_schemas")
        store = PostgresStore(url, schema=new_schema())
    else:
        store = SQLiteStore(tmp_path / "scan.db" if request.param == "file" else ":memory:")
    led = _ledger(store)
    yield led
    led.close()


def _sorted_rows(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    rows = frame.with_columns(
        pl.col("attributes").replace("", None),
        pl.col("erased").cast(pl.Int64),
        pl.col("capped").cast(pl.Int64),
    ).rows()
    return sorted(rows, key=lambda r: (r[1], r[6] or ""))


WINDOWS = [
    (None, None, []),
    (to_micros(datetime(2021, 6, 1, tzinfo=UTC)), to_micros(datetime(2023, 6, 1, tzinfo=UTC)), []),
    (None, None, ["speeding", "phone_use"]),
]


@pytest.mark.parametrize(("since", "until", "types"), WINDOWS)
def test_the_tables_read_in_their_order_give_the_rows_of_the_index_read(
    ledger: Ledger, since: int | None, until: int | None, types: list[str]
) -> None:
    store = ledger.store
    assert isinstance(store, SQLiteStore | PostgresStore)
    subjects = store.subjects(DOMAIN)
    by_index = store.population_rows(DOMAIN, subjects, since, until, types)
    assert by_index
    expected = sorted(by_index, key=lambda r: (r[1], r[6] or ""))
    for batch in (7, 100, 1_000_000):
        frames = list(store.population_frames(DOMAIN, since, until, types, batch))
        assert all(f.schema == pl.Schema(ROW_SCHEMA) for f in frames)
        events = sum(f["event_id"].n_unique() for f in frames)
        # Every batch but the last holds exactly ``batch`` events, none split between two.
        assert [f["event_id"].n_unique() for f in frames[:-1]] == [batch] * (len(frames) - 1)
        assert events == len({r[1] for r in by_index})
        assert _sorted_rows(pl.concat(frames)) == expected, batch
    if types:
        # Attributes are read for live events of the types asked for, and only those.
        read = {r[1] for r in by_index if r[5] is not None}
        assert read and all(r[2] in types and not r[4] for r in by_index if r[1] in read)


def test_an_unknown_domain_reads_nothing(ledger: Ledger) -> None:
    store = ledger.store
    assert isinstance(store, SQLiteStore | PostgresStore)
    assert list(store.population_frames("nowhere", None, None, [], 10)) == []


def test_a_store_file_with_an_odd_name_is_read_in_bulk(tmp_path: Path) -> None:
    """The bulk reader opens the store by a file URI: spaces, '#', '?' and '%' in the name
    are the store's own file all the same."""
    led = _ledger(SQLiteStore(tmp_path / "odd #1 ?name% x.db"))
    try:
        store = led.store
        subjects = store.subjects(DOMAIN)
        expected = sorted(
            store.population_rows(DOMAIN, subjects, None, None, []),
            key=lambda r: (r[1], r[6] or ""),
        )
        frames = list(store.population_frames(DOMAIN, None, None, [], 50))
        assert _sorted_rows(pl.concat(frames)) == expected
    finally:
        led.close()


def test_a_store_that_cannot_be_read_in_bulk_says_which_and_why(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "store.db"
    with pytest.raises(StoreError) as caught:
        read_frame(str(missing), "SELECT 1")
    assert str(missing) in str(caught.value) and "cannot read the store in bulk" in str(
        caught.value
    )
