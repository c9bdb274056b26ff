"""The published JSON Schema of `pointbook export`: a person's whole record in one domain.

The models are strict (no unknown keys), so a test that validates real exports against them
fails when the export and its schema drift apart. `pointbook export --schema` prints it; a copy
is kept in docs/export.schema.json.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ExportRecord", "export_json_schema"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionOut(_Strict):
    id: str
    subject: str
    kind: str
    title: str
    status: Literal["pending", "in_force", "ended", "cancelled"]
    triggered_at: str
    effective_at: str
    ends_at: str | None
    level: int
    figure: int
    attributes: dict[str, Any]
    trigger: str
    pack_version: str
    confirmed_at: str | None = None
    confirmed_by: str | None = None


class LineOut(_Strict):
    kind: str
    event_id: str | None
    rule_id: str | None
    pack_version: str | None
    delta: int
    applied: int
    occurred_at: str
    figure: int
    counts: bool | None
    expires_at: str | None
    reason: str
    state: str | None = None


class NextThreshold(_Strict):
    kind: str
    level: int
    points_away: int


class AppealOut(_Strict):
    id: str
    subject: str
    event_id: str | None
    rule_id: str | None
    decision_id: str | None
    reason: str
    filed_at: str
    status: Literal["open", "upheld", "dismissed"]
    decided_at: str | None
    reviewer: str | None
    decision_reason: str | None


class PackVersionOut(_Strict):
    version: str
    effective_from: str
    content_hash: str
    text: str


class EventOut(_Strict):
    id: str
    type: str
    occurred_at: str
    attributes: dict[str, Any]
    evidence: str | None
    issuer: str | None
    incident: str | None
    reported_at: str | None
    details_erased: bool


class LedgerEntryOut(_Strict):
    event_id: str
    rule_id: str
    pack_version: str
    pack_hash: str
    delta: int
    occurred_at: str
    counts_until: str | None
    retain_until: str | None
    evidence: str | None


class ExportRecord(_Strict):
    """Everything pointbook holds about one subject in one domain, and why."""

    domain: str
    subject: str
    as_of: str
    points: int
    scheme: dict[str, Any]
    pack_version: str | None
    decisions: list[DecisionOut]
    next_threshold: NextThreshold | None
    entries: list[LineOut]
    upcoming: list[LineOut]
    appeals: list[AppealOut]
    exported_at: str
    pack_versions: list[PackVersionOut]
    events: list[EventOut]
    ledger_entries: list[LedgerEntryOut]


def export_json_schema() -> dict[str, Any]:
    return ExportRecord.model_json_schema()
