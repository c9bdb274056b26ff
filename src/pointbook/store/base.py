"""The store interface. Backends keep append-only tables and write each batch atomically.

Rows cross this interface as plain records; the engine's dataclasses are rebuilt by the
ledger. Every method is scoped to one domain: there is no cross-domain query (principle 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import polars as pl

from pointbook.engine.model import Appeal, Decision, Entry, Event
from pointbook.errors import StoreError
from pointbook.store.audit import VerifyResult

__all__ = ["BatchRaceError", "DecisionRow", "PackRow", "Store"]


class BatchRaceError(StoreError):
    """Another writer stored some of a batch's event ids between the ledger's duplicate check
    and the batch's write (two processes ingesting overlapping files). Nothing of the batch
    was written; ingesting the same records again decides each of those ids as a duplicate or
    a conflict. ``ids`` holds the (domain, id) pairs found already stored."""

    def __init__(self, ids: Sequence[tuple[str, str]]) -> None:
        self.ids = list(ids)
        shown = ", ".join(f"{d}/{i}" for d, i in self.ids[:3])
        more = f" and {len(self.ids) - 3} more" if len(self.ids) > 3 else ""
        super().__init__(
            f"another writer stored event {shown}{more} while this batch was being checked; "
            "nothing of the batch was written: ingest it again (the same ids are then reported "
            "as duplicates, or as conflicts if their content differs)"
        )


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
    reason: str | None = None


class Store(Protocol):
    def close(self) -> None: ...

    # packs
    def domains(self) -> list[str]: ...
    def pack_rows(self, domain: str) -> list[PackRow]: ...
    def insert_pack(self, row: PackRow) -> None: ...

    # events and entries
    def has_events(self, domain: str, since: datetime | None = None) -> bool: ...
    def subjects(self, domain: str) -> list[str]: ...
    def event_hashes(self, domain: str, ids: Sequence[str]) -> dict[str, str]: ...
    def write_batch(
        self, events: Sequence[tuple[Event, str]], entries: Sequence[Entry], received_at: datetime
    ) -> None: ...
    def subject_events(self, domain: str, subjects: Sequence[str]) -> dict[str, list[Event]]: ...
    def subject_entries(self, domain: str, subject: str) -> list[Entry]: ...
    def population_rows(
        self,
        domain: str,
        subjects: Sequence[str],
        since_us: int | None,
        until_us: int | None,
        attribute_types: Sequence[str],
    ) -> list[tuple[Any, ...]]: ...
    def population_frames(
        self,
        domain: str,
        since_us: int | None,
        until_us: int | None,
        attribute_types: Sequence[str],
        batch: int = 500_000,
    ) -> Iterator[pl.DataFrame]:
        """A domain's events with their entries in bulk, in event id order, ``batch`` events
        at a time, one snapshot (`sqlite_scan.ROW_SCHEMA`'s columns): what-if's read of a
        large population."""
        ...

    # decisions (derived; materialised to deliver them and record reviewers' actions)
    def dirty_subjects(self, domain: str | None, limit: int) -> list[tuple[str, str]]: ...
    def bulk(self) -> AbstractContextManager[None]:
        """Settings for a bulk load while it lasts (a bigger SQLite page cache), put back
        after it: `Ledger.ingest` holds it from its second batch on."""
        ...

    def refreshing(self, domain: str) -> AbstractContextManager[None]:
        """Hold the store's write lock while the caller re-derives decisions of ``domain``:
        no other writer commits until it ends, so the work list, events, appeals and current
        decisions read inside are still current when `write_decisions` appends to them (two
        refreshers never both write revision n, and an event stored meanwhile is never
        dropped from the work list unrefreshed)."""
        ...

    def current_decisions(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> list[DecisionRow]: ...
    def write_decisions(
        self,
        domain: str,
        subjects: Iterable[str],
        revisions: Sequence[tuple[Decision, int, bool, str]],
        recorded_at: datetime,
    ) -> None: ...

    # due process
    def insert_appeal(self, appeal: Appeal) -> None: ...
    def insert_appeal_decision(
        self, appeal: Appeal, outcome: str, reviewer: str, reason: str, at: datetime
    ) -> None: ...
    def appeal(self, appeal_id: str) -> Appeal | None: ...
    def appeals(
        self, domain: str, subjects: Sequence[str] | None = None
    ) -> dict[str, list[Appeal]]: ...
    def insert_confirmation(
        self, domain: str, subject: str, decision_id: str, reviewer: str, reason: str, at: datetime
    ) -> None: ...
    def confirmations(
        self, domain: str, decision_ids: Sequence[str] | None = None
    ) -> dict[str, tuple[datetime, str]]:
        """Reviewers' confirmations (decision id -> (when, reviewer)): of the whole domain, or
        only of ``decision_ids`` (one subject's decisions, so that a read of one record does
        not grow with the domain)."""
        ...

    def outbox_pending(
        self, domain: str, limit: int = 100
    ) -> list[tuple[int, str, dict[str, Any]]]: ...
    def outbox_take(self, seqs: Sequence[int], at: datetime) -> None: ...
    def insert_switch(
        self, domain: str, state: str, reason: str, actor: str, at: datetime
    ) -> None: ...
    def switch_state(self, domain: str) -> tuple[str, str | None, datetime | None]: ...
    def domain_key(self, domain: str) -> str: ...
    def insert_share(
        self, code_hash: str, domain: str, subject: str, at: datetime, expires: datetime
    ) -> None: ...
    def use_share(self, code_hash: str, at: datetime) -> tuple[str, str] | str: ...
    def insert_token(
        self, token_hash: str, role: str, domain: str, subject: str | None, label: str
    ) -> None: ...
    def find_token(self, token_hash: str) -> tuple[str, str, str | None, str] | None: ...
    def delete_token(self, domain: str, token_hash: str) -> bool:
        """Remove a token of ``domain`` (it no longer authenticates), with an audit record of
        the removal so that the chain still verifies; whether there was one to remove."""
        ...

    # tamper evidence and forgetting
    def verify(self) -> VerifyResult: ...
    def audit_root(self) -> str: ...
    def erase_details(self, domain: str, cutoff: datetime, at: datetime) -> int: ...
    def erase_subject(self, domain: str, subject: str, at: datetime) -> dict[str, int]: ...
