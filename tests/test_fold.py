"""Unit tests of each pass of the fold, each against a small inline pack.

Every expected value is worked out by hand from docs/rule-packs.md (the computation is in the
comment next to it), never by running the engine. Unless a test says otherwise the packs use
the helpers' head: domain `town`, version "1", effective 2020-01-01, time zone UTC. A bare event
date is 00:00 local on that day; a bare as-of date is the end of that local day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from helpers import at, ev, pack
from pointbook.engine import Line, SubjectState


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def steps(state: SubjectState, *kinds: str) -> list[tuple[Any, ...]]:
    """(kind, event_id, rule_id, delta, applied, figure) of the lines of the given kinds."""
    return [
        (ln.kind, ln.event_id, ln.rule_id, ln.delta, ln.applied, ln.figure)
        for ln in state.lines
        if not kinds or ln.kind in kinds
    ]


def triggered(state: SubjectState) -> list[tuple[str, datetime]]:
    return [(d.threshold_id, d.triggered_at) for d in state.decisions]


# --------------------------------------------------------------------------------------------
# Step-wise clamping
# --------------------------------------------------------------------------------------------

CLAMP = """
scheme: {kind: balance, start: 10, floor: 0, ceiling: 12}
event_types:
  offence: {attributes: {pts: integer}}
  good_deed: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Test code art. 1,
     event: offence, points: {attribute: pts, scale: -1}}
  - {id: good-deed, title: Good deed, category: community-contribution, basis: Test code art. 2,
     event: good_deed, points: 3}
"""


def test_clamping_at_the_floor_a_loss_at_the_floor_is_lost_for_good() -> None:
    v = pack(CLAMP)
    events = [
        ev("a1", "offence", "2021-01-01", pts=4),
        ev("a2", "offence", "2021-02-01", pts=4),
        ev("a3", "offence", "2021-03-01", pts=4),
        ev("a4", "good_deed", "2021-04-01"),
    ]
    # 10 -4 -> 6; -4 -> 2; -4 -> 0 (applied -2: the floor absorbs 2); +3 -> 3.
    # Not clamped step-wise it would be clamp(10 - 12 + 3) = 1: the 2 absorbed are lost for good.
    s = at(v, events, "2021-12-31")
    assert s.points == 3
    assert steps(s) == [
        ("entry", "a1", "offence", -4, -4, 6),
        ("entry", "a2", "offence", -4, -4, 2),
        ("entry", "a3", "offence", -4, -2, 0),
        ("entry", "a4", "good-deed", 3, 3, 3),
    ]


def test_clamping_at_the_ceiling_a_gain_at_the_ceiling_is_lost_for_good() -> None:
    v = pack(CLAMP)
    events = [
        ev("g1", "good_deed", "2021-01-01"),
        ev("g2", "good_deed", "2021-02-01"),
        ev("o1", "offence", "2021-03-01", pts=4),
    ]
    # 10 +3 -> 12 (applied 2); +3 -> 12 (applied 0); -4 -> 8. Unclamped: 10 + 6 - 4 = 12.
    s = at(v, events, "2021-12-31")
    assert s.points == 8
    assert steps(s) == [
        ("entry", "g1", "good-deed", 3, 2, 12),
        ("entry", "g2", "good-deed", 3, 0, 12),
        ("entry", "o1", "offence", -4, -4, 8),
    ]


# --------------------------------------------------------------------------------------------
# counts_for expiry (balance)
# --------------------------------------------------------------------------------------------

EXPIRY = """
scheme: {kind: balance, start: 5, floor: 0, ceiling: 12}
event_types:
  offence: {attributes: {pts: integer}}
  good_deed: {attributes: {pts: integer}}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Test code art. 1,
     event: offence, points: {attribute: pts, scale: -1}, counts_for: 1 year}
  - {id: good-deed, title: Good deed, category: community-contribution, basis: Test code art. 2,
     event: good_deed, points: {attribute: pts}}
"""


def test_expiry_reverses_only_the_applied_delta() -> None:
    v = pack(EXPIRY)
    events = [
        ev("e1", "offence", "2021-01-01", pts=4),
        ev("e2", "offence", "2021-02-01", pts=4),
    ]
    # 5 -4 -> 1; -4 -> 0 (applied -1).
    # 2022-01-01 00:00: e1 stops counting, its applied -4 is reversed: 0 + 4 = 4.
    # 2022-02-01 00:00: e2 stops counting, its applied -1 is reversed: 4 + 1 = 5 (not 8).
    assert at(v, events, "2021-12-31").points == 0
    assert at(v, events, "2022-01-01").points == 4
    assert at(v, events, "2022-01-31").points == 4
    s = at(v, events, "2022-02-01")
    assert s.points == 5
    assert steps(s, "expiry") == [
        ("expiry", "e1", "offence", 4, 4, 4),
        ("expiry", "e2", "offence", 1, 1, 5),
    ]


def test_expiry_is_clamped_again_at_the_ceiling() -> None:
    v = pack(EXPIRY)
    events = [
        ev("e1", "offence", "2021-01-01", pts=4),
        ev("g1", "good_deed", "2021-06-01", pts=6),
    ]
    # 5 -4 -> 1; +6 -> 7; 2022-01-01 the reversal +4 -> 11 (room enough: applied 4).
    s = at(v, events, "2022-01-01")
    assert s.points == 11
    events2 = [
        ev("e1", "offence", "2021-01-01", pts=4),
        ev("g1", "good_deed", "2021-06-01", pts=10),
    ]
    # 5 -4 -> 1; +10 -> 11; 2022-01-01 the reversal +4 is clamped: 12 (applied 1).
    s2 = at(v, events2, "2022-01-01")
    assert s2.points == 12
    assert steps(s2, "expiry") == [("expiry", "e1", "offence", 4, 1, 12)]


# --------------------------------------------------------------------------------------------
# Daily cap
# --------------------------------------------------------------------------------------------

DAILY_CAP = """
scheme: {kind: balance, start: 0, floor: 0, ceiling: 100, daily_cap: 10}
event_types:
  post: {}
  spam: {}
  award: {}
rules:
  - {id: post, title: Helpful post, category: content-quality, basis: Forum rule 1,
     event: post, points: 4, daily_cap: true}
  - {id: spam, title: Spam, category: moderation, basis: Forum rule 2,
     event: spam, points: -3, daily_cap: true}
  - {id: award, title: Award, category: community-contribution, basis: Forum rule 3,
     event: award, points: 5}
