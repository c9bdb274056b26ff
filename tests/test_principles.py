"""Principles P1-P9 (design.md) and invariants R1-R22 (principles checklist), one test or more each.

Every test is named with its id and quotes, in its docstring, the checklist's "test that must
fail if it breaks". Ledgers run over a SQLite file in tmp_path with a clock the test moves
(`Book`), so every time is controlled. Expected figures are worked out by hand in comments from
the pack rules written here (or from examples/packs/fr-driving.yaml) and from docs/rule-packs.md
and docs/cli.md, never from running pointbook.

Tests already elsewhere and not repeated here (docs/principles.md lists them):
tests/test_guardrails.py (R1 per prohibited category and the no-bypass grep, R2 reserved types in
packs, R3 cross-domain references, P3 outside references, P7 endless deductions, the
social-credit pack), tests/test_properties.py (arrival order, duplicates, bounds, window brute
force, non-interference), tests/test_ledger.py (idempotency, conflicts, atomic batches,
publication rules).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import pack
from pointbook.dates import Duration, parse_instant, zone
from pointbook.due_process import ProcessError
from pointbook.engine import Appeal, Event, evaluate_subject
from pointbook.errors import PackError, PointbookError, PublishError
from pointbook.intake import EventIn, RawRecord, read_records
from pointbook.ledger import IngestReport, Ledger
from pointbook.rules.pack import PackVersion, compile_pack, load_pack_text
from pointbook.rules.spec import PackSpec
from pointbook.store import SQLiteStore
from pointbook.store.base import Store

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "pointbook"
PACKS = ROOT / "examples" / "packs"
FR_DRIVING = PACKS / "fr-driving.yaml"
SOCIAL_CREDIT = ROOT / "examples" / "refused" / "social-credit.yaml"
UTC_ZONE = zone("UTC")

# --------------------------------------------------------------------------------------------
# Harness: a ledger over a temp SQLite file, a clock the test moves, small inline packs
# --------------------------------------------------------------------------------------------


def utc(text: str) -> datetime:
    """An instant written in UTC: a bare date is the start of that day."""
    return parse_instant(text, UTC_ZONE)


class Book:
    """A Ledger over ``path`` whose clock is ``clock[0]``, moved by ``set``."""

    def __init__(self, path: Path, now: str = "2024-06-01") -> None:
        self.path = path
        self.clock = [utc(now)]
        self.ledger = Ledger(SQLiteStore(path), now=lambda: self.clock[0])

    def set(self, when: str) -> None:
        self.clock[0] = utc(when)

    @property
    def conn(self) -> sqlite3.Connection:
        return cast(SQLiteStore, self.ledger.store).conn

    def ingest(self, *records: RawRecord) -> IngestReport:
        report = self.ledger.ingest(list(records))
        assert not report.rejected, [(r.code, r.reason) for r in report.rejected]
        return report

    def points(self, domain: str, subject: str, as_of: str | None = None) -> int:
        return self.ledger.state(domain, subject, None if as_of is None else utc(as_of)).points

    def statuses(self, domain: str, subject: str, as_of: str | None = None) -> list[str]:
        when = None if as_of is None else utc(as_of)
        return [s for _, s in self.ledger.decisions(domain, subject, when)]

    def refs(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT ref FROM pb_audit ORDER BY seq")]


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Book]:
    b = Book(tmp_path / "x.db")
    yield b
    b.ledger.close()


_line = itertools.count(1)


def rec(
    id: str,
    type: str,
    at: str,
    subject: str = "s1",
    domain: str = "town",
    evidence: str | None = "ticket-1",
    issuer: str | None = "officer-a",
    incident: str | None = None,
    **attributes: Any,
) -> RawRecord:
    """One event as an issuer reports it (the wire shape `pointbook ingest` reads)."""
    body: dict[str, Any] = {
        "id": id,
        "domain": domain,
        "subject": subject,
        "type": type,
        "occurred_at": at,
        "attributes": attributes,
        "evidence": evidence,
        "issuer": issuer,
    }
    if incident is not None:
        body["incident"] = incident
    return RawRecord(next(_line), json.dumps(body), EventIn.model_validate(body), None)


def mk(
    body: str,
    *,
    domain: str = "town",
    version: str = "1",
    effective: str = "2020-01-01",
    retention: str = "5 years",
    extra: str = "",
) -> list[PackVersion]:
    """One inline version (helpers.pack adds a 150-year clean period to balance packs)."""
    head = (
        f'domain: {domain}\nversion: "{version}"\neffective_from: {effective}\n'
        f"timezone: UTC\ntitle: Test scheme\npurpose: Testing the principles.\n"
        f"retention: {retention}\n{textwrap.dedent(extra)}"
    )
    return pack(body, head=head)


# The town code: start and ceiling 100; littering -30 for 1 year; noise -10 for 6 months;
# falling below 50 makes a `hearing` decision that takes effect 14 days later.
TOWN = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {}
  noise: {}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Town ordinance 4, event: littering, points: -30, counts_for: 1 year}
  - {id: noise, title: Noise after hours, category: noise, basis: Town ordinance 7, event: noise, points: -10, counts_for: 6 months}
thresholds:
  - {id: hearing, kind: hearing, title: Hearing before a sanction, basis: Town due-process policy, direction: below, value: 50, mode: crossing, notice: 14 days}
"""

# A second scheme for the cross-domain tests: a forum where spam costs 50 of 100.
FORUM = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  spam: {}
rules:
  - {id: spam, title: Spam, category: moderation, basis: Forum rules 2, event: spam, points: -50, counts_for: 1 year}
thresholds:
  - {id: muted, kind: muted, title: Muted, basis: Forum rules 9, direction: at_or_below, value: 50, mode: crossing}
"""


def line_of(text: str, fragment: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return n
    raise AssertionError(f"{fragment!r} not in the text")


# --------------------------------------------------------------------------------------------
# R1 / P2: only conduct, never belief or belonging
# --------------------------------------------------------------------------------------------

PROHIBITED_PACK = """\
domain: town
version: "1"
effective_from: 2020-01-01
title: Town code
purpose: Testing the guardrails through the ledger.
retention: 3 years
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {}
  service_attended: {}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -5, counts_for: 1 year}
  - id: skipped-service
    title: Did not attend the service
    category: religion
    basis: Municipal piety ordinance
    event: service_attended
    points: -5
    counts_for: 1 year
