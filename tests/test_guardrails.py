"""The pack guardrails: what no pack may say (principles 1, 2, 3, 7 and 9; checklist R1-R3).

Every guardrail is an error finding with `file:line`, a stable code and a message naming the
principle; nothing turns one off. The refused reference is examples/refused/social-credit.yaml,
the 2020 Suzhou code with its widening, which must break on every principle it violates.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer.main

from pointbook.errors import PackError
from pointbook.rules import categories, guardrails
from pointbook.rules.findings import Finding
from pointbook.rules.lint import CHECKS, lint_documents
from pointbook.rules.load import read_pack_documents
from pointbook.rules.pack import _load, load_pack_text

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "pointbook"
SOCIAL = ROOT / "examples" / "refused" / "social-credit.yaml"
PACKS = sorted((ROOT / "examples" / "packs").glob("*.yaml"))

BASE = """\
domain: town
version: "1"
effective_from: 2020-01-01
title: Town code
purpose: Testing the guardrails.
scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}
event_types:
  littering:
    attributes:
      weight_kg: number
      place: {type: string, required: false}
rules:
  - id: litter
    title: Littering
    category: public-order
    basis: Town ordinance 4
    event: littering
    when: {field: weight_kg, ge: 1}
    points: -5
    counts_for: 1 year
