"""Small inline packs and events for tests: the ledger under test is written in the test."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from pointbook.dates import parse_as_of, parse_instant
from pointbook.engine import Event, SubjectState, evaluate_subject
from pointbook.rules.pack import PackVersion, load_pack_text

BALANCE_HEAD = """
domain: town
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Test scheme
purpose: Testing the engine.
retention: 5 years
"""


# Principle 7 refuses a balance pack whose deductions never end. Inline packs that test
# something else get a clean-period restoration 150 years out: it meets the guardrail and never
# shows, since the fold projects at most 100 years ahead.
FORGIVE_AFTER = {
    "id": "test-horizon",
    "kind": "clean-period",
    "title": "Test horizon",
    "basis": "Test fixture: principle 7",
    "after": "150 years",
}


def pack(body: str, head: str = BALANCE_HEAD, forgive: bool = True) -> list[PackVersion]:
    """Compile an inline pack: ``head`` (domain, version, …) plus ``body`` (scheme, rules, …)."""
    text = textwrap.dedent(head) + textwrap.dedent(body)
    if forgive:
        docs = list(yaml.safe_load_all(text))
        for doc in docs:
            scheme = doc.get("scheme", {})
            rests = doc.setdefault("restorations", [])
            if scheme.get("kind") == "balance" and not any(
                r.get("kind") == "clean-period" for r in rests
            ):
                rests.append(dict(FORGIVE_AFTER))
        text = yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)
    return load_pack_text(text, "inline.yaml")


def ev(
    id: str,
    type: str,
    at: str,
    subject: str = "s1",
    domain: str = "town",
    tz: str = "UTC",
    evidence: str | None = "ref",
    **attributes: Any,
) -> Event:
    from pointbook.dates import zone

    return Event(
        id=id,
        domain=domain,
        subject=subject,
        type=type,
        occurred_at=parse_instant(at, zone(tz)),
        attributes=attributes,
        evidence=evidence,
        issuer="test",
    )


def at(versions: Sequence[PackVersion], events: Sequence[Event], as_of: str) -> SubjectState:
    tz = versions[0].tz
    when: datetime = parse_as_of(as_of, tz, datetime.now(tz))
    return evaluate_subject(versions, events, when)