"""


def test_r1_publishing_a_pack_with_a_prohibited_category_is_refused_and_stores_nothing(
    book: Book, tmp_path: Path
) -> None:
    """R1: "One fixture per prohibited category → `PackRefused(rule, category)` with `file:line`;
    grep test that no bypass option exists." (Each category and the grep are in
    tests/test_guardrails.py::test_r1_*; here, end to end through `Ledger.publish_file`.)"""
    f = tmp_path / "town.yaml"
    f.write_text(PROHIBITED_PACK, encoding="utf-8")
    with pytest.raises(PackError) as exc:
        book.ledger.publish_file(f)
    (finding,) = [x for x in exc.value.findings if x.code == "pack/prohibited-category"]
    assert (finding.file, finding.line) == (str(f), line_of(PROHIBITED_PACK, "category: religion"))
    assert "skipped-service" in finding.message and "religion" in finding.message
    assert str(exc.value).startswith(f"{f}:{finding.line}:")
    # Refused means nothing happened: no version, no audit record.
    assert book.ledger.store.domains() == []
    assert book.refs() == []


def test_r1_a_version_compiled_without_the_linter_cannot_be_published(book: Book) -> None:
    """R1: "The loader refuses a pack whose rule category … is tagged with an Art. 9(1)
    category … No flag turns this off." A PackVersion built by hand (`compile_pack` on a spec,
    skipping `lint_documents`) is a way around the loader: `Ledger.publish` must refuse it too,
    and leave nothing published."""
    spec = PackSpec.model_validate(yaml.safe_load(PROHIBITED_PACK))
    unlinted = compile_pack(spec, PROHIBITED_PACK)
    with pytest.raises(PointbookError):
        book.ledger.publish([unlinted])
    assert book.ledger.store.pack_rows("town") == []


def test_p2_the_social_credit_pack_cannot_be_published(book: Book) -> None:
    """P2 (only conduct, never belief or belonging): "Packs with rules in prohibited categories
    are refused at load with a clear error". examples/refused/social-credit.yaml, refused through
    the ledger, leaves no trace in the store."""
    with pytest.raises(PackError) as exc:
        book.ledger.publish_file(SOCIAL_CREDIT)
    codes = {f.code for f in exc.value.findings}
    assert {"pack/prohibited-category", "pack/cross-domain", "pack/reserved-event-type"} <= codes
    assert book.ledger.store.domains() == [] and book.refs() == []


# --------------------------------------------------------------------------------------------
# R2 / P9: exercising a right costs nothing
# --------------------------------------------------------------------------------------------


def test_r2_a_pack_matching_appeal_filed_is_refused_at_publish(book: Book) -> None:
    """R2: "A pack matching `appeal_filed` is refused" (the linter's side is in
    tests/test_guardrails.py::test_r2_*; here the ledger refuses to publish it)."""
    body = TOWN.replace("  noise: {}", "  appeal_filed: {}").replace(
        "event: noise,", "event: appeal_filed,"
    )
    with pytest.raises(PackError) as exc:
        mk(body)
    assert "pack/reserved-event-type" in {f.code for f in exc.value.findings}
    assert book.ledger.store.domains() == []


def test_p9_a_reserved_event_type_is_refused_at_ingest(book: Book) -> None:
    """P9: "Viewing, exporting, contesting or asking for erasure can never be an input to a
    rule": the ledger refuses events of a reserved type (`event/reserved-type`, docs/cli.md),
    whatever the pack declares."""
    book.ledger.publish(mk(TOWN))
    report = book.ledger.ingest(
        [
            rec("r1", "appeal_filed", "2024-05-01"),
            rec("r2", "record_exported", "2024-05-01"),
            rec("r3", "erasure_requested", "2024-05-01"),
            rec("r4", "export_downloaded", "2024-05-01"),  # reserved prefix export_
        ]
    )
    assert report.accepted == 0
    assert [r.code for r in report.rejected] == ["event/reserved-type"] * 4
    assert book.ledger.store.subject_events("town", ["s1"])["s1"] == []


# Rights history. By hand from TOWN (start 100, littering -30 for 1 year, noise -10 for 6 months):
#   s1: littering 2024-01-10 -> 70; littering 2024-02-10 -> 40 (below 50: a hearing decision);
#       noise 2024-03-01 -> 30; the noise stops counting on 2024-09-01 -> 40; the littering
#       entries on 2025-01-10 and 2025-02-10 -> 100.
#   s2: noise 2024-02-01 -> 90, back to 100 on 2024-08-01.   s3: no event, 100 throughout.
RIGHTS_TIMES = ["2024-01-15", "2024-02-15", "2024-04-01", "2024-09-01", "2025-03-01"]
RIGHTS_EXPECTED = {
    "s1": [70, 40, 30, 40, 100],
    "s2": [100, 90, 90, 100, 100],
    "s3": [100, 100, 100, 100, 100],
}
RIGHTS_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("view"), st.sampled_from(sorted(RIGHTS_EXPECTED)), st.booleans()),
        st.tuples(st.just("export"), st.sampled_from(sorted(RIGHTS_EXPECTED))),
        st.tuples(st.just("share"), st.sampled_from(sorted(RIGHTS_EXPECTED))),
        st.tuples(st.just("pseudonym"), st.text("abc@.", min_size=1, max_size=6)),
        st.tuples(st.just("appeal-decision"), st.sampled_from(["file", "upheld", "dismissed"])),
        st.tuples(st.just("erase"), st.just("s3")),
        st.tuples(st.just("later"), st.integers(1, 40)),
    ),
    max_size=7,
)


def _rights_book(path: Path) -> Book:
    b = Book(path, "2024-04-01")
    b.ledger.publish(mk(TOWN, extra="erasure_on_request: true"))
    b.ingest(
        rec("e1", "littering", "2024-01-10"),
        rec("e2", "littering", "2024-02-10"),
        rec("e3", "noise", "2024-03-01"),
        rec("e4", "noise", "2024-02-01", subject="s2"),
    )
    return b


def _all_balances(b: Book) -> dict[str, list[int]]:
    return {s: [b.points("town", s, t) for t in RIGHTS_TIMES] for s in RIGHTS_EXPECTED}


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(actions=RIGHTS_ACTIONS)
def test_r2_p9_any_sequence_of_rights_leaves_every_balance_unchanged(
    actions: list[tuple[Any, ...]],
) -> None:
    """R2: "property test: any sequence of appeals and exports leaves every balance unchanged";
    P9: viewing, exporting, contesting (here: a decision), sharing and asking for erasure never
    move anyone's points. (Contesting an *entry* suspends it by design, R13; the R12 property
    below checks that an upheld one is exactly as if the event was never reported.)"""
    with tempfile.TemporaryDirectory() as tmp:
        b = _rights_book(Path(tmp) / "x.db")
        try:
            assert _all_balances(b) == RIGHTS_EXPECTED
            (decision, _), *_ = b.ledger.decisions("town", "s1")
            for action in actions:
                kind = action[0]
                if kind == "view":
                    b.ledger.view("town", action[1], explain=action[2])
                elif kind == "export":
                    b.ledger.export("town", action[1])
                elif kind == "share":
                    code, _ = b.ledger.create_share("town", action[1], Duration(days=21))
                    b.ledger.redeem_share(code)
                elif kind == "pseudonym":
                    b.ledger.pseudonym("town", action[1])
                elif kind == "appeal-decision":
                    open_ = [
                        a
                        for a in b.ledger.appeals_of("town", "open")
                        if a.decision_id == decision.id
                    ]
                    if open_ and action[1] != "file":
                        b.ledger.decide_appeal(open_[0].id, action[1], "reviewer-b", "Reviewed.")
                    elif not open_:
                        b.ledger.file_appeal(
                            "town", "s1", "I contest the hearing.", decision_id=decision.id
                        )
                elif kind == "erase":
                    b.ledger.erase_subject("town", action[1])
                else:
                    b.clock[0] += timedelta(days=action[1])
            assert _all_balances(b) == RIGHTS_EXPECTED
        finally:
            b.ledger.close()


def test_r2_p9_a_dismissed_appeal_leaves_the_person_no_worse_off_than_not_appealing(
    book: Book,
) -> None:
    """R2: "any sequence of appeals and exports leaves every balance unchanged"; P9: "Exercising
    a right costs nothing". Contest window 28 days; offence -4; back to 12 after 1 year without
    a new loss. Two people, same offence on 2024-01-01, final on 2024-01-29. One does not
    appeal: 8 from 2024-01-29, 12 again from 2025-01-29. The other appeals on 2024-01-10
    (before finality) and loses on 2024-06-01: once the appeal is decided, they must be no
    worse off than the first on any date (by hand: 12 on 2025-03-01, like the first)."""
    body = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types: {offence: {}}
rules:
  - {id: offence, title: Offence, category: public-order, basis: Code 1, event: offence, points: -4}
restorations:
  - {id: clean, kind: clean-period, title: Clean year, basis: Code 2, after: 1 year}
"""
    book.ledger.publish(mk(body, extra="contest_window: 28 days"))
    book.set("2024-01-05")
    book.ingest(
        rec("q1", "offence", "2024-01-01", subject="quiet"),
        rec("a1", "offence", "2024-01-01", subject="appellant"),
    )
    book.set("2024-01-10")
    appeal = book.ledger.file_appeal("town", "appellant", "It was not me.", event_id="a1")
    book.set("2024-06-01")
    book.ledger.decide_appeal(appeal.id, "dismissed", "reviewer-b", "The photo is clear.")
    book.set("2026-01-01")
    for as_of in ("2024-07-01", "2025-01-29", "2025-03-01", "2025-07-01"):
        assert book.points("town", "appellant", as_of) >= book.points("town", "quiet", as_of)
    assert book.points("town", "quiet", "2025-03-01") == 12
    assert book.points("town", "appellant", "2025-03-01") == 12


# --------------------------------------------------------------------------------------------
# R3 / P1: one domain, one purpose
# --------------------------------------------------------------------------------------------

FORBIDDEN_IMPORTS = (
    "pointbook.store",
    "pointbook.ledger",
    "pointbook.due_process",
    "pointbook.cli",
    "sqlite3",
    "psycopg",
    "psycopg2",
    "importlib",
)


def _module_file(name: str) -> Path | None:
    if name != "pointbook" and not name.startswith("pointbook."):
        return None
    base = SRC.parent.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module named by an import in ``path`` (top-level, local, TYPE_CHECKING alike)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            out.add("importlib")  # a dynamic import counts as the forbidden kind
    return out


def test_r3_the_engine_and_rules_cannot_reach_the_store() -> None:
    """R3: "an import-graph test shows the engine modules cannot reach the store's
    cross-domain queries". Every import (transitively, within pointbook) of
    src/pointbook/engine/*.py and src/pointbook/rules/*.py is scanned: none is the store, the
    ledger, the due-process layer, the CLI, sqlite3, psycopg, or a dynamic import. (The
    top-level `pointbook/__init__.py` re-exports Ledger for library users; it is not followed
    unless an engine or rules module imports `pointbook` itself.)"""
    roots = sorted((SRC / "engine").glob("*.py")) + sorted((SRC / "rules").glob("*.py"))
    assert SRC / "engine" / "fold.py" in roots and SRC / "rules" / "conditions.py" in roots
    seen: set[Path] = set()
    todo = list(roots)
    bad: list[tuple[str, str]] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IMPORTS):
                bad.append((_module_name(path), name))
            target = _module_file(name)
            if target is not None and target not in seen:
                todo.append(target)
    assert bad == []
    reached = {_module_name(p) for p in seen}
    assert "pointbook.engine.judge" in reached and "pointbook.rules.pack" in reached


# Store methods that do not take a domain, and why none reads a domain's events, entries or
# decisions for a caller: each is a write of rows that carry their own domain, a lookup by an
# unguessable id, or bookkeeping.
STORE_WITHOUT_DOMAIN = {
    "close": "closes the store",
    "domains": "the names of the published schemes (public, principle 6)",
    "insert_pack": "writes one version; the row carries its domain",
    "write_batch": "writes an issuer's batch; every event carries its domain",
    "dirty_subjects": "the refresh work list (domain optional: internal, never returned by Ledger)",
    "appeal": "one appeal by its random id",
    "insert_appeal": "writes one appeal; it carries its domain",
    "insert_appeal_decision": "writes one decision on an appeal that carries its domain",
    "outbox_take": "marks outbox items delivered by sequence number",
    "use_share": "the one (domain, subject) a single-use code was made for",
    "find_token": "one token by the hash of an unguessable secret",
    "verify": "the audit chain: counts and hashes",
    "audit_root": "the audit chain's head hash",
    "bulk": "connection settings while a bulk load lasts (a page cache); reads nothing",
}


def test_r3_every_store_query_of_events_entries_or_decisions_takes_its_domain() -> None:
    """R3: "a condition, window or threshold reads only its own domain; the evaluator has no
    handle on other domains". Every method of the Store protocol takes a required
    `domain: str`, except the listed writes and lookups by id: so no store call can read two
    domains' events, entries or decisions at once."""
    methods = {n: f for n, f in vars(Store).items() if callable(f) and not n.startswith("_")}
    without = set()
    for name, fn in methods.items():
        params = inspect.signature(fn).parameters
        p = params.get("domain")
        if p is None or p.default is not inspect.Parameter.empty or p.annotation != "str":
            without.add(name)
    assert without == set(STORE_WITHOUT_DOMAIN)
    for name in ("subject_events", "subject_entries", "event_hashes", "current_decisions"):
        assert next(iter(inspect.signature(methods[name]).parameters.values())).name == "self"
        assert list(inspect.signature(methods[name]).parameters)[1] == "domain"


def test_p1_a_subjects_figures_in_one_domain_ignore_its_other_domains(
    book: Book, tmp_path: Path
) -> None:
    """P1: "Balances, windows and thresholds only ever read their own domain. There is no API,
    query or report that combines a person's points across domains." The same subject id in
    town and forum: town's state, decisions and export are those of a store holding only town."""
    book.ledger.publish(mk(TOWN) + mk(FORUM, domain="forum"))
    book.ingest(
        rec("e1", "littering", "2024-05-01"),
        rec("e1", "spam", "2024-04-01", domain="forum", evidence="forum-evidence-9q"),
        rec("f2", "spam", "2024-05-02", domain="forum", evidence="forum-evidence-9q"),
    )
    alone = Book(tmp_path / "alone.db")
    try:
        alone.ledger.publish(mk(TOWN))
        alone.ingest(rec("e1", "littering", "2024-05-01"))
        # town: 100 - 30 = 70, nothing below 50; forum: 100 - 50 - 50 = 0, muted at 50.
        assert book.points("town", "s1") == alone.points("town", "s1") == 70
        assert book.points("forum", "s1") == 0
        assert book.ledger.state("town", "s1").lines == alone.ledger.state("town", "s1").lines
        assert book.ledger.decisions("town", "s1") == []
        assert [d.kind for d, _ in book.ledger.decisions("forum", "s1")] == ["muted"]
        exported = json.dumps(book.ledger.export("town", "s1"))
        assert "forum-evidence-9q" not in exported and "spam" not in exported
    finally:
        alone.ledger.close()


# --------------------------------------------------------------------------------------------
# R4: keyed pseudonyms per domain
# --------------------------------------------------------------------------------------------


def test_r4_the_same_person_gets_unlinkable_ids_in_two_domains(book: Book) -> None:
    """R4: "The same person enrolled in 2 domains gets unlinkable IDs; no endpoint accepts a
    cross-domain identifier." Pseudonyms are keyed per domain (an HMAC under each domain's key):
    different across domains, stable within one (also after reopening the store), and not a
    plain hash anyone could recompute from the external id."""
    book.ledger.publish(mk(TOWN) + mk(FORUM, domain="forum"))
    person = "FR-licence-0042"
    town_id = book.ledger.pseudonym("town", person)
    forum_id = book.ledger.pseudonym("forum", person)
    assert town_id != forum_id
    assert book.ledger.pseudonym("town", person) == town_id
    assert book.ledger.pseudonym("town", "FR-licence-0043") != town_id
    digest = hashlib.sha256(person.encode()).hexdigest()
    assert digest[:24] not in (town_id, forum_id)
    book.ledger.close()
    again = Ledger(SQLiteStore(book.path), now=lambda: book.clock[0])
    try:
        assert again.pseudonym("town", person) == town_id
        assert again.pseudonym("forum", person) == forum_id
    finally:
        again.close()


