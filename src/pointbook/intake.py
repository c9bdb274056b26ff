"""Reading events from JSON Lines or CSV: one record per line, every bad line kept with its reason.

The wire shape is validated by Pydantic (`EventIn`); the domain-specific checks (event type,
attributes, dates) happen in the ledger, against the pack version in force.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["MAX_LINE_BYTES", "EventIn", "RawRecord", "read_records"]

MAX_LINE_BYTES = 1_000_000

Scalar = bool | int | float | str


class EventIn(BaseModel):
    """One event as an issuer sends it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f]+$")
    domain: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:[-:][a-z0-9]+)*$")
    subject: str = Field(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f]+$")
    type: str = Field(min_length=1, max_length=64)
    occurred_at: str = Field(min_length=10, max_length=40)
    attributes: dict[str, Scalar | None] = Field(default_factory=dict, max_length=64)
    evidence: str | None = Field(default=None, max_length=500)
    issuer: str | None = Field(default=None, max_length=200)
    incident: str | None = Field(default=None, max_length=128)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A line read from a file: its number, the parsed event or the reason it could not be."""

    line: int
    text: str
    event: EventIn | None
    error: str | None
    from_csv: bool = False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number pointbook accepts")


def _pydantic_reason(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "event"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_event(data: Any) -> EventIn:
    if not isinstance(data, dict):
        raise ValueError("an event is a JSON object with id, domain, subject, type, occurred_at")
    return EventIn.model_validate(data)


def _jsonl(stream: IO[bytes]) -> Iterator[RawRecord]:
    for n, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield RawRecord(n, "", None, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield RawRecord(
                n,
                raw.decode("utf-8", "replace").rstrip("\r\n"),
                None,
                f"not UTF-8 (byte {exc.start})",
            )
            continue
        if not text.strip():
            continue
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            yield RawRecord(n, text, None, f"not valid JSON: {exc}")
            continue
        try:
            yield RawRecord(n, text, parse_event(data), None)
        except ValidationError as exc:
            yield RawRecord(n, text, None, _pydantic_reason(exc))
        except ValueError as exc:
            yield RawRecord(n, text, None, str(exc))


_CSV_FIELDS = {"id", "domain", "subject", "type", "occurred_at", "evidence", "issuer", "incident"}


def _csv(stream: IO[bytes]) -> Iterator[RawRecord]:
    wrapper = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(wrapper)
    try:
        header = next(reader)
    except StopIteration:
        return
    except UnicodeDecodeError as exc:
        yield RawRecord(1, "", None, f"not UTF-8 (byte {exc.start})")
        return
    unknown = [h for h in header if h not in _CSV_FIELDS and not h.startswith("attr.")]
    if unknown:
        yield RawRecord(
            1,
            ",".join(header),
            None,
            f"unknown CSV column(s) {unknown}: use the event field names and attr.NAME",
        )
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield RawRecord(reader.line_num, "", None, f"not UTF-8 (byte {exc.start})")
            return
        except csv.Error as exc:
            yield RawRecord(reader.line_num, "", None, f"not valid CSV: {exc}")
            continue
        n = reader.line_num
        text = ",".join(row)
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield RawRecord(n, text, None, f"expected {len(header)} columns, got {len(row)}")
            continue
        data: dict[str, Any] = {"attributes": {}}
        for name, cell in zip(header, row, strict=True):
            if name.startswith("attr."):
                if cell != "":
                    data["attributes"][name[5:]] = cell
            elif cell != "" or name in ("id", "domain", "subject", "type", "occurred_at"):
                data[name] = cell
        try:
            yield RawRecord(n, text, parse_event(data), None, from_csv=True)
        except ValidationError as exc:
            yield RawRecord(n, text, None, _pydantic_reason(exc), from_csv=True)


def read_records(stream: IO[bytes], fmt: str) -> Iterator[RawRecord]:
    """Records from a binary stream in ``fmt`` ('jsonl' or 'csv')."""
    if fmt == "csv":
        return _csv(stream)
    return _jsonl(stream)
