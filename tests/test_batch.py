"""The columnar batch judge gives exactly the entries of the one-event judge.

The ledger judges every incoming event with `judge_batch` (one event being a batch of one);
the fold re-judges stored events one at a time with `judge`. Both compile the same condition
trees, one to Polars expressions and one to Python predicates: these tests check on random
events, over the reference packs and a pack using every operator, that they agree, and that a
file ingested in big batches gives the same ledger as the same file sent one event at a time.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import pack
from pointbook.engine import Event, judge, validate_event
from pointbook.engine.batch import judge_batch
from pointbook.errors import EventError
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, load_pack_file
from pointbook.rules.spec import AttributeSpec
from pointbook.store import SQLiteStore

PACKS = Path(__file__).resolve().parents[1] / "src" / "pointbook" / "packs"

# Every operator of the condition language, nested under all/any/not, and points read from
# an attribute with a scale: the corners where a columnar translation could differ.
EVERY_OPERATOR = pack(
    """
    scheme: {kind: balance, start: 100, floor: 0, ceiling: 200}
    event_types:
      act:
        attributes:
          n: {type: integer, required: false}
          x: {type: number, required: false}
          s: {type: string, required: false, values: [a, b, c]}
          b: {type: boolean, required: false}
          k: {type: integer, minimum: -5, maximum: 5}
    rules:
      - {id: eq, title: eq, category: traffic, basis: Test art. 1, event: act, points: -1, when: {field: n, eq: 3}}
      - {id: ne, title: ne, category: traffic, basis: Test art. 1, event: act, points: -1, when: {field: s, ne: a}}
      - {id: lt, title: lt, category: traffic, basis: Test art. 1, event: act, points: -1, when: {field: x, lt: 2.5}}
      - {id: le, title: le, category: traffic, basis: Test art. 1, event: act, points: -1, when: {field: n, le: 0}}
      - {id: gt, title: gt, category: traffic, basis: Test art. 1, event: act, points: 1, when: {field: x, gt: -1}}
      - {id: ge, title: ge, category: traffic, basis: Test art. 1, event: act, points: 1, when: {field: n, ge: 7}}
      - {id: between, title: between, category: traffic, basis: Test art. 1, event: act, points: -2,
         when: {field: x, between: [1, 4.5]}}
      - {id: in, title: in, category: traffic, basis: Test art. 1, event: act, points: -3, when: {field: s, in: [a, c]}}
      - {id: not-in, title: not in, category: traffic, basis: Test art. 1, event: act, points: -3,
         when: {field: n, not_in: [1, 2, 3]}}
      - {id: present, title: present, category: traffic, basis: Test art. 1, event: act, points: 1,
         when: {field: b, present: true}}
      - {id: absent, title: absent, category: traffic, basis: Test art. 1, event: act, points: 1,
         when: {field: b, present: false}}
      - {id: bool, title: bool, category: traffic, basis: Test art. 1, event: act, points: -1, when: {field: b, eq: true}}
      - {id: not, title: not, category: traffic, basis: Test art. 1, event: act, points: -1, when: {not: {field: x, ge: 0}}}
      - {id: all, title: all, category: traffic, basis: Test art. 1, event: act, points: -1,
         when: {all: [{field: n, gt: 0}, {any: [{field: s, eq: b}, {not: {field: b, eq: true}}]}]}}
      - {id: any-empty-ish, title: any, category: traffic, basis: Test art. 1, event: act, points: -1,
         when: {any: [{field: k, lt: -2}, {field: k, gt: 2}]}}
      - {id: scaled, title: scaled, category: traffic, basis: Test art. 1, event: act, points: {attribute: k, scale: -2},
         when: {field: k, present: true}}
      - {id: two-ops, title: two ops, category: traffic, basis: Test art. 1, event: act, points: -1,
         when: {field: x, gt: 0, lt: 10}}
    """
)

REFERENCE: list[list[PackVersion]] = [load_pack_file(p) for p in sorted(PACKS.glob("*.yaml"))]
START = datetime(2021, 1, 1, tzinfo=UTC)


def _literals(versions: list[PackVersion]) -> set[Any]:
    """Every literal the packs' conditions compare with: the boundaries worth hitting."""
    found: set[Any] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, bool | int | float | str):
            found.add(node)

    for v in versions:
        for rule in v.spec.rules:
            if rule.when is not None:
                walk(rule.when.model_dump(exclude_none=True))
    return found