# --------------------------------------------------------------------------------------------
# R5: subject-initiated, single-use, expiring, one-domain shares
# --------------------------------------------------------------------------------------------


def test_r5_a_share_code_works_once_for_one_domain_until_it_expires(book: Book) -> None:
    """R5: "Token expires, cannot be used twice, sees one domain only" (the audit entry is the
    next test). docs/cli.md: a code "works once, for one domain, until it expires"."""
    book.ledger.publish(mk(TOWN) + mk(FORUM, domain="forum"))
    book.set("2024-06-01")
    code, expires = book.ledger.create_share("town", "s1", Duration(days=21))
    assert expires == utc("2024-06-22")  # 2024-06-01 + 21 days
    book.set("2024-06-10")
    assert book.ledger.redeem_share(code) == ("town", "s1")  # one domain, one subject
    with pytest.raises(ProcessError, match="already used"):
        book.ledger.redeem_share(code)
    book.set("2024-06-01")
    late, _ = book.ledger.create_share("town", "s1", Duration(days=21))
    just_in_time, _ = book.ledger.create_share("town", "s1", Duration(days=21))
    book.set("2024-06-21T23:59:59")
    assert book.ledger.redeem_share(just_in_time) == ("town", "s1")
    book.set("2024-06-22")
    with pytest.raises(ProcessError, match="expired"):
        book.ledger.redeem_share(late)
    with pytest.raises(ProcessError, match="unknown"):
        book.ledger.redeem_share("not-a-code")


def test_r5_creating_and_using_a_share_leaves_an_audit_entry(book: Book) -> None:
    """R5: "Token expires, cannot be used twice, sees one domain only, and leaves an audit
    entry": creating a share code and redeeming it are each recorded in the audit log."""
    book.ledger.publish(mk(TOWN))
    before = len(book.refs())
    code, _ = book.ledger.create_share("town", "s1", Duration(days=21))
    after_create = len(book.refs())
    book.ledger.redeem_share(code)
    after_redeem = len(book.refs())
    assert (after_create > before, after_redeem > after_create) == (True, True)
    assert book.ledger.verify().ok


# --------------------------------------------------------------------------------------------
# R6 / P3: only the person's own conduct
# --------------------------------------------------------------------------------------------

SUBJECT_CONDITION = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -5, counts_for: 1 year, when: {field: subject, ne: s2}}
"""


def test_r6_a_condition_on_the_subject_is_refused() -> None:
    """R6: "Hypothesis: adding, removing or reordering B's events leaves A's entries and balance
    byte-identical (tests/test_properties.py::test_other_subjects_never_change_a_subjects_state);
    `subject !=` in a condition is refused"."""
    with pytest.raises(PackError) as exc:
        mk(SUBJECT_CONDITION)
    assert "pack/unknown-field" in {f.code for f in exc.value.findings if f.severity == "error"}


def test_r6_a_condition_on_an_attribute_named_subject_is_refused() -> None:
    """R6: "`subject !=` in a condition is refused": also when the event type declares an
    attribute called `subject`, which an issuer would fill with someone's id."""
    body = SUBJECT_CONDITION.replace("littering: {}", "littering: {attributes: {subject: string}}")
    with pytest.raises(PackError):
        mk(body)


def test_p3_another_subjects_events_and_appeals_never_change_a_subjects_state(
    book: Book, tmp_path: Path
) -> None:
    """P3: "no figure for one subject ever depends on another's events". Through the ledger:
    s1's state and decisions are those of a store without s2, whatever s2 reports, contests
    or has decided."""
    book.ledger.publish(mk(TOWN))
    mine = [rec("a1", "littering", "2024-01-10"), rec("a2", "littering", "2024-02-10")]
    book.ingest(
        *mine,
        rec("b1", "littering", "2024-01-10", subject="s2"),
        rec("b2", "noise", "2024-01-11", subject="s2"),
        rec("b3", "littering", "2024-02-11", subject="s2"),
    )
    appeal = book.ledger.file_appeal("town", "s2", "Not me.", event_id="b1")
    book.ledger.decide_appeal(appeal.id, "upheld", "reviewer-b", "Wrong plate.")
    alone = Book(tmp_path / "alone.db")
    try:
        alone.ledger.publish(mk(TOWN))
        alone.ingest(*mine)
        assert book.ledger.state("town", "s1") == alone.ledger.state("town", "s1")
        assert book.ledger.decisions("town", "s1") == alone.ledger.decisions("town", "s1")
    finally:
        alone.ledger.close()


# --------------------------------------------------------------------------------------------
# R7 / R8 / P4: no retroactive rules; lex mitior
# --------------------------------------------------------------------------------------------


def _versions_text(domain: str, window: str | None, docs: Sequence[tuple[str, int]]) -> str:
    """One pack file: a balance of 12, one rule `speeding`, each version with its points."""
    out = []
    for i, (effective, points) in enumerate(docs, start=1):
        out.append(
            f'domain: {domain}\nversion: "v{i}"\neffective_from: {effective}\ntimezone: UTC\n'
            f"title: Lex mitior\npurpose: Testing lighter and harsher versions.\n"
            f"retention: 5 years\n"
            + (f"contest_window: {window}\n" if window else "")
            + "scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}\n"
            "event_types:\n  speeding: {}\n"
            "rules:\n  - {id: speeding, title: Speeding, category: road-safety, basis: Code 1,"
            f" event: speeding, points: {points}, counts_for: 10 years}}\n"
        )
    return "---\n".join(out)


def test_r7_a_lighter_version_applies_to_entries_not_yet_final(book: Book) -> None:
    """R7: "a later *lighter* version applies while the entry is not final; a later harsher one
    never does". Contest window 28 days; v1 (2024-01-01) -4, v2 (2024-03-01) -2, both published
    before any event (history may be loaded while the domain has no events)."""
    book.ledger.publish(
        load_pack_text(
            _versions_text("lex", "28 days", [("2024-01-01", -4), ("2024-03-01", -2)]), "lex.yaml"
        )
    )
    book.ingest(
        # occurred 2024-01-10, final 2024-02-07, before v2: keeps v1's -4 -> 8
        rec("f1", "speeding", "2024-01-10", subject="final", domain="lex"),
        # occurred 2024-02-15, final 2024-03-14, after v2 took effect: v2's -2 -> 10
        rec("o1", "speeding", "2024-02-15", subject="open", domain="lex"),
        # occurred 2024-03-05, under v2 from the start: -2 -> 10
        rec("l1", "speeding", "2024-03-05", subject="later", domain="lex"),
    )
    assert book.points("lex", "final") == 8
    assert book.points("lex", "open") == 10
    assert book.points("lex", "later") == 10
    # Before finality the entry does not count at all (R10): 12 on 2024-02-20.
    assert book.points("lex", "open", "2024-02-20") == 12
    # The explanation says which version judged it.
    lines = book.ledger.view("lex", "open", explain=True)["entries"]
    (entry,) = [ln for ln in lines if ln["kind"] == "entry"]
    assert (entry["pack_version"], entry["applied"]) == ("v2", -2)
    assert any(ln["kind"] == "rejudged" and ln["pack_version"] == "v2" for ln in lines)


def test_r7_a_harsher_later_version_never_applies(book: Book) -> None:
    """R7: "a later harsher one never does". v1 (2024-01-01) -2, v2 (2024-03-01) -6, contest
    window 28 days: an event of 2024-02-15 (final 2024-03-14, after v2) keeps v1's -2 (-> 10);
    one of 2024-03-05 is judged by v2 from the start (-> 6)."""
    book.ledger.publish(
        load_pack_text(
            _versions_text("harsh", "28 days", [("2024-01-01", -2), ("2024-03-01", -6)]), "h.yaml"
        )
    )
    book.ingest(
        rec("h1", "speeding", "2024-02-15", subject="before", domain="harsh"),
        rec("h2", "speeding", "2024-03-05", subject="after", domain="harsh"),
    )
    assert book.points("harsh", "before") == 10
    assert book.points("harsh", "after") == 6
    (entry,) = [
        ln
        for ln in book.ledger.view("harsh", "before", explain=True)["entries"]
        if ln["kind"] == "entry"
    ]
    assert entry["pack_version"] == "v1"


_LEX_CACHE: dict[str, list[PackVersion]] = {}


@settings(max_examples=100, deadline=None, database=None)
@given(
    steps=st.lists(st.tuples(st.integers(1, 200), st.integers(-6, 0)), min_size=0, max_size=3),
    first=st.integers(-6, 0),
    window=st.sampled_from([None, 10, 28, 60]),
    occurred=st.integers(0, 500),
)
def test_r7_property_the_deduction_is_the_lightest_of_the_versions_before_finality(
    steps: list[tuple[int, int]], first: int, window: int | None, occurred: int
) -> None:
    """R7: "Property over random version histories: the deduction is never larger than under
    the version at `occurred_at`, and equals the minimum over versions in force before
    finality"."""
    start = date(2024, 1, 1)
    docs = [(start, first)]
    for gap, points in steps:
        docs.append((docs[-1][0] + timedelta(days=gap), points))
    text = _versions_text(
        "lex", f"{window} days" if window else None, [(d.isoformat(), p) for d, p in docs]
    )
    if text not in _LEX_CACHE:
        _LEX_CACHE[text] = load_pack_text(text, "lex.yaml")
    versions = _LEX_CACHE[text]
    occ = start + timedelta(days=occurred)
    final = occ + timedelta(days=window or 0)
    # By hand: the version at the event, and every version taking effect after it, up to finality.
    at_event = [p for d, p in docs if d <= occ][-1]
    candidates = [at_event] + [p for d, p in docs if occ < d <= final]
    event = Event("e", "lex", "s", "speeding", utc(occ.isoformat()), {}, "ref", "test")
    as_of = utc(final.isoformat()) + timedelta(days=1)  # past finality, inside the 10 years
    state = evaluate_subject(versions, [event], as_of)
    deduction = 12 - state.points
    assert deduction <= -at_event
    assert deduction == min(-p for p in candidates)


def test_r8_publishing_into_the_past_is_refused_and_back_dated_events_keep_the_old_pack(
    book: Book,
) -> None:
    """R8: "Publish with a past date into a domain with events → refused; back-dated events are
    judged by the old pack" (and "a new rule never matches earlier events")."""
    littering = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -2, counts_for: 1 year}
