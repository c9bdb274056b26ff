"""The condition language: each operator, missing attributes, and type checking."""

from __future__ import annotations

import pytest

from pointbook.rules.conditions import check_condition, compile_condition
from pointbook.rules.spec import AttributeSpec, ConditionSpec

ATTRS = {
    "over_kmh": AttributeSpec(type="integer"),
    "bac": AttributeSpec(type="number"),
    "radar": AttributeSpec(type="string", required=False),
    "night": AttributeSpec(type="boolean", required=False),
}


def cond(data: dict[str, object]) -> ConditionSpec:
    return ConditionSpec.model_validate(data)


def holds(data: dict[str, object], attrs: dict[str, object]) -> bool:
    c = cond(data)
    assert check_condition(c, ATTRS, "speeding") == []
    return compile_condition(c)(attrs)


@pytest.mark.parametrize(
    ("op", "value", "x", "expected"),
    [
        ("eq", 20, 20, True),
        ("eq", 20, 21, False),
        ("ne", 20, 21, True),
        ("lt", 20, 19, True),
        ("lt", 20, 20, False),
        ("le", 20, 20, True),
        ("gt", 20, 20, False),
        ("gt", 20, 21, True),
        ("ge", 20, 20, True),
        ("ge", 20, 19, False),
        ("between", [20, 29], 20, True),
        ("between", [20, 29], 29, True),
        ("between", [20, 29], 30, False),
        ("in", [1, 2, 3], 2, True),
        ("in", [1, 2, 3], 4, False),
        ("not_in", [1, 2, 3], 4, True),
        ("not_in", [1, 2, 3], 3, False),
    ],
)
def test_each_operator(op: str, value: object, x: int, expected: bool) -> None:
    assert holds({"field": "over_kmh", op: value}, {"over_kmh": x, "bac": 0.0}) is expected


def test_several_operators_on_one_field_must_all_hold() -> None:
    band = {"field": "over_kmh", "ge": 20, "lt": 30}
    assert holds(band, {"over_kmh": 20})
    assert holds(band, {"over_kmh": 29})
    assert not holds(band, {"over_kmh": 30})
    assert not holds(band, {"over_kmh": 19})


def test_all_any_not() -> None:
    tree = {
        "all": [
            {"field": "over_kmh", "ge": 5},
            {"any": [{"field": "radar", "eq": "fixed"}, {"not": {"field": "night", "eq": True}}]},
        ]
    }
    assert holds(tree, {"over_kmh": 5, "radar": "fixed", "night": True})
    assert holds(tree, {"over_kmh": 5, "radar": "mobile", "night": False})
    assert not holds(tree, {"over_kmh": 5, "radar": "mobile", "night": True})
    assert not holds(tree, {"over_kmh": 4, "radar": "fixed"})


def test_a_missing_attribute_makes_every_comparison_false() -> None:
    for op, value in [("eq", "x"), ("ne", "x"), ("in", ["x"]), ("not_in", ["x"])]:
        assert not holds({"field": "radar", op: value}, {"over_kmh": 1})


def test_not_inverts_a_comparison_on_a_missing_attribute() -> None:
    assert holds({"not": {"field": "radar", "eq": "fixed"}}, {"over_kmh": 1})


def test_present_tests_for_absence_explicitly() -> None:
    assert holds({"field": "radar", "present": False}, {"over_kmh": 1})
    assert not holds({"field": "radar", "present": True}, {"over_kmh": 1})
    assert holds({"field": "radar", "present": True}, {"radar": "fixed"})


def test_unknown_field_is_named_with_a_suggestion() -> None:
    problems = check_condition(cond({"field": "over_kmhh", "ge": 5}), ATTRS, "speeding")
    assert len(problems) == 1
    _path, code, message = problems[0]
    assert code == "pack/unknown-field"
    assert "did you mean 'over_kmh'" in message


def test_referring_to_anything_outside_the_event_is_impossible_and_explained() -> None:
    for name in ("subject.balance", "other_subject_points", "domain", "lookup_score"):
        ((_, code, message),) = check_condition(cond({"field": name, "gt": 1}), ATTRS, "speeding")
        assert code == "pack/unknown-field"
        assert "principle 3" in message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"field": "radar", "gt": 3}, "needs a numeric attribute"),
        ({"field": "over_kmh", "eq": "fast"}, "is integer but is compared with 'fast'"),
        ({"field": "over_kmh", "eq": 1.5}, "is integer"),
        ({"field": "night", "eq": 1}, "is boolean"),
        ({"field": "over_kmh", "between": [30, 20]}, "needs [low, high]"),
    ],
)
def test_type_errors(data: dict[str, object], fragment: str) -> None:
    problems = check_condition(cond(data), ATTRS, "speeding")
    assert any(fragment in message for _, _, message in problems), problems


def test_an_integer_literal_is_fine_for_a_number_attribute() -> None:
    assert holds({"field": "bac", "ge": 1}, {"bac": 1.2})


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"field": "over_kmh"},
        {"all": []},
        {"ge": 5},
        {"all": [{"field": "over_kmh", "ge": 1}], "any": [{"field": "over_kmh", "ge": 1}]},
        {"field": "over_kmh", "regex": ".*"},
        {"field": "over_kmh", "eval": "1"},
    ],
)
def test_malformed_conditions_are_refused_by_the_schema(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        cond(data)