"""


def test_daily_cap_remainder_uncapped_rules_capped_losses_and_next_day() -> None:
    v = pack(DAILY_CAP)
    events = [
        ev("p1", "post", "2021-01-01T10:00"),
        ev("p2", "post", "2021-01-01T11:00"),
        ev("p3", "post", "2021-01-01T12:00"),
        ev("p4", "post", "2021-01-01T13:00"),
        ev("a1", "award", "2021-01-01T14:00"),
        ev("s1", "spam", "2021-01-01T15:00"),
        ev("p5", "post", "2021-01-01T16:00"),
        ev("p6", "post", "2021-01-02T01:00"),
    ]
    # Day 2021-01-01, cap 10 (capped total in brackets):
    # p1 +4 [4] -> 4; p2 +4 [8] -> 8; p3 min(4, 10-8) = 2 [10] -> 10; p4 min(4, 0) = 0 -> 10;
    # a1 uncapped +5 -> 15, total unchanged [10]; s1 -3 [7] -> 12 (losses reopen room);
    # p5 min(4, 10-7) = 3 [10] -> 15. Day 2021-01-02: a new budget, p6 +4 -> 19.
    s1 = at(v, events, "2021-01-01")
    assert s1.points == 15
    assert steps(s1) == [
        ("entry", "p1", "post", 4, 4, 4),
        ("entry", "p2", "post", 4, 4, 8),
        ("entry", "p3", "post", 4, 2, 10),
        ("entry", "p4", "post", 4, 0, 10),
        ("entry", "a1", "award", 5, 5, 15),
        ("entry", "s1", "spam", -3, -3, 12),
        ("entry", "p5", "post", 4, 3, 15),
    ]
    assert at(v, events, "2021-01-02").points == 19


def test_daily_cap_a_loss_absorbed_by_the_floor_still_reopens_room_at_its_nominal_value() -> None:
    v = pack(DAILY_CAP)
    events = [
        ev("s1", "spam", "2021-01-03T09:00"),
        ev("p1", "post", "2021-01-03T10:00"),
        ev("p2", "post", "2021-01-03T11:00"),
        ev("p3", "post", "2021-01-03T12:00"),
        ev("p4", "post", "2021-01-03T13:00"),
    ]
    # s1: 0 -3 -> 0 (the floor absorbs it) but the capped total is -3 (nominal value).
    # p1 min(4, 13) = 4 [1] -> 4; p2 4 [5] -> 8; p3 4 [9] -> 12; p4 min(4, 1) = 1 [10] -> 13.
    s = at(v, events, "2021-01-03")
    assert s.points == 13
    assert [ln.applied for ln in s.lines] == [0, 4, 4, 4, 1]


def test_daily_cap_day_is_the_local_day_of_the_pack_time_zone() -> None:
    head = """
    domain: town
    version: "1"
    effective_from: 2020-01-01
    timezone: Asia/Tokyo
    title: Test scheme
    purpose: Testing the engine.
    retention: 5 years
    """
    v = pack(DAILY_CAP, head=head)
    events = [
        ev("p1", "post", "2021-01-01T10:00:00Z"),  # Tokyo 2021-01-01 19:00
        ev("p2", "post", "2021-01-01T12:00:00Z"),  # Tokyo 2021-01-01 21:00
        ev("p3", "post", "2021-01-01T14:00:00Z"),  # Tokyo 2021-01-01 23:00
        ev("p4", "post", "2021-01-01T16:00:00Z"),  # Tokyo 2021-01-02 01:00: a new day
    ]
    # Tokyo day 1: 4 + 4 + 2 (remainder) = 10; Tokyo day 2: p4 earns a full 4 -> 14.
    # (Counted by the UTC day all four would share one budget: 10.)
    s = at(v, events, "2021-01-02T12:00:00Z")
    assert s.points == 14
    assert [ln.applied for ln in s.lines] == [4, 4, 2, 4]


# --------------------------------------------------------------------------------------------
# Window schemes
# --------------------------------------------------------------------------------------------


def window_pack(boundary: str, extra: str = "") -> Any:
    return pack(
        f"""
scheme: {{kind: window, length: 1 year, boundary: {boundary}}}
event_types:
  foul: {{attributes: {{pts: integer}}}}
rules:
  - {{id: foul, title: Foul, category: match-conduct, basis: League rule 1,
     event: foul, points: {{attribute: pts}}}}
{extra}
"""
    )


@pytest.mark.parametrize(
    ("boundary", "at_exactly"),
    [("inclusive", 5), ("exclusive", 3)],
)
def test_window_boundary_at_exactly_one_window_length(boundary: str, at_exactly: int) -> None:
    v = window_pack(boundary)
    events = [
        ev("f1", "foul", "2021-03-01", pts=2),
        ev("f2", "foul", "2021-09-01", pts=3),
    ]
    # f1 is exactly one window-length (1 year) old at 2022-03-01 00:00.
    # inclusive: it still counts as of that very instant (2 + 3 = 5) and leaves just after;
    # exclusive: it leaves at that instant (3).
    assert at(v, events, "2022-02-28T23:59:59").points == 5
    assert at(v, events, "2022-03-01T00:00:00").points == at_exactly
    assert at(v, events, "2022-03-01T00:00:01").points == 3
    assert at(v, events, "2022-03-01").points == 3
    s = at(v, events, "2022-03-01")
    assert steps(s, "window-exit") == [("window-exit", "f1", "foul", -2, -2, 3)]
    assert s.lines[-1].at == utc(2022, 3, 1)


@pytest.mark.parametrize(("boundary", "decided"), [("inclusive", True), ("exclusive", False)])
def test_window_event_at_the_exit_instant(boundary: str, decided: bool) -> None:
    extra = """
thresholds:
  - {id: ban, kind: suspension, title: Suspension, basis: League rule 9,
     direction: at_or_above, value: 7, mode: crossing}
"""
    v = window_pack(boundary, extra)
    events = [
        ev("f1", "foul", "2021-03-01", pts=2),
        ev("f2", "foul", "2021-09-01", pts=3),
        ev("f3", "foul", "2022-03-01", pts=2),
    ]
    # At 2022-03-01 00:00: exclusive exits come before events (f1 leaves, 3 + 2 = 5: no
    # decision); inclusive exits come after events (2 + 3 + 2 = 7 >= 7: a suspension, then f1
    # leaves). Either way the figure at the end of the day is 5.
    s = at(v, events, "2022-03-01")
    assert s.points == 5
    assert triggered(s) == ([("ban", utc(2022, 3, 1))] if decided else [])


def test_window_counts_for_can_only_shorten() -> None:
    v = pack(
        """
scheme: {kind: window, length: 1 year, boundary: inclusive}
event_types:
  foul: {attributes: {kind: {type: string, values: [minor, major]}}}
rules:
  - {id: minor, title: Minor foul, category: match-conduct, basis: League rule 1,
     event: foul, when: {field: kind, eq: minor}, points: 2, counts_for: 6 months}
  - {id: major, title: Major foul, category: match-conduct, basis: League rule 2,
     event: foul, when: {field: kind, eq: major}, points: 3, counts_for: 2 years}
"""
    )
    events = [
        ev("m1", "foul", "2021-01-01", kind="minor"),
        ev("j1", "foul", "2021-01-01", kind="major"),
    ]
    # minor counts 6 months: gone at 2021-07-01 00:00 (a counts_for expiry, phase 1, so not
    # even as of that instant). major's 2 years cannot lengthen the 1-year window: it leaves
    # with the window (inclusive: still there as of 2022-01-01 00:00, gone just after).
    assert at(v, events, "2021-06-30").points == 5
    assert at(v, events, "2021-07-01T00:00:00").points == 3
    assert at(v, events, "2021-12-31").points == 3
    assert at(v, events, "2022-01-01T00:00:00").points == 3
    assert at(v, events, "2022-01-01").points == 0
    assert at(v, events, "2023-06-01").points == 0


def test_window_resets_the_counted_points() -> None:
    extra = """
thresholds:
  - {id: ban, kind: suspension, title: Suspension, basis: League rule 9,
     direction: at_or_above, value: 4, mode: crossing, resets: true}
