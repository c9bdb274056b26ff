"""The pack linter: each finding names its line, a stable code and what to do."""

from __future__ import annotations

import textwrap

import pytest

from pointbook.errors import PackError
from pointbook.rules.findings import Finding
from pointbook.rules.lint import lint_documents
from pointbook.rules.load import read_pack_documents
from pointbook.rules.pack import load_pack_text

GOOD = """\
domain: town
version: "1"
effective_from: 2020-01-01
title: Town code
purpose: Testing the linter.
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
    examples:
      match: [{weight_kg: 2}]
      no_match: [{weight_kg: 0.5}]
retention: 3 years
"""


def lint(text: str) -> list[Finding]:
    docs = read_pack_documents("p.yaml", textwrap.dedent(text))
    findings, _ = lint_documents(docs)
    return findings


def line_of(text: str, fragment: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return n
    raise AssertionError(fragment)


def only(findings: list[Finding], code: str) -> Finding:
    hits = [f for f in findings if f.code == code]
    assert len(hits) == 1, findings
    return hits[0]


def test_a_good_pack_is_clean() -> None:
    assert lint(GOOD) == []
    (v,) = load_pack_text(GOOD)
    assert v.domain == "town" and v.content_hash.startswith("sha256:")


def test_unknown_field_in_a_condition_names_the_line_and_the_closest_attribute() -> None:
    text = GOOD.replace("field: weight_kg, ge: 1", "field: weight_k, ge: 1")
    f = only(lint(text), "pack/unknown-field")
    assert f.line == line_of(text, "field: weight_k,")
    assert "did you mean 'weight_kg'" in f.message
    assert f.format().startswith(f"p.yaml:{f.line}: error[pack/unknown-field]: ")


def test_prohibited_category_is_refused_with_the_principle() -> None:
    text = GOOD.replace("category: public-order", "category: political-opinion")
    f = only(lint(text), "pack/prohibited-category")
    assert f.line == line_of(text, "category: political-opinion")
    assert "principle 2" in f.message


def test_unknown_category_is_an_error_not_a_pass() -> None:
    text = GOOD.replace("category: public-order", "category: public-ordre")
    f = only(lint(text), "pack/unknown-category")
    assert "did you mean 'public-order'" in f.message


def test_missing_retention_is_refused() -> None:
    text = GOOD.replace("retention: 3 years\n", "")
    f = only(lint(text), "pack/no-retention")
    assert "principle 7" in f.message


def test_a_failing_example_is_reported_at_the_example() -> None:
    text = GOOD.replace("no_match: [{weight_kg: 0.5}]", "no_match: [{weight_kg: 1.5}]")
    f = only(lint(text), "pack/example-failed")
    assert f.line == line_of(text, "no_match:")


def test_an_example_with_an_undeclared_attribute_is_invalid() -> None:
    text = GOOD.replace("match: [{weight_kg: 2}]", "match: [{weight_kg: 2, owner: bob}]")
    f = only(lint(text), "pack/example-invalid")
    assert "owner" in f.message


def test_overlapping_rules_are_reported_by_their_examples() -> None:
    rule = GOOD[GOOD.index("  - id: litter") : GOOD.index("retention")]
    heavy = rule.replace("id: litter", "id: heavy").replace("points: -5", "points: -10")
    text = GOOD.replace("retention: 3 years", heavy + "retention: 3 years")
    overlaps = [f for f in lint(text) if f.code == "pack/overlap"]
    assert overlaps and all(f.severity == "warning" for f in overlaps)
    assert "'heavy'" in overlaps[0].message


def test_unknown_key_gets_a_suggestion() -> None:
    text = GOOD.replace("counts_for: 1 year", "count_for: 1 year")
    f = only(lint(text), "pack/schema")
    assert "did you mean 'counts_for'" in f.message
    assert f.line == line_of(text, "count_for:")


def test_rule_for_an_undeclared_event_type() -> None:
    text = GOOD.replace("event: littering", "event: litering")
    f = only(lint(text), "pack/unknown-event-type")
    assert "did you mean 'littering'" in f.message


def test_points_from_a_non_integer_attribute() -> None:
    text = GOOD.replace("points: -5", "points: {attribute: weight_kg, scale: -1}")
    assert only(lint(text), "pack/points-attribute")


@pytest.mark.parametrize(
    ("bounds", "code"),
    [
        ("", "pack/unbounded-points"),
        (", minimum: 1", "pack/unbounded-points"),
        (", minimum: 1, maximum: 50", None),
    ],
)
def test_points_from_an_unbounded_attribute_are_a_warning(bounds: str, code: str | None) -> None:
    # Proportionality (R14, docs/principles.md): points read from an attribute need its bounds.
    text = GOOD.replace(
        "      place:", f"      bags: {{type: integer{bounds}}}\n      place:"
    ).replace("points: -5", "points: {attribute: bags, scale: -1}")
    text = text.replace("[{weight_kg: 2}]", "[{weight_kg: 2, bags: 1}]").replace(
        "[{weight_kg: 0.5}]", "[{weight_kg: 0.5, bags: 1}]"
    )
    found = lint(text)
    assert not [x for x in found if x.severity == "error"], found
    if code is None:
        assert found == []
    else:
        f = only(found, code)
        assert f.severity == "warning" and "declare minimum and maximum" in f.message
        assert f.line == line_of(text, "points: {attribute: bags")


def test_duplicate_rule_ids() -> None:
    rule = GOOD[GOOD.index("  - id: litter") : GOOD.index("retention")]
    text = GOOD.replace("retention: 3 years", rule + "retention: 3 years")
    f = only(lint(text), "pack/duplicate-id")
    assert "never reused" in f.message


def test_daily_cap_rule_without_a_cap_in_the_scheme() -> None:
    text = GOOD.replace("points: -5", "points: -5\n    daily_cap: true")
    assert only(lint(text), "pack/scheme")


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "a: !!python/object:os.system ls\n",
        "domain: [unclosed\n",
        "a: 1\na: 2\n",
    ],
)
def test_unsafe_or_broken_yaml_is_refused_with_a_line(text: str) -> None:
    with pytest.raises(PackError) as info:
        read_pack_documents("p.yaml", text)
    assert str(info.value).startswith("p.yaml:")


def test_deep_nesting_is_refused() -> None:
    text = "a: " + "[" * 200 + "]" * 200 + "\n"
    with pytest.raises(PackError, match="nesting"):
        read_pack_documents("p.yaml", text)


def test_versions_in_a_file_must_agree_and_be_in_order() -> None:
    second = GOOD.replace('version: "1"', 'version: "2"').replace("2020-01-01", "2019-01-01")
    text = GOOD + "---\n" + second.replace("domain: town", "domain: city")
    codes = {f.code for f in lint(text)}
    assert {"pack/domain-mismatch", "pack/version-order"} <= codes


def test_load_refuses_a_pack_with_errors_and_says_how_many() -> None:
    text = GOOD.replace("category: public-order", "category: religion").replace(
        "retention: 3 years\n", ""
    )
    with pytest.raises(PackError) as info:
        load_pack_text(text, "p.yaml")
    assert "and 1 more" in str(info.value)
    assert len([f for f in info.value.findings if f.severity == "error"]) == 2


def test_each_version_keeps_its_own_text_and_hash() -> None:
    second = GOOD.replace('version: "1"', 'version: "2"').replace("2020-01-01", "2021-01-01")
    v1, v2 = load_pack_text("# header\n" + GOOD + "---\n" + second)
    assert v1.text.startswith("# header") and 'version: "2"' not in v1.text
    assert 'version: "2"' in v2.text and v1.content_hash != v2.content_hash
