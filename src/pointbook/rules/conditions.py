"""The condition language: type-checked against an event type, compiled once, evaluated often.

A condition can only read the attributes of the event being judged: the `field` of a
comparison names one of the event type's declared attributes and nothing else exists to
name (principle 3). A comparison on an attribute the event does not carry is false, except
`present: false`; `not` inverts whatever its child gives.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from pointbook.rules.spec import AttributeSpec, ConditionSpec

__all__ = ["Predicate", "check_condition", "compile_condition", "suggest"]

Predicate = Callable[[Mapping[str, Any]], bool]
Problem = tuple[tuple[str | int, ...], str, str]  # (path inside the condition, code, message)

_ORDERED = ("lt", "le", "gt", "ge", "between")
# Words that look like a way out of the event: named in the error so the author sees why.
_OUTSIDE = ("subject", "domain", "balance", "points", "score", "other", "lookup", "person", "user")


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _literal_ok(value: Any, attr: AttributeSpec) -> bool:
    if attr.type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if attr.type == "integer":
        return isinstance(value, int)
    if attr.type == "number":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


def check_condition(
    cond: ConditionSpec, attrs: Mapping[str, AttributeSpec], event_type: str
) -> list[Problem]:
    """Every problem in a condition tree, with its path relative to the condition."""
    problems: list[Problem] = []

    def walk(node: ConditionSpec, path: tuple[str | int, ...]) -> None:
        for group in ("all", "any"):
            children = getattr(node, group)
            if children is not None:
                for i, child in enumerate(children):
                    walk(child, (*path, group, i))
                return
        if node.not_ is not None:
            walk(node.not_, (*path, "not"))
            return
        name = node.field or ""
        attr = attrs.get(name)
        if attr is None:
            declared = sorted(attrs)
            hint = suggest(name, declared)
            outside = ""
            if any(word in name.lower() for word in _OUTSIDE):
                outside = (
                    " A condition can only read the judged event's own attributes: other "
                    "subjects, balances, domains and lookups cannot be referred to (principle 3)."
                )
            problems.append(
                (
                    (*path, "field"),
                    "pack/unknown-field",
                    f"event type {event_type!r} has no attribute {name!r}{hint} "
                    f"(declared: {', '.join(declared) or 'none'}).{outside}",
                )
            )
            return
        for op, value in node.operators().items():
            if op == "present":
                continue
            if op in _ORDERED and attr.type not in ("integer", "number"):
                problems.append(
                    (
                        (*path, op),
                        "pack/type-mismatch",
                        f"`{op}` needs a numeric attribute, but {name!r} is {attr.type}; use eq, "
                        "ne, in or not_in",
                    )
                )
                continue
            values = value if isinstance(value, list | tuple) else [value]
            if op == "between" and values[0] > values[1]:
                problems.append(
                    (
                        (*path, op),
                        "pack/type-mismatch",
                        f"`between` needs [low, high], got {values}",
                    )
                )
            for v in values:
                if not _literal_ok(v, attr):
                    problems.append(
                        (
                            (*path, op),
                            "pack/type-mismatch",
                            f"{name!r} is {attr.type} but is compared with {v!r} "
                            f"({type(v).__name__}); write a {attr.type} literal",
                        )
                    )

    walk(cond, ())
    return problems


def _compare(name: str, op: str, value: Any) -> Predicate:
    if op == "present":
        want = bool(value)
        return lambda a: (a.get(name) is not None) == want
    if op == "eq":
        return lambda a: (x := a.get(name)) is not None and x == value
    if op == "ne":
        return lambda a: (x := a.get(name)) is not None and x != value
    if op == "lt":
        return lambda a: (x := a.get(name)) is not None and x < value
    if op == "le":
        return lambda a: (x := a.get(name)) is not None and x <= value
    if op == "gt":
        return lambda a: (x := a.get(name)) is not None and x > value
    if op == "ge":
        return lambda a: (x := a.get(name)) is not None and x >= value
    if op == "between":
        lo, hi = value
        return lambda a: (x := a.get(name)) is not None and lo <= x <= hi
    if op == "in":
        members = frozenset(value)
        return lambda a: (x := a.get(name)) is not None and x in members
    if op == "not_in":
        members = frozenset(value)
        return lambda a: (x := a.get(name)) is not None and x not in members
    raise AssertionError(f"unknown operator {op}")  # the spec admits no other


def compile_condition(cond: ConditionSpec | None) -> Predicate:
    """Compile a (checked) condition tree into a predicate over an attribute mapping."""
    if cond is None:
        return lambda a: True
    if cond.all is not None:
        parts = [compile_condition(c) for c in cond.all]
        return lambda a: all(p(a) for p in parts)
    if cond.any is not None:
        parts = [compile_condition(c) for c in cond.any]
        return lambda a: any(p(a) for p in parts)
    if cond.not_ is not None:
        inner = compile_condition(cond.not_)
        return lambda a: not inner(a)
    assert cond.field is not None
    tests = [_compare(cond.field, op, v) for op, v in cond.operators().items()]
    if len(tests) == 1:
        return tests[0]
    return lambda a: all(t(a) for t in tests)
