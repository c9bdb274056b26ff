"""Reading events from JSON Lines or CSV: one record per line, every bad line kept with its reason.

The wire shape is validated by Pydantic (`EventIn`); the domain-specific checks (event type,
attributes, dates) happen in the ledger, against the pack version in force.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pointbook.engine.model import fast_maker

__all__ = ["MAX_LINE_BYTES", "EventIn", "RawRecord", "parse_json", "read_records", "unique_keys"]

MAX_LINE_BYTES = 1_000_000
_BOM = b"\xef\xbb\xbf"

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

    @field_validator("type", "evidence", "issuer", "incident")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL cannot store U+0000 in text: refusing it here keeps both backends alike and
        # keeps one bad line from failing the write of its whole batch.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        return value

    @field_validator("attributes")
    @classmethod
    def _attribute_text(cls, value: dict[str, Scalar | None]) -> dict[str, Scalar | None]:
        # A JSON escape such as "\ud800" decodes to a lone surrogate, which no store can encode.
        for name, v in value.items():
            if isinstance(v, str) and not _is_unicode(v):
                raise ValueError(
                    f"attribute {_printable(name)} is not Unicode text (it holds a lone "
                    "surrogate escape such as \\ud800)"
                )
        return value


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    return repr(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A line read from a file: its number, the parsed event or the reason it could not be."""

    line: int
    text: str
    event: EventIn | None
    error: str | None
    from_csv: bool = False


_record = fast_maker(RawRecord)  # a RawRecord per line: the frozen __init__ is costly


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number pointbook accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: readers disagree on which of two equal keys wins,
    so an object that repeats one is ambiguous and refused."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}: each key appears once in an object")
            seen.add(key)
    return out


# One decoder for every line (json.loads with options would build a new one per call).
_DECODER = json.JSONDecoder(
    object_pairs_hook=unique_keys, parse_constant=_reject_constant, parse_float=_finite_float
)
# The decoder's scanner (C where available): (text, start) -> (value, end).
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``. A line that is one object from its first character to its
    last (nearly every line) is read by the decoder's scanner directly, as decode() would after
    finding no whitespace to skip, without its two Python frames and two regex matches. Any
    other text, and any error, goes through decode(), which raises the error as it words it."""
    if text[:1] == "{":
        try:
            value, end = _SCAN(text, 0)
        except Exception:  # raised again by decode() below, in its own words
            pass
        else:
            if end == len(text):
                return value
    return _DECODER.decode(text)


def parse_json(text: str) -> Any:
    """JSON as pointbook reads it: no NaN or Infinity, no number beyond a float's range, no
    repeated key in an object, and nesting no deeper than the interpreter allows (ValueError)."""
    try:
        return _decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's 4,300-digit guard
            raise ValueError("a number has thousands of digits") from None
        raise


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
    # EventIn.model_validate(data) without its Python frame: this runs once per line.
    return EventIn.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]


def _lines(stream: IO[bytes]) -> Iterator[bytes | None]:
    """The stream's lines; None for a line longer than MAX_LINE_BYTES, which is skipped in
    chunks rather than held in memory whole. A byte order mark opening the stream (as some
    editors and spreadsheets write) is dropped."""
    first = True
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            while not raw.endswith(b"\n"):
                raw = stream.readline(1 << 20)
                if not raw:
                    break
            yield None
        elif first and raw.startswith(_BOM):
            yield raw[len(_BOM) :]
        else:
            yield raw
        first = False


def _jsonl(stream: IO[bytes]) -> Iterator[RawRecord]:
    for n, raw in enumerate(_lines(stream), start=1):
        if raw is None:
            yield _record(n, "", None, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield _record(
                n,
                raw.decode("utf-8", "replace").rstrip("\r\n"),
                None,
                f"not UTF-8 (byte {exc.start})",
            )
            continue
        if not text or text.isspace():  # blank: `not text.strip()` without the copy
            continue
        try:
            data = parse_json(text)
        except ValueError as exc:
            yield _record(n, text, None, f"not valid JSON: {exc}")
            continue
        try:
            yield _record(n, text, parse_event(data), None)
        except ValidationError as exc:
            yield _record(n, text, None, _pydantic_reason(exc))
        except ValueError as exc:
            yield _record(n, text, None, str(exc))


_CSV_REQUIRED = ("id", "domain", "subject", "type", "occurred_at")
_CSV_FIELDS = {*_CSV_REQUIRED, "evidence", "issuer", "incident"}


def _not_utf8(cells: list[str], names: list[str] | None = None) -> str | None:
    """Which cell held bytes that are not UTF-8 (decoded as lone surrogates), if any."""
    for i, cell in enumerate(cells):
        if not _is_unicode(cell):
            where = repr(names[i]) if names is not None and i < len(names) else str(i + 1)
            return f"not UTF-8 (column {where})"
    return None


def _header_problem(header: list[str]) -> str | None:
    bad = _not_utf8(header)
    if bad is not None:
        return f"the CSV header is {bad}"
    unknown = [h for h in header if h not in _CSV_FIELDS and not h.startswith("attr.")]
    if unknown:
        return f"unknown CSV column(s) {unknown}: use the event field names and attr.NAME"
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        return f"CSV column(s) {repeated} appear more than once: give each column once"
    missing = [h for h in _CSV_REQUIRED if h not in header]
    if missing:
        return f"missing CSV column(s) {missing}: every event needs {', '.join(_CSV_REQUIRED)}"
    return None


def _shown(text: str) -> str:
    """Row text fit to print and store: undecodable bytes shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _spans(start: int, end: int) -> str:
    # A row is reported at its last line; one over several lines came from a quoted cell.
    return f" (the row runs from line {start}: is a quote left open?)" if end > start else ""


