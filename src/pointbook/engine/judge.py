"""Judging one event: checking it against the version in force and matching its rules.

The stateless half of the engine: depends only on the event and the pack version in force
at its date. Used alike for one event and for a batch, at ingest and in the fold.
"""

from __future__ import annotations

from collections.abc import Sequence

from pointbook.dates import add_duration
from pointbook.engine.model import Entry, Event, fast_maker
from pointbook.errors import EventError
from pointbook.rules.attributes import MAX_INTEGER, attribute_problems
from pointbook.rules.conditions import compile_condition, suggest
from pointbook.rules.pack import PackVersion, Rule, version_at

__all__ = ["judge", "make_entry", "validate_event"]

_entry = fast_maker(Entry)  # an Entry per matching rule: the frozen __init__ is costly


def validate_event(event: Event, versions: Sequence[PackVersion]) -> PackVersion:
    """The version that judges ``event``; EventError if the event is not acceptable."""
    if not versions:
        raise EventError(
            f"domain {event.domain!r} has no published pack: publish one with `pointbook pack publish`",
            code="event/unknown-domain",
        )
    version = version_at(versions, event.occurred_at)
    if version is None:
        first = versions[0]
        raise EventError(
            f"occurred_at {event.occurred_at.isoformat()} is before the domain's first pack "
            f"version ({first.version}, effective {first.effective_from.isoformat()}): no rule "
            "was in force then",
            code="event/before-first-version",
        )
    et = version.event_types.get(event.type)
    if et is None:
        raise EventError(
            f"event type {event.type!r} is not declared by {event.domain} version "
            f"{version.version}{suggest(event.type, sorted(version.event_types))}",
            code="event/unknown-type",
        )
    problems = attribute_problems(event.type, et, event.attributes)
    if problems:
        raise EventError("; ".join(problems), code="event/attributes")
    for rule in version.rules_for(event.type):
        # Points read from an attribute, times the rule's scale: a product beyond what the
        # ledger holds refuses this event alone (never the batch it arrives in).
        if rule.points_attribute is not None and rule.predicate(event.attributes):
            points = int(event.attributes[rule.points_attribute]) * rule.scale
            if abs(points) >= MAX_INTEGER:
                raise EventError(
                    f"rule {rule.id!r} would give {points} points ({rule.points_attribute} "
                    f"{event.attributes[rule.points_attribute]} times {rule.scale}): beyond "
                    "2**53 in magnitude, more than a ledger holds; the pack should bound "
                    f"{rule.points_attribute!r} (lint warns: pack/unbounded-points)",
                    code="event/points-out-of-range",
                )
    if et.require is not None and not compile_condition(et.require)(event.attributes):
        raise EventError(
            et.require_message or f"the event does not meet the requirement of {event.type!r}",
            code="event/requirement",
        )
    if not event.evidence:
        needing = [r.id for r in version.rules_for(event.type) if r.requires_evidence]
        matched = [
            r.id
            for r in version.rules_for(event.type)
            if r.id in needing and r.matches(event.attributes)
        ]
        if matched:
            raise EventError(
                f"rule {matched[0]!r} requires an evidence reference: add `evidence` to the event",
                code="event/no-evidence",
            )
    return version


def judge(event: Event, version: PackVersion) -> list[Entry]:
    """The entries ``event`` produces under ``version``: one per matching rule, in pack order."""
    attributes = event.attributes
    return [
        make_entry(event, version, rule, rule.delta(attributes))
        for rule in version.rules_for(event.type)
        if rule.predicate(attributes)  # rule.matches, without the extra call per rule
    ]


def make_entry(event: Event, version: PackVersion, rule: Rule, delta: int) -> Entry:
    """The entry ``rule`` of ``version`` makes of ``event`` with nominal points ``delta``."""
    until = None
    if rule.counts_for is not None:
        until = add_duration(event.occurred_at, rule.counts_for, version.tz)
    scheme = version.spec.scheme
    if scheme.kind == "window":
        end = add_duration(event.occurred_at, scheme.length, version.tz)
        until = end if until is None else min(until, end)
    return _entry(
        event_id=event.id,
        domain=event.domain,
        subject=event.subject,
        rule_id=rule.id,
        pack_version=version.version,
        pack_hash=version.content_hash,
        delta=delta,
        occurred_at=event.occurred_at,
        counts_until=until,
        title=rule.title,
        evidence=event.evidence,
        tags=rule.tags,
        daily_cap=rule.daily_cap,
    )
