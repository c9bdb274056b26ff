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
from collections import Counter
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
) -> tuple[list[int], list[int], list[bool], list[tuple[int, str, int, datetime]]]:
    points, applied, counts, decisions = [], [], [], []
    for s, events in enumerate(histories):
        st = evaluate_subject(versions, events, as_of, subject=f"s{s}")
        points.append(st.points)
        applied += [x.applied for x in st.entries]
        counts += [x.state == "counts" for x in st.entries]
        decisions += [(s, d.threshold_id, d.level, d.triggered_at) for d in st.decisions]
    return points, applied, counts, decisions


def _kernel(
    versions: Sequence[PackVersion], histories: list[list[Event]], as_of: datetime
) -> tuple[list[int], list[int], list[bool], list[tuple[int, str, int, datetime]]]:
    kp = KernelPack.of(versions)
    cols = columns_of(kp, histories, as_of)
    r = cols.fold(kp, as_of)
    entry = cols.kind == 0
    decisions = [
        (
            int(s),
            kp.threshold_rows[t][0],
            kp.threshold_rows[t][2][lv],
            T0 + timedelta(microseconds=int(at) - _us(T0)),
        )
        for s, t, lv, at in zip(
            r.decision_subject, r.decision_threshold, r.decision_level, r.decision_at, strict=True
        )
    ]
    return (
        [int(x) for x in r.points],
        [int(x) for x in r.applied[entry]],
        [bool(x) for x in r.counts[entry]],
        decisions,
    )


def _us(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _random_version(rng: random.Random, name: str, effective: str, tz: str) -> dict[str, object]:
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
    restorations: list[dict[str, object]] = []
    if rng.random() < 0.6:
        clean: dict[str, object] = {"after": rng.choice(["2 weeks", "1 month"])}
        if rng.random() < 0.5:
            clean |= {"longer_after": "6 weeks", "longer_if_tags": ["x"]}
        restorations.append({"kind": "clean-period", **clean})
    if rng.random() < 0.5:
        restorations.append(
            {"kind": "small-loss", "after": "10 days", "max_loss": rng.randint(1, 3)}
        )
    if rng.random() < 0.5:
        restorations.append({"kind": "entry-return", "after": "3 weeks", "tags": ["y"]})
    if rng.random() < 0.6:
        course: dict[str, object] = {"event": "c", "points": rng.randint(1, 6)}
        if rng.random() < 0.5:
            course["delay"] = "1 day"
        course["min_interval"] = "1 month"  # the same in every version (the kernel's rule)
        restorations.append({"kind": "course", **course})
    rng.shuffle(restorations)
    for k, r in enumerate(restorations):
        r |= {"id": f"x{k}", "title": f"Restoration {k}", "basis": "test"}
    ends = any(r["kind"] == "clean-period" for r in restorations)
    rules = []
    for k in range(rng.randint(1, 4)):
        delta = rng.choice([-7, -5, -3, -2, -1, 1, 2, 3, 5, 8])
        rule: dict[str, object] = {
            "id": f"r{k}",
            "title": f"Rule {k}",
            "category": "traffic",
            "basis": "test",
            "event": rng.choice(["a", "b", "c"]),
            "points": delta,
            "tags": rng.sample(["x", "y", "z"], k=rng.randint(0, 2)),
        }
        if (delta < 0 and not ends) or rng.random() < 0.4:
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
            "terminal": rng.random() < 0.15,
        }
        values = rng.sample(range(floor - 2, ceiling + 3), k=1 if mode == "while" else 3)
        if mode == "crossing" and rng.random() < 0.6:
            th["levels"] = [{"value": v} for v in values[: rng.randint(1, 3)]]
        else:
            th["value"] = values[0]
        thresholds.append(th)
    return {
        "domain": "town",
        "version": name,
        "effective_from": effective,
        "timezone": tz,
        "title": "Random",
        "purpose": "Testing the kernel.",
        "retention": "5 years",
        "scheme": scheme,
        "event_types": {t: {"description": t.upper()} for t in ("a", "b", "c")},
        "rules": rules,
        "restorations": restorations,
        "thresholds": thresholds,
    }


def _random_pack(rng: random.Random) -> list[PackVersion]:
    """One or two versions (the second in force from mid-February 2021, with its own bounds,
    cap, rules, restorations and thresholds)."""
    tz = rng.choice(["UTC", "Europe/Paris", "America/New_York"])
    docs = [_random_version(rng, "1", "2020-01-01", tz)]
    if rng.random() < 0.5:
        docs.append(_random_version(rng, "2", "2021-02-15", tz))
    return load_pack_text(yaml.safe_dump_all(docs), "random.yaml")


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


@pytest.mark.parametrize("seed", range(60))
def test_kernel_matches_the_reference_fold_on_random_packs(seed: int) -> None:
    rng = random.Random(seed)
    versions = _random_pack(rng)
    assert unsupported(versions) is None
    histories = _random_histories(rng, ["a", "b", "c"], 30)
    for as_of in (T0 + timedelta(days=40), T0 + timedelta(days=200)):
        assert _kernel(versions, histories, as_of) == _reference(versions, histories, as_of)


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
    found = _kernel([version], histories, as_of)
    assert found == _reference([version], histories, as_of)
    assert found[3], "the workload reaches some privilege"