"""
    v = window_pack("inclusive", extra)
    events = [
        ev("f1", "foul", "2021-01-01", pts=2),
        ev("f2", "foul", "2021-02-01", pts=2),
        ev("f3", "foul", "2021-03-01", pts=2),
        ev("f4", "foul", "2021-04-01", pts=2),
    ]
    # 2; 4 -> suspension at 2021-02-01, and the 4 counted stop counting -> 0;
    # f3 -> 2 (without the reset it would be 6); f4 -> 4 -> a second suspension, reset -> 0.
    assert at(v, events, "2021-01-31").points == 2
    assert at(v, events, "2021-02-01").points == 0
    assert at(v, events, "2021-03-15").points == 2
    s = at(v, events, "2021-04-02")
    assert s.points == 0
    assert triggered(s) == [("ban", utc(2021, 2, 1)), ("ban", utc(2021, 4, 1))]
    assert [ln.kind for ln in s.lines].count("reset") == 2
    # the reset entries never come back out of the window a second time
    assert at(v, events, "2022-06-01").points == 0


# --------------------------------------------------------------------------------------------
# clean-period
# --------------------------------------------------------------------------------------------

CLEAN = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  minor: {attributes: {pts: integer}}
  serious: {attributes: {pts: integer}}
  warning: {}
  parking: {}
rules:
  - {id: minor, title: Minor offence, category: traffic, basis: Code art. 1,
     event: minor, points: {attribute: pts, scale: -1}}
  - {id: serious, title: Serious offence, category: traffic, basis: Code art. 2,
     event: serious, points: {attribute: pts, scale: -1}, tags: [serious]}
  - {id: warning, title: Warning, category: traffic, basis: Code art. 3,
     event: warning, points: 0}
restorations:
  - {id: clean, kind: clean-period, title: Clean record, basis: Code art. 9,
     after: 2 years, longer_after: 3 years, longer_if_tags: [serious]}
"""


def test_clean_period_after_two_years() -> None:
    v = pack(CLEAN)
    events = [ev("m1", "minor", "2021-01-01", pts=3)]
    # 12 - 3 = 9; no loss for 2 years: back to the ceiling on 2023-01-01 00:00.
    assert at(v, events, "2022-12-31").points == 9
    s = at(v, events, "2023-01-01")
    assert s.points == 12
    assert steps(s, "restoration") == [("restoration", None, "clean", 3, 3, 12)]


def test_clean_period_longer_when_a_loss_carries_a_longer_tag() -> None:
    v = pack(CLEAN)
    events = [ev("s1", "serious", "2021-01-01", pts=3)]
    # a serious loss: 3 years, not 2.
    assert at(v, events, "2023-01-01").points == 9
    assert at(v, events, "2023-12-31").points == 9
    assert at(v, events, "2024-01-01").points == 12


def test_clean_period_longer_for_any_loss_since_last_at_the_ceiling() -> None:
    v = pack(CLEAN)
    events = [
        ev("s1", "serious", "2021-01-01", pts=3),
        ev("m1", "minor", "2021-06-01", pts=1),
        ev("m2", "minor", "2025-01-01", pts=1),
    ]
    # s1 -> 9 (clock to 2024-01-01); m1 -> 8 interrupts it; m1 is minor but a serious loss came
    # since the balance was last at 12, so its clock is 3 years: 2024-06-01 (2 years would have
    # restored on 2023-06-01). Back at 12 the longer delay no longer applies: m2 (2025-01-01)
    # -> 11, 2 years -> 12 on 2027-01-01.
    assert at(v, events, "2023-06-01").points == 8
    assert at(v, events, "2024-05-31").points == 8
    assert at(v, events, "2024-06-01").points == 12
    assert at(v, events, "2026-12-31").points == 11
    assert at(v, events, "2027-01-01").points == 12


def test_clean_period_interrupted_by_a_new_loss() -> None:
    v = pack(CLEAN)
    events = [
        ev("m1", "minor", "2021-01-01", pts=3),
        ev("m2", "minor", "2022-06-01", pts=1),
    ]
    # m1 -> 9, clock to 2023-01-01; m2 -> 8 restarts it: 2024-06-01.
    assert at(v, events, "2023-01-01").points == 8
    assert at(v, events, "2024-05-31").points == 8
    assert at(v, events, "2024-06-01").points == 12


def test_clean_period_not_interrupted_by_a_zero_point_or_no_rule_event() -> None:
    v = pack(CLEAN)
    events = [
        ev("m1", "minor", "2021-01-01", pts=3),
        ev("w1", "warning", "2022-01-01"),
        ev("p1", "parking", "2022-02-01"),
    ]
    # w1 gives 0 points and p1 matches no rule: neither is a loss, m1's clock runs to 2023-01-01.
    s = at(v, events, "2023-01-01")
    assert s.points == 12
    assert steps(s, "entry", "no-rule")[1:] == [
        ("entry", "w1", "warning", 0, 0, 9),
        ("no-rule", "p1", None, 0, 0, 9),
    ]


# --------------------------------------------------------------------------------------------
# small-loss
# --------------------------------------------------------------------------------------------

SMALL = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  minor: {attributes: {pts: integer}}
rules:
  - {id: minor, title: Minor offence, category: traffic, basis: Code art. 1,
     event: minor, points: {attribute: pts, scale: -1}}
restorations:
  - {id: small, kind: small-loss, title: Small loss returned, basis: Code art. 9,
     after: 6 months, max_loss: 2}
"""


def test_small_loss_returns_a_loss_of_at_most_max_loss() -> None:
    v = pack(SMALL)
    events = [ev("a", "minor", "2021-01-01", pts=2)]
    # 2 <= max_loss 2: 10, back on 2021-07-01.
    assert at(v, events, "2021-06-30").points == 10
    s = at(v, events, "2021-07-01")
    assert s.points == 12
    assert steps(s, "restoration") == [("restoration", "a", "small", 2, 2, 12)]


def test_small_loss_never_returns_a_bigger_loss() -> None:
    v = pack(SMALL)
    events = [ev("a", "minor", "2021-01-01", pts=3)]
    assert at(v, events, "2021-07-01").points == 9
    assert at(v, events, "2024-01-01").points == 9


def test_small_loss_cancelled_by_a_new_loss() -> None:
    v = pack(SMALL)
    events = [
        ev("a", "minor", "2021-01-01", pts=1),
        ev("b", "minor", "2021-03-01", pts=2),
    ]
    # a -> 11; b -> 9: a loss came between a and its return date (2021-07-01), so a never
    # comes back; b (2) comes back on 2021-09-01 -> 11.
    assert at(v, events, "2021-07-01").points == 9
    assert at(v, events, "2021-08-31").points == 9
    assert at(v, events, "2021-09-01").points == 11
    assert at(v, events, "2023-01-01").points == 11


def test_small_loss_cancelled_by_a_big_new_loss() -> None:
    v = pack(SMALL)
    events = [
        ev("a", "minor", "2021-01-01", pts=2),
        ev("b", "minor", "2021-03-01", pts=3),
    ]
    # 10, then 7; a's return (2021-07-01) is cancelled; b is too big to come back.
    assert at(v, events, "2021-07-01").points == 7
    assert at(v, events, "2022-12-31").points == 7


# --------------------------------------------------------------------------------------------
# entry-return
# --------------------------------------------------------------------------------------------

RETURN = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  minor: {attributes: {pts: integer}}
  tagged: {attributes: {pts: integer}}
  expiring: {attributes: {pts: integer}}
rules:
  - {id: minor, title: Minor offence, category: traffic, basis: Code art. 1,
     event: minor, points: {attribute: pts, scale: -1}}
  - {id: tagged, title: Returnable offence, category: traffic, basis: Code art. 2,
     event: tagged, points: {attribute: pts, scale: -1}, tags: [returnable]}
  - {id: expiring, title: Expiring offence, category: traffic, basis: Code art. 3,
     event: expiring, points: {attribute: pts, scale: -1}, tags: [returnable],
     counts_for: 6 months}
restorations:
  - {id: clean, kind: clean-period, title: Clean record, basis: Code art. 7, after: 8 months}
  - {id: small, kind: small-loss, title: Small loss, basis: Code art. 8,
     after: 3 months, max_loss: 1}
  - {id: back, kind: entry-return, title: Entry returned, basis: Code art. 9,
     after: 1 year, tags: [returnable]}
"""


