"""The shortcuts of the ingest path give exactly what the plain code gives.

Ingest encodes, hashes and parses once per line, so it takes shorter ways to the same results:
the JSON encoders made once (`engine/canonical.py`), an event's content hash written out key
by key, the scanner read directly for a line that is one object, and the cyclic collector held
off during a batch. Stored rows, hashes and audit commitments must not change by a byte
(stores written before keep verifying), so each shortcut is checked here against the plain
formula it replaces, on random data.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointbook import intake
from pointbook.engine.canonical import content_hash, direct_encoder
from pointbook.engine.model import CANONICAL, Event
from pointbook.errors import EventError
from pointbook.intake import RawRecord, read_records
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.store import SQLiteStore, rows
from pointbook.store.audit import chain_hash, commit
from pointbook.store.audit_sql import event_commitment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with what JSON escapes: quotes, backslashes, controls, non-ASCII, U+2028.
TEXT = st.text(alphabet=st.sampled_from('a"\\/\n\t\x00\x1f\x7fé€\u2028😀 :{}[],'), max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(value=JSONISH)
def test_the_encoders_made_once_give_the_encoders_text(value: Any) -> None:
    for encoder in (CANONICAL, json.JSONEncoder(sort_keys=True), json.JSONEncoder()):
        assert direct_encoder(encoder)(value) == encoder.encode(value)


def test_the_encoders_made_once_refuse_what_the_encoders_refuse() -> None:
    encode = direct_encoder(CANONICAL)
    for value in ({1, 2}, [object()], {"a": b"bytes"}):
        with pytest.raises(TypeError):
            CANONICAL.encode(value)
        with pytest.raises(TypeError):
            encode(value)


EVENTS = st.builds(
    Event,
    id=TEXT,
    domain=TEXT,
    subject=TEXT,
    type=TEXT,
    occurred_at=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    attributes=st.dictionaries(TEXT, st.booleans() | st.integers() | st.floats() | TEXT),
    evidence=st.none() | TEXT,
    issuer=st.none() | TEXT,
    incident=st.none() | TEXT,
)


@SETTINGS
@given(event=EVENTS)
def test_the_content_hash_written_out_is_the_events_own(event: Event) -> None:
    assert content_hash(event) == event.content_hash()


ROW_TEXT = st.none() | TEXT
EVENT_ROW = st.tuples(
    *([TEXT] * 4), st.integers(), TEXT, ROW_TEXT, ROW_TEXT, TEXT, st.integers(), ROW_TEXT
)
ENTRY_ROW = st.tuples(*([TEXT] * 4), st.integers(), st.integers(), st.none() | st.integers(), TEXT)
# An event's entries differ in their first column (the rule id), as in the store.
ENTRY_ROWS = st.lists(ENTRY_ROW, max_size=3, unique_by=lambda e: e[0])


@SETTINGS
@given(
    event=EVENT_ROW,
    salt=st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
    erased=st.none() | st.integers(),
    entries=ENTRY_ROWS,
)
def test_commitments_and_chain_are_the_documented_formulas(
    event: tuple[Any, ...], salt: str | None, erased: int | None, entries: list[tuple[Any, ...]]
) -> None:
    """What audit_sql and audit say each hash covers, computed with plain `json.dumps`."""

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    row = (*event, salt, erased)
    listed = [list(e) for e in sorted(entries)]
    body = dumps(["event", list(event), listed])
    salted = sha(f"{salt}\x00{body}" if salt else body)
    assert commit(["event", list(event), listed], salt) == salted
    erased_body = dumps(["erased-event/2", list(row), listed])
    assert event_commitment(row, entries) == (salted if erased is None else sha(erased_body))
    prev, ref = "0" * 64, f"event:{event[0]}/{event[1]}"
    assert chain_hash(prev, 7, 123, "event", event[0], ref, salted) == sha(
        dumps([prev, 7, 123, "event", event[0], ref, salted])
    )


@SETTINGS
@given(event=EVENTS)
def test_event_and_entry_rows_hold_the_documented_text(event: Event) -> None:
    (row,) = rows.event_rows([(event, "h")], 5)
    assert row[:4] == (event.domain, event.id, event.subject, event.type)
    assert row[5] == json.dumps(dict(event.attributes), sort_keys=True)
    assert row[6:11] == (event.evidence, event.issuer, "h", 5, event.incident)
    assert isinstance(row[11], str) and row[12] is None


def test_entry_rows_encode_each_entrys_tags() -> None:
    pack = load_pack_file(EXAMPLES / "packs" / "civic-code.yaml")
    ledger = Ledger(SQLiteStore(":memory:"), now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    ledger.publish(pack)
    entries = []
    with (EXAMPLES / "events" / "civic-code.jsonl").open("rb") as f:
        for rec in read_records(f, "jsonl"):
            try:
                entries += ledger.to_event(rec)[1]
            except EventError:  # the example file's refused line
                continue
    assert entries
    for n, row in zip(entries, rows.entry_rows(entries, 1), strict=True):
        assert row[11] == json.dumps(sorted(n.tags))
    ledger.close()


JSON_PIECES = st.sampled_from(
    ["", "{", "}", "[", "]", '"', ",", ":", " ", "\\", "1e999", "NaN", "-", "0", '"a":1,']
)


@SETTINGS
@given(value=st.dictionaries(TEXT, JSONISH, max_size=4), cut=st.integers(0, 60), piece=JSON_PIECES)
def test_a_line_is_parsed_as_the_decoder_parses_it(value: Any, cut: int, piece: str) -> None:
    """The scanner read directly (one object from first to last character) or not: the same
    value or the same error, worded the same, as `JSONDecoder.decode`."""
    text = json.dumps(value, ensure_ascii=False)
    for line in (text, f" {text}", f"{text} ", text[:cut] + piece + text[cut:]):
        assert _outcome(intake._decode, line) == _outcome(intake._DECODER.decode, line)


def _outcome(decode: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", decode(text)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


def test_repeated_keys_and_bad_numbers_keep_their_reasons() -> None:
    for text, reason in [
        ('{"a":1,"a":2}', "duplicate key 'a': each key appears once in an object"),
        ('{"x":{"a":1,"a":1}}', "duplicate key 'a': each key appears once in an object"),
        ('{"a":1e999}', "the number 1e999 is too large"),
        ('{"a":NaN}', "NaN is not a number pointbook accepts"),
        ('{"a":x}', "Expecting value: line 1 column 6 (char 5)"),
        ('{"a":1}x', "Extra data: line 1 column 8 (char 7)"),
        ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"a":1' + "0" * 5000 + "}", "a number has thousands of digits"),
    ]:
        with pytest.raises(ValueError) as caught:
            intake.parse_json(text)
        assert str(caught.value) == reason


# -- the collector held off during a batch --------------------------------------------------


def _ledger() -> Ledger:
    ledger = Ledger(SQLiteStore(":memory:"), now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    ledger.publish(load_pack_file(EXAMPLES / "packs" / "civic-code.yaml"))
    return ledger


def _records(n: int, start: int = 0) -> list[RawRecord]:
    day = datetime(2021, 3, 1)
    lines = [
        json.dumps(
            {
                "id": f"e-{start + i}",
                "domain": "civic-code",
                "subject": f"r-{i % 7}",
                "type": "littering",
                "occurred_at": (day + timedelta(days=i % 300)).date().isoformat(),
                "evidence": "note",
            }
        )
        for i in range(n)
    ]
    return list(read_records(io.BytesIO("\n".join(lines).encode()), "jsonl"))


def test_the_collector_runs_again_after_each_batch_and_after_a_failure() -> None:
    ledger = _ledger()
    seen: list[bool] = []

    def watched() -> Iterator[RawRecord]:
        for rec in _records(25):
            seen.append(gc.isenabled())
            yield rec

    assert gc.isenabled()
    report = ledger.ingest(watched(), batch_size=10, progress=lambda n: seen.append(gc.isenabled()))
    assert report.accepted == 25 and gc.isenabled()
    # Off while a batch is read, on again when each batch is done (the progress calls).
    assert seen == [False] * 10 + [True] + [False] * 10 + [True] + [False] * 5 + [True]

    def failing() -> Iterator[RawRecord]:
        yield from _records(3, start=100)
        raise OSError("the disk went away")

    with pytest.raises(OSError):
        ledger.ingest(failing(), batch_size=10)
    assert gc.isenabled()
    ledger.close()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    ledger = _ledger()
    gc.disable()
    try:
        report = ledger.ingest(_records(12), batch_size=5)
        assert report.accepted == 12 and not gc.isenabled()
    finally:
        gc.enable()
    ledger.close()


@pytest.mark.parametrize("size", [-1, 0, 1, 4, 100])
def test_batches_of_any_size_take_every_record(size: int) -> None:
    ledger = _ledger()
    sizes: list[int] = []
    report = ledger.ingest(_records(9), batch_size=size, progress=sizes.append)
    assert report.accepted == 9
    step = max(1, size)
    assert sizes == [min(step, 9 - i) for i in range(0, 9, step)]
    ledger.close()