retention: 3 years
"""

WINDOW = BASE.replace(
    "scheme: {kind: balance, start: 100, floor: 0, ceiling: 100}",
    "scheme: {kind: window, length: 2 years, boundary: exclusive}",
)


def lint(text: str) -> list[Finding]:
    findings, _ = lint_documents(read_pack_documents("p.yaml", textwrap.dedent(text)))
    return findings


def line_of(text: str, fragment: str, after: str | None = None) -> int:
    """The line of the first ``fragment``, or of the first one after the line holding ``after``."""
    start = 0 if after is None else line_of(text, after)
    for n, line in enumerate(text.splitlines(), start=1):
        if n > start and fragment in line:
            return n
    raise AssertionError(f"{fragment!r} not found after {after!r}")


def with_code(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


def only(findings: list[Finding], code: str) -> Finding:
    hits = with_code(findings, code)
    assert len(hits) == 1, findings
    return hits[0]


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def add_rule(text: str, rule: str) -> str:
    block = textwrap.indent(textwrap.dedent(rule), "  ")
    return text.replace("retention: 3 years", block + "retention: 3 years")


def add_event_type(text: str, event_type: str) -> str:
    return text.replace("rules:\n", textwrap.indent(textwrap.dedent(event_type), "  ") + "rules:\n")


def test_the_base_fixture_is_clean() -> None:
    assert lint(BASE) == []
    assert lint(WINDOW) == []


# ---------------------------------------------------------------------------------------------
# The refused reference: the 2020 Suzhou code, with its widening
# ---------------------------------------------------------------------------------------------

SOCIAL_TEXT = SOCIAL.read_text(encoding="utf-8")

# (code, severity, fragment, after): the finding expected at the line of `fragment` (the first
# one after the line of `after`), one group per principle the pack breaks.
SOCIAL_EXPECTED = {
    "P1 one domain": [
        ("pack/cross-domain", "error", "source_domains:", None),
        ("pack/cross-domain", "error", "consequence_domains:", None),
        ("pack/cross-domain", "error", "attributes: {priority_domains", None),
    ],
    "P2 only conduct": [
        ("pack/prohibited-category", "error", "category: political-opinion", None),
        ("pack/prohibited-category", "error", "category: association", None),
        ("pack/prohibited-category", "error", "category: purchases", None),
        ("pack/prohibited-event-type", "error", "  political_comment:", "event_types:"),
        ("pack/prohibited-event-type", "error", "  associated_with_debtor:", "event_types:"),
        ("pack/prohibited-event-type", "error", "  online_purchase:", "event_types:"),
        ("pack/sensitive-attribute", "warning", "criticises_government: {type", None),
        ("pack/sensitive-attribute", "error", "field: criticises_government", None),
    ],
    "P3 own conduct": [
        ("pack/outside-reference", "error", "field: associate.balance", None),
    ],
    "P7 forgiveness": [
        ("pack/endless-deduction", "error", "points: -50", "id: red-light"),
        ("pack/endless-deduction", "error", "points: -100", "id: drink-driving"),
        ("pack/endless-deduction", "error", "points: -50", "id: critical-comment"),
        ("pack/endless-deduction", "error", "points: -30", "id: associating-with-debtor"),
        ("pack/endless-deduction", "error", "points: -10", "id: online-purchase"),
        ("pack/endless-deduction", "error", "points: -20", "id: appeal-filed"),
        ("pack/no-retention", "error", "domain: suzhou-civility", None),
    ],
    "P9 rights cost nothing": [
        ("pack/reserved-event-type", "error", "  appeal_filed:", "event_types:"),
        ("pack/reserved-event-type", "error", "event: appeal_filed", None),
    ],
}
PRINCIPLE_WORDS = {
    "P1 one domain": "principle 1",
    "P2 only conduct": "principle 2",
    "P3 own conduct": "principle 3",
    "P7 forgiveness": "principle 7",
    "P9 rights cost nothing": "principle 9",
}


def _expected(principle: str) -> set[tuple[str, str, int]]:
    return {
        (code, severity, line_of(SOCIAL_TEXT, fragment, after))
        for code, severity, fragment, after in SOCIAL_EXPECTED[principle]
    }


@pytest.mark.parametrize("principle", sorted(SOCIAL_EXPECTED))
def test_r1_r2_r3_social_credit_is_refused_for_each_principle_at_its_line(principle: str) -> None:
    """R1-R3: the Suzhou code as a pack gets a finding per principle it breaks, at its line."""
    findings, specs = lint_documents(read_pack_documents(SOCIAL))
    assert specs == [None]
    got = {(f.code, f.severity, f.line) for f in findings}
    missing = _expected(principle) - got
    assert not missing, "\n".join(f.format() for f in findings)
    for f in findings:
        if (f.code, f.severity, f.line) in _expected(principle) and f.severity == "error":
            assert PRINCIPLE_WORDS[principle] in f.message, f.format()
            assert f.file == str(SOCIAL)


def test_social_credit_cannot_be_loaded_even_leniently() -> None:
    with pytest.raises(PackError) as exc:
        load_pack_text(SOCIAL_TEXT, "social-credit.yaml")
    assert exc.value.findings and str(exc.value).startswith("social-credit.yaml:")
    versions, findings = _load(read_pack_documents(SOCIAL), strict=False)
    assert versions == [] and findings


def test_social_credit_is_refused_by_the_pack_lint_command() -> None:
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", COLUMNS="200", PYTHONIOENCODING="utf-8")
    env.pop("POINTBOOK_DB", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pointbook", "pack", "lint", "examples/refused/social-credit.yaml"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    printed = set(
        re.findall(
            r"^examples/refused/social-credit\.yaml:(\d+): (error|warning)\[([^\]]+)\]", out, re.M
        )
    )
    for principle in SOCIAL_EXPECTED:
        for code, severity, line in _expected(principle):
            assert (str(line), severity, code) in printed, f"{principle}: {code} at {line}\n{out}"


# ---------------------------------------------------------------------------------------------
# R1 / principle 2: prohibited categories, event types and attributes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", sorted(categories.PROHIBITED))
def test_r1_each_prohibited_category_is_refused_with_file_and_line(category: str) -> None:
    """R1: one fixture per prohibited category: refused at the category's line, whatever else."""
    text = BASE.replace("category: public-order", f"category: {category}")
    f = only(lint(text), "pack/prohibited-category")
    assert (f.file, f.line, f.severity) == (
        "p.yaml",
        line_of(text, f"category: {category}"),
        "error",
    )
    assert categories.PROHIBITED[category] in f.message and "principle 2" in f.message
    with pytest.raises(PackError) as exc:
        load_pack_text(text, "p.yaml")
    assert str(exc.value).startswith(f"p.yaml:{f.line}: error[pack/prohibited-category]: ")


def test_r1_the_prohibited_groups_are_the_nine_of_principle_2() -> None:
    assert categories.PROHIBITED_GROUPS == (
        "political opinion or expression about authorities",
        "religion or belief",
        "trade-union or party membership",
        "association with or relationships to other people",
        "ethnicity or origin",
        "health",
        "sex life or orientation",
        "biometric data",
        "purchases or consumption",
    )
    assert set(categories.PROHIBITED.values()) == set(categories.PROHIBITED_GROUPS)
    assert set(categories.SENSITIVE_WORDS.values()) == set(categories.PROHIBITED_GROUPS)
    assert not categories.ALLOWED & set(categories.PROHIBITED)