def test_entry_return_comes_back_after_its_delay_whatever_happened() -> None:
    v = pack(RETURN)
    events = [
        ev("t1", "tagged", "2021-01-01", pts=4),
        ev("m1", "minor", "2021-06-01", pts=3),
        ev("m2", "minor", "2021-12-01", pts=3),
    ]
    # t1 -> 8 (clean clock 2021-09-01, return 2022-01-01); m1 -> 5 (interrupts t1's clean
    # clock; own clock 2022-02-01); m2 -> 2 (interrupts m1's; own clock 2022-08-01).
    # 2022-01-01: t1 comes back despite the new losses: 2 + 4 = 6. 2022-08-01: clean -> 12.
    assert at(v, events, "2021-12-31").points == 2
    s = at(v, events, "2022-01-01")
    assert s.points == 6
    assert steps(s, "restoration") == [("restoration", "t1", "back", 4, 4, 6)]
    assert at(v, events, "2022-07-31").points == 6
    assert at(v, events, "2022-08-01").points == 12


def test_entry_return_cancelled_by_a_clean_period() -> None:
    v = pack(RETURN)
    events = [
        ev("t1", "tagged", "2021-01-01", pts=4),
        ev("m1", "minor", "2021-10-01", pts=3),
    ]
    # t1 -> 8; clean on 2021-09-01 -> 12 (settles t1's pending return); m1 -> 9 (clean clock
    # 2022-06-01). 2022-01-01: t1's return is cancelled: still 9 (returned it would be 12).
    assert at(v, events, "2021-09-01").points == 12
    assert at(v, events, "2022-01-01").points == 9
    assert at(v, events, "2022-05-31").points == 9
    assert at(v, events, "2022-06-01").points == 12


def test_entry_return_not_doubled_after_a_small_loss_return() -> None:
    v = pack(RETURN)
    events = [
        ev("t1", "tagged", "2021-01-01", pts=1),
        ev("m1", "minor", "2021-06-01", pts=5),
    ]
    # t1 -> 11; small-loss (1 <= 1) on 2021-04-01 -> 12; m1 -> 7 (too big for small-loss, clean
    # clock 2022-02-01; t1's clean clock 2021-09-01 was interrupted). 2022-01-01: t1 was already
    # returned, so no second +1: still 7 (doubled it would be 8). 2022-02-01: clean -> 12.
    assert at(v, events, "2021-04-01").points == 12
    s = at(v, events, "2022-01-31")
    assert s.points == 7
    assert steps(s, "restoration") == [("restoration", "t1", "small", 1, 1, 12)]
    assert at(v, events, "2022-02-01").points == 12


def test_entry_return_not_after_the_entry_stopped_counting() -> None:
    v = pack(RETURN)
    events = [
        ev("e1", "expiring", "2021-01-01", pts=4),
        ev("m1", "minor", "2021-03-01", pts=3),
        ev("m2", "minor", "2021-10-01", pts=2),
    ]
    # e1 -> 8; m1 -> 5 (interrupts e1's clean clock, own clock 2021-11-01); 2021-07-01 e1 stops
    # counting -> 9; m2 -> 7 (interrupts m1's clock, own clock 2022-06-01). 2022-01-01: e1
    # was already returned by its expiry: still 7 (returned twice it would be 11).
    assert at(v, events, "2021-07-01").points == 9
    assert at(v, events, "2022-01-01").points == 7
    assert at(v, events, "2022-05-31").points == 7
    assert at(v, events, "2022-06-01").points == 12


def test_entry_return_gives_back_only_what_was_withdrawn() -> None:
    v = pack(RETURN)
    events = [
        ev("m1", "minor", "2021-01-01", pts=10),
        ev("t1", "tagged", "2021-02-01", pts=4),
        ev("m2", "minor", "2021-09-01", pts=2),
    ]
    # m1 -> 2; t1 -> 0 (applied -2); m2 -> 0 (a loss at the floor: applied 0, but it restarts
    # the clean clock: 2022-05-01). 2022-02-01: t1 returns its applied 2 -> 2 (not 4).
    assert at(v, events, "2022-01-31").points == 0
    assert at(v, events, "2022-02-01").points == 2
    assert at(v, events, "2022-04-30").points == 2
    assert at(v, events, "2022-05-01").points == 12


# --------------------------------------------------------------------------------------------
# course
# --------------------------------------------------------------------------------------------

COURSE = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  offence: {attributes: {pts: integer}}
  good_deed: {}
  course: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code art. 1,
     event: offence, points: {attribute: pts, scale: -1}}
  - {id: good-deed, title: Good deed, category: community-contribution, basis: Code art. 2,
     event: good_deed, points: 1}
restorations:
  - {id: awareness, kind: course, title: Awareness course, basis: Code art. 9,
     event: course, points: 4, min_interval: 1 year, delay: 30 days}
"""


def test_course_credits_after_its_delay() -> None:
    v = pack(COURSE)
    events = [ev("o1", "offence", "2021-01-01", pts=6), ev("c1", "course", "2021-02-01")]
    # 6; c1 credits +4 thirty days after 2021-02-01, i.e. on 2021-03-03 -> 10.
    assert at(v, events, "2021-03-02").points == 6
    s = at(v, events, "2021-03-03")
    assert s.points == 10
    assert steps(s, "course") == [("course", "c1", "awareness", 4, 4, 10)]
    assert s.lines[-1].at == utc(2021, 3, 3)


def test_course_min_interval_compares_the_event_dates() -> None:
    v = pack(COURSE)
    events = [
        ev("o1", "offence", "2021-01-01", pts=6),
        ev("c1", "course", "2021-02-01"),
        ev("o2", "offence", "2021-11-01", pts=6),
        ev("c2", "course", "2021-12-01"),
        ev("c3", "course", "2022-02-01"),
    ]
    # 6; c1 credited 2021-03-03 -> 10; o2 -> 4; c2 (2021-12-01) is less than 1 year after c1
    # (2021-02-01): refused on 2021-12-31; c3 (2022-02-01) is exactly 1 year after c1's date,
    # not less: credited on 2022-03-03 -> 8. (Compared with c1's credit date, 2021-03-03, c3
    # would have been refused.)
    s = at(v, events, "2021-12-31")
    assert s.points == 4
    assert steps(s, "course") == [
        ("course", "c1", "awareness", 4, 4, 10),
        ("course", "c2", "awareness", 4, 0, 4),
    ]
    assert at(v, events, "2022-03-03").points == 8


def test_course_refused_at_the_floor_at_the_moment_of_the_credit() -> None:
    v = pack(COURSE)
    events = [
        ev("o1", "offence", "2021-01-01", pts=6),
        ev("c1", "course", "2021-02-01"),
        ev("o2", "offence", "2021-02-15", pts=6),
        ev("g1", "good_deed", "2021-04-01"),
        ev("c2", "course", "2021-05-01"),
    ]
    # 6; o2 -> 0; c1's credit on 2021-03-03 finds the balance at the floor: refused, 0.
    # g1 -> 1; c2 (a refused course does not count for the spacing) credits on 2021-05-31 -> 5.
    assert at(v, events, "2021-03-03").points == 0
    assert at(v, events, "2021-05-30").points == 1
    assert at(v, events, "2021-05-31").points == 5


def test_course_at_the_floor_on_its_date_but_not_at_the_credit() -> None:
    v = pack(COURSE)
    events = [
        ev("o1", "offence", "2021-01-01", pts=12),
        ev("c1", "course", "2021-02-01"),
        ev("g1", "good_deed", "2021-02-10"),
    ]
    # 0 when c1 happens; g1 -> 1; on 2021-03-03 the balance is 1, not the floor: +4 -> 5.
    assert at(v, events, "2021-03-03").points == 5


def test_course_capped_at_the_ceiling() -> None:
    v = pack(COURSE)
    events = [ev("o1", "offence", "2021-01-01", pts=2), ev("c1", "course", "2021-02-01")]
    # 10 + 4 -> 12: applied 2.
    s = at(v, events, "2021-03-03")
    assert s.points == 12
    assert steps(s, "course") == [("course", "c1", "awareness", 4, 2, 12)]


def test_course_credited_at_the_ceiling_still_counts_for_spacing() -> None:
    v = pack(COURSE)
    events = [
        ev("c1", "course", "2021-02-01"),
        ev("o1", "offence", "2021-06-01", pts=6),
        ev("c2", "course", "2021-09-01"),
    ]
    # c1 credited on 2021-03-03 at the ceiling (applied 0, but credited); o1 -> 6; c2 is less
    # than a year after c1: refused on 2021-10-01 -> 6 (not 10).
    s = at(v, events, "2021-12-31")
    assert s.points == 6
    assert steps(s, "course") == [
        ("course", "c1", "awareness", 4, 0, 12),
        ("course", "c2", "awareness", 4, 0, 6),
    ]


# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------


def threshold_pack(thresholds: str, start: int = 12) -> Any:
    return pack(
        f"""