"""
    harsher = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {}
  noise: {}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4 (2024), event: littering, points: -5, counts_for: 1 year}
  - {id: noise, title: Noise, category: noise, basis: Ordinance 7 (2024), event: noise, points: -3, counts_for: 1 year}
"""
    book.set("2024-06-01")
    book.ledger.publish(mk(littering, effective="2024-01-01"))
    book.ingest(rec("e1", "littering", "2024-05-20"))
    with pytest.raises(PublishError, match="retroactive"):
        book.ledger.publish(mk(harsher, version="1b", effective="2024-05-25"))
    assert [r.version for r in book.ledger.store.pack_rows("town")] == ["1"]
    book.ledger.publish(mk(harsher, version="2", effective="2024-07-01"))  # in the future: fine
    book.set("2024-08-01")
    report = book.ledger.ingest(
        [
            rec("e2", "littering", "2024-06-20"),  # back-dated, before v2: v1's -2
            rec("e3", "noise", "2024-06-21"),  # v1 has no noise rule: refused
            rec("e4", "littering", "2024-07-15"),  # under v2: -5
        ]
    )
    assert [r.code for r in report.rejected] == ["event/unknown-type"]
    entries = {
        (n.event_id, n.pack_version, n.delta)
        for n in book.ledger.store.subject_entries("town", "s1")
    }
    assert entries == {("e1", "1", -2), ("e2", "1", -2), ("e4", "2", -5)}
    assert book.points("town", "s1") == 100 - 2 - 2 - 5


def test_p4_each_entry_cites_the_version_in_force_when_its_event_occurred(book: Book) -> None:
    """P4: "An event is judged by the pack version in force at the time it occurred." Entries
    made under v1 keep citing v1 (and its hash) after v2 takes effect."""
    book.set("2024-06-01")
    v1 = mk(TOWN, effective="2024-01-01")
    v2 = mk(TOWN.replace("points: -30", "points: -50"), version="2", effective="2024-07-01")
    book.ledger.publish(v1)
    book.ingest(rec("e1", "littering", "2024-05-01"))
    book.ledger.publish(v2)
    book.set("2024-08-01")
    book.ingest(rec("e2", "littering", "2024-07-15"))
    cited = {
        n.event_id: (n.pack_version, n.pack_hash, n.delta)
        for n in book.ledger.store.subject_entries("town", "s1")
    }
    assert cited == {
        "e1": ("1", v1[0].content_hash, -30),
        "e2": ("2", v2[0].content_hash, -50),
    }


# --------------------------------------------------------------------------------------------
# R9: notice within the pack's deadline, or the entry is void
# --------------------------------------------------------------------------------------------


def test_r9_an_event_recorded_after_notice_within_is_void_and_never_counts(book: Book) -> None:
    """R9: "Injected clock: no notice by the deadline → the entry is void and never counts"
    (the notice is given when pointbook records the event; docs: "An event recorded later than
    this after it occurred is void"). notice_within 14 days; start 100, littering -30; below 80
    makes a decision."""
    body = TOWN.replace("value: 50", "value: 80")
    book.ledger.publish(mk(body, extra="notice_within: 14 days"))
    book.set("2024-05-10")
    book.ingest(
        rec("late", "littering", "2024-04-01", subject="s1"),  # recorded 39 days after: void
        rec("edge", "littering", "2024-04-26", subject="s2"),  # exactly 14 days: valid
    )
    book.set("2024-05-10T00:00:01")
    book.ingest(rec("edge-late", "littering", "2024-04-26", subject="s3"))  # 1 s too late: void
    book.set("2024-06-01")
    for as_of in ("2024-04-02", "2024-05-11", "2024-06-01"):
        assert book.points("town", "s1", as_of) == 100
        assert book.points("town", "s3", as_of) == 100
    assert book.points("town", "s2") == 70
    assert book.ledger.decisions("town", "s1") == book.ledger.decisions("town", "s3") == []
    assert [d.kind for d, _ in book.ledger.decisions("town", "s2")] == ["hearing"]
    lines = book.ledger.view("town", "s1", explain=True)["entries"]
    assert [(ln["kind"], ln["event_id"], ln["applied"]) for ln in lines] == [("void", "late", 0)]


# --------------------------------------------------------------------------------------------
# R10: only final entries count towards thresholds
# --------------------------------------------------------------------------------------------


def test_r10_a_threshold_crossed_only_through_non_final_entries_makes_no_decision(
    book: Book,
) -> None:
    """R10: "A threshold crossed only through non-final entries → no decision". Contest window
    28 days; start 12, offence -4; at or below 4 makes a suspension."""
    body = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types: {offence: {}}
rules:
  - {id: offence, title: Offence, category: public-order, basis: Code 1, event: offence, points: -4, counts_for: 3 years}
thresholds:
  - {id: suspension, kind: suspension, title: Suspension, basis: Code 9, direction: at_or_below, value: 4, mode: crossing}
"""
    book.ledger.publish(mk(body, domain="contest", extra="contest_window: 28 days"))
    book.ledger.publish(mk(body, domain="facts"))
    book.set("2024-05-20")
    for domain in ("contest", "facts"):
        book.ingest(
            rec("e1", "offence", "2024-05-01", domain=domain),  # final 2024-05-29
            rec("e2", "offence", "2024-05-10", domain=domain),  # final 2024-06-07
        )
    # Established facts (no contest window) count at once: 12 - 8 = 4, suspended on 2024-05-10.
    assert book.points("facts", "s1") == 4
    assert [d.triggered_at for d, _ in book.ledger.decisions("facts", "s1")] == [utc("2024-05-10")]
    # With the window, nothing is final on 2024-05-20: 12, no decision.
    assert book.points("contest", "s1") == 12
    assert book.ledger.decisions("contest", "s1") == []
    book.set("2024-05-30")  # e1 final: 8, still above 4
    assert book.points("contest", "s1") == 8
    assert book.ledger.decisions("contest", "s1") == []
    book.set("2024-06-08")  # e2 final on 2024-06-07: 4, the suspension is made then
    assert book.points("contest", "s1") == 4
    ((d, status),) = book.ledger.decisions("contest", "s1")
    assert (d.kind, d.triggered_at, status) == ("suspension", utc("2024-06-07"), "in_force")


# --------------------------------------------------------------------------------------------
# R11 / P5: proposed decisions, notice, reviewer, four eyes
# --------------------------------------------------------------------------------------------

PANEL = """
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types: {offence: {}}
rules:
  - {id: offence, title: Offence, category: public-order, basis: Code 1, event: offence, points: -4, counts_for: 3 years}
thresholds:
  - {id: suspension, kind: suspension, title: Suspension, basis: Code 9, direction: at_or_below, value: 4, mode: crossing, REVIEW}
"""


def test_r11_a_four_eyes_decision_waits_for_its_notice_and_another_reviewer(book: Book) -> None:
    """R11: "Executing early → refused; without a reviewer → refused; the reviewer's reasons are
    stored" (docs/cli.md: four-eyes, "the reviewer must not have reported any event behind
    it"). Two offences of -4 (12 -> 4) on 2024-05-01 and 05-02 by officer-a: a suspension
    triggered 2024-05-02, notice 14 days, effective 2024-05-16."""
    book.ledger.publish(
        mk(PANEL.replace("REVIEW", "notice: 14 days, review: four-eyes"), domain="panel")
    )
    book.set("2024-05-03T12:00:00")
    book.ingest(
        rec("e1", "offence", "2024-05-01", domain="panel", issuer="officer-a"),
        rec("e2", "offence", "2024-05-02", domain="panel", issuer="officer-a"),
    )
    ((d, status),) = book.ledger.decisions("panel", "s1")
    assert (d.triggered_at, d.effective_at, status) == (
        utc("2024-05-02"),
        utc("2024-05-16"),
        "pending",
    )
    # Without a reviewer it never takes force, notice or not.
    assert book.statuses("panel", "s1", "2024-05-20") == ["pending"]
    with pytest.raises(ProcessError, match="four-eyes"):
        book.ledger.confirm_decision("panel", d.id, "officer-a", "I saw it myself.")
    with pytest.raises(ProcessError):
        book.ledger.confirm_decision("panel", d.id, "  ", "No name.")
    reason = "Both tickets checked against the camera log."
    book.ledger.confirm_decision("panel", d.id, "reviewer-b", reason)
    with pytest.raises(ProcessError, match="already confirmed"):
        book.ledger.confirm_decision("panel", d.id, "reviewer-c", "Again.")
    # Confirmed, but executing before the notice period ends is refused: pending until 05-16.
    assert book.statuses("panel", "s1", "2024-05-10") == ["pending"]
    assert book.statuses("panel", "s1", "2024-05-15T23:59:59") == ["pending"]
    assert book.statuses("panel", "s1", "2024-05-16") == ["in_force"]
    # The reviewer and the reasons are stored, and audited.
    row = book.conn.execute(
        "SELECT reviewer, reason FROM pb_confirmations WHERE decision_id = ?", (d.id,)
    ).fetchone()
    assert row == ("reviewer-b", reason)
    assert f"confirmation:{d.id}" in book.refs()
    # The decision has its own appeal window: an open appeal holds it again.
    book.set("2024-05-20")
    appeal = book.ledger.file_appeal("panel", "s1", "Disproportionate.", decision_id=d.id)
    assert book.statuses("panel", "s1", "2024-05-21") == ["pending"]
    book.set("2024-05-22")
    book.ledger.decide_appeal(appeal.id, "dismissed", "reviewer-c", "Proportionate.")
    assert book.statuses("panel", "s1", "2024-05-23") == ["in_force"]


def test_r11_a_required_review_holds_a_decision_until_the_confirmation(book: Book) -> None:
    """R11: "when the pack says so, a named reviewer": with `review: required` (no notice) the
    decision is pending until confirmed, and in force from the confirmation on."""
    book.ledger.publish(mk(PANEL.replace(", REVIEW", ", review: required"), domain="panel"))
    book.set("2024-05-03")
    book.ingest(
        rec("e1", "offence", "2024-05-01", domain="panel", issuer="officer-a"),
        rec("e2", "offence", "2024-05-02", domain="panel", issuer="officer-a"),
    )
    ((d, status),) = book.ledger.decisions("panel", "s1")
    assert status == "pending"
    book.set("2024-05-04")
    book.ledger.confirm_decision("panel", d.id, "officer-a", "Checked.")  # not four-eyes: allowed
    assert book.statuses("panel", "s1", "2024-05-03T23:00:00") == ["pending"]
    assert book.statuses("panel", "s1", "2024-05-04T12:00:00") == ["in_force"]


def test_p5_every_entry_cites_event_rule_version_hash_and_evidence(book: Book) -> None:
    """P5: "Every ledger entry cites the event, the rule and the rule version that produced it,
    and the evidence reference the issuer supplied" (and a rule can require evidence)."""
    body = TOWN.replace("counts_for: 1 year}", "counts_for: 1 year, requires_evidence: true}")
    (version,) = mk(body)
    book.ledger.publish([version])
    report = book.ledger.ingest([rec("e0", "littering", "2024-05-01", evidence=None)])
    assert [r.code for r in report.rejected] == ["event/no-evidence"]
    book.ingest(rec("e1", "littering", "2024-05-01", evidence="ticket-77"))
    (entry,) = book.ledger.store.subject_entries("town", "s1")
    assert (entry.event_id, entry.rule_id, entry.pack_version, entry.pack_hash, entry.evidence) == (
        "e1",
        "litter",
        "1",
        version.content_hash,
        "ticket-77",
    )
    (line,) = [
        ln
        for ln in book.ledger.view("town", "s1", explain=True)["entries"]
        if ln["kind"] == "entry"
    ]
    assert (line["event_id"], line["rule_id"], line["pack_version"]) == ("e1", "litter", "1")