def _fr_attrs(typ: str, rng: random.Random) -> dict[str, object]:
    if typ == "speeding":
        return {"over_kmh": rng.choice([3, 8, 25, 35, 45, 60]), "limit_kmh": rng.choice([30, 90])}
    if typ == "drink_driving":
        return {"bac_g_per_l": rng.choice([0.3, 0.6, 1.2])}
    return {}


@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_the_reference_fold_on_the_fr_driving_pack(seed: int) -> None:
    """Two versions (the second from 2024), the 2- or 3-year clean period, the 6-month
    small-loss return, the 10-year return of class 1-4 losses, courses once a year and a day,
    invalidation at zero (terminal): the French licence, folded both ways."""
    versions = load_pack_file(PACKS / "fr-driving.yaml")
    assert len(versions) == 2 and unsupported(versions) is None
    rng = random.Random(seed)
    types = sorted(versions[0].event_types)
    histories = []
    for s in range(40):
        events = []
        # Some drivers offend every year or so from 2012 (no clean period ever runs out, so
        # ten-year returns come due); the others now and then from 2019.
        steady = s % 3 == 0
        for k in range(rng.randint(16, 24) if steady else rng.randint(0, 12)):
            if steady:  # a 2-point offence, then a course, about every 400 days
                days = 200 * k + rng.randrange(30)
                at = datetime(2012, 1, 1, tzinfo=UTC) + timedelta(days=days)
                typ = "course_completed" if k % 2 else "speeding"
                attributes = {"over_kmh": 25, "limit_kmh": 90} if typ == "speeding" else {}
            else:
                at = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 2900, 13))
                typ = rng.choice([*types, "speeding", "speeding", "course_completed"])
                attributes = _fr_attrs(typ, rng)
            events.append(
                Event(
                    id=f"f{s}-{k}-{rng.randrange(1000)}",
                    domain="fr-driving",
                    subject=f"d{s}",
                    type=typ,
                    occurred_at=at,
                    attributes=attributes,
                )
            )
        histories.append(events)
    for as_of in (datetime(2023, 6, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC)):
        assert _kernel(versions, histories, as_of) == _reference(versions, histories, as_of)
    # The workload reaches what the test is about: restorations of each kind, courses
    # credited and refused, and licences invalidated.
    reasons = Counter()
    for s, events in enumerate(histories):
        st = evaluate_subject(versions, events, datetime(2035, 1, 1, tzinfo=UTC), subject=f"d{s}")
        reasons.update(ln.rule_id for ln in st.lines if ln.kind in ("restoration", "course"))
        reasons.update("refused" for ln in st.lines if "not credited" in ln.reason)
        reasons.update(d.threshold_id for d in st.decisions)
    assert {"full-restoration", "single-point-return", "ten-year-return"} <= reasons.keys()
    assert {"awareness-course", "refused", "licence-invalidated"} <= reasons.keys(), reasons


def test_the_kernel_refuses_what_it_does_not_model() -> None:
    uk = load_pack_file(PACKS / "uk-driving.yaml")
    assert unsupported(uk) == "a window scheme"
    with pytest.raises(ValueError, match="a window scheme"):
        KernelPack.of(uk)
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
    )
    assert unsupported(graced) == "threshold t: a grace period"
    contested = load_pack_text(
        (PACKS / "fr-driving.yaml")
        .read_text(encoding="utf-8")
        .replace(
            "timezone: Europe/Paris\n", "timezone: Europe/Paris\ncontest_window: 45 days\n", 1
        ),
        "contested.yaml",
    )
    assert unsupported(contested) == "a contest window"


def test_the_longer_clean_period_ends_when_the_balance_is_full_again() -> None:
    """clean-period: back to 10 after 2 weeks without a loss, 6 weeks when a loss since the
    balance was last full carries tag x. Day 0: -3 tagged x (back to 10 on day 42). Day 50:
    -2 untagged: the balance was full again on day 42, so its delay is 2 weeks (10 on day 64),
    not 6 (day 92)."""
    versions = pack(
        """
        scheme: {kind: balance, start: 10, floor: 0, ceiling: 10}
        event_types: {big: {description: B}, small: {description: S}}
        rules:
          - {id: big, title: Big, category: traffic, basis: test, event: big, points: -3,
             tags: [x]}
          - {id: small, title: Small, category: traffic, basis: test, event: small, points: -2}
        restorations:
          - {id: clean, kind: clean-period, title: Clean, basis: test, after: 2 weeks,
             longer_after: 6 weeks, longer_if_tags: [x]}
        """,
        forgive=False,
    )
    history = [
        Event(id="e1", domain="town", subject="s", type="big", occurred_at=T0),
        Event(id="e2", domain="town", subject="s", type="small", occurred_at=T0 + timedelta(50)),
    ]
    expected = {41: 7, 42: 10, 63: 8, 64: 10}
    for day, points in expected.items():
        as_of = T0 + timedelta(days=day)
        found = _kernel(versions, [history], as_of)
        assert found == _reference(versions, [history], as_of)
        assert found[0] == [points], day