R1_EVENT_TYPES = [
    ("political_comment", "political"),
    ("church_attendance", "church"),
    ("union_meeting", "union"),
    ("associated_with_debtor", "associated"),
    ("ethnic_origin_check", "ethnic"),
    ("health_diagnosis", "health"),
    ("sexual_orientation_report", "sexual"),
    ("fingerprint_scan", "fingerprint"),
    ("online_purchase", "purchase"),
    ("friends_with_offender", "friend"),
    ("purchases_2", "purchase"),
]


@pytest.mark.parametrize(("name", "word"), R1_EVENT_TYPES)
def test_r1_an_event_type_whose_name_reveals_a_prohibited_category_is_refused(
    name: str, word: str
) -> None:
    """R1: the event type, not only the category, is refused, at the event type's line."""
    text = add_event_type(BASE, f"{name}: {{}}\n")
    text = add_rule(
        text,
        f"""\
        - id: other
          title: Other
          category: public-order
          basis: Town ordinance 5
          event: {name}
          points: 1
        """,
    )
    f = only(lint(text), "pack/prohibited-event-type")
    assert f.line == line_of(text, f"  {name}:")
    assert repr(word) in f.message and "principle 2" in f.message and f.severity == "error"


@pytest.mark.parametrize(
    ("name", "category", "refused"),
    [
        ("noisy_party", "noise", False),
        ("noisy_party", "public-order", False),
        ("noisy_party", "content-quality", True),
        ("rugby_union_foul", "match-conduct", False),
        ("rugby_union_foul", "public-order", True),
        ("street_race", "road-safety", False),
        ("church_attendance", "public-order", True),
        ("church_attendance", "noise", True),
    ],
)
def test_an_event_type_word_is_allowed_only_under_a_justifying_category(
    name: str, category: str, refused: bool
) -> None:
    text = add_event_type(BASE, f"{name}: {{}}\n")
    text = add_rule(
        text,
        f"""\
        - id: other
          title: Other
          category: {category}
          basis: Town ordinance 5
          event: {name}
          points: 1
        """,
    )
    assert ("pack/prohibited-event-type" in codes(lint(text))) is refused


def test_a_justifiable_event_type_no_rule_matches_is_refused() -> None:
    text = add_event_type(BASE, "noisy_party: {}\n")
    f = only(lint(text), "pack/prohibited-event-type")
    assert "noise or public-order" in f.message


def test_innocent_names_that_only_contain_a_word_are_not_matched() -> None:
    assert categories.sensitive_words("community_wiki") == []
    assert categories.sensitive_words("cast_answer_downvote") == []
    assert categories.sensitive_words("relative_speed") == []
    assert categories.sensitive_words("physical_contact") == []
    assert categories.sensitive_words("online_purchases") == ["purchase"]
    assert categories.sensitive_words("Friends, Family") == ["friend", "family"]


SENSITIVE_ATTR = BASE.replace(
    "      place: {type: string, required: false}",
    "      place: {type: string, required: false}\n      religion: {type: string, required: false}",
)


def test_a_sensitive_attribute_is_a_warning_where_declared() -> None:
    f = only(lint(SENSITIVE_ATTR), "pack/sensitive-attribute")
    assert (f.severity, f.line) == ("warning", line_of(SENSITIVE_ATTR, "religion: {type"))
    assert "Principle 2" in f.message
    _, specs = lint_documents(read_pack_documents("p.yaml", SENSITIVE_ATTR))
    assert specs[0] is not None  # declared but unread: publishable, with the warning


def test_a_rule_reading_a_sensitive_attribute_is_an_error_at_the_field() -> None:
    text = SENSITIVE_ATTR.replace(
        "when: {field: weight_kg, ge: 1}", "when: {field: religion, eq: none}"
    )
    errors = [f for f in with_code(lint(text), "pack/sensitive-attribute") if f.severity == "error"]
    assert len(errors) == 1
    assert errors[0].line == line_of(text, "field: religion")
    assert "principle 2" in errors[0].message and "'public-order'" in errors[0].message