# --------------------------------------------------------------------------------------------
# R12: an upheld appeal reverses, re-derives and notifies (the acceptance scenario)
# --------------------------------------------------------------------------------------------

STATEMENT = "The phone was in a hands-free cradle; the photo shows it."
VERDICT = "Upheld: the photo shows a cradle, not a phone held in hand."


def _french_driver(book: Book) -> str:
    """fr-driving (version 2024-01-01 in force): 12 points; drink driving at 0.9 g/l is a délit
    (-6) -> 6; a red light (-4) -> 2; a phone held in hand (-3) -> 0 (clamped: 2 applied):
    `licence-invalidated` at or below 0, no notice, in force at once. No restoration is due
    before 2027 (3-year clean period, 10-year return; no 1-point loss)."""
    book.set("2024-06-01T10:00:00")
    book.ledger.publish_file(FR_DRIVING)
    driver = book.ledger.pseudonym("fr-driving", "FR-licence-123")
    book.ingest(
        rec("e1", "drink_driving", "2024-03-01", driver, "fr-driving", bac_g_per_l=0.9),
        rec("e2", "red_light", "2024-04-01", driver, "fr-driving"),
        rec("e3", "phone_use", "2024-05-01", driver, "fr-driving"),
    )
    return driver


def test_r12_upheld_appeal_appends_a_reversal_and_cancels_the_decision(book: Book) -> None:
    """R12: "Appeal after a decision → balance and decision restored; the audit chain shows both
    entries" (the acceptance scenario: a French driver at 0 points, licence invalidated; the
    appeal against the last offence is upheld)."""
    driver = _french_driver(book)
    fr = "fr-driving"
    assert book.points(fr, driver) == 0
    ((d, status),) = book.ledger.decisions(fr, driver)
    assert (d.kind, d.triggered_at, status) == (
        "licence-invalidated",
        parse_instant("2024-05-01", zone("Europe/Paris")),
        "in_force",
    )
    entries_before = book.conn.execute(
        "SELECT event_id, rule_id, delta FROM pb_entries WHERE subject = ? ORDER BY event_id",
        (driver,),
    ).fetchall()
    assert entries_before == [
        ("e1", "drink-driving-delit", -6),
        ("e2", "red-light", -4),
        ("e3", "phone-use", -3),
    ]

    appeal = book.ledger.file_appeal(fr, driver, STATEMENT, event_id="e3")
    # While open: e3 does not count (0 + 2 applied = 2) and the decision is held.
    book.set("2024-06-05")
    assert book.points(fr, driver) == 2
    assert book.statuses(fr, driver) == ["pending"]

    book.set("2024-06-15")
    decided = book.ledger.decide_appeal(appeal.id, "upheld", "judge-x", VERDICT)
    assert (decided.outcome, decided.reviewer, decided.decision_reason) == (
        "upheld",
        "judge-x",
        VERDICT,
    )
    book.set("2024-06-20")
    # Restored by hand: 12 - 6 - 4 = 2, the invalidation cancelled.
    assert book.points(fr, driver) == 2
    assert book.statuses(fr, driver) == ["cancelled"]

    view = book.ledger.view(fr, driver)
    assert view["points"] == 2 and [x["status"] for x in view["decisions"]] == ["cancelled"]
    lines = book.ledger.view(fr, driver, explain=True)["entries"]
    (reversed_,) = [ln for ln in lines if ln["kind"] == "reversed"]
    assert (reversed_["event_id"], reversed_["delta"], reversed_["applied"]) == ("e3", -3, 0)
    assert appeal.id in reversed_["reason"] and VERDICT in reversed_["reason"]
    assert [(ln["event_id"], ln["applied"]) for ln in lines if ln["kind"] == "entry"] == [
        ("e1", -6),
        ("e2", -4),
    ]

    exported = book.ledger.export(fr, driver)
    (ap,) = exported["appeals"]
    assert (
        ap["id"],
        ap["event_id"],
        ap["reason"],
        ap["status"],
        ap["reviewer"],
        ap["decision_reason"],
    ) == (
        appeal.id,
        "e3",
        STATEMENT,
        "upheld",
        "judge-x",
        VERDICT,
    )
    assert exported["points"] == 2
    assert [x["status"] for x in exported["decisions"]] == ["cancelled"]

    # The audit chain: the offence, the appeal, its decision, then the decision's withdrawal.
    refs = book.refs()
    order = [
        f"event:{fr}/e3",
        f"decision:{fr}/{d.id}/1",
        f"appeal:{appeal.id}",
        f"appeal-decision:{appeal.id}",
        f"decision:{fr}/{d.id}/2",
    ]
    assert all(r in refs for r in order)
    assert [refs.index(r) for r in order] == sorted(refs.index(r) for r in order)
    assert book.ledger.verify().ok
    # Nothing deleted: the entry of e3 is still there as written.
    entries_after = book.conn.execute(
        "SELECT event_id, rule_id, delta FROM pb_entries WHERE subject = ? ORDER BY event_id",
        (driver,),
    ).fetchall()
    assert entries_after == entries_before
    # Notified: the cancellation is queued once in the outbox.
    changes = [(p["decision_id"], p["change"]) for _, _, p in book.ledger.outbox(fr)]
    assert changes == [(d.id, "new"), (d.id, "cancelled")]


def test_r12_after_an_upheld_appeal_the_reversed_entry_never_counts_at_any_date(
    book: Book,
) -> None:
    """R12 with docs/cli.md ("Upheld: the contested entry is reversed (it never counts …)"): once
    the appeal against e3 is upheld, the balance on any date, including dates before the appeal
    was filed, is computed without e3: 2 on 2024-05-15, consistent with the cancelled decision."""
    driver = _french_driver(book)
    appeal = book.ledger.file_appeal("fr-driving", driver, STATEMENT, event_id="e3")
    book.set("2024-06-15")
    book.ledger.decide_appeal(appeal.id, "upheld", "judge-x", VERDICT)
    book.set("2024-06-20")
    assert book.statuses("fr-driving", driver, "2024-05-15") == ["cancelled"]
    assert book.points("fr-driving", driver, "2024-05-15") == 2


APPEAL_PACK = load_pack_text(
    """\
domain: licence
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Appeal property
purpose: Testing that an upheld appeal is as if the event was never reported.
retention: 5 years
scheme: {kind: balance, start: 12, floor: 0, ceiling: 12}
event_types:
  speeding: {attributes: {over: {type: integer, minimum: 1, maximum: 60}}}
  phone: {}
rules:
  - {id: speed-small, title: Small excess, category: road-safety, basis: Code 1, event: speeding, when: {field: over, lt: 20}, points: -1}
  - {id: speed-big, title: Big excess, category: road-safety, basis: Code 2, event: speeding, when: {field: over, ge: 20}, points: -4}
  - {id: phone, title: Phone, category: road-safety, basis: Code 3, event: phone, points: -3, counts_for: 2 years}
restorations:
  - {id: clean, kind: clean-period, title: Clean period, basis: Code 4, after: 2 years}
  - {id: small, kind: small-loss, title: Small loss back, basis: Code 5, after: 6 months, max_loss: 1}
thresholds:
  - {id: zero, kind: invalidation, title: Zero, basis: Code 6, direction: at_or_below, value: 0, mode: crossing, terminal: true}
  - {id: warn, kind: warning, title: Warning, basis: Code 7, direction: at_or_below, value: 6, mode: crossing, notice: 10 days}
""",
    "licence.yaml",
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    raw=st.lists(
        st.tuples(st.integers(0, 1500), st.sampled_from(["speeding", "phone"]), st.integers(1, 60)),
        min_size=1,
        max_size=10,
    ),
    pick=st.integers(0, 9),
    filed=st.integers(0, 400),
    decided=st.integers(0, 200),
    later=st.lists(st.integers(0, 1500), min_size=1, max_size=3),
)
def test_r12_property_an_upheld_appeal_is_as_if_the_event_was_never_reported(
    raw: list[tuple[int, str, int]], pick: int, filed: int, decided: int, later: list[int]
) -> None:
    """R12: "An upheld appeal appends a reversing entry (no deletion), re-evaluates thresholds,
    reverses the decision": from the appeal's decision on, every figure and decision equals
    that of the same history without the contested event."""
    base = datetime(2020, 1, 1, tzinfo=UTC)
    events = [
        Event(
            f"e{i}",
            "licence",
            "s",
            kind,
            base + timedelta(days=day),
            {"over": over} if kind == "speeding" else {},
            "ref",
            "test",
        )
        for i, (day, kind, over) in enumerate(raw)
    ]
    target = events[pick % len(events)]
    filed_at = target.occurred_at + timedelta(days=filed)
    decided_at = filed_at + timedelta(days=decided)
    appeal = Appeal(
        "a1",
        "licence",
        "s",
        "Not me.",
        filed_at,
        event_id=target.id,
        decided_at=decided_at,
        outcome="upheld",
        reviewer="r",
        decision_reason="Wrong car.",
    )
    without = [e for e in events if e.id != target.id]
    for days in later:
        as_of = decided_at + timedelta(days=days)
        got = evaluate_subject([APPEAL_PACK[0]], events, as_of, subject="s", appeals=[appeal])
        want = evaluate_subject([APPEAL_PACK[0]], without, as_of, subject="s")
        assert got.points == want.points
        assert got.decisions == want.decisions


# --------------------------------------------------------------------------------------------
# R13: a contested entry is restricted; the subject's statement is kept
# --------------------------------------------------------------------------------------------


def test_r13_an_open_appeal_excludes_the_entry_and_the_statement_is_exported(
    book: Book,
) -> None:
    """R13: "Contested entry excluded from balance windows; statement shown in the export".
    Balance: 100 - 30 = 70, back to 100 while contested. Window (3 years): misconduct +3 makes
    the sum 3 and a warning at 3 or more; contested, the sum is 0 and the warning is held."""
    window = """
scheme: {kind: window, length: 3 years, boundary: inclusive}
event_types: {misconduct: {}}
rules:
  - {id: misconduct, title: Misconduct, category: match-conduct, basis: Code of conduct 2, event: misconduct, points: 3}
thresholds:
  - {id: warning, kind: warning, title: Warning, basis: Code of conduct 9, direction: at_or_above, value: 3, mode: crossing}
"""
    book.ledger.publish(mk(TOWN) + mk(window, domain="club"))
    book.set("2024-05-02")
    book.ingest(
        rec("e1", "littering", "2024-05-01"),
        rec("m1", "misconduct", "2024-05-01", domain="club"),
    )
    assert (book.points("town", "s1"), book.points("club", "s1")) == (70, 3)
    assert book.statuses("club", "s1") == ["in_force"]
    book.set("2024-06-01")
    statement = "I was not there: the bag belongs to the shop next door."
    book.ledger.file_appeal("town", "s1", statement, event_id="e1")
    book.ledger.file_appeal("club", "s1", "The referee mistook me for my teammate.", event_id="m1")
    assert (book.points("town", "s1"), book.points("club", "s1")) == (100, 0)
    assert book.statuses("club", "s1") == ["pending"]
    lines = book.ledger.view("town", "s1", explain=True)["entries"]
    assert [ln["state"] for ln in lines if ln["kind"] == "entry"] == ["contested"]
    (ap,) = book.ledger.export("town", "s1")["appeals"]
    assert (ap["event_id"], ap["reason"], ap["status"]) == ("e1", statement, "open")


