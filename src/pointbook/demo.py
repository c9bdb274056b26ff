"""The demo: the five reference packs, a seeded synthetic population, and a summary.

The population is reproducible (same seed, same file) and spans five years. About 2% of the
events are written out of date order, as late reports, to show that results do not depend on
arrival order.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

START = date(2021, 1, 1)
DAYS = 5 * 365 + 1  # 2021-01-01 .. 2025-12-31

# Share of subjects and of events per domain.
SHARES: dict[str, tuple[float, float]] = {
    "fr-driving": (0.40, 0.06),
    "uk-driving": (0.20, 0.015),
    "forum": (0.22, 0.892),
    "cricket": (0.03, 0.003),
    "civic-code": (0.15, 0.03),
}
PACK_FILES = [
    "fr-driving.yaml",
    "uk-driving.yaml",
    "forum-reputation.yaml",
    "cricket-conduct.yaml",
    "civic-code.yaml",
]


def packs_dir() -> Path:
    """The reference packs: ./examples/packs in a checkout, else the copy shipped in the package."""
    local = Path("examples/packs")
    if local.is_dir():
        return local
    return Path(__file__).parent / "packs"


@dataclass(frozen=True)
class DemoSize:
    subjects: int
    events: int
    seed: int


def _day(rng: random.Random) -> date:
    return START + timedelta(days=rng.randrange(DAYS))


def _fr(rng: random.Random, subject: str) -> dict[str, Any]:
    r = rng.random()
    if r < 0.55:
        limit = rng.choice([30, 50, 50, 80, 80, 90, 110, 130])
        over = min(90, int(rng.expovariate(1 / 12)) + 1)
        return {"type": "speeding", "attributes": {"over_kmh": over, "limit_kmh": limit}}
    if r < 0.65:
        return {"type": "red_light", "attributes": {}}
    if r < 0.78:
        return {"type": "phone_use", "attributes": {}}
    if r < 0.85:
        return {"type": "no_seatbelt", "attributes": {}}
    if r < 0.90:
        return {
            "type": "drink_driving",
            "attributes": {"bac_g_per_l": round(rng.uniform(0.3, 1.6), 2)},
        }
    return {"type": "course_completed", "attributes": {}}


def _uk(rng: random.Random, subject: str) -> dict[str, Any]:
    points = rng.choices([3, 4, 6, 3], weights=[70, 10, 15, 5])[0]
    code = {3: "SP30", 4: "CD10", 6: "CU80"}[points]
    return {"type": "endorsement", "attributes": {"points": points, "offence_code": code}}


_FORUM = [
    ("answer_upvoted", 50),
    ("question_upvoted", 18),
    ("answer_accepted", 6),
    ("accepted_an_answer", 4),
    ("suggested_edit_accepted", 4),
    ("downvoted", 12),
    ("cast_answer_downvote", 3),
    ("bounty_offered", 1),
    ("bounty_awarded", 1),
]


def _forum(rng: random.Random, subject: str) -> dict[str, Any]:
    kind = rng.choices([k for k, _ in _FORUM], weights=[w for _, w in _FORUM])[0]
    attrs = {"amount": rng.choice([50, 100, 150, 200, 500])} if kind.startswith("bounty") else {}
    return {"type": kind, "attributes": attrs}


def _cricket(rng: random.Random, subject: str) -> dict[str, Any]:
    level = rng.choices([1, 2, 3, 4], weights=[70, 22, 6, 2])[0]
    lo = {1: 1, 2: 3, 3: 5, 4: 7}[level]
    return {
        "type": "code_breach",
        "attributes": {"level": level, "demerit_points": lo + rng.randrange(2)},
    }


_CIVIC = [
    ("littering", 40),
    ("dog_fouling", 20),
    ("noise_after_hours", 30),
    ("illegal_dumping", 6),
    ("graffiti", 4),
]


def _civic(rng: random.Random, subject: str) -> dict[str, Any]:
    kind = rng.choices([k for k, _ in _CIVIC], weights=[w for _, w in _CIVIC])[0]
    return {"type": kind, "attributes": {}}


GENERATORS = {
    "fr-driving": _fr,
    "uk-driving": _uk,
    "forum": _forum,
    "cricket": _cricket,
    "civic-code": _civic,
}


def synthetic_event(rng: random.Random, domain: str, event_id: str, subject: str) -> dict[str, Any]:
    """One synthetic event of ``domain`` for ``subject``: a type and attributes from the
    domain's generator, a day in the five years (a second of the UTC day for the forum)."""
    body = GENERATORS[domain](rng, subject)
    day = _day(rng)
    if domain == "forum":
        t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(86400)
        )
        occurred = t.isoformat().replace("+00:00", "Z")
    else:
        occurred = day.isoformat()
    return {
        "id": event_id,
        "domain": domain,
        "subject": subject,
        "type": body["type"],
        "occurred_at": occurred,
        "attributes": body["attributes"],
        "evidence": f"ref-{rng.randrange(10**8):08d}",
        "issuer": f"{domain}-issuer-{rng.randrange(5)}",
    }