def test_points_from_a_sensitive_attribute_is_an_error_at_points_attribute() -> None:
    text = BASE.replace(
        "      weight_kg: number", "      weight_kg: number\n      health_score: integer"
    )
    text = text.replace("points: -5", "points: {attribute: health_score, scale: -1}")
    errors = [f for f in with_code(lint(text), "pack/sensitive-attribute") if f.severity == "error"]
    assert [f.line for f in errors] == [line_of(text, "points: {attribute: health_score")]


def test_comparing_with_a_sensitive_literal_is_an_error() -> None:
    text = BASE.replace(
        "      place: {type: string, required: false}",
        "      place: {type: string, required: false}\n"
        "      topic: {type: string, required: false, values: [politics, sport]}",
    )
    warning = only(lint(text), "pack/sensitive-attribute")
    assert warning.severity == "warning" and warning.line == line_of(text, "topic: {type")
    read = text.replace("when: {field: weight_kg, ge: 1}", "when: {field: topic, in: [politics]}")
    errors = [f for f in with_code(lint(read), "pack/sensitive-attribute") if f.severity == "error"]
    assert [f.line for f in errors] == [line_of(read, "field: topic")]


@pytest.mark.parametrize(
    ("attribute", "category", "error"),
    [
        ("party_size", "noise", False),
        ("party_size", "public-order", False),
        ("party_size", "content-quality", True),
        ("union_code", "match-conduct", False),
        ("union_code", "traffic", True),
        ("faith", "noise", True),
    ],
)
def test_the_justification_table_decides_reads(attribute: str, category: str, error: bool) -> None:
    text = BASE.replace(
        "      weight_kg: number", f"      weight_kg: number\n      {attribute}: integer"
    )
    text = text.replace("category: public-order", f"category: {category}")
    text = text.replace("when: {field: weight_kg, ge: 1}", f"when: {{field: {attribute}, ge: 1}}")
    found = lint(text)
    errors = [f for f in with_code(found, "pack/sensitive-attribute") if f.severity == "error"]
    assert bool(errors) is error
    assert [f.severity for f in with_code(found, "pack/sensitive-attribute")].count("warning") == 1


# ---------------------------------------------------------------------------------------------
# R6 / principle 3: only the judged event's own attributes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["subject.balance", 'other["x"]', "fr-driving:points", "$.balance", "a b", "x[0]"]
)
def test_a_condition_field_that_is_not_a_name_is_an_outside_reference(field: str) -> None:
    text = BASE.replace("when: {field: weight_kg, ge: 1}", f"when: {{field: '{field}', ge: 1}}")
    found = lint(text)
    f = only(found, "pack/outside-reference")
    assert (f.line, f.severity) == (line_of(text, "when: {field:"), "error")
    assert "principle 3" in f.message and "other subjects" in f.message
    assert "pack/unknown-field" not in codes(found)  # one finding, the one that explains


def test_an_outside_reference_in_a_nested_condition_and_in_require() -> None:
    text = BASE.replace(
        "when: {field: weight_kg, ge: 1}",
        "when:\n      all:\n        - {field: weight_kg, ge: 1}\n        - not: {field: subject.points, lt: 5}",
    )
    text = text.replace(
        "      place: {type: string, required: false}\n",
        "      place: {type: string, required: false}\n    require: {field: other.weight_kg, ge: 0}\n",
    )
    lines = sorted(f.line for f in with_code(lint(text), "pack/outside-reference"))
    assert lines == [line_of(text, "require: {field: other"), line_of(text, "not: {field: subject")]


def test_an_unknown_plain_name_is_still_unknown_field_with_the_principle() -> None:
    text = BASE.replace("when: {field: weight_kg, ge: 1}", "when: {field: subject_balance, ge: 1}")
    f = only(lint(text), "pack/unknown-field")
    assert "principle 3" in f.message


# ---------------------------------------------------------------------------------------------
# R3 / principle 1: nothing names another domain
# ---------------------------------------------------------------------------------------------

THRESHOLD = """\
thresholds:
  - id: warn
    kind: warning
    title: Warning
    basis: Town ordinance 9
    direction: below
    value: 50
    mode: crossing
"""


