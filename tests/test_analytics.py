"""Operators' tools: what-if against a brute-force replay, the report in a real browser,
issuer oversight, and small-cell suppression in every aggregate."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pointbook.analytics import whatif_kernel
from pointbook.analytics.oversight import oversight
from pointbook.analytics.privacy import Cell, protect
from pointbook.analytics.report import population_report, report_html
from pointbook.analytics.whatif import run_whatif, whatif_html, whatif_view
from pointbook.analytics.whatif_kernel import decision_id, population_scores
from pointbook.cli import app
from pointbook.dates import to_micros
from pointbook.engine import evaluate_subject
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, load_pack_file, load_pack_text
from pointbook.store import SQLiteStore

ROOT = Path(__file__).parent.parent
PACK = ROOT / "examples" / "packs" / "civic-code.yaml"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOW = datetime(2022, 6, 30, tzinfo=UTC)
DOMAIN = "civic-code"
TYPES = [
    ("littering", 30),
    ("dog_fouling", 15),
    ("noise_after_hours", 25),
    ("illegal_dumping", 12),
    ("graffiti", 18),
]
ISSUERS = ["officer-a", "officer-b", "officer-c", "officer-bad"]


def _record(n: int, body: dict[str, Any]) -> RawRecord:
    return RawRecord(n, json.dumps(body), EventIn.model_validate(body), None)


def _events(rng: random.Random) -> Iterator[dict[str, Any]]:
    kinds = [k for k, _ in TYPES]
    weights = [w for _, w in TYPES]
    for i in range(1400):
        subject = f"r-{rng.randrange(200):03d}"
        day = datetime(2020, 9, 10, tzinfo=UTC).toordinal() + rng.randrange(620)
        yield {
            "id": f"cc-{i:05d}",
            "domain": DOMAIN,
            "subject": subject,
            "type": rng.choices(kinds, weights)[0],
            "occurred_at": datetime.fromordinal(day).date().isoformat(),
            "attributes": {},
            "evidence": f"ref-{i}",
            "issuer": rng.choice(ISSUERS),
        }
    # A rarely-seen issuer: its cells cover fewer than 10 subjects.
    for j in range(3):
        yield {
            "id": f"cc-rare-{j}",
            "domain": DOMAIN,
            "subject": f"r-{j:03d}",
            "type": "littering",
            "occurred_at": "2021-03-0" + str(j + 1),
            "attributes": {},
            "evidence": f"rare-{j}",
            "issuer": "officer-rare",
        }


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("analytics") / "town.db"


@pytest.fixture(scope="module")
def ledger(db_path: Path) -> Iterator[Ledger]:
    path = db_path
    clock = {"now": datetime(2020, 9, 1, tzinfo=UTC)}
    led = Ledger(SQLiteStore(path), now=lambda: clock["now"])
    led.publish_file(PACK)
    clock["now"] = NOW
    rng = random.Random(2020)
    report = led.ingest(_record(n, b) for n, b in enumerate(_events(rng), 1))
    assert not report.rejected
    # Appeals: the bad officer's evidence is mostly upheld against, the others' rarely.
    events = led.store.subject_events(DOMAIN, led.store.subjects(DOMAIN))
    by_issuer: dict[str, list[tuple[str, str]]] = {}
    for subject, evs in sorted(events.items()):
        for e in evs:
            by_issuer.setdefault(e.issuer or "", []).append((subject, e.id))
    for issuer in ISSUERS:
        seen: set[str] = set()
        picked = []
        for subject, eid in by_issuer[issuer]:
            if subject not in seen:
                seen.add(subject)
                picked.append((subject, eid))
        for n, (subject, eid) in enumerate(picked[:30]):
            a = led.file_appeal(DOMAIN, subject, "not me", event_id=eid)
            if n < 25:  # the last five stay open
                upheld = n < 22 if issuer == "officer-bad" else n < 3
                led.decide_appeal(a.id, "upheld" if upheld else "dismissed", "rev", "checked")
    yield led
    led.close()


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = PACK.read_text(encoding="utf-8")
    head, tail = text.split("  - id: graffiti\n", 1)
    tail = tail.replace("    points: -50\n", "    points: -80\n", 1)
    path = tmp_path_factory.mktemp("cand") / "civic-code-harsher.yaml"
    path.write_text(head + "  - id: graffiti\n" + tail, encoding="utf-8")
    return path


def _brute_force(ledger: Ledger, cand: list[PackVersion]) -> tuple[int, Counter[str], Counter[str]]:
    """The what-if written plainly (every subject, both packs, compare), counted."""
    plain = _replay_each_subject(ledger, cand)
    return (
        len(plain["changes"]),
        Counter(plain["appeared"].values()),
        Counter(plain["disappeared"].values()),
    )


def test_whatif_counts_match_a_brute_force_replay(ledger: Ledger, candidate: Path) -> None:
    cand = load_pack_file(candidate)
    root = ledger.store.audit_root()
    decisions = ledger.store.current_decisions(DOMAIN)
    w = run_whatif(ledger, DOMAIN, cand, as_of=NOW)
    changed, appeared, disappeared = _brute_force(ledger, cand)
    assert len(w.changes) == changed > 0
    assert w.appeared_by_kind() == dict(appeared)
    assert w.disappeared_by_kind() == dict(disappeared)
    assert appeared["hearing-notice"] > 0, "a harsher graffiti penalty makes new hearing notices"
    assert all(v < 0 for v in w.changes.values())  # a harsher penalty only lowers balances
    # A rules-only change: subjects with no graffiti keep their baseline fold, yet the counts
    # above equal the brute-force replay of every subject under both packs.
    assert 0 < w.reused < w.subjects
    view = whatif_view(w, k=1)
    assert view["summary"]["subjects_changed"] == changed
    assert view["decisions_appearing"] == dict(sorted(appeared.items()))
    assert view["drivers"][0]["rule"] == "graffiti"
    assert {"rule": "graffiti", "change": "changed"}.items() <= view["rule_changes"][0].items()
    # nothing written
    assert ledger.store.audit_root() == root
    assert ledger.store.current_decisions(DOMAIN) == decisions


def test_whatif_from_to_restricts_the_replayed_events(ledger: Ledger, candidate: Path) -> None:
    cand = load_pack_file(candidate)
    tz = ledger.versions(DOMAIN)[0].tz
    start = datetime(2021, 1, 1, tzinfo=tz)
    end = datetime(2021, 6, 30, 23, 59, tzinfo=tz)
    w = run_whatif(ledger, DOMAIN, cand, start=start, end=end)
    full = run_whatif(ledger, DOMAIN, cand, as_of=NOW)
    assert w.as_of == end
    assert 0 < w.events < full.events
    stored = ledger.store.subject_events(DOMAIN, ledger.store.subjects(DOMAIN))
    assert w.events == sum(
        1 for evs in stored.values() for e in evs if start <= e.occurred_at <= end
    )


def test_whatif_cli_json_and_html(
    ledger: Ledger, db_path: Path, candidate: Path, tmp_path: Path
) -> None:
    db = str(db_path)
    out = tmp_path / "whatif.html"
    result = CliRunner().invoke(
        app,
        [
            "whatif",
            DOMAIN,
            str(candidate),
            "--db",
            db,
            "--to",
            "2022-06-30",
            "--json",
            "--html",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["decisions_appearing"]["hearing-notice"] != 0
    assert "subject" not in json.dumps(data).replace("subjects", "")
    page = out.read_text(encoding="utf-8")
    assert page.count('src="data:image/svg+xml;base64,') == 3


def test_small_cells_are_suppressed_in_every_aggregate(
    ledger: Ledger, db_path: Path, candidate: Path
) -> None:
    # whatif JSON
    w = run_whatif(ledger, DOMAIN, load_pack_file(candidate), as_of=NOW)
    small = {kind: n for kind, n in w.appeared_by_kind().items()}
    view = whatif_view(w, k=10_000)
    assert view["summary"]["subjects_changed"] == "<10000"
    assert all(v == "<10000" for v in view["decisions_appearing"].values()) and small
    assert "&lt;10000" in whatif_html(view)
    # report JSON and HTML: the rare issuer's appeals cover nobody, the weekly expiries few
    rep = population_report(ledger, DOMAIN, NOW, k=10)
    flat = json.dumps(rep)
    assert '"<10"' in flat
    for week, value in rep["expiring_next_90_days"].items():
        assert value == 0 or value == "<10" or value >= 10, week
    page = report_html(rep, oversight(ledger, DOMAIN, NOW, k=10))
    assert "&lt;10" in page
    # oversight table: the rare issuer's three events on three subjects
    over = oversight(ledger, DOMAIN, NOW, k=10)
    rare = next(r for r in over["issuers"] if r["issuer"] == "officer-rare")
    assert rare["events"] == "<10" and rare["share_appealed"] == "<10"
    assert rare["flag"] == "no decided appeals"  # never True or False on hidden cells
    result = CliRunner().invoke(
        app, ["oversight", DOMAIN, "--db", str(db_path), "--as-of", "2022-06-30"]
    )
    assert result.exit_code == 0, result.output
    assert "<10" in result.output


def test_protect_suppresses_below_k_and_the_cell_a_total_would_give_away() -> None:
    shown = protect({"a": Cell(40, 40), "b": Cell(3, 3), "c": Cell(12, 12), "d": Cell(0, 0)}, 10)
    assert shown == {"a": 40, "b": "<10", "c": "<10", "d": 0}
    assert protect({"x": Cell(-250, 9)}, 10) == {"x": "<10"}
    assert protect({"x": Cell(-250, 10)}, 10) == {"x": -250}


def test_oversight_flags_the_issuer_whose_appeals_are_upheld_far_more(ledger: Ledger) -> None:
    over = oversight(ledger, DOMAIN, NOW, k=10)
    flags = {r["issuer"]: r["flag"] for r in over["issuers"]}
    assert flags["officer-bad"] is True
    assert [i for i, f in flags.items() if f is True] == ["officer-bad"]
    bad = next(r for r in over["issuers"] if r["issuer"] == "officer-bad")
    assert bad["appealed"] == 30 and bad["decided"] == 25 and bad["upheld"] == 22
    assert bad["share_upheld"] == round(22 / 25, 3)


def test_report_html_is_self_contained_and_its_plots_render(ledger: Ledger, tmp_path: Path) -> None:
    rep = population_report(ledger, DOMAIN, NOW, k=10)
    page = report_html(rep, oversight(ledger, DOMAIN, NOW, k=10))
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<script" not in page and "<link" not in page
    assert page.count("<img ") == 6
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    assert page == report_html(rep, oversight(ledger, DOMAIN, NOW, k=10)), "reproducible"
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: install chromium")
        pytest.skip("install Debian's chromium package to run the browser check")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page_ = browser.new_page(viewport={"width": 1100, "height": 900})
            requests: list[str] = []
            page_.on("request", lambda r: requests.append(r.url))
            page_.goto(out.as_uri())
            widths = page_.eval_on_selector_all(
                "img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"
            )
            assert len(widths) == 6 and all(w > 0 for w in widths), widths
            assert all(u.startswith(("file:", "data:")) for u in requests), requests
            (ROOT / "docs" / "img").mkdir(exist_ok=True)
            page_.screenshot(path=str(ROOT / "docs" / "img" / "report.png"), full_page=True)
        finally:
            browser.close()


def test_whatif_with_a_changed_threshold_replays_every_subject(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A threshold moved (900 -> 950): no subject may keep its baseline fold, and the counts
    still equal the brute-force replay."""
    text = PACK.read_text(encoding="utf-8")
    assert text.count("    value: 900\n") == 1
    path = tmp_path / "civic-code-stricter-hearing.yaml"
    path.write_text(text.replace("    value: 900\n", "    value: 950\n"), encoding="utf-8")
    cand = load_pack_file(path)
    w = run_whatif(ledger, DOMAIN, cand, as_of=NOW)
    changed, appeared, disappeared = _brute_force(ledger, cand)
    assert w.reused == 0
    assert len(w.changes) == changed
    assert w.appeared_by_kind() == dict(appeared)
    assert w.disappeared_by_kind() == dict(disappeared)
    assert appeared["hearing-notice"] > 0


