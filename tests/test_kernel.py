"""The compiled fold gives what the reference fold gives, on the versions it accepts.

For random populations under random balance packs (floors and ceilings that bind, daily caps,
entries that end, crossing thresholds with several levels and margins, `while` thresholds,
thresholds the starting figure is already beyond, many steps at one instant) and under the
forum reference pack, each subject's points, each entry's applied points and whether it
counts, and each decision's threshold, level, instant and figure must be those of
`evaluate_subject`. The kernel refuses what it does not model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from helpers import pack
from pointbook.engine import Event, evaluate_subject
from pointbook.engine.kernel import KernelPack, columns_of, unsupported
from pointbook.rules.pack import PackVersion, load_pack_file, load_pack_text

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "src" / "pointbook" / "packs"
T0 = datetime(2021, 1, 1, tzinfo=UTC)


def _reference(
    versions: Sequence[PackVersion], histories: list[list[Event]], as_of: datetime
) -> tuple[list[int], list[int], list[bool], list[tuple[int, str, int, datetime, int]]]:
    points, applied, counts, decisions = [], [], [], []
    for s, events in enumerate(histories):
        st = evaluate_subject(versions, events, as_of, subject=f"s{s}")
        points.append(st.points)
        applied += [x.applied for x in st.entries]
        counts += [x.state == "counts" for x in st.entries]
        decisions += [(s, d.threshold_id, d.level, d.triggered_at, d.figure) for d in st.decisions]
    return points, applied, counts, decisions


def _kernel(
    version: PackVersion, histories: list[list[Event]], as_of: datetime
) -> tuple[list[int], list[int], list[bool], list[tuple[int, str, int, datetime, int]]]:
    kp = KernelPack.of(version)
    cols = columns_of(version, histories, as_of)
    r = cols.fold(kp, as_of)
    levels = [th.level_list() for th in version.spec.thresholds]
    decisions = [
        (
            int(s),
            kp.threshold_ids[t],
            levels[t][lv].value,
            T0 + timedelta(microseconds=int(at) - _us(T0)),
            int(fig),
        )
        for s, t, lv, at, fig in zip(
            r.decision_subject,
            r.decision_threshold,
            r.decision_level,
            r.decision_at,
            r.decision_figure,
            strict=True,
        )
    ]
    return (
        [int(x) for x in r.points],
        [int(x) for x in r.applied],
        [bool(x) for x in r.counts],
        decisions,
    )


def _us(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _random_pack(rng: random.Random) -> PackVersion:
    floor = rng.randint(-20, 5)
    ceiling = floor + rng.randint(5, 60)
    start = rng.randint(floor, ceiling)
    scheme: dict[str, object] = {
        "kind": "balance",
        "start": start,
        "floor": floor,
        "ceiling": ceiling,
    }
    if rng.random() < 0.5:
        scheme["daily_cap"] = rng.randint(1, 12)
    rules = []
    for k in range(rng.randint(1, 4)):
        delta = rng.choice([-7, -5, -3, -2, -1, 1, 2, 3, 5, 8])
        rule: dict[str, object] = {
            "id": f"r{k}",
            "title": f"Rule {k}",
            "category": "traffic",
            "basis": "test",
            "event": rng.choice(["a", "b"]),
            "points": delta,
        }
        if delta < 0 or rng.random() < 0.4:
            rule["counts_for"] = rng.choice(["1 day", "3 days", "1 week", "1 month", "2 months"])
        if "daily_cap" in scheme and rng.random() < 0.5:
            rule["daily_cap"] = True
        rules.append(rule)
    thresholds = []
    directions = ["at_or_above", "above", "at_or_below", "below"]
    for k in range(rng.randint(0, 4)):
        mode = rng.choice(["crossing", "while"])
        th: dict[str, object] = {
            "id": f"t{k}",
            "kind": f"kind-{k}",
            "title": f"Threshold {k}",
            "basis": "test",
            "direction": rng.choice(directions),
            "mode": mode,
            "margin": rng.choice([0, 0, 1, 3]),
        }
        values = rng.sample(range(floor - 2, ceiling + 3), k=1 if mode == "while" else 3)
        if mode == "crossing" and rng.random() < 0.6:
            th["levels"] = [{"value": v} for v in values[: rng.randint(1, 3)]]
        else:
            th["value"] = values[0]
        thresholds.append(th)
    body = {
        "domain": "town",
        "version": "1",
        "effective_from": "2020-01-01",
        "timezone": rng.choice(["UTC", "Europe/Paris", "America/New_York"]),
        "title": "Random",
        "purpose": "Testing the kernel.",
        "retention": "5 years",
        "scheme": scheme,
        "event_types": {"a": {"description": "A"}, "b": {"description": "B"}},
        "rules": rules,
        "thresholds": thresholds,
    }
    return load_pack_text(yaml.safe_dump(body), "random.yaml")[0]


def _random_histories(
    rng: random.Random, types: Sequence[str], n_subjects: int, attrs: object = None
) -> list[list[Event]]:
    out = []
    serial = 0
    for s in range(n_subjects):
        events = []
        for _ in range(rng.randint(0, 25)):
            serial += 1
            # Few distinct instants: many steps share one, and expiries meet events.
            day = rng.randint(0, 90)
            hour = rng.choice([0, 0, 6, 23])
            at = T0 + timedelta(days=day, hours=hour)
            typ = rng.choice(list(types))
            events.append(
                Event(
                    id=f"e{rng.randint(0, 10**6):07d}-{serial}",
                    domain="town",
                    subject=f"s{s}",
                    type=typ,
                    occurred_at=at,
                    attributes=attrs(typ, rng) if callable(attrs) else {},
                )
            )
        out.append(events)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_kernel_matches_the_reference_fold_on_random_packs(seed: int) -> None:
    rng = random.Random(seed)
    version = _random_pack(rng)
    assert unsupported(version) is None
    histories = _random_histories(rng, ["a", "b"], 30)
    for as_of in (T0 + timedelta(days=40), T0 + timedelta(days=200)):
        assert _kernel(version, histories, as_of) == _reference([version], histories, as_of)


def _forum_attrs(typ: str, rng: random.Random) -> dict[str, object]:
    if typ.startswith("bounty"):
        return {"amount": rng.choice([50, 100, 500])}
    if typ in ("answer_upvoted", "question_upvoted", "downvoted") and rng.random() < 0.1:
        return {"community_wiki": True}
    return {}


@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_the_reference_fold_on_the_forum_pack(seed: int) -> None:
    [version] = load_pack_file(PACKS / "forum-reputation.yaml")
    assert unsupported(version) is None
    rng = random.Random(seed)
    types = sorted(version.event_types)
    # Mostly upvotes, so figures climb through the privileges and hit the daily cap.
    weighted = types + ["answer_upvoted"] * 12 + ["downvoted"] * 3
    histories = _random_histories(rng, weighted, 40, _forum_attrs)
    for s, events in enumerate(histories):
        histories[s] = [
            Event(
                id=e.id,
                domain="forum",
                subject=e.subject,
                type=e.type,
                occurred_at=e.occurred_at,
                attributes=e.attributes,
            )
            for e in events
        ]
    as_of = T0 + timedelta(days=400)
    found = _kernel(version, histories, as_of)
    assert found == _reference([version], histories, as_of)
    assert found[3], "the workload reaches some privilege"


def test_the_kernel_refuses_what_it_does_not_model() -> None:
    [fr, *_] = load_pack_file(PACKS / "fr-driving.yaml")
    assert unsupported(fr) == "restorations"
    uk = load_pack_file(PACKS / "uk-driving.yaml")[0]
    assert unsupported(uk) == "a window scheme"
    with pytest.raises(ValueError, match="restorations"):
        KernelPack.of(fr)
    graced = pack(
        """
        scheme: {kind: balance, start: 0, floor: 0, ceiling: 10}
        event_types: {a: {description: A}}
        rules: [{id: r, title: R, category: traffic, basis: test, event: a, points: 1}]
        thresholds:
          - {id: t, kind: k, title: T, basis: test, direction: at_or_above, value: 5,
             mode: while, grace: 1 day}
        """,
        forgive=False,
    )[0]
    assert unsupported(graced) == "threshold t: a grace period"