@pytest.mark.parametrize(
    "key", ["domain", "source_domain", "other_domain", "from_domain", "domains"]
)
def test_r3_a_threshold_naming_a_domain_is_cross_domain_even_when_the_schema_refuses_it(
    key: str,
) -> None:
    """R3: `domain: other` in a threshold is a principle-1 finding, not only a schema one."""
    text = BASE.replace("retention: 3 years", THRESHOLD + f"    {key}: other\nretention: 3 years")
    found = lint(text)
    line = line_of(text, f"    {key}: other")
    f = only(found, "pack/cross-domain")
    assert (f.line, f.severity) == (line, "error") and "principle 1" in f.message
    assert any(s.code == "pack/schema" and s.line == line for s in found)


def test_a_restoration_naming_a_domain_is_cross_domain() -> None:
    text = BASE.replace(
        "retention: 3 years",
        "restorations:\n  - {id: back, kind: clean-period, title: Back, basis: Town ordinance 7,\n"
        "     after: 2 years, source_domain: fr-driving}\nretention: 3 years",
    )
    f = only(lint(text), "pack/cross-domain")
    assert f.line == line_of(text, "source_domain: fr-driving")


@pytest.mark.parametrize(
    "value", ["domain:fr-driving", "domains=all", "fr-driving.balance", "forum:points"]
)
def test_r3_a_level_attribute_referring_to_another_domain_is_cross_domain(value: str) -> None:
    """R3: level attributes are free-form, so the schema accepts them; principle 1 does not."""
    text = BASE.replace(
        "retention: 3 years",
        THRESHOLD.replace(
            "    value: 50\n",
            f"    levels:\n      - {{value: 50, attributes: {{applies: '{value}'}}}}\n",
        )
        + "retention: 3 years",
    )
    found = lint(text)
    f = only(found, "pack/cross-domain")
    assert f.line == line_of(text, "applies:")
    assert codes(found) == {"pack/cross-domain"}


def test_a_level_attribute_key_naming_domains_is_cross_domain() -> None:
    text = BASE.replace(
        "retention: 3 years",
        THRESHOLD.replace(
            "    value: 50\n",
            "    levels:\n      - {value: 50, attributes: {target_domains: work}}\n",
        )
        + "retention: 3 years",
    )
    assert only(lint(text), "pack/cross-domain").line == line_of(text, "target_domains")


def test_the_own_domain_and_prose_are_not_cross_domain() -> None:
    text = BASE.replace(
        "retention: 3 years",
        THRESHOLD.replace(
            "    value: 50\n",
            "    levels:\n      - {value: 50, attributes: {figure: town.balance}}\n",
        ).replace("title: Warning", "title: 'Warning (see domain: fr-driving for licences)'")
        + "retention: 3 years",
    )
    assert lint(text) == []


def test_other_principles_are_reported_when_the_schema_refuses_a_domain_key() -> None:
    text = BASE.replace("retention: 3 years", THRESHOLD + "    domain: other\nretention: 3 years")
    text = text.replace("category: public-order", "category: religion")
    assert {"pack/cross-domain", "pack/schema", "pack/prohibited-category"} <= codes(lint(text))


# ---------------------------------------------------------------------------------------------
# Principle 7: every deduction ends
# ---------------------------------------------------------------------------------------------

ENDLESS = BASE.replace("    counts_for: 1 year\n", "")


def test_a_deduction_with_no_end_is_refused_at_its_points() -> None:
    f = only(lint(ENDLESS), "pack/endless-deduction")
    assert (f.line, f.severity) == (line_of(ENDLESS, "points: -5"), "error")
    assert "principle 7" in f.message and "counts_for" in f.message


