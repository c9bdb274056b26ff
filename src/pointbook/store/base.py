"""The store interface. Backends keep append-only tables and write each batch atomically.

Rows cross this interface as plain records; the engine's dataclasses are rebuilt by the
ledger. Every method is scoped to one domain: there is no cross-domain query (principle 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pointbook.engine.model import Decision, Entry, Event

__all__ = ["DecisionRow", "PackRow", "Store"]


@dataclass(frozen=True, slots=True)
class PackRow:
    domain: str
    version: str
    effective_from: datetime
    published_at: datetime
    content_hash: str
    text: str


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """The latest revision of a materialised decision."""

    decision: Decision
    revision: int
    withdrawn: bool
    recorded_at: datetime


class Store(Protocol):
    def close(self) -> None: ...

    # packs
    def domains(self) -> list[str]: ...
    def pack_rows(self, domain: str) -> list[PackRow]: ...
    def insert_pack(self, row: PackRow) -> None: ...

    # events and entries
    def has_events(self, domain: str) -> bool: ...
    def subjects(self, domain: str) -> list[str]: ...
    def event_hashes(self, domain: str, ids: Sequence[str]) -> dict[str, str]: ...
    def write_batch(
        self, events: Sequence[tuple[Event, str]], entries: Sequence[Entry], received_at: datetime
    ) -> None: ...
    def subject_events(self, domain: str, subjects: Sequence[str]) -> dict[str, list[Event]]: ...
    def subject_entries(self, domain: str, subject: str) -> list[Entry]: ...

    # decisions (derived; materialised to deliver them and record reviewers' actions)
    def dirty_subjects(self, domain: str | None, limit: int) -> list[tuple[str, str]]: ...
    def current_decisions(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> list[DecisionRow]: ...
    def write_decisions(
        self,
        domain: str,
        subjects: Iterable[str],
        revisions: Sequence[tuple[Decision, int, bool]],
        recorded_at: datetime,
    ) -> None: ...
