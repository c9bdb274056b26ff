"""Runtime invariants, checked right before the ledger writes (T15: crash-stop, not write on).

Each check looks at what is about to be written and at the published pack versions, never at
how it was computed, so a bug anywhere upstream (a judge emitting an entry for an event it was
not given, points a rule cannot give, a decision for a subject that was not refreshed) stops
the write instead of becoming a permanent, audited ledger line. The store writes each batch in
one transaction, so raising here means nothing of the batch is written; earlier batches stay.

The checks are linear in the batch and read no storage: they must stay cheap enough to run on
every write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from pointbook.engine.model import Decision, Entry, Event
from pointbook.errors import InvariantError
from pointbook.rules.pack import PackVersion, Rule, version_at
from pointbook.rules.spec import BalanceSchemeSpec

__all__ = ["check_batch", "check_revisions"]


class _Revisioned(Protocol):
    """What check_revisions needs of a stored decision: its latest revision number."""

    @property
    def revision(self) -> int: ...


def _breach(what: str) -> InvariantError:
    return InvariantError(
        f"invariant breached, nothing of this write was stored: {what}. This is a bug in "
        "pointbook, not in the input: the store is as it was before; report it with the input "
        "that caused it"
    )


def _rules(version: PackVersion) -> dict[str, Rule]:
    return {r.id: r for rules in version.rules_by_event.values() for r in rules}


def check_batch(
    events: Sequence[tuple[Event, str]],
    entries: Sequence[Entry],
    versions: Callable[[str], Sequence[PackVersion]],
) -> None:
    """Before a batch of events and entries is written.

    Every event is new to the batch once; every entry belongs to an event of the batch (same
    domain, subject and date), at most one entry per event and rule; the entry was judged by
    the version in force at its event's date, under a rule of that version for the event's
    type that matches the event, with exactly the points the rule gives for it and no more than
    the pack's `max_points_per_event`; an entry stops counting no earlier than it starts.
    """
    by_key: dict[tuple[str, str], Event] = {}
    for new, _hash in events:
        key = (new.domain, new.id)
        if key in by_key:
            raise _breach(f"event {new.domain}/{new.id} appears twice in one batch")
        by_key[key] = new
    rules_of: dict[tuple[str, str], dict[str, Rule]] = {}
    seen: set[tuple[str, str, str]] = set()
    for entry in entries:
        problem = _entry_problem(entry, by_key, seen, versions, rules_of)
        if problem is not None:  # the reference is built only then: this loop runs per entry
            raise _breach(f"entry {entry.domain}/{entry.event_id}#{entry.rule_id} {problem}")


def _entry_problem(
    entry: Entry,
    by_key: Mapping[tuple[str, str], Event],
    seen: set[tuple[str, str, str]],
    versions: Callable[[str], Sequence[PackVersion]],
    rules_of: dict[tuple[str, str], dict[str, Rule]],
) -> str | None:
    event = by_key.get((entry.domain, entry.event_id))
    if event is None:
        return "refers to no event of the batch"
    if entry.subject != event.subject or entry.occurred_at != event.occurred_at:
        return "does not carry its event's subject and date"
    key = (entry.domain, entry.event_id, entry.rule_id)
    if key in seen:
        return "is written twice"
    seen.add(key)
    version = version_at(versions(entry.domain), event.occurred_at)
    if version is None or entry.pack_version != version.version:
        return (
            f"cites version {entry.pack_version!r}, not the version in force on its event's "
            "date (principle 4)"
        )
    if entry.pack_hash != version.content_hash:
        return f"cites a pack hash that is not version {version.version}'s"
    return _points_problem(entry, event, version, rules_of)


def _points_problem(
    entry: Entry,
    event: Event,
    version: PackVersion,
    rules_of: dict[tuple[str, str], dict[str, Rule]],
) -> str | None:
    key = (version.domain, version.version)
    if key not in rules_of:
        rules_of[key] = _rules(version)
    rule = rules_of[key].get(entry.rule_id)
    if rule is None or rule.event_type != event.type:
        return f"names no rule of version {version.version} for {event.type!r}"
    if not rule.matches(event.attributes):
        return f"cites rule {rule.id!r}, which does not match its event"
    if type(entry.delta) is not int or entry.delta != rule.delta(event.attributes):
        return f"gives {entry.delta!r} points; its rule gives {rule.delta(event.attributes)}"
    cap = version.spec.max_points_per_event
    if cap is not None and abs(entry.delta) > cap:
        return f"gives {entry.delta} points, over max_points_per_event {cap}"
    if entry.counts_until is not None and entry.counts_until < entry.occurred_at:
        return "stops counting before it starts"
    return None


def check_revisions(
    domain: str,
    subjects: Collection[str],
    revisions: Sequence[tuple[Decision, int, bool, str]],
    versions: Sequence[PackVersion],
    current: Mapping[str, _Revisioned],
) -> None:
    """Before decision revisions are appended for the refreshed ``subjects`` of ``domain``.

    Every decision is of this domain and of a subject being refreshed (principles 1 and 3);
    each decision gets one revision per write, numbered right after the stored one (1 when
    new), and only a stored decision can be withdrawn; it comes from a threshold of a
    published version of the domain; in a balance scheme its figure lies within the floor and
    ceiling (the widest of the published versions).
    """
    wanted = set(subjects)
    thresholds = {t.id for v in versions for t in v.thresholds}
    published = {v.version for v in versions}
    # A grace period may end under a later version than the one that started it, and a new
    # version may move the bounds: the figure is checked against the widest published ones.
    balances = [v.scheme for v in versions if isinstance(v.scheme, BalanceSchemeSpec)]
    low = min((b.floor for b in balances), default=None)
    high = max((b.ceiling for b in balances), default=None)
    written: set[str] = set()
    for decision, revision, withdrawn, _reason in revisions:
        ref = f"decision {decision.id} of {decision.domain}/{decision.subject}"
        if decision.domain != domain or decision.subject not in wanted:
            raise _breach(f"{ref} is not of a subject being refreshed in {domain}")
        if decision.id in written:
            raise _breach(f"{ref} gets two revisions in one write")
        written.add(decision.id)
        stored = current.get(decision.id)
        expected = 1 if stored is None else stored.revision + 1
        if revision != expected or (withdrawn and stored is None):
            raise _breach(
                f"{ref}: revision {revision}{' (withdrawn)' if withdrawn else ''} does not follow "
                f"the stored revision {0 if stored is None else stored.revision}"
            )
        if decision.pack_version not in published or decision.threshold_id not in thresholds:
            raise _breach(
                f"{ref} comes from no threshold {decision.threshold_id!r} of a published version"
            )
        if low is not None and high is not None and not low <= decision.figure <= high:
            raise _breach(f"{ref}: figure {decision.figure} outside the balance [{low}, {high}]")