# --------------------------------------------------------------------------------------------
# R14: proportionality caps
# --------------------------------------------------------------------------------------------

OVER_CAP = """\
domain: town
version: "1"
effective_from: 2020-01-01
title: Town code
purpose: Testing the per-event cap.
retention: 3 years
max_points_per_event: 8
scheme: {kind: balance, start: 20, floor: 0, ceiling: 20}
event_types:
  reckless: {}
  dumping: {attributes: {kg: integer}}
  minor: {}
rules:
  - id: reckless
    title: Reckless conduct
    category: public-order
    basis: Ordinance 1
    event: reckless
    points: -10
    counts_for: 1 year
  - id: by-weight
    title: Dumping, one point per kg
    category: environment
    basis: Ordinance 2
    event: dumping
    points: {attribute: kg, scale: -1}
    counts_for: 1 year
  - id: minor
    title: Minor conduct
    category: public-order
    basis: Ordinance 3
    event: minor
    points: -8
    counts_for: 1 year
"""


def test_r14_lint_refuses_a_rule_above_the_per_event_cap() -> None:
    """R14: "Lint refuses a rule above the cap" (`pack/over-cap`): -10 over a cap of 8, and
    points from an unbounded attribute; -8, at the cap, is fine."""
    with pytest.raises(PackError) as exc:
        load_pack_text(OVER_CAP, "cap.yaml")
    over = [(f.line, f.severity) for f in exc.value.findings if f.code == "pack/over-cap"]
    assert over == [
        (line_of(OVER_CAP, "points: -10"), "error"),
        (line_of(OVER_CAP, "points: {attribute: kg"), "error"),
    ]
    bounded = OVER_CAP.replace(
        "dumping: {attributes: {kg: integer}}",
        "dumping: {attributes: {kg: {type: integer, minimum: 1, maximum: 8}}}",
    ).replace("points: -10", "points: -8")
    assert load_pack_text(bounded, "cap.yaml")[0].spec.max_points_per_event == 8


def test_r14_events_of_one_incident_are_capped_together(book: Book) -> None:
    """R14: "simultaneous events are capped" (France: at most 8 points for offences committed
    together). incident_cap 8; start 20; speeding -6, red light -4. One stop (incident stop-1):
    -6, then -4 capped to -2 (8 in all) -> 12; a red light on its own later: -4 -> 8."""
    body = """
scheme: {kind: balance, start: 20, floor: 0, ceiling: 20}
event_types: {speeding: {}, red_light: {}}
rules:
  - {id: speeding, title: Speeding, category: road-safety, basis: Code 1, event: speeding, points: -6, counts_for: 3 years}
  - {id: red-light, title: Red light, category: road-safety, basis: Code 2, event: red_light, points: -4, counts_for: 3 years}
"""
    book.ledger.publish(mk(body, domain="roads", extra="incident_cap: 8"))
    book.ingest(
        rec("a1", "speeding", "2024-05-01T10:00:00", domain="roads", incident="stop-1"),
        rec("a2", "red_light", "2024-05-01T10:00:00", domain="roads", incident="stop-1"),
        rec("b1", "red_light", "2024-05-20", domain="roads"),
    )
    assert book.points("roads", "s1", "2024-05-02") == 12
    assert book.points("roads", "s1") == 8
    lines = book.ledger.view("roads", "s1", explain=True)["entries"]
    applied = [
        (ln["event_id"], ln["delta"], ln["applied"]) for ln in lines if ln["kind"] == "entry"
    ]
    assert applied == [("a1", -6, -6), ("a2", -4, -2), ("b1", -4, -4)]


# --------------------------------------------------------------------------------------------
# R15: the stop switch
# --------------------------------------------------------------------------------------------


def test_r15_the_stop_switch_holds_sanctions_and_the_outbox_but_not_reads_or_appeals(
    book: Book,
) -> None:
    """R15: "With the switch on, nothing leaves the outbox; overrides appear in the audit log"
    (docs/cli.md: "no decision takes force (those not yet in force stay pending) and nothing
    leaves the outbox; reads, ingest and appeals still work"). TOWN: below 50 after two
    littering entries; hearing 14 days later."""
    book.ledger.publish(mk(TOWN))
    book.set("2024-05-05")
    book.ingest(
        rec("a1", "littering", "2024-03-01", subject="early"),
        rec("a2", "littering", "2024-04-01", subject="early"),  # 40: in force 2024-04-15
        rec("b1", "littering", "2024-04-20", subject="late"),
        rec("b2", "littering", "2024-05-01", subject="late"),  # 40: takes force 2024-05-15
        rec("c1", "noise", "2024-05-02", subject="other"),
    )
    assert len(book.ledger.outbox("town")) == 2
    book.ledger.set_switch("town", True, "Rounding fault under investigation.", "operator-1")
    assert book.ledger.outbox("town") == []
    book.set("2024-05-20")
    assert book.statuses("town", "late") == ["pending"]  # would have taken force on 05-15
    assert book.statuses("town", "early") == ["in_force"]  # in force before the stop
    assert book.points("town", "late") == 40  # reads work
    book.ingest(rec("c2", "noise", "2024-05-19", subject="other"))  # ingest works
    book.ledger.file_appeal("town", "other", "Not my dog.", event_id="c1")  # appeals work
    assert book.points("town", "other") == 90  # c1 contested, c2 counts
    assert book.ledger.outbox("town") == []
    switches = book.conn.execute("SELECT seq, state, reason, actor FROM pb_switches").fetchall()
    assert [s[1:] for s in switches] == [
        ("stopped", "Rounding fault under investigation.", "operator-1")
    ]
    assert f"switch:{switches[0][0]}" in book.refs()
    book.set("2024-05-25")
    book.ledger.set_switch("town", False, "Fault fixed.", "operator-2")
    assert book.statuses("town", "late") == ["in_force"]
    assert len(book.ledger.outbox("town")) == 2
    assert len([r for r in book.refs() if r.startswith("switch:")]) == 2
    assert book.ledger.verify().ok


# --------------------------------------------------------------------------------------------
# R16 / P6: the export, and importing it
# --------------------------------------------------------------------------------------------


def _exporter(book: Book) -> dict[str, Any]:
    """s1 in town: littering 2024-01-10 and 2024-02-10 (100 -> 40: hearing), noise 2024-03-01
    (-> 30), whose appeal is upheld (-> 40 on 2024-06-01). Other people and domains around."""
    book.set("2024-04-01")
    book.ledger.publish(mk(TOWN) + mk(FORUM, domain="forum"))
    book.ingest(
        rec("e1", "littering", "2024-01-10"),
        rec("e2", "littering", "2024-02-10"),
        rec("e3", "noise", "2024-03-01"),
        rec("x1", "littering", "2024-02-11", subject="s2-other-person", evidence="other-ev-55"),
        rec("f1", "spam", "2024-03-02", domain="forum", evidence="forum-ev-66"),
    )
    appeal = book.ledger.file_appeal("town", "s1", "It was the neighbours' party.", event_id="e3")
    book.set("2024-04-20")
    book.ledger.decide_appeal(appeal.id, "upheld", "reviewer-b", "The noise came from next door.")
    book.set("2024-06-01")
    return book.ledger.export("town", "s1")


def test_r16_export_then_import_into_an_empty_store_gives_the_same_record(
    book: Book, tmp_path: Path
) -> None:
    """R16: "Export → import into an empty store gives the same balances …; the export contains
    no foreign subject IDs". (The checklist's "same audit root" cannot hold as written: the
    audit log commits to salted rows and the import's own write times.)"""
    exported = _exporter(book)
    assert exported["points"] == 40
    text = json.dumps(exported)
    assert "s2-other-person" not in text and "other-ev-55" not in text and "forum-ev-66" not in text
    assert {e["id"] for e in exported["events"]} == {"e1", "e2", "e3"}
    other = Book(tmp_path / "imported.db", "2024-06-01")
    try:
        assert other.ledger.import_record(json.loads(text)) == 3
        assert other.points("town", "s1") == 40
        for as_of in ("2024-02-15", "2024-03-15", "2025-03-01"):
            assert other.points("town", "s1", as_of) == book.points("town", "s1", as_of)
        assert other.ledger.decisions("town", "s1") == book.ledger.decisions("town", "s1")
        assert json.loads(json.dumps(other.ledger.export("town", "s1"))) == json.loads(text)
        assert other.ledger.verify().ok
    finally:
        other.ledger.close()


def test_r16_a_confirmed_decision_survives_export_and_import(book: Book, tmp_path: Path) -> None:
    """R16: the export holds "decisions" and import gives "the same balances": a decision a
    reviewer confirmed (R11) is in force in the original store; after export and import into an
    empty store it is still in force, with its reviewer."""
    book.set("2024-05-03")
    book.ledger.publish(mk(PANEL.replace(", REVIEW", ", review: required"), domain="panel"))
    book.ingest(
        rec("e1", "offence", "2024-05-01", domain="panel"),
        rec("e2", "offence", "2024-05-02", domain="panel"),
    )
    ((d, _),) = book.ledger.decisions("panel", "s1")
    book.ledger.confirm_decision("panel", d.id, "reviewer-b", "Checked.")
    book.set("2024-05-04")
    assert book.statuses("panel", "s1") == ["in_force"]
    exported = book.ledger.export("panel", "s1")
    other = Book(tmp_path / "imported.db", "2024-05-04")
    try:
        other.ledger.import_record(exported)
        assert other.statuses("panel", "s1") == ["in_force"]
    finally:
        other.ledger.close()


def test_p6_a_person_sees_the_balance_at_any_date_and_what_will_change_next(book: Book) -> None:
    """P6: "A person can see their balance at any date, why it is what it is (every
    contributing entry, in plain words), what will expire when, and export their whole
    record." Littering 2024-01-10 (-30 for 1 year); noise 2024-03-01 (-10 for 6 months)."""
    book.ledger.publish(mk(TOWN))
    book.ingest(rec("e1", "littering", "2024-01-10"), rec("e2", "noise", "2024-03-01"))
    assert book.points("town", "s1", "2024-01-09") == 100
    assert book.points("town", "s1", "2024-02-01") == 70
    assert book.points("town", "s1", "2024-06-01") == 60
    assert book.points("town", "s1", "2024-09-01") == 70  # the noise stopped counting
    explained = book.ledger.view("town", "s1", as_of=utc("2024-06-01"), explain=True)
    assert [(u["kind"], u["occurred_at"], u["applied"]) for u in explained["upcoming"]][:2] == [
        ("expiry", "2024-09-01", 10),
        ("expiry", "2025-01-10", 30),
    ]
    reasons = [ln["reason"] for ln in explained["entries"] if ln["kind"] == "entry"]
    assert reasons[0].startswith("Littering") and reasons[1].startswith("Noise after hours")
    assert set(book.ledger.export("town", "s1")) >= {
        "events",
        "ledger_entries",
        "pack_versions",
        "appeals",
    }