def generate(size: DemoSize) -> Iterator[dict[str, Any]]:
    """The demo's events, in file order (mostly by date, with about 2% late)."""
    rng = random.Random(size.seed)
    events: list[dict[str, Any]] = []
    for domain, (subj_share, ev_share) in SHARES.items():
        n_subj = max(1, round(size.subjects * subj_share))
        n_ev = max(1, round(size.events * ev_share))
        # Skewed activity: a few subjects report much more than most.
        weights = [min(rng.paretovariate(1.5), 12.0) for _ in range(n_subj)]
        subjects = [f"{domain[:2]}-{i:05d}" for i in range(n_subj)]
        chosen = rng.choices(subjects, weights=weights, k=n_ev)
        for i, subject in enumerate(chosen):
            events.append(synthetic_event(rng, domain, f"{domain}-{i:07d}", subject))
    events.sort(key=lambda e: (e["occurred_at"][:10], e["id"]))
    # Late reports: move ~2% of the events to a later place in the file.
    n = len(events)
    for _ in range(n // 50):
        i = rng.randrange(n)
        j = min(n - 1, i + rng.randrange(1, max(2, n // 10)))
        events.insert(j, events.pop(i))
    yield from events


def write_events(path: Path, size: DemoSize) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for event in generate(size):
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            n += 1
    return n


def demo_command(
    db: Annotated[
        str, typer.Option("--db", envvar="POINTBOOK_DB", help="The store to fill.")
    ] = "pointbook.db",
    subjects: Annotated[
        int, typer.Option("--subjects", min=10, help="How many subjects in all.")
    ] = 10_000,
    events: Annotated[
        int, typer.Option("--events", min=10, help="How many events in all.")
    ] = 200_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: same seed, same population.")
    ] = 2020,
    out: Annotated[Path, typer.Option("--out", help="Where to write the generated events.")] = Path(
        "demo-data/events.jsonl"
    ),
    packs: Annotated[
        Path | None, typer.Option("--packs", help="Folder of reference packs.")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the portal at the end.")
    ] = True,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
) -> None:
    """Publish the reference packs, generate a seeded population, ingest it and summarise."""
    from pointbook.cli.common import console, e, err_console, open_ledger
    from pointbook.cli.records import progress_bar
    from pointbook.errors import PublishError
    from pointbook.intake import read_records

    folder = packs or packs_dir()
    ledger = open_ledger(db)
    try:
        for name in PACK_FILES:
            try:
                published = ledger.publish_file(folder / name)
            except PublishError as exc:
                # A demo store made from an earlier text of the bundled packs: published
                # versions never change, so the demo needs a store of its own.
                raise PublishError(
                    f"{exc}. {db} was made from an earlier text of {folder / name}: remove it"
                    " (make clean) or give the demo another --db"
                ) from exc
            for r in published:
                console.print(f"pack {e(r.domain)} version {e(r.version)}: {r.status}")
        size = DemoSize(subjects, events, seed)
        n = write_events(out, size)
        err_console.print(
            f"generated {n:,} events for {subjects:,} subjects in {out} (seed {seed})"
        )
        with out.open("rb") as stream, progress_bar() as bar:
            task = bar.add_task("ingesting", total=n)
            report = ledger.ingest(
                read_records(stream, "jsonl"),
                10_000,
                progress=lambda k: bar.advance(task, k),
                refresh=False,
            )
            task2 = bar.add_task("deciding", total=len(report.subjects))
            ledger.refresh_decisions(progress=lambda k: bar.advance(task2, k))
        console.print(
            f"accepted {report.accepted:,} · duplicates {report.duplicates:,} · rejected {len(report.rejected):,}"
        )
        for rej in report.rejected[:5]:
            err_console.print(f"{out}:{rej.line}: {e(rej.reason)}")
        example = summarise(ledger)
    finally:
        ledger.close()
    if example is None:
        return
    from pointbook.cli.serve import create_token
    from pointbook.cli.serve import serve as serve_command

    domain, subject = example
    subject_token, _ = create_token(db, "subject", domain, subject, None)
    reviewer_token, _ = create_token(db, "reviewer", domain, None, "demo-reviewer")
    console.print(
        f"\nDemo tokens for {e(domain)} (sign in at http://127.0.0.1:{port}/signin):\n"
        f"  subject {e(subject)}: {subject_token}\n  reviewer:        {reviewer_token}"
    )
    if serve:
        serve_command(host="127.0.0.1", port=port, db=db)


def summarise(ledger: Any) -> tuple[str, str] | None:
    """Print the summary; return a (domain, subject) worth showing in the portal."""
    from pointbook.cli.common import console, e

    now = ledger.now()
    t = Table(title=f"Points per domain as of {now.date()}")
    for c in ("domain", "subjects", "min", "p10", "median", "p90", "max"):
        t.add_column(c, justify="right" if c != "domain" else "left")
    examples: list[str] = []
    chosen: tuple[str, str] | None = None
    kinds: Counter[tuple[str, str, str]] = Counter()
    for domain in ledger.store.domains():
        figures = []
        best: tuple[int, str] | None = None
        for state in ledger.states(domain, now):
            figures.append(state.points)
            richness = (
                len(state.lines)
                + 5 * len(state.decisions)
                + sum(1 for line in state.lines if line.kind in ("restoration", "course"))
            )
            if best is None or richness > best[0]:
                best = (richness, state.subject)
        if not figures:
            continue
        q = (
            statistics.quantiles(figures, n=10, method="inclusive")
            if len(figures) > 1
            else [figures[0]] * 9
        )
        t.add_row(
            e(domain),
            f"{len(figures):,}",
            str(min(figures)),
            str(round(q[0])),
            str(round(statistics.median(figures))),
            str(round(q[-1])),
            str(max(figures)),
        )
        for d, status in ledger.decisions(domain):
            kinds[(domain, d.kind.split(":")[0], status)] += 1
        if best:
            examples.append(f"pointbook explain {domain} {best[1]}")
            if domain == "fr-driving" or chosen is None:
                chosen = (domain, best[1])
    console.print(t)
    dt = Table(title="Decisions by kind and status")
    for c in ("domain", "kind", "status", "count"):
        dt.add_column(c)
    for (domain, kind, status), count in sorted(kinds.items()):
        dt.add_row(e(domain), e(kind), e(status), f"{count:,}")
    console.print(dt)
    console.print("Try:")
    for line in examples:
        console.print(f"  {e(line)}")
    return chosen