@pytest.mark.parametrize(
    ("restoration", "covered"),
    [
        ("{id: r, kind: clean-period, title: R, basis: Rule 1, after: 2 years}", True),
        ("{id: r, kind: small-loss, title: R, basis: Rule 1, after: 6 months, max_loss: 5}", True),
        ("{id: r, kind: small-loss, title: R, basis: Rule 1, after: 6 months, max_loss: 4}", False),
        (
            "{id: r, kind: entry-return, title: R, basis: Rule 1, after: 10 years, tags: [minor]}",
            True,
        ),
        (
            "{id: r, kind: entry-return, title: R, basis: Rule 1, after: 10 years, tags: [major]}",
            False,
        ),
        (
            "{id: r, kind: course, title: R, basis: Rule 1, event: littering, points: 4}",
            False,
        ),
    ],
)
def test_a_restoration_that_returns_the_loss_ends_it(restoration: str, covered: bool) -> None:
    text = ENDLESS.replace("    points: -5\n", "    points: -5\n    tags: [minor]\n")
    text = text.replace(
        "retention: 3 years", f"restorations:\n  - {restoration}\nretention: 3 years"
    )
    found = [f for f in lint(text) if f.code != "pack/scheme"]  # a tag no rule carries warns
    assert ("pack/endless-deduction" in codes(found)) is not covered


@pytest.mark.parametrize(
    ("attribute", "points", "endless"),
    [
        ("pts: integer", "{attribute: pts, scale: -1}", True),
        ("pts: {type: integer, minimum: 1}", "{attribute: pts, scale: -1}", True),
        ("pts: {type: integer, minimum: 1}", "{attribute: pts, scale: 2}", False),
        ("pts: {type: integer, minimum: 0, maximum: 0}", "{attribute: pts, scale: -1}", False),
        ("pts: integer", "{attribute: pts, scale: 1}", True),  # no minimum: may be negative
        ("pts: {type: integer, values: [-2, 3]}", "{attribute: pts, scale: 1}", True),
        ("pts: integer", "0", False),
        ("pts: integer", "7", False),
    ],
)
def test_points_from_an_attribute_can_be_a_deduction(
    attribute: str, points: str, endless: bool
) -> None:
    text = ENDLESS.replace("      weight_kg: number", f"      weight_kg: number\n      {attribute}")
    text = text.replace("points: -5", f"points: {points}")
    assert ("pack/endless-deduction" in codes(lint(text))) is endless


def test_a_window_scheme_ends_every_entry_by_construction() -> None:
    assert lint(WINDOW.replace("    counts_for: 1 year\n", "")) == []


# ---------------------------------------------------------------------------------------------
# R2 / principle 9: the exercise of a right is never an input
# ---------------------------------------------------------------------------------------------

BRIEF_RESERVED = {
    "record_viewed",
    "record_exported",
    "appeal_filed",
    "appeal_decided",
    "erasure_requested",
    "data_access_requested",
    "complaint_filed",
    "objection_filed",
    "rectification_requested",
    "share_created",
}


def test_r2_the_reserved_set_is_public() -> None:
    assert BRIEF_RESERVED <= categories.RESERVED_EVENT_TYPES
    assert categories.RESERVED_PREFIXES == ("appeal_", "erasure_", "export_")
    assert categories.is_reserved_event_type("appeal_withdrawn")
    assert categories.is_reserved_event_type("export_downloaded")
    assert not categories.is_reserved_event_type("littering")
    assert not categories.is_reserved_event_type("noise_after_hours")


@pytest.mark.parametrize(
    "name",
    [*sorted(categories.RESERVED_EVENT_TYPES), "appeal_withdrawn", "erasure_done", "export_csv"],
)
def test_r2_declaring_a_reserved_event_type_is_refused(name: str) -> None:
    """R2: a pack matching `appeal_filed` (or any right) is refused at the event type."""
    text = add_event_type(BASE, f"{name}: {{}}\n")
    text = add_rule(
        text,
        f"""\
        - id: right
          title: Using a right
          category: administrative
          basis: Town ordinance 6
          event: {name}
          points: -1
          counts_for: 1 year
        """,
    )
    found = with_code(lint(text), "pack/reserved-event-type")
    assert sorted(f.line for f in found) == [
        line_of(text, f"  {name}:"),
        line_of(text, f"event: {name}"),
    ]
    assert all("principle 9" in f.message and f.severity == "error" for f in found)


def test_r2_a_rule_matching_an_undeclared_reserved_type_is_refused_at_its_event() -> None:
    text = BASE.replace("event: littering", "event: appeal_filed")
    found = lint(text)
    assert only(found, "pack/reserved-event-type").line == line_of(text, "event: appeal_filed")
    assert "pack/unknown-event-type" in codes(found)