scheme: {{kind: balance, start: {start}, floor: 0, ceiling: 20}}
event_types:
  offence: {{attributes: {{pts: integer}}}}
  gain: {{attributes: {{pts: integer}}}}
rules:
  - {{id: offence, title: Offence, category: traffic, basis: Code art. 1,
     event: offence, points: {{attribute: pts, scale: -1}}}}
  - {{id: gain, title: Good deed, category: community-contribution, basis: Code art. 2,
     event: gain, points: {{attribute: pts}}}}
thresholds:
{thresholds}
"""
    )


def moves(deltas: list[int], start_day: int = 1) -> list[Any]:
    """One event a day from 2021-01-(start_day): an offence or a gain of |delta| points."""
    out = []
    for i, d in enumerate(deltas):
        day = f"2021-01-{start_day + i:02d}"
        out.append(ev(f"x{i:02d}", "offence" if d < 0 else "gain", day, pts=abs(d)))
    return out


@pytest.mark.parametrize(
    ("direction", "value", "margin", "start", "deltas", "decided_on"),
    [
        # below 9, re-armed at >= 9 + 1: figures 8 (d) 9 8 9 10 (re-armed) 8 (d)
        ("below", 9, 1, 12, [-4, 1, -1, 1, 1, -2], [0, 5]),
        # margin 0: re-armed at >= 9: 8 (d) 9 (re) 8 (d) 9 (re) 10 8 (d)
        ("below", 9, 0, 12, [-4, 1, -1, 1, 1, -2], [0, 2, 5]),
        # at_or_below 9, re-armed above 10: 9 (d) 10 9 11 (re) 9 (d)
        ("at_or_below", 9, 1, 12, [-3, 1, -1, 2, -2], [0, 4]),
        # margin 0: re-armed above 9: 9 (d) 10 (re) 9 (d) 11 9 (d)
        ("at_or_below", 9, 0, 12, [-3, 1, -1, 2, -2], [0, 2, 4]),
        # at_or_above 3, re-armed below 2: 3 (d) 2 3 1 (re) 3 (d)
        ("at_or_above", 3, 1, 0, [3, -1, 1, -2, 2], [0, 4]),
        # margin 0: re-armed below 3: 3 (d) 2 (re) 3 (d) 1 3 (d)
        ("at_or_above", 3, 0, 0, [3, -1, 1, -2, 2], [0, 2, 4]),
        # above 3, re-armed at most 2: 4 (d) 3 4 2 (re) 4 (d)
        ("above", 3, 1, 0, [4, -1, 1, -2, 2], [0, 4]),
        # margin 0: re-armed at most 3: 4 (d) 3 (re) 4 (d) 2 4 (d)
        ("above", 3, 0, 0, [4, -1, 1, -2, 2], [0, 2, 4]),
    ],
)
def test_crossing_with_margin_does_not_flap(
    direction: str, value: int, margin: int, start: int, deltas: list[int], decided_on: list[int]
) -> None:
    v = threshold_pack(
        f"""
  - {{id: warn, kind: warning-letter, title: Warning letter, basis: Policy 1,
     direction: {direction}, value: {value}, mode: crossing, margin: {margin}}}
""",
        start=start,
    )
    events = moves(deltas)
    s = at(v, events, "2021-12-31")
    assert triggered(s) == [("warn", utc(2021, 1, 1 + i)) for i in decided_on]


@pytest.mark.parametrize(
    ("direction", "levels", "start", "deltas", "expected"),
    [
        # 12 -> 4 passes 9 and 6 in one step: one decision, level 6; 4 -> 2 passes 3.
        ("below", [9, 6, 3], 12, [-8, -2], [(6, {"stage": 6}), (3, {"stage": 3})]),
        # 0 -> 9 passes 4 and 8: one decision, level 8; 9 -> 13 passes 12.
        ("at_or_above", [4, 8, 12], 0, [9, 4], [(8, {"stage": 8}), (12, {"stage": 12})]),
    ],
)
def test_several_levels_in_one_step_give_one_decision_for_the_furthest(
    direction: str,
    levels: list[int],
    start: int,
    deltas: list[int],
    expected: list[tuple[int, dict[str, int]]],
) -> None:
    lv = ", ".join(f"{{value: {x}, attributes: {{stage: {x}}}}}" for x in levels)
    v = threshold_pack(
        f"""
  - {{id: bands, kind: suspension, title: Bands, basis: Policy 2,
     direction: {direction}, levels: [{lv}], mode: crossing}}
""",
        start=start,
    )
    s = at(v, moves(deltas), "2021-12-31")
    assert [(d.level, dict(d.attributes)) for d in s.decisions] == expected
    assert [d.triggered_at for d in s.decisions] == [utc(2021, 1, 1), utc(2021, 1, 2)]


def test_decisions_on_one_instant_follow_the_file_order_of_thresholds() -> None:
    v = threshold_pack(
        """
  - {id: zeta, kind: warning-letter, title: Second letter, basis: Policy 1,
     direction: below, value: 10, mode: crossing}
  - {id: alpha, kind: warning-letter, title: First letter, basis: Policy 1,
     direction: below, value: 11, mode: crossing}
"""
    )
    # 12 -> 8 passes both on one step: listed zeta then alpha, as in the file.
    s = at(v, moves([-4]), "2021-12-31")
    assert [d.threshold_id for d in s.decisions] == ["zeta", "alpha"]


def test_while_starts_ends_past_the_margin_and_returns() -> None:
    v = threshold_pack(
        """
  - {id: low, kind: restriction, title: Restriction, basis: Policy 3,
     direction: below, value: 6, mode: while, margin: 1}