def _replay_each_subject(ledger: Ledger, cand: list[PackVersion]) -> dict[str, Any]:
    """Every figure of a what-if, subject by subject, both packs folded for every subject."""
    published = ledger.versions(DOMAIN)
    out: dict[str, Any] = {"changes": {}, "affected": set(), "appeared": {}, "disappeared": {}}
    rules: dict[str, dict[str, tuple[int, set[str]]]] = {"before": {}, "after": {}}
    for subject in ledger.store.subjects(DOMAIN):
        events = ledger.store.subject_events(DOMAIN, [subject])[subject]
        appeals = ledger.store.appeals(DOMAIN, [subject]).get(subject, [])
        gone = {a.decision_id for a in appeals if a.outcome == "upheld"}
        before = evaluate_subject(published, events, NOW, subject=subject, appeals=appeals)
        after = evaluate_subject(cand, events, NOW, subject=subject, appeals=appeals)
        if before.points != after.points:
            out["changes"][subject] = after.points - before.points
        b = {d.id: d.kind for d in before.decisions if d.id not in gone}
        a = {d.id: d.kind for d in after.decisions if d.id not in gone}
        if (
            before.points != after.points
            or a != b
            or [x.applied for x in before.entries] != [x.applied for x in after.entries]
        ):
            out["affected"].add(subject)
        out["appeared"].update({i: a[i] for i in a.keys() - b.keys()})
        out["disappeared"].update({i: b[i] for i in b.keys() - a.keys()})
        for side, state in (("before", before), ("after", after)):
            for st in state.entries:
                if st.counts:
                    pts, who = rules[side].get(st.entry.rule_id, (0, set()))
                    rules[side][st.entry.rule_id] = (pts + st.applied, who | {subject})
    out["rules_before"], out["rules_after"] = rules["before"], rules["after"]
    return out


