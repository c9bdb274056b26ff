"""Compiled pack versions: what the engine reads. Built only from specs that lint clean."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pointbook.dates import Duration, parse_instant, zone
from pointbook.errors import PackError
from pointbook.rules.conditions import Predicate, compile_condition
from pointbook.rules.findings import Finding, has_errors
from pointbook.rules.load import PackDocument, read_pack_documents
from pointbook.rules.spec import (
    BalanceSchemeSpec,
    EventTypeSpec,
    PackSpec,
    RestorationSpec,
    RuleSpec,
    ThresholdSpec,
    WindowSchemeSpec,
)

__all__ = ["PackVersion", "Rule", "compile_pack", "load_pack_file", "load_pack_text", "version_at"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule: which events it matches and how many points they give."""

    id: str
    title: str
    category: str
    basis: str
    event_type: str
    predicate: Predicate = field(repr=False, compare=False)
    points: int | None
    points_attribute: str | None
    scale: int
    counts_for: Duration | None
    tags: frozenset[str]
    daily_cap: bool
    requires_evidence: bool

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return self.predicate(attributes)

    def delta(self, attributes: Mapping[str, Any]) -> int:
        if self.points is not None:
            return self.points
        assert self.points_attribute is not None
        return int(attributes[self.points_attribute]) * self.scale


@dataclass(frozen=True, slots=True)
class PackVersion:
    """One published (or publishable) version of a domain's pack."""

    domain: str
    version: str
    effective_from: datetime
    tz: ZoneInfo
    spec: PackSpec = field(repr=False)
    content_hash: str
    text: str = field(repr=False)
    rules_by_event: Mapping[str, tuple[Rule, ...]] = field(repr=False)

    @property
    def scheme(self) -> BalanceSchemeSpec | WindowSchemeSpec:
        return self.spec.scheme

    @property
    def event_types(self) -> Mapping[str, EventTypeSpec]:
        return self.spec.event_types

    @property
    def restorations(self) -> Sequence[RestorationSpec]:
        return self.spec.restorations

    @property
    def thresholds(self) -> Sequence[ThresholdSpec]:
        return self.spec.thresholds

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        return self.rules_by_event.get(event_type, ())

    def rule(self, rule_id: str) -> RuleSpec | None:
        return next((r for r in self.spec.rules if r.id == rule_id), None)


def _compile_rule(spec: RuleSpec) -> Rule:
    points = spec.points if isinstance(spec.points, int) else None
    attr = None if isinstance(spec.points, int) else spec.points.attribute
    scale = 1 if isinstance(spec.points, int) else spec.points.scale
    return Rule(
        id=spec.id,
        title=spec.title,
        category=spec.category,
        basis=spec.basis,
        event_type=spec.event,
        predicate=compile_condition(spec.when),
        points=points,
        points_attribute=attr,
        scale=scale,
        counts_for=spec.counts_for,
        tags=frozenset(spec.tags),
        daily_cap=spec.daily_cap,
        requires_evidence=spec.requires_evidence,
    )


def content_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def compile_pack(spec: PackSpec, text: str) -> PackVersion:
    tz = zone(spec.timezone)
    by_event: dict[str, list[Rule]] = {}
    for rule_spec in spec.rules:
        by_event.setdefault(rule_spec.event, []).append(_compile_rule(rule_spec))
    return PackVersion(
        domain=spec.domain,
        version=spec.version,
        effective_from=parse_instant(spec.effective_from, tz),
        tz=tz,
        spec=spec,
        content_hash=content_hash(text),
        text=text,
        rules_by_event={k: tuple(v) for k, v in by_event.items()},
    )


def _load(docs: list[PackDocument], strict: bool) -> tuple[list[PackVersion], list[Finding]]:
    from pointbook.rules.lint import lint_documents

    findings, specs = lint_documents(docs)
    if has_errors(findings) and strict:
        first = next(f for f in findings if f.severity == "error")
        count = sum(1 for f in findings if f.severity == "error")
        more = f" (and {count - 1} more; run `pointbook pack lint`)" if count > 1 else ""
        raise PackError(first.format() + more, findings)
    versions = [compile_pack(s, d.text) for s, d in zip(specs, docs, strict=True) if s is not None]
    return versions, findings


def load_pack_file(path: str | Path) -> list[PackVersion]:
    """Load, lint and compile every version in a pack file; PackError on any lint error."""
    return _load(read_pack_documents(path), strict=True)[0]


def load_pack_text(text: str, name: str = "<pack>") -> list[PackVersion]:
    return _load(read_pack_documents(name, text), strict=True)[0]


def version_at(versions: Sequence[PackVersion], instant: datetime) -> PackVersion | None:
    """The version in force at ``instant``: the latest whose effective_from is not after it."""
    chosen = None
    for v in versions:  # sorted by effective_from
        if v.effective_from <= instant:
            chosen = v
        else:
            break
    return chosen