def _csv(stream: IO[bytes]) -> Iterator[RawRecord]:
    # Bytes that are not UTF-8 become lone surrogates that the row check reports on that row's
    # own line: a strict decoder would fail at some read-ahead chunk instead, losing the good
    # rows around it. utf-8-sig drops the byte order mark spreadsheets write at the start.
    wrapper = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        # strict: a quote left open or text after a closing quote is an error, not a silently
        # mangled cell.
        yield from _csv_records(csv.reader(wrapper, strict=True))
    finally:
        # The stream belongs to the caller: a wrapper left to the collector would close it
        # (with a ResourceWarning) whenever the generator happens to be freed.
        wrapper.detach()


def _csv_records(reader: Any) -> Iterator[RawRecord]:  # a csv.reader (rows and line_num)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _record(1, "", None, f"not valid CSV: {exc}")
        return
    problem = _header_problem(header)
    if problem is not None:
        yield _record(1, _shown(",".join(header)), None, problem)
        return
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            why = f"not valid CSV: {exc}{_spans(start, reader.line_num)}"
            yield _record(reader.line_num, "", None, why)
            continue
        n = reader.line_num
        text = ",".join(row)
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            why = f"expected {len(header)} columns, got {len(row)}{_spans(start, n)}"
            yield _record(n, _shown(text), None, why)
            continue
        bad = _not_utf8(row, header)
        if bad is not None:
            yield _record(n, _shown(text), None, bad)
            continue
        data: dict[str, Any] = {"attributes": {}}
        for name, cell in zip(header, row, strict=True):
            if name.startswith("attr."):
                if cell != "":
                    data["attributes"][name[5:]] = cell
            elif cell != "" or name in _CSV_REQUIRED:
                data[name] = cell
        try:
            yield _record(n, text, parse_event(data), None, from_csv=True)
        except ValidationError as exc:
            yield _record(n, text, None, _pydantic_reason(exc), from_csv=True)


def read_records(stream: IO[bytes], fmt: str) -> Iterator[RawRecord]:
    """Records from a binary stream in ``fmt`` ('jsonl' or 'csv')."""
    if fmt == "csv":
        return _csv(stream)
    return _jsonl(stream)