@pytest.mark.parametrize("chunk", [1, 7, 500])
def test_whatif_judges_a_chunk_at_once_and_matches_each_subject_replayed(
    ledger: Ledger, candidate: Path, chunk: int
) -> None:
    """Subjects with and without graffiti share a chunk: those without keep their baseline fold
    (the only rule changed is graffiti's), the others are folded again; every figure equals
    folding every subject under both packs, whatever the chunk size."""
    cand = load_pack_file(candidate)
    w = run_whatif(ledger, DOMAIN, cand, as_of=NOW, chunk=chunk)
    want = _replay_each_subject(ledger, cand)
    stored = ledger.store.subject_events(DOMAIN, ledger.store.subjects(DOMAIN))
    with_graffiti = {s for s, evs in stored.items() if any(e.type == "graffiti" for e in evs)}
    assert 0 < len(with_graffiti) < len(stored)
    assert (w.subjects, w.reused) == (len(stored), len(stored) - len(with_graffiti))
    assert w.changes == want["changes"] and w.changes
    assert w.affected == want["affected"]
    assert w.appeared_kind == want["appeared"] and w.appeared_kind
    assert w.disappeared_kind == want["disappeared"]
    assert w.rules_before == want["rules_before"]
    assert w.rules_after == want["rules_after"]
    assert set(w.rule_subjects_changed) == {"graffiti"}
    assert w.rule_subjects_changed["graffiti"] <= with_graffiti