# --------------------------------------------------------------------------------------------
# R17: explanation and counterfactual
# --------------------------------------------------------------------------------------------

WEIGHED = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {attributes: {kg: {type: integer, minimum: 1, maximum: 100}}}
rules:
  - {id: litter, title: Littering by weight, category: public-order, basis: Ordinance 4, event: littering, points: {attribute: kg, scale: -1}, counts_for: 1 year}
thresholds:
  - {id: hearing, kind: hearing, title: Hearing, basis: Due-process policy, direction: below, value: 50, mode: crossing}
"""


def test_r17_each_entry_says_when_it_stops_counting_and_the_counterfactual_is_exact(
    book: Book,
) -> None:
    """R17: "Golden explanations cited from the pack; the counterfactual equals an engine
    recomputation on the shifted date". 30 kg on 2024-01-10: 100 - 30 = 70 until 2025-01-10;
    below 50 is 70 - 50 + 1 = 21 points away."""
    book.ledger.publish(mk(WEIGHED))
    book.ingest(rec("e1", "littering", "2024-01-10", kg=30))
    explained = book.ledger.view("town", "s1", explain=True)
    (line,) = [ln for ln in explained["entries"] if ln["kind"] == "entry"]
    assert (line["event_id"], line["rule_id"], line["pack_version"]) == ("e1", "litter", "1")
    assert line["reason"].startswith("Littering by weight") and "-30" in line["reason"]
    assert (line["counts"], line["expires_at"]) == (True, "2025-01-10")
    assert explained["next_threshold"] == {"kind": "hearing", "level": 50, "points_away": 21}
    # The date it stops counting, recomputed: counts up to just before, not from then on.
    assert book.points("town", "s1", "2025-01-09T23:59:59") == 70
    assert book.points("town", "s1", "2025-01-10") == 100
    # The counterfactual, recomputed by the engine: 21 more points reach the threshold, 20 do not.
    versions = book.ledger.versions("town")
    events = book.ledger.store.subject_events("town", ["s1"])["s1"]
    now = book.clock[0]
    for kg, reached in ((21, True), (20, False)):
        extra = Event("cf", "town", "s1", "littering", now, {"kg": kg}, "cf", "what-if")
        state = evaluate_subject(versions, [*events, extra], now, subject="s1")
        assert state.points == 70 - kg
        assert [d.kind for d in state.decisions] == (["hearing"] if reached else [])
    # The export carries the event fields the rule read.
    (event,) = book.ledger.export("town", "s1")["events"]
    assert event["attributes"] == {"kg": 30}


# --------------------------------------------------------------------------------------------
# R18 / P7: forgetting
# --------------------------------------------------------------------------------------------

SECRETS = ("EVID-7f3a9c-UNIQUE", "officer-7f3a-UNIQUE", "Rue-Q9-7f3a-UNIQUE")
FORGETFUL = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering: {attributes: {place: string}}
rules:
  - {id: litter, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -30, counts_for: 6 months}
"""