"""
    )
    events = [
        ev("a", "offence", "2021-01-01", pts=7),
        ev("b", "gain", "2021-02-01", pts=1),
        ev("c", "gain", "2021-03-01", pts=1),
        ev("d", "offence", "2021-04-01", pts=2),
    ]
    # 12 -> 5 (< 6: starts 2021-01-01); 6 (not back by more than 1: holds); 7 (>= 6 + 1: ends
    # 2021-03-01); 5: a new decision on 2021-04-01, open-ended.
    s = at(v, events, "2021-12-31")
    got = [(d.triggered_at, d.ends_at, d.status(s.as_of)) for d in s.decisions]
    assert got == [
        (utc(2021, 1, 1), utc(2021, 3, 1), "ended"),
        (utc(2021, 4, 1), None, "in_force"),
    ]
    s_feb = at(v, events, "2021-02-15")
    assert [(d.ends_at, d.status(s_feb.as_of)) for d in s_feb.decisions] == [(None, "in_force")]


GRACE = """
  - {id: low, kind: restriction, title: Restriction, basis: Policy 3,
     direction: below, value: 6, mode: while, grace: 30 days}
"""


def test_while_grace_must_stay_beyond_for_the_grace_period() -> None:
    v = threshold_pack(GRACE)
    events = [ev("a", "offence", "2021-01-01", pts=7)]
    # 5 from 2021-01-01; still below 6 thirty days later: the decision starts 2021-01-31.
    assert at(v, events, "2021-01-30").decisions == ()
    s = at(v, events, "2021-01-31")
    assert triggered(s) == [("low", utc(2021, 1, 31))]


def test_while_grace_is_cancelled_by_a_dip() -> None:
    v = threshold_pack(GRACE)
    events = [
        ev("a", "offence", "2021-01-01", pts=7),
        ev("b", "gain", "2021-01-15", pts=1),
        ev("c", "offence", "2021-01-20", pts=1),
    ]
    # 5 (grace from 2021-01-01); 6 on 2021-01-15 is not below 6: the grace is cancelled; 5 on
    # 2021-01-20 starts it again: the decision starts 2021-02-19, not 2021-01-31.
    assert at(v, events, "2021-02-18").decisions == ()
    s = at(v, events, "2021-12-31")
    assert triggered(s) == [("low", utc(2021, 2, 19))]


def test_notice_effective_at_ends_at_and_status() -> None:
    v = threshold_pack(
        """
  - {id: warn, kind: hearing-notice, title: Hearing, basis: Policy 4,
     direction: below, value: 9, mode: crossing, notice: 30 days, duration: 6 months}
"""
    )
    events = [ev("a", "offence", "2021-01-01", pts=4)]
    # triggered 2021-01-01, effective 30 days later (2021-01-31), ends 6 months after that
    # (2021-07-31). pending before effective_at, in_force until ends_at, then ended.
    s = at(v, events, "2021-01-01")
    (d,) = s.decisions
    assert (d.triggered_at, d.effective_at, d.ends_at) == (
        utc(2021, 1, 1),
        utc(2021, 1, 31),
        utc(2021, 7, 31),
    )
    assert d.kind == "hearing-notice" and d.level == 9 and d.figure == 8
    for as_of, status in [
        ("2021-01-30", "pending"),
        ("2021-01-31T00:00:00", "in_force"),
        ("2021-07-30", "in_force"),
        ("2021-07-31T00:00:00", "ended"),
        ("2022-01-01", "ended"),
    ]:
        st = at(v, events, as_of)
        assert [x.status(st.as_of) for x in st.decisions] == [status], as_of


def test_while_decision_that_ends_during_its_notice_lapses() -> None:
    v = threshold_pack(
        """
  - {id: low, kind: restriction, title: Restriction, basis: Policy 3,
     direction: below, value: 6, mode: while, notice: 30 days}
"""
    )
    events = [ev("a", "offence", "2021-01-01", pts=7), ev("b", "gain", "2021-01-10", pts=3)]
    # 5: triggered 2021-01-01, effective 2021-01-31; 8 on 2021-01-10 ends it before it took
    # effect: cancelled.
    s = at(v, events, "2021-01-05")
    assert [x.status(s.as_of) for x in s.decisions] == ["pending"]
    s = at(v, events, "2021-02-15")
    (d,) = s.decisions
    assert (d.effective_at, d.ends_at) == (utc(2021, 1, 31), utc(2021, 1, 10))
    assert d.status(s.as_of) == "cancelled"


def test_terminal_stops_restorations_and_courses() -> None:
    v = pack(
        """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  offence: {attributes: {pts: integer}}
  course: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code art. 1,
     event: offence, points: {attribute: pts, scale: -1}}
restorations:
  - {id: clean, kind: clean-period, title: Clean record, basis: Code art. 7, after: 1 year}
  - {id: small, kind: small-loss, title: Small loss, basis: Code art. 8,
     after: 3 months, max_loss: 1}
  - {id: awareness, kind: course, title: Awareness course, basis: Code art. 9,
     event: course, points: 4}
thresholds:
  - {id: revoke, kind: revocation, title: Revocation, basis: Code art. 10,
     direction: at_or_below, value: 2, mode: crossing, terminal: true}
"""
    )
    events = [
        ev("o1", "offence", "2021-01-01", pts=10),
        ev("c1", "course", "2021-02-01"),
        ev("o2", "offence", "2021-03-01", pts=1),
    ]
    # o1 -> 2: revocation (terminal). c1 would credit +4, o2 -> 1 would come back on
    # 2021-06-01 (small-loss) and the clean period would restore 12 on 2022-03-01: none applies.
    s = at(v, events, "2022-06-01")
    assert s.points == 1
    assert triggered(s) == [("revoke", utc(2021, 1, 1))]
    assert steps(s, "course") == [("course", "c1", "awareness", 4, 0, 2)]
    assert steps(s, "restoration") == []


# --------------------------------------------------------------------------------------------
# Same-instant order
# --------------------------------------------------------------------------------------------


def test_same_instant_time_driven_effects_come_before_events() -> None:
    v = pack(CLEAN)
    events = [
        ev("m1", "minor", "2021-01-01", pts=3),
        ev("m2", "minor", "2023-01-01", pts=1),
    ]
    # The clean period of m1 is due 2023-01-01 00:00, the instant of m2: the restoration comes
    # first (12), then m2 (11). Event first, m2 would have interrupted it (8).
    s = at(v, events, "2023-01-01")
    assert s.points == 11
    assert [(ln.kind, ln.at) for ln in s.lines[1:]] == [
        ("restoration", utc(2023, 1, 1)),
        ("entry", utc(2023, 1, 1)),
    ]


def test_same_instant_course_credit_before_an_event() -> None:
    v = pack(COURSE)
    events = [
        ev("o1", "offence", "2021-01-01", pts=10),
        ev("c1", "course", "2021-02-01"),
        ev("o2", "offence", "2021-03-03", pts=2),
    ]
    # 2; the credit of c1 is due 2021-03-03 00:00, the instant of o2: credit first (6), then o2
    # (4). Event first, the balance would be at the floor and the course refused (0).
    assert at(v, events, "2021-03-03").points == 4


@pytest.mark.parametrize(
    ("loss_id", "gain_id", "expected"),
    [
        # a-loss before b-gain: 12 -> 9 -> 12
        ("a-loss", "b-gain", 12),
        # a-gain before b-loss: 12 -> 12 (applied 0) -> 9
        ("b-loss", "a-gain", 9),
    ],
)
def test_same_instant_events_by_id(loss_id: str, gain_id: str, expected: int) -> None:
    v = pack(
        """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  offence: {}
  good_deed: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code art. 1,
     event: offence, points: -3}
  - {id: good-deed, title: Good deed, category: community-contribution, basis: Code art. 2,
     event: good_deed, points: 3}
