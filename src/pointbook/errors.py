"""The exception tree. Every error pointbook raises derives from PointbookError.

    PointbookError
    ├── PackError             a pack file cannot be read or is invalid (carries findings)
    ├── PublishError          a valid pack cannot be published (retroactive, conflict, order)
    ├── InvalidTimeError      a date, date-time, duration or time zone is malformed
    ├── EventError            an event is malformed or not allowed by the domain's packs
    ├── ConflictError         an event id was seen before with different content
    ├── UnknownDomainError    no pack has been published for the domain
    ├── StoreError            the store cannot be opened or written
    └── InvariantError        a runtime invariant failed before a write; nothing was written

Messages say what is wrong and what to do; the CLI prints them as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pointbook.rules.findings import Finding


class PointbookError(Exception):
    """Base class of every pointbook error."""


class PackError(PointbookError):
    def __init__(self, message: str, findings: list[Finding] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []


class PublishError(PointbookError):
    pass


class InvalidTimeError(PointbookError):
    pass


class EventError(PointbookError):
    def __init__(self, message: str, code: str = "event/invalid") -> None:
        super().__init__(message)
        self.code = code


class ConflictError(EventError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="event/conflict")


class UnknownDomainError(PointbookError):
    pass


class StoreError(PointbookError):
    """The store could not do what was asked (unreachable, busy, a write refused)."""


class StorageFullError(StoreError):
    """The disk that holds the store refused a write for lack of space: nothing of the write
    was stored."""


class InvariantError(PointbookError):
    """A check right before a write found an impossible result (a bug): the write is refused
    whole (engine/invariants.py)."""