def _cli(db: Path, *args: str) -> str:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", COLUMNS="1000", PYTHONIOENCODING="utf-8")
    env.pop("POINTBOOK_DB", None)
    done = subprocess.run(
        [sys.executable, "-m", "pointbook", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _forget(book: Book) -> tuple[str, ...]:
    """Retention 1 year: on 2024-06-01 the event of 2023-01-10 is erased (cutoff 2023-06-01)
    and the one of 2024-05-01 kept. By hand: 70 on 2023-02-01 (-30 until 2023-07-10), 100 on
    2023-08-01, 70 on 2024-06-01 (-30 until 2024-11-01). Returns the as-of times."""
    book.ledger.publish(mk(FORGETFUL, retention="1 year"))
    book.set("2023-01-11")
    book.ingest(
        rec(
            "e1",
            "littering",
            "2023-01-10",
            evidence=SECRETS[0],
            issuer=SECRETS[1],
            place=SECRETS[2],
        )
    )
    book.set("2024-06-01")
    book.ingest(rec("e2", "littering", "2024-05-01", evidence="ticket-2", place="Main St"))
    times = ("2023-02-01", "2023-08-01", "2024-06-01")
    assert [book.points("town", "s1", t) for t in times] == [70, 100, 70]
    return times


def _file_bytes(book: Book) -> bytes:
    """The database file with its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in sorted(book.path.parent.glob(book.path.name + "*")))


def test_r18_after_retention_no_api_cli_or_sql_returns_the_erased_details(book: Book) -> None:
    """R18: "Time-travel test: after `retain_until` no API, CLI or SQL query returns the fields;
    the chain still verifies; balances are unchanged"."""
    times = _forget(book)
    assert book.ledger.run_retention() == {"town": 1}
    assert [book.points("town", "s1", t) for t in times] == [70, 100, 70]
    assert book.ledger.verify().ok
    # API
    api = json.dumps(
        [
            book.ledger.view("town", "s1", explain=True),
            book.ledger.view("town", "s1", as_of=utc("2023-02-01"), explain=True),
            book.ledger.export("town", "s1"),
            [repr(e) for e in book.ledger.store.subject_events("town", ["s1"])["s1"]],
            [repr(n) for n in book.ledger.store.subject_entries("town", "s1")],
        ]
    )
    assert [s for s in SECRETS if s in api] == []
    (erased,) = [e for e in book.ledger.export("town", "s1")["events"] if e["id"] == "e1"]
    assert (
        erased["details_erased"],
        erased["attributes"],
        erased["evidence"],
        erased["issuer"],
    ) == (
        True,
        {},
        None,
        None,
    )
    # SQL: no cell of any table
    tables = [
        r[0] for r in book.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    found = []
    for table in tables:
        for row in book.conn.execute(f"SELECT * FROM {table}"):
            found += [
                (table, s) for s in SECRETS for cell in row if isinstance(cell, str) and s in cell
            ]
    assert found == []
    # CLI
    out = _cli(book.path, "export", "town", "s1") + _cli(
        book.path, "explain", "town", "s1", "--json"
    )
    assert [s for s in SECRETS if s in out] == []


def test_r18_after_retention_the_database_file_no_longer_holds_the_erased_details(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R18: "after `retain_until` no API, CLI or SQL query returns the fields": nor does reading
    the SQLite file itself (grep of its bytes, WAL included, after the ledger is closed). Run as
    on a stock SQLite build, where `secure_delete` is off by default (this machine's Debian
    build turns it on at compile time); pointbook's own PRAGMAs come after and win."""
    real_connect = sqlite3.connect

    def stock_build(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete = OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", stock_build)
    book = Book(tmp_path / "x.db")
    try:
        _forget(book)
        assert SECRETS[0].encode() in _file_bytes(book)  # the grep sees what is there
        assert book.ledger.run_retention() == {"town": 1}
    finally:
        book.ledger.close()
    raw = _file_bytes(book)
    assert [s for s in SECRETS if s.encode() in raw] == []


def test_p7_a_pack_must_say_how_long_records_stay_and_deductions_end(
    book: Book, tmp_path: Path
) -> None:
    """P7: "a pack must state how long any entry stays on the record" (`pack/no-retention`) and
    "Deductions expire or are restored as the pack says": noise -10 counts for 6 months."""
    text = PROHIBITED_PACK.replace("category: religion", "category: public-order").replace(
        "retention: 3 years\n", ""
    )
    f = tmp_path / "town.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(PackError) as exc:
        book.ledger.publish_file(f)
    assert "pack/no-retention" in {x.code for x in exc.value.findings}
    book.ledger.publish(mk(TOWN))
    book.ingest(rec("e1", "noise", "2024-01-15"))
    assert book.points("town", "s1", "2024-07-14T23:59:59") == 90
    assert book.points("town", "s1", "2024-07-15") == 100


# --------------------------------------------------------------------------------------------
# R19: minimisation and purpose binding
# --------------------------------------------------------------------------------------------


def test_r19_unknown_attributes_and_fields_are_rejected_and_free_text_is_bounded(
    book: Book,
) -> None:
    """R19: "Domain without a purpose → refused; extra fields → 422" (here: rejected with their
    code; the purpose is the next test). An undeclared attribute, an unknown top-level field,
    an undeclared event type and evidence over 500 characters are all rejected; appeal reasons
    are bounded too."""
    book.ledger.publish(mk(WEIGHED))
    lines = [
        {
            "id": "a",
            "domain": "town",
            "subject": "s1",
            "type": "littering",
            "occurred_at": "2024-05-01",
            "attributes": {"kg": 3, "religion": "x"},
        },
        {
            "id": "b",
            "domain": "town",
            "subject": "s1",
            "type": "littering",
            "occurred_at": "2024-05-01",
            "attributes": {"kg": 3},
            "phone_number": "+33 6",
        },
        {
            "id": "c",
            "domain": "town",
            "subject": "s1",
            "type": "loitering",
            "occurred_at": "2024-05-01",
        },
        {
            "id": "d",
            "domain": "town",
            "subject": "s1",
            "type": "littering",
            "occurred_at": "2024-05-01",
            "attributes": {"kg": 3},
            "evidence": "x" * 501,
        },
        {
            "id": "ok",
            "domain": "town",
            "subject": "s1",
            "type": "littering",
            "occurred_at": "2024-05-01",
            "attributes": {"kg": 3},
            "evidence": "x" * 500,
        },
    ]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    report = book.ledger.ingest(read_records(io.BytesIO(data), "jsonl"))
    assert report.accepted == 1
    assert [(r.line, r.code) for r in report.rejected] == [
        (1, "event/attributes"),
        (2, "event/invalid"),
        (3, "event/unknown-type"),
        (4, "event/invalid"),
    ]
    assert "religion" in report.rejected[0].reason
    with pytest.raises(ProcessError):
        book.ledger.file_appeal("town", "s1", "y" * 2001, event_id="ok")


def test_r19_a_pack_without_a_purpose_is_refused() -> None:
    """R19: "Domain without a purpose → refused"."""
    text = PROHIBITED_PACK.replace("category: religion", "category: public-order").replace(
        "purpose: Testing the guardrails through the ledger.\n", ""
    )
    with pytest.raises(PackError) as exc:
        load_pack_text(text, "town.yaml")
    assert any(f.code == "pack/schema" and "purpose" in f.message for f in exc.value.findings)


# --------------------------------------------------------------------------------------------
# R20: no per-subject listing across domains
# --------------------------------------------------------------------------------------------

# Public Ledger methods without a required `domain`, and why none lists or scores subjects
# across domains.
LEDGER_WITHOUT_DOMAIN = {
    "open": "opens a store",
    "close": "closes it",
    "publish_file": "publishes pack versions (public); returns one result per version",
    "publish": "the same, for compiled versions",
    "to_event": "checks one record an issuer sent (its domain is in it)",
    "check_event": "the same check, returning the version in force instead of entries",
    "ingest": "an issuer's own records; the report echoes back what it sent",
    "ingest_one": "the same, one record",
    "refresh_decisions": "re-derives decisions; returns a count",
    "decide_appeal": "one appeal, by its random id",
    "decision_status": "the status of a decision the caller already holds",
    "verify": "the audit chain: counts and hashes, no personal data",
    "run_retention": "erasure counts per domain",
    "redeem_share": "the one record its subject chose to share",
    "import_record": "one exported record; returns a count",
}


def test_r20_no_ledger_call_lists_or_scores_subjects_across_domains(book: Book) -> None:
    """R20: "Authorization matrix (B8): auditor and anonymous users never get a per-subject
    value". There are no roles yet (the HTTP service is not built; aggregates for auditors are
    out of scope here): what exists is the library, where every method that reads a subject
    takes one required domain, and the few that do not return no subject."""
    without = set()
    for name, fn in inspect.getmembers(Ledger, callable):
        if name.startswith("_"):
            continue
        p = inspect.signature(fn).parameters.get("domain")
        if p is None or p.default is not inspect.Parameter.empty:
            without.add(name)
    assert without == set(LEDGER_WITHOUT_DOMAIN)
    book.ledger.publish(mk(TOWN) + mk(FORUM, domain="forum"))
    subjects = ("s1", "only-town-7", "only-forum-8")
    book.ingest(
        rec("e1", "littering", "2024-01-10", subject="s1"),
        rec("e2", "littering", "2024-02-10", subject="only-town-7"),
        rec("e1", "spam", "2024-01-10", subject="s1", domain="forum"),
        rec("e3", "spam", "2024-01-11", subject="only-forum-8", domain="forum"),
    )
    results = repr(
        (book.ledger.refresh_decisions(), book.ledger.verify(), book.ledger.run_retention())
    )
    assert [s for s in subjects if s in results] == []


# --------------------------------------------------------------------------------------------
# R21: ne bis in idem
# --------------------------------------------------------------------------------------------


def test_r21_one_source_event_gives_at_most_one_entry_per_rule(book: Book) -> None:
    """R21: "*Ne bis in idem*: one source event → at most one entry per rule (event id =
    idempotency key)". Two rules match littering (-2 and -1): reporting e1 three times, in one
    batch and in another, gives two entries and 100 - 3 = 97."""
    body = """
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types: {littering: {}}
rules:
  - {id: litter-fine, title: Littering, category: public-order, basis: Ordinance 4, event: littering, points: -2, counts_for: 1 year}
  - {id: litter-cleanup, title: Clean-up cost, category: public-order, basis: Ordinance 5, event: littering, points: -1, counts_for: 1 year}
"""
    book.ledger.publish(mk(body))
    first = book.ingest(rec("e1", "littering", "2024-05-01"), rec("e1", "littering", "2024-05-01"))
    again = book.ingest(rec("e1", "littering", "2024-05-01"))
    assert (first.accepted, first.duplicates, again.accepted, again.duplicates) == (1, 1, 0, 1)
    rows = book.conn.execute(
        "SELECT rule_id FROM pb_entries WHERE event_id = 'e1' ORDER BY rule_id"
    ).fetchall()
    assert rows == [("litter-cleanup",), ("litter-fine",)]
    assert book.points("town", "s1") == 97
    with pytest.raises(sqlite3.IntegrityError):
        book.conn.execute(
            "INSERT INTO pb_entries SELECT * FROM pb_entries WHERE event_id = 'e1' AND rule_id = 'litter-fine'"
        )


# --------------------------------------------------------------------------------------------
# R22 / P8: rulebook transparency and tamper evidence
# --------------------------------------------------------------------------------------------


def test_r22_published_packs_are_hashed_audited_and_cited_and_a_changed_pack_fails_verify(
    book: Book,
) -> None:
    """R22: "Changing a published pack's bytes → verification fails" (packs are hashed and
    appended to the audit log; every entry cites the pack hash)."""
    (version,) = mk(TOWN)
    book.ledger.publish([version])
    book.ingest(rec("e1", "littering", "2024-05-01"))
    text, stored_hash = book.conn.execute(
        "SELECT text, content_hash FROM pb_pack_versions WHERE domain = 'town'"
    ).fetchone()
    assert (
        stored_hash == "sha256:" + hashlib.sha256(text.encode()).hexdigest() == version.content_hash
    )
    assert "pack:town/1" in book.refs()
    (entry,) = book.ledger.store.subject_entries("town", "s1")
    assert entry.pack_hash == stored_hash
    assert book.ledger.export("town", "s1")["ledger_entries"][0]["pack_hash"] == stored_hash
    assert book.ledger.verify().ok
    book.conn.execute("UPDATE pb_pack_versions SET text = replace(text, '-30', '-60')")
    result = book.ledger.verify()
    assert not result.ok and "pack:town/1" in (result.reason or "")


def _tamper_book(path: Path) -> Book:
    """Every kind of audited row: packs, events and entries, decision revisions, a confirmation,
    an appeal and its decision, the stop switch."""
    b = Book(path, "2024-04-01")
    b.ledger.publish(mk(TOWN.replace("notice: 14 days}", "notice: 14 days, review: required}")))
    b.ingest(
        rec("e1", "littering", "2024-01-10"),
        rec("e2", "littering", "2024-02-10"),
        rec("e3", "noise", "2024-03-01", subject="s2"),
    )
    ((d, _),) = b.ledger.decisions("town", "s1")
    b.ledger.confirm_decision("town", d.id, "reviewer-b", "Checked.")
    appeal = b.ledger.file_appeal("town", "s2", "Not me.", event_id="e3")
    b.ledger.decide_appeal(appeal.id, "upheld", "reviewer-b", "Wrong house.")
    b.ledger.set_switch("town", True, "Test.", "operator-1")
    return b


TAMPERING = {
    "an event changed": (
        "UPDATE pb_events SET evidence = 'forged' WHERE id = 'e1'",
        "event:town/e1",
    ),
    "an entry deleted": ("DELETE FROM pb_entries WHERE event_id = 'e2'", "event:town/e2"),
    "an entry changed": ("UPDATE pb_entries SET delta = -1 WHERE event_id = 'e1'", "event:town/e1"),
    "an event inserted": (
        "INSERT INTO pb_events SELECT domain, 'e9', subject, type, occurred_us, attributes,"
        " evidence, issuer, content_hash, received_us, incident, salt, erased_us"
        " FROM pb_events WHERE id = 'e1'",
        "event:town/e9",
    ),
    "a decision changed": (
        "UPDATE pb_decisions SET effective_us = effective_us + 1",
        "decision:town/",
    ),
    "an appeal changed": ("UPDATE pb_appeals SET reason = 'forged'", "appeal:"),
    "an appeal decision changed": (
        "UPDATE pb_appeal_decisions SET outcome = 'dismissed'",
        "appeal-decision:",
    ),
    "a confirmation deleted": ("DELETE FROM pb_confirmations", "confirmation:"),
    "a switch changed": ("UPDATE pb_switches SET actor = 'someone-else'", "switch:"),
    "an audit record deleted": ("DELETE FROM pb_audit WHERE seq = 2", "record 3"),
}


def test_p8_a_clean_ledger_verifies() -> None:
    """P8: "Every write is appended to a hash-chained audit log that anyone holding the log can
    verify": untouched, the log verifies, one record per audited write."""
    with tempfile.TemporaryDirectory() as tmp:
        b = _tamper_book(Path(tmp) / "x.db")
        try:
            result = b.ledger.verify()
            assert result.ok and result.records == len(b.refs())
            kinds = {r.partition(":")[0] for r in b.refs()}
            assert kinds == {
                "pack",
                "event",
                "decision",
                "confirmation",
                "appeal",
                "appeal-decision",
                "switch",
                "outbox",
            }
        finally:
            b.ledger.close()


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_p8_a_row_changed_removed_or_added_behind_pointbooks_back_fails_verify(
    case: str, tmp_path: Path
) -> None:
    """P8: "Tamper evidence": a pb_events row changed, a pb_entries row deleted, a row inserted
    directly, a decision, appeal, confirmation or switch changed, an audit record removed →
    `verify` fails and names the record."""
    b = _tamper_book(tmp_path / "x.db")
    try:
        sql, named = TAMPERING[case]
        assert b.conn.execute(sql).rowcount >= 1
        result = b.ledger.verify()
        assert not result.ok
        assert named in (result.reason or ""), result.reason
    finally:
        b.ledger.close()


def test_p8_reordering_the_audit_log_fails_verify(tmp_path: Path) -> None:
    """P8: "changing, removing or reordering a record breaks the chain": records 2 and 3 swap
    contents; verify fails at record 2."""
    b = _tamper_book(tmp_path / "x.db")
    try:
        cols = "at_us, kind, domain, ref, commitment, prev, hash"
        two, three = (
            b.conn.execute(f"SELECT {cols} FROM pb_audit WHERE seq = ?", (n,)).fetchone()
            for n in (2, 3)
        )
        sets = ", ".join(f"{c} = ?" for c in cols.split(", "))
        b.conn.execute(f"UPDATE pb_audit SET {sets} WHERE seq = 2", (*three,))
        b.conn.execute(f"UPDATE pb_audit SET {sets} WHERE seq = 3", (*two,))
        result = b.ledger.verify()
        assert (result.ok, result.first_bad) == (False, 2)
        assert "record 2" in (result.reason or "")
    finally:
        b.ledger.close()


def test_p8_deleting_an_undelivered_notification_fails_verify(tmp_path: Path) -> None:
    """P8: "Every write is appended to a hash-chained audit log": the outbox is written with
    each decision revision (R12 "notifies"); a queued notification removed behind pointbook's
    back (so the person is never told) must fail verification."""
    b = _tamper_book(tmp_path / "x.db")
    try:
        assert b.conn.execute("DELETE FROM pb_outbox").rowcount >= 1
        assert not b.ledger.verify().ok
    finally:
        b.ledger.close()


def test_p8_subject_erasure_keeps_the_chain_verifiable(book: Book) -> None:
    """P8: "the log holds commitments, not personal data, so erasure never breaks it". With
    `erasure_on_request: true` a subject's whole record goes and verify still passes; without
    it, erasure on request is refused."""
    book.ledger.publish(mk(TOWN, extra="erasure_on_request: true") + mk(FORUM, domain="forum"))
    book.ingest(
        rec("e1", "littering", "2024-01-10"),
        rec("e2", "littering", "2024-02-10"),
        rec("e3", "noise", "2024-03-01", subject="s2"),
        rec("f1", "spam", "2024-03-01", domain="forum"),
    )
    appeal = book.ledger.file_appeal("town", "s1", "Not me.", event_id="e1")
    book.ledger.decide_appeal(appeal.id, "dismissed", "reviewer-b", "It was.")
    counts = book.ledger.erase_subject("town", "s1")
    assert counts["pb_events"] == 2 and counts["pb_appeals"] == 1
    assert book.ledger.verify().ok
    assert book.points("town", "s1") == 100 and book.points("town", "s2") == 90
    assert book.ledger.store.subject_entries("town", "s1") == []
    with pytest.raises(ProcessError, match="erasure_on_request"):
        book.ledger.erase_subject("forum", "s1")
    assert book.points("forum", "s1") == 50