def test_whatif_of_the_published_rules_reuses_every_fold_without_judging(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate whose rules are the published ones touches no event type: nothing is judged
    twice, every subject keeps its baseline fold and nothing changes."""
    import pointbook.analytics.whatif as whatif

    def no_judging(items: object) -> None:
        raise AssertionError("no event type is touched: nothing to judge")

    monkeypatch.setattr(whatif, "judge_batch", no_judging)
    w = run_whatif(ledger, DOMAIN, load_pack_file(PACK), as_of=NOW)
    assert w.subjects > 0 and w.reused == w.subjects
    assert not (w.changes or w.affected or w.appeared_kind or w.disappeared_kind)
    assert w.rules_before == w.rules_after and not w.rule_subjects_changed


# --------------------------------------------------------------------------------------------
# The compiled fold's what-if (analytics/whatif_kernel.py) against the reference fold's
# --------------------------------------------------------------------------------------------


def _fields(w: Any) -> dict[str, Any]:
    """Every figure of a what-if but its timing, the path it took and its reuse count."""
    return {
        k: v
        for k, v in vars(w).items()
        if k not in ("seconds", "path", "reused") and not k.startswith("_")
    }


def _harsher_graffiti_and_stricter_hearing(tmp: Path) -> list[Path]:
    text = PACK.read_text(encoding="utf-8")
    head, tail = text.split("  - id: graffiti\n", 1)
    harsher = tmp / "harsher.yaml"
    harsher.write_text(
        head + "  - id: graffiti\n" + tail.replace("    points: -50\n", "    points: -80\n", 1),
        encoding="utf-8",
    )
    stricter = tmp / "stricter.yaml"
    stricter.write_text(text.replace("    value: 900\n", "    value: 950\n"), encoding="utf-8")
    # Graffiti counted only where a location is reported (none of these reports has one): a
    # rules-only change that takes entries away rather than changing their points.
    located = tmp / "located.yaml"
    located.write_text(
        head
        + "  - id: graffiti\n"
        + tail.replace(
            "    points: -50\n",
            "    when: {field: location, present: true}\n    points: -50\n",
            1,
        ).replace(
            "      match: [{}]\n      no_match: []\n",
            "      match: [{location: Pingjiang Rd}]\n      no_match: [{}]\n",
            1,
        ),
        encoding="utf-8",
    )
    return [harsher, stricter, located]


def test_whatif_by_the_kernel_equals_the_reference_fold(ledger: Ledger, tmp_path: Path) -> None:
    """civic-code is a pack the kernel folds: subjects without appeals go through it, those
    with appeals through the reference fold; every figure equals replaying all by the fold,
    for a rules-only change and a moved threshold, over all events and over a window."""
    tz = ledger.versions(DOMAIN)[0].tz
    windows = [
        (None, None, NOW),
        (datetime(2021, 1, 1, tzinfo=tz), datetime(2021, 6, 30, 23, 59, tzinfo=tz), None),
    ]
    for path in _harsher_graffiti_and_stricter_hearing(tmp_path):
        cand = load_pack_file(path)
        for start, end, as_of in windows:
            slow = run_whatif(
                ledger, DOMAIN, cand, as_of=as_of, start=start, end=end, use_kernel=False
            )
            # The rows read subject by subject through the index, or each table in its own
            # order and regrouped (a large SQLite store's way): the same figures.
            for scan in (False, True):
                fast = run_whatif(
                    ledger,
                    DOMAIN,
                    cand,
                    as_of=as_of,
                    start=start,
                    end=end,
                    chunk=37,
                    kernel_chunk=23,
                    kernel_scan=scan,
                )
                assert (fast.path, slow.path) == ("kernel", "fold")
                assert _fields(fast) == _fields(slow)
                assert fast.affected and fast.appeared_kind


def test_whatif_falls_back_to_the_fold_for_a_pack_the_kernel_does_not_model(
    ledger: Ledger, tmp_path: Path
) -> None:
    text = PACK.read_text(encoding="utf-8")
    assert "\nthresholds:\n" in text
    extra = (
        "restorations:\n"
        "  - id: amnesty\n"
        "    kind: clean-period\n"
        "    title: Amnesty\n"
        "    basis: Test fixture\n"
        "    after: 6 months\n"
        "thresholds:\n"
    )
    path = tmp_path / "with-amnesty.yaml"
    path.write_text(text.replace("\nthresholds:\n", "\n" + extra, 1), encoding="utf-8")
    # A restoration the kernel models: the same figures as the reference fold.
    cand = load_pack_file(path)
    w = run_whatif(ledger, DOMAIN, cand, as_of=NOW, kernel_chunk=31)
    assert w.path == "kernel"
    assert w.changes and all(v > 0 for v in w.changes.values())
    assert _fields(w) == _fields(run_whatif(ledger, DOMAIN, cand, as_of=NOW, use_kernel=False))
    # A contest window it does not: the reference fold replays every subject.
    contested = tmp_path / "contested.yaml"
    assert "\nscheme:" in text
    contested.write_text(
        text.replace("\nscheme:", "\ncontest_window: 30 days\nscheme:", 1), encoding="utf-8"
    )
    w = run_whatif(ledger, DOMAIN, load_pack_file(contested), as_of=NOW)
    assert w.path == "fold"


def test_whatif_by_the_kernel_on_both_backends(store_factory: Any, tmp_path: Path) -> None:
    """The kernel path reads its columns through the store (`population_rows`): the same
    figures as the reference fold on SQLite and PostgreSQL, appeals and erasure included."""
    clock = {"now": datetime(2020, 9, 1, tzinfo=UTC)}
    led = Ledger(store_factory(), now=lambda: clock["now"])
    led.publish_file(PACK)
    clock["now"] = NOW
    rng = random.Random(7)
    bodies = [b for _, b in zip(range(500), _events(rng), strict=False)]
    report = led.ingest(_record(n, b) for n, b in enumerate(bodies, 1))
    assert not report.rejected
    first = bodies[0]
    appeal = led.file_appeal(DOMAIN, first["subject"], "not me", event_id=first["id"])
    led.decide_appeal(appeal.id, "upheld", "rev", "checked")
    # Details erased after retention: those events count by their stored entries.
    assert led.store.erase_details(DOMAIN, datetime(2021, 1, 1, tzinfo=UTC), NOW) > 0
    for path in _harsher_graffiti_and_stricter_hearing(tmp_path):
        cand = load_pack_file(path)
        fast = run_whatif(led, DOMAIN, cand, as_of=NOW, chunk=50, kernel_chunk=9)
        slow = run_whatif(led, DOMAIN, cand, as_of=NOW, use_kernel=False)
        assert fast.path == "kernel"
        assert _fields(fast) == _fields(slow)
        assert fast.affected


CAPPED_PACK = """\
domain: club
version: "1"
effective_from: 2024-01-01
timezone: Europe/Paris
title: Club points
purpose: Testing the kernel's what-if.
retention: 5 years
scheme: {kind: balance, start: 10, floor: 0, ceiling: 60, daily_cap: 7}
event_types:
  help: {description: Helped}
  foul: {description: Fouled}
rules:
  - {id: help-points, title: Help, category: community-contribution, basis: test,
     event: help, points: 3, daily_cap: true}
  - {id: help-bonus, title: Help bonus, category: community-contribution, basis: test,
     event: help, points: 2, daily_cap: true}
  - {id: foul, title: Foul, category: public-order, basis: test, event: foul, points: -6,
     counts_for: 1 week, daily_cap: true}
restorations:
  - {id: helper-bonus, kind: course, title: Helper bonus, basis: test, event: help, points: 2,
     min_interval: 1 week}
thresholds:
  - {id: warn, kind: warning, title: Warning, basis: test, direction: at_or_below,
     levels: [{value: 6}, {value: 3}], mode: crossing, margin: 1}
  - {id: star, kind: star, title: Star, basis: test, direction: at_or_above, value: 20,
     mode: while}
"""


def test_whatif_by_the_kernel_keeps_the_folds_order_of_steps(
    store_factory: Any, tmp_path: Path
) -> None:
    """Several events of one instant, two entries per event, a daily cap counted on local
    (Paris) days and expiries meeting events: the kernel's columns must be in the fold's
    order for its figures to be the fold's."""
    pack_path = tmp_path / "club.yaml"
    pack_path.write_text(CAPPED_PACK, encoding="utf-8")
    cand_path = tmp_path / "club-harsher.yaml"
    cand_path.write_text(CAPPED_PACK.replace("points: -6", "points: -9"), encoding="utf-8")
    clock = {"now": datetime(2023, 12, 1, tzinfo=UTC)}
    led = Ledger(store_factory(), now=lambda: clock["now"])
    led.publish_file(pack_path)
    clock["now"] = datetime(2024, 6, 1, tzinfo=UTC)
    rng = random.Random(11)
    bodies = []
    for i in range(900):
        # 22:30 and 23:30 UTC fall on the next Paris day in winter: the cap's day is local.
        hour = rng.choice(["T08:00:00Z", "T22:30:00Z", "T23:30:00Z"])
        day = 1 + rng.randrange(60)
        month, dom = (1, day) if day <= 31 else (2, day - 31)
        bodies.append(
            {
                "id": f"c-{rng.randrange(10**6):06d}-{i}",
                "domain": "club",
                "subject": f"m-{rng.randrange(25):02d}",
                "type": rng.choice(["help", "help", "foul"]),
                "occurred_at": f"2024-{month:02d}-{dom:02d}{hour}",
                "attributes": {},
                "evidence": f"ref-{i}",
            }
        )
    report = led.ingest(_record(n, b) for n, b in enumerate(bodies, 1))
    assert not report.rejected
    # Details erased before February: those events count by their stored entries (two per
    # help event, read back in rule id order, not pack order).
    assert led.store.erase_details("club", datetime(2024, 2, 1, tzinfo=UTC), led.now()) > 0
    moved = tmp_path / "club-course-on-fouls.yaml"
    moved.write_text(CAPPED_PACK.replace("event: help, points: 2", "event: foul, points: 2"))
    as_of = datetime(2024, 3, 5, tzinfo=UTC)
    for path in (cand_path, moved):
        cand = load_pack_file(path)
        slow = run_whatif(led, "club", cand, as_of=as_of, use_kernel=False)
        for scan in (False, True):
            fast = run_whatif(
                led, "club", cand, as_of=as_of, chunk=4, kernel_chunk=3, kernel_scan=scan
            )
            assert fast.path == "kernel"
            assert _fields(fast) == _fields(slow)
            assert fast.changes
    cand = load_pack_file(cand_path)
    fast = run_whatif(led, "club", cand, as_of=as_of, kernel_chunk=3)
    assert fast.changes and fast.appeared_kind


def test_whatif_by_the_kernel_on_the_french_licence(
    store_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fr-driving (two versions, the four restorations, courses, a terminal threshold) through
    the kernel: invalidation moved from 0 to 2 points in both versions, and a red light made
    a 5-point offence; every figure equals the reference fold's, on both backends, with
    appeals on some subjects and details erased on others. The scanned read takes many small
    batches here, as a large store's does."""
    monkeypatch.setattr(whatif_kernel, "SCAN_BATCH", 97)
    from pointbook.bench import generate_workload, open_ledger
    from pointbook.bench.whatif import fr_driving_candidate

    led = open_ledger(store_factory())
    bodies = [b for b in generate_workload(4000, 400, 5) if b["domain"] == "fr-driving"]
    report = led.ingest(_record(n, b) for n, b in enumerate(bodies, 1))
    assert not report.rejected and report.accepted == len(bodies) > 300
    stored = led.store.subject_events("fr-driving", led.store.subjects("fr-driving"))
    contested = [evs[0] for evs in stored.values() if evs][:6]
    for n, e in enumerate(contested):
        appeal = led.file_appeal("fr-driving", e.subject, "not me", event_id=e.id)
        if n % 2:
            led.decide_appeal(appeal.id, "upheld", "rev", "checked")
    assert led.store.erase_details("fr-driving", datetime(2022, 1, 1, tzinfo=UTC), led.now()) > 0
    moved = fr_driving_candidate()
    harsher = [
        load_pack_text(
            v.text.replace(
                "    points: -4\n    tags: [class-4]", "    points: -5\n    tags: [class-4]", 1
            ),
            "harsher.yaml",
        )[0]
        for v in led.versions("fr-driving")
    ]
    # Speeding by 20 to 24 km/h no longer costs points: fewer entries on the candidate's side
    # (the sides' entries then differ in number, not only in points).
    narrower = [
        load_pack_text(
            v.text.replace(
                "when: {field: over_kmh, ge: 20, lt: 30}", "when: {field: over_kmh, ge: 25, lt: 30}"
            ).replace(
                "        - {over_kmh: 20, limit_kmh: 50}\n        - {over_kmh: 20, limit_kmh: 51}\n",
                "        - {over_kmh: 25, limit_kmh: 50}\n        - {over_kmh: 25, limit_kmh: 51}\n",
            ),
            "narrower.yaml",
        )[0]
        for v in led.versions("fr-driving")
    ]
    published = led.versions("fr-driving")
    assert [v.text != w.text for v, w in zip(harsher, published, strict=True)] == [True, True]
    assert [v.text != w.text for v, w in zip(narrower, published, strict=True)] == [True, True]
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    # The published side alone (bench recompute's compiled re-score): each subject's points
    # and decisions as the fold gives them.
    plain = [s for s in led.store.subjects("fr-driving") if s not in {e.subject for e in contested}]
    for scan in (False, True):
        scored = {}
        for names, side in population_scores(
            led.store, "fr-driving", published, plain, as_of, chunk=33, scan=scan
        ):
            ids: dict[str, set[str]] = {n: set() for n in names}
            for row in side.decisions.iter_rows(named=True):
                ids[names[row["s"]]].add(decision_id("fr-driving", names[row["s"]], row))
            scored.update({n: (int(side.points[k]), ids[n]) for k, n in enumerate(names)})
        assert len(scored) == len(plain)
        for subject in plain:
            st = led.state("fr-driving", subject, as_of)
            assert scored[subject] == (st.points, {d.id for d in st.decisions}), subject
    for cand in (moved, harsher, narrower):
        slow = run_whatif(led, "fr-driving", cand, as_of=as_of, use_kernel=False)
        for scan in (False, True):
            fast = run_whatif(
                led, "fr-driving", cand, as_of=as_of, kernel_chunk=40, kernel_scan=scan
            )
            assert fast.path == "kernel"
            assert _fields(fast) == _fields(slow)
            assert fast.affected


def test_whatif_reports_its_progress_over_every_subject(ledger: Ledger, candidate: Path) -> None:
    """Both paths tell how many subjects they got through, slice by slice: in all, every
    subject of the domain (with a window, those with no event in it too). A scanned read
    also tells how many stored rows each of its batches brought: in all, every row of the
    domain's events (in the window) with their entries."""
    cand = load_pack_file(candidate)
    everyone = ledger.store.subjects(DOMAIN)
    window = {"start": datetime(2021, 1, 1, tzinfo=UTC), "end": datetime(2021, 3, 1, tzinfo=UTC)}
    for kernel, scan in ((True, False), (True, True), (False, None)):
        for bounds in ({}, window):
            steps: list[int] = []
            read: list[int] = []
            run_whatif(
                ledger,
                DOMAIN,
                cand,
                as_of=NOW,
                use_kernel=kernel,
                chunk=37,
                kernel_chunk=17,
                kernel_scan=scan,
                progress=steps.append,
                reading=read.append,
                **bounds,
            )
            assert sum(steps) == len(everyone) and len(steps) > 1, (kernel, bounds)
            if scan:
                since, until = (
                    to_micros(b) if b else None for b in (bounds.get("start"), bounds.get("end"))
                )
                rows = ledger.store.population_rows(DOMAIN, everyone, since, until, [])
                assert sum(read) == len(rows) > 0, bounds
            else:
                assert read == []