"""
    )
    one = [ev(loss_id, "offence", "2021-05-05T10:00"), ev(gain_id, "good_deed", "2021-05-05T10:00")]
    for events in (one, one[::-1]):
        assert at(v, events, "2021-05-05").points == expected


def test_same_event_rules_in_file_order() -> None:
    v = pack(
        """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  swap: {}
rules:
  - {id: bonus, title: Bonus, category: community-contribution, basis: Code art. 1,
     event: swap, points: 3}
  - {id: malus, title: Malus, category: traffic, basis: Code art. 2,
     event: swap, points: -3}
"""
    )
    # bonus first: 12 -> 12 (applied 0); then malus -> 9. (malus first would end at 12.)
    s = at(v, [ev("x", "swap", "2021-05-05")], "2021-05-05")
    assert s.points == 9
    assert steps(s) == [("entry", "x", "bonus", 3, 0, 12), ("entry", "x", "malus", -3, -3, 9)]


# --------------------------------------------------------------------------------------------
# Version in force, explanation lines, upcoming
# --------------------------------------------------------------------------------------------

TWO_VERSIONS = """
domain: town
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Test scheme
purpose: Testing versions.
retention: 5 years
scheme: {kind: balance, start: 20, floor: 0, ceiling: 20}
event_types:
  offence: {}
  litter: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code 2020 art. 1,
     event: offence, points: -2}
---
domain: town
version: "2"
effective_from: 2022-01-01
timezone: UTC
title: Test scheme
purpose: Testing versions.
retention: 5 years
scheme: {kind: balance, start: 20, floor: 0, ceiling: 20}
event_types:
  offence: {}
  litter: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code 2022 art. 1,
     event: offence, points: -5}
  - {id: littering, title: Littering, category: environment, basis: Code 2022 art. 2,
     event: litter, points: -1}
"""


def test_each_event_is_judged_by_the_version_in_force_at_its_date() -> None:
    v = pack(TWO_VERSIONS, head="")
    events = [
        ev("o1", "offence", "2021-06-01"),
        ev("l1", "litter", "2021-07-01"),
        ev("o4", "offence", "2021-12-31T23:59:59"),
        ev("o3", "offence", "2022-01-01"),
        ev("o2", "offence", "2022-02-01"),
        ev("l2", "litter", "2022-03-01"),
    ]
    # v1 until 2022-01-01 00:00 (exclusive), v2 from that instant on.
    # o1 -2 (v1) -> 18; l1: no rule in v1 -> 18; o4 -2 (v1) -> 16; o3 -5 (v2) -> 11;
    # o2 -5 (v2) -> 6; l2 -1 (v2) -> 5. l1 never gets v2's littering rule.
    assert at(v, events, "2021-12-31").points == 16
    s = at(v, events, "2022-12-31")
    assert s.points == 5
    assert s.pack_version == "2"
    got = [
        (ln.kind, ln.event_id, ln.rule_id, ln.pack_version, ln.delta, ln.applied) for ln in s.lines
    ]
    assert got == [
        ("entry", "o1", "offence", "1", -2, -2),
        ("no-rule", "l1", None, "1", 0, 0),
        ("entry", "o4", "offence", "1", -2, -2),
        ("entry", "o3", "offence", "2", -5, -5),
        ("entry", "o2", "offence", "2", -5, -5),
        ("entry", "l2", "littering", "2", -1, -1),
    ]


def test_explanation_lines_carry_event_rule_version_delta_and_applied() -> None:
    v = pack(CLAMP)
    events = [ev("big", "offence", "2021-03-04T05:06", pts=15)]
    # 10 - 15 clamps to 0: nominal -15, applied -10.
    s = at(v, events, "2021-12-31")
    (ln,) = s.lines
    assert isinstance(ln, Line)
    assert (ln.at, ln.kind, ln.event_id, ln.rule_id, ln.pack_version) == (
        utc(2021, 3, 4, 5, 6),
        "entry",
        "big",
        "offence",
        "1",
    )
    assert (ln.delta, ln.applied, ln.figure) == (-15, -10, 0)
    assert ln.reason


def test_upcoming_lists_the_next_scheduled_changes_after_as_of() -> None:
    v = pack(EXPIRY)
    events = [
        ev("e1", "offence", "2021-01-01", pts=3),
        ev("e2", "offence", "2021-06-01", pts=1),
    ]
    # start 5: e1 -> 2, e2 -> 1. e1 stops counting 2022-01-01 (+3 -> 4), e2 2022-06-01 (+1 -> 5).
    s = at(v, events, "2021-12-31")
    assert s.points == 1
    assert [(u.at, u.kind, u.event_id, u.applied, u.figure) for u in s.upcoming] == [
        (utc(2022, 1, 1), "expiry", "e1", 3, 4),
        (utc(2022, 6, 1), "expiry", "e2", 1, 5),
    ]
    # at 2022-01-01 00:00 the first expiry is no longer upcoming: it is part of the record.
    s = at(v, events, "2022-01-01T00:00:00")
    assert s.points == 4
    assert [(u.at, u.event_id) for u in s.upcoming] == [(utc(2022, 6, 1), "e2")]
    assert s.lines[-1].kind == "expiry"


# --------------------------------------------------------------------------------------------
# Same-instant order: grace checks, and decisions listed in file order
# --------------------------------------------------------------------------------------------


def test_same_instant_restorations_come_before_grace_checks() -> None:
    v = pack(
        """
scheme: {kind: balance, start: 7, floor: 0, ceiling: 12}
event_types:
  offence: {attributes: {pts: integer}}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code art. 1,
     event: offence, points: {attribute: pts, scale: -1}}
restorations:
  - {id: small, kind: small-loss, title: Small loss, basis: Code art. 8,
     after: 6 months, max_loss: 2}
thresholds:
  - {id: low, kind: restriction, title: Restriction, basis: Policy 3,
     direction: below, value: 6, mode: while, grace: 6 months}
"""
    )
    events = [ev("a", "offence", "2021-01-01", pts=2)]
    # 7 - 2 = 5 (below 6: grace until 2021-07-01). On 2021-07-01 00:00 the small-loss return
    # (restorations) comes before the grace check: 7, the grace is cancelled, no decision.
    s = at(v, events, "2021-12-31")
    assert s.points == 7
    assert s.decisions == ()


def test_same_instant_grace_check_comes_before_events() -> None:
    v = threshold_pack(GRACE)
    events = [ev("a", "offence", "2021-01-01", pts=7), ev("b", "gain", "2021-01-31", pts=2)]
    # 5 from 2021-01-01; on 2021-01-31 00:00 the grace check (phase 2) comes before b (phase 3):
    # the decision starts at that instant, then b -> 7 (back past 6) ends it at that instant.
    s = at(v, events, "2021-12-31")
    assert [(d.triggered_at, d.ends_at) for d in s.decisions] == [
        (utc(2021, 1, 31), utc(2021, 1, 31))
    ]


def test_decisions_of_one_instant_are_listed_in_the_order_of_their_steps() -> None:
    v = threshold_pack(
        """
  - {id: first, kind: warning-letter, title: First in the file, basis: Policy 1,
     direction: below, value: 6, mode: crossing}
  - {id: second, kind: warning-letter, title: Second in the file, basis: Policy 1,
     direction: below, value: 10, mode: crossing}