def _value(rng: random.Random, spec: AttributeSpec, literals: set[Any]) -> Any:
    """A value of the declared type: from the closed set when there is one, often a literal
    the conditions name (or one off it), otherwise anything in range."""
    if spec.values is not None and rng.random() < 0.9:
        return rng.choice(spec.values)
    lo = -20 if spec.minimum is None else spec.minimum
    hi = 200 if spec.maximum is None else spec.maximum
    if spec.type in ("integer", "number") and rng.random() < 0.5:
        near = [x for x in literals if isinstance(x, int | float) and not isinstance(x, bool)]
        if near:
            x = rng.choice(near) + rng.choice([-1, 0, 0, 1])
            if lo <= x <= hi:
                return int(x) if spec.type == "integer" else float(x)
    if spec.type == "integer":
        return rng.randint(int(lo), int(hi))
    if spec.type == "number":
        return rng.choice([round(rng.uniform(lo, hi), 2), float(rng.randint(int(lo), int(hi)))])
    if spec.type == "boolean":
        return rng.random() < 0.5
    return rng.choice(["a", "b", "c", "zz"])


def random_events(
    versions: list[PackVersion], seed: int, n: int
) -> list[tuple[Event, PackVersion]]:
    """Acceptable events of every declared type, attributes sometimes missing."""
    rng = random.Random(seed)
    literals = _literals(versions)
    out: list[tuple[Event, PackVersion]] = []
    tries = 0
    while len(out) < n and tries < n * 20:
        tries += 1
        v = rng.choice(versions)
        etype = rng.choice(sorted(v.event_types))
        attrs = {
            name: _value(rng, spec, literals)
            for name, spec in v.event_types[etype].attributes.items()
            if spec.required or rng.random() < 0.6
        }
        at = max(v.effective_from, START) + timedelta(hours=rng.randrange(24 * 900))
        event = Event(
            f"e{len(out)}", v.domain, f"s{rng.randrange(5)}", etype, at, attrs, evidence="ref-1"
        )
        try:
            version = validate_event(event, versions)
        except EventError:
            continue
        out.append((event, version))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(REFERENCE)))
def test_batch_judge_equals_one_event_judge(seed: int, which: int) -> None:
    versions = EVERY_OPERATOR if which == len(REFERENCE) else REFERENCE[which]
    items = random_events(versions, seed, 60)
    assert items, "the generator must produce acceptable events"
    assert judge_batch(items) == [judge(e, v) for e, v in items]


def test_every_operator_pack_matches_what_the_conditions_say() -> None:
    """A hand-worked event, so that agreement is not agreement on nothing: n=3, x=2.0, s=c,
    b absent, k=4 matches eq, ne, lt, gt, between, in, absent, not-in? (3 is in [1,2,3]: no),
    all (n>0 and b is not true), any (k>2), scaled (k present: 4 x -2 = -8), two-ops."""
    (v,) = EVERY_OPERATOR
    event = Event("e1", "town", "s1", "act", START, {"n": 3, "x": 2.0, "s": "c", "k": 4})
    got = [(n.rule_id, n.delta) for n in judge_batch([(event, v)])[0]]
    assert got == [
        ("eq", -1),
        ("ne", -1),
        ("lt", -1),
        ("gt", 1),
        ("between", -2),
        ("in", -3),
        ("absent", 1),
        ("all", -1),
        ("any-empty-ish", -1),
        ("scaled", -8),
        ("two-ops", -1),
    ]


def _records(seed: int, n: int) -> list[RawRecord]:
    from pointbook.demo import synthetic_event

    rng = random.Random(seed)
    out = []
    for i in range(n):
        domain = rng.choice(["forum", "fr-driving"])
        body = synthetic_event(rng, domain, f"{domain}-{i}", f"{domain[:2]}-{rng.randrange(12)}")
        out.append(RawRecord(i + 1, "", EventIn.model_validate(body), None))
    return out


def test_a_file_in_batches_gives_the_ledger_of_one_event_at_a_time(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ledgers = []
    for name in ("batch", "single"):
        ledger = Ledger(SQLiteStore(tmp_path / f"{name}.db"), now=lambda: now)
        ledger.publish_file(PACKS / "forum-reputation.yaml")
        ledger.publish_file(PACKS / "fr-driving.yaml")
        ledgers.append(ledger)
    batch, single = ledgers
    records = _records(7, 400)
    batch.ingest(records, batch_size=150)
    for rec in records:
        single.ingest_one(rec)
    for domain in ("forum", "fr-driving"):
        subjects = batch.store.subjects(domain)
        assert subjects == single.store.subjects(domain)
        for s in subjects:
            assert batch.store.subject_entries(domain, s) == single.store.subject_entries(domain, s)
            assert batch.state(domain, s) == single.state(domain, s)
            # One event at a time refreshes decisions after each: a late event can cancel one
            # already made, which stays on record as cancelled. What is in force is the same.
            assert batch.decisions(domain, s, include_cancelled=False) == single.decisions(
                domain, s, include_cancelled=False
            )