# ---------------------------------------------------------------------------------------------
# No bypass, and the shipped packs stay clean
# ---------------------------------------------------------------------------------------------

BYPASS = re.compile(
    r"allow[_-]?prohibited|skip[_-]?guardrails?|skip[_-]?checks?|no[_-]guardrails?|bypass"
    r"|disable[_-]?checks?|ignore[_-]?codes?|--force\b|\bforce\s*=|--no-lint|--skip|--unsafe",
    re.I,
)


def test_r1_no_option_bypasses_the_guardrails() -> None:
    """R1: no flag, keyword or parameter anywhere in the linter or the pack commands."""
    files = [*sorted((SRC / "rules").glob("*.py")), SRC / "cli" / "pack.py"]
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
        if BYPASS.search(line)
    ]
    assert hits == []
    names = re.compile(r"allow_prohibited|skip_guardrails?|no_guardrails?|unsafe_publish", re.I)
    anywhere = [
        f"{p.relative_to(ROOT)}"
        for p in sorted(SRC.rglob("*.py"))
        if names.search(p.read_text(encoding="utf-8"))
    ]
    assert anywhere == []
    assert list(inspect.signature(lint_documents).parameters) == ["docs"]
    for check in guardrails.GUARDRAILS:
        assert check in CHECKS
        assert list(inspect.signature(check).parameters) == ["doc", "spec"]
    for raw in guardrails.RAW_GUARDRAILS:
        assert list(inspect.signature(raw).parameters) == ["doc"]


def test_r1_the_pack_commands_have_no_bypass_option() -> None:
    from pointbook.cli.pack import app

    group = typer.main.get_command(app)
    for name in ("lint", "publish"):
        command = group.commands[name]  # type: ignore[attr-defined]
        for param in command.params:
            flags = " ".join([param.name or "", *getattr(param, "opts", [])])
            assert not re.search(
                r"force|skip|allow|ignore|unsafe|bypass|no-lint|no-check", flags
            ), (
                name,
                flags,
            )


@pytest.mark.parametrize("path", PACKS, ids=lambda p: p.name)
def test_the_reference_packs_pass_every_guardrail(path: Path) -> None:
    findings, specs = lint_documents(read_pack_documents(path))
    assert findings == [] and all(s is not None for s in specs)


# ---------------------------------------------------------------------------------------------
# The doc states the vocabularies the code enforces
# ---------------------------------------------------------------------------------------------

DOC = (ROOT / "docs" / "rule-packs.md").read_text(encoding="utf-8")
CATEGORIES_SECTION = DOC.split("### Categories", 1)[1].split("\n## ", 1)[0]


def test_the_categories_section_lists_every_vocabulary_entry() -> None:
    missing = [
        name
        for name in [
            *categories.ALLOWED,
            *categories.PROHIBITED,
            *categories.SENSITIVE_WORDS,
            *categories.RESERVED_EVENT_TYPES,
            *categories.RESERVED_PREFIXES,
        ]
        if f"`{name}`" not in CATEGORIES_SECTION
    ]
    assert missing == []
    for group in categories.PROHIBITED_GROUPS:
        assert f"| {group} |" in CATEGORIES_SECTION


def test_the_justification_table_is_the_documented_one() -> None:
    rows = re.findall(
        r"^\| (`[a-z]+`(?:, `[a-z]+`)*) \| (`[a-z-]+`(?:, `[a-z-]+`)*) \|", CATEGORIES_SECTION, re.M
    )
    documented: dict[str, frozenset[str]] = {}
    for words, cats in rows:
        for w in re.findall(r"`([a-z]+)`", words):
            documented[w] = frozenset(re.findall(r"`([a-z-]+)`", cats))
    justified = {w: documented.get(w) for w in categories.JUSTIFIED_BY}
    assert justified == categories.JUSTIFIED_BY


def test_every_guardrail_code_is_in_the_lint_codes_table() -> None:
    table = DOC.split("## Lint codes", 1)[1]
    for code in (
        "pack/prohibited-category",
        "pack/prohibited-event-type",
        "pack/sensitive-attribute",
        "pack/outside-reference",
        "pack/cross-domain",
        "pack/endless-deduction",
        "pack/reserved-event-type",
    ):
        assert f"| `{code}` |" in table, code