"""
    )
    events = [
        ev("a", "offence", "2021-05-05T10:00", pts=3),
        ev("b", "offence", "2021-05-05T10:00", pts=4),
    ]
    # a (first by id): 12 -> 9, below 10: `second`. b: 9 -> 5, below 6: `first`. Both on the
    # same instant, from two steps: listed in the order of the steps (docs, "Thresholds and
    # decisions"), second then first.
    s = at(v, events, "2021-05-05")
    assert [(d.threshold_id, d.triggered_at) for d in s.decisions] == [
        ("second", utc(2021, 5, 5, 10)),
        ("first", utc(2021, 5, 5, 10)),
    ]


def test_a_grace_check_decision_comes_before_an_event_decision_of_the_same_instant() -> None:
    v = threshold_pack(
        """
  - {id: warn, kind: warning-letter, title: Warning letter, basis: Policy 1,
     direction: below, value: 4, mode: crossing}
  - {id: low, kind: restriction, title: Restriction, basis: Policy 3,
     direction: below, value: 6, mode: while, grace: 30 days}
"""
    )
    events = [ev("a", "offence", "2021-01-01", pts=7), ev("b", "offence", "2021-01-31", pts=2)]
    # a: 5 (below 6: grace until 2021-01-31 00:00). At 2021-01-31 00:00 the grace check starts
    # `low`, then b: 3 < 4 makes `warn`. Grace checks run before events on an instant, and
    # decisions are listed in the order of their steps: low then warn.
    s = at(v, events, "2021-12-31")
    assert [(d.threshold_id, d.triggered_at) for d in s.decisions] == [
        ("low", utc(2021, 1, 31)),
        ("warn", utc(2021, 1, 31)),
    ]


def test_a_restoration_clock_uses_the_version_in_force_at_the_loss() -> None:
    text = """
domain: town
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Test scheme
purpose: Testing versions.
retention: 5 years
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  offence: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code 2020 art. 1,
     event: offence, points: -3}
restorations:
  - {id: clean, kind: clean-period, title: Clean record, basis: Code 2020 art. 9,
     after: 2 years}
---
domain: town
version: "2"
effective_from: 2022-01-01
timezone: UTC
title: Test scheme
purpose: Testing versions.
retention: 5 years
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  offence: {}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code 2022 art. 1,
     event: offence, points: -3}
restorations:
  - {id: clean, kind: clean-period, title: Clean record, basis: Code 2022 art. 9,
     after: 1 year}
"""
    v = pack(text, head="")
    # A loss on 2021-06-01 (v1) keeps v1's 2 years: back on 2023-06-01, not 2022-06-01.
    early = [ev("o1", "offence", "2021-06-01")]
    assert at(v, early, "2022-06-01").points == 9
    assert at(v, early, "2023-05-31").points == 9
    assert at(v, early, "2023-06-01").points == 12
    # A loss on 2022-03-01 (v2) gets v2's 1 year: back on 2023-03-01.
    late = [ev("o2", "offence", "2022-03-01")]
    assert at(v, late, "2023-02-28").points == 9
    assert at(v, late, "2023-03-01").points == 12


def test_an_entry_returned_by_its_expiry_is_not_returned_again_by_small_loss() -> None:
    v = pack(
        """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  minor: {attributes: {pts: integer}}
  other: {attributes: {pts: integer}}
rules:
  - {id: minor, title: Minor offence, category: traffic, basis: Code art. 1,
     event: minor, points: {attribute: pts, scale: -1}, counts_for: 6 months}
  - {id: other, title: Other offence, category: traffic, basis: Code art. 2,
     event: other, points: {attribute: pts, scale: -1}}
restorations:
  - {id: small, kind: small-loss, title: Small loss, basis: Code art. 8,
     after: 6 months, max_loss: 2}
"""
    )
    events = [ev("c", "other", "2020-12-01", pts=5), ev("a", "minor", "2021-01-01", pts=2)]
    # c -> 7 (too big for small-loss); a -> 5, small (2 <= 2) and counting 6 months: both its
    # expiry (phase 1) and its small-loss return (phase 2) fall on 2021-07-01 00:00. The expiry
    # gives back its 2 -> 7; the small-loss return finds it already returned: still 7 (not 9).
    s = at(v, events, "2021-12-31")
    assert s.points == 7
    assert steps(s, "expiry", "restoration") == [("expiry", "a", "minor", 2, 2, 7)]


def test_after_a_reset_other_thresholds_see_the_figure_back_at_zero() -> None:
    extra = """
thresholds:
  - {id: watch, kind: warning-letter, title: Watch list, basis: League rule 8,
     direction: at_or_above, value: 3, mode: crossing, margin: 1}
  - {id: ban, kind: suspension, title: Suspension, basis: League rule 9,
     direction: at_or_above, value: 6, mode: crossing, resets: true}
"""
    v = window_pack("inclusive", extra)
    events = [
        ev("f1", "foul", "2021-01-01", pts=3),
        ev("f2", "foul", "2021-02-01", pts=3),
        ev("f3", "foul", "2021-03-01", pts=3),
    ]
    # f1: 3 >= 3, `watch`. f2: 6 >= 6, `ban`, and the 6 counted stop counting: the window sum
    # is 0, which is below 3 - 1: `watch` re-arms (thresholds are checked after every step, and
    # the reset is one). f3: 0 -> 3 moves beyond 3 again: a second `watch`.
    s = at(v, events, "2021-12-31")
    assert s.points == 3
    assert triggered(s) == [
        ("watch", utc(2021, 1, 1)),
        ("ban", utc(2021, 2, 1)),
        ("watch", utc(2021, 3, 1)),
    ]


def test_a_reset_ends_a_while_decision_at_that_instant() -> None:
    extra = """
thresholds:
  - {id: hot, kind: supervision, title: Supervision, basis: League rule 8,
     direction: at_or_above, value: 5, mode: while}
  - {id: ban, kind: suspension, title: Suspension, basis: League rule 9,
     direction: at_or_above, value: 6, mode: crossing, resets: true}
"""
    v = window_pack("inclusive", extra)
    events = [
        ev("f1", "foul", "2021-01-01", pts=3),
        ev("f2", "foul", "2021-02-01", pts=3),
        ev("f3", "foul", "2021-03-01", pts=1),
    ]
    # f2: 6 >= 5 starts `hot` and 6 >= 6 makes `ban`, whose reset takes the figure to 0: back
    # below 5, so `hot` ends at that same instant, 2021-02-01 (not at the next step, f3).
    s = at(v, events, "2021-12-31")
    hot = [d for d in s.decisions if d.threshold_id == "hot"]
    assert [(d.triggered_at, d.ends_at) for d in hot] == [(utc(2021, 2, 1), utc(2021, 2, 1))]


def test_a_while_threshold_of_a_later_version_applies_to_a_figure_already_beyond() -> None:
    common = """
timezone: UTC
title: Test scheme
purpose: Testing versions.
retention: 5 years
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  offence: {attributes: {pts: integer}}
rules:
  - {id: offence, title: Offence, category: traffic, basis: Code art. 1,
     event: offence, points: {attribute: pts, scale: -1}}
"""
    text = (
        'domain: town\nversion: "1"\neffective_from: 2020-01-01\n'
        + common
        + '---\ndomain: town\nversion: "2"\neffective_from: 2022-01-01\n'
        + common
        + """thresholds:
  - {id: low, kind: restriction, title: Restriction, basis: Policy 3,
     direction: below, value: 6, mode: while}
"""
    )
    v = pack(text, head="")
    events = [
        ev("a", "offence", "2021-06-01", pts=9),
        ev("b", "offence", "2022-03-01", pts=1),
    ]
    # a (v1, no threshold): 3. b (v2): 2, checked after the step against v2's thresholds: below
    # 6, no grace, so the restriction starts on 2022-03-01.
    s = at(v, events, "2022-12-31")
    assert s.points == 2
    assert triggered(s) == [("low", utc(2022, 3, 1))]
