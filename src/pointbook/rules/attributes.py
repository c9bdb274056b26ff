"""Checking an event's attributes against its declared event type (minimisation: nothing extra)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pointbook.rules.conditions import suggest
from pointbook.rules.spec import AttributeSpec, EventTypeSpec

MAX_STRING = 200
# Integers stay below 2**53 and numbers below 1e15: exact as JSON numbers in any client, and
# as 64-bit columns in the store and the columnar judge. Points are held to the same bound.
MAX_INTEGER = 2**53
MAX_NUMBER = 1e15


def _type_ok(value: Any, attr: AttributeSpec) -> bool:
    if attr.type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if attr.type == "integer":
        return isinstance(value, int) and abs(value) < MAX_INTEGER
    if attr.type == "number":
        return isinstance(value, int | float) and math.isfinite(value) and abs(value) < MAX_NUMBER
    return isinstance(value, str) and len(value) <= MAX_STRING


def _type_problem(name: str, attr: AttributeSpec, value: Any) -> str:
    """Why a value is not of its declared type: out of range, or another type."""
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if finite and not isinstance(value, bool):
        if attr.type == "integer" and isinstance(value, int):
            return f"attribute {name!r} must be below 2**53 in magnitude, got {value!r}"
        if attr.type == "number":
            return f"attribute {name!r} must be below 1e15 in magnitude, got {value!r}"
    return f"attribute {name!r} must be {attr.type}, got {value!r}"


def attribute_problems(
    event_type: str, spec: EventTypeSpec, attributes: Mapping[str, Any]
) -> list[str]:
    """Why these attributes are not acceptable for ``event_type`` (empty when they are)."""
    problems: list[str] = []
    declared = spec.attributes
    for name in attributes:
        if name not in declared:
            problems.append(
                f"attribute {name!r} is not declared for event type {event_type!r}"
                f"{suggest(name, list(declared))}"
            )
    for name, attr in declared.items():
        value = attributes.get(name)
        if value is None:
            if attr.required:
                problems.append(f"attribute {name!r} is required for event type {event_type!r}")
            continue
        if not _type_ok(value, attr):
            problems.append(_type_problem(name, attr, value))
            continue
        if attr.values is not None and value not in attr.values:
            problems.append(f"attribute {name!r} must be one of {attr.values}, got {value!r}")
        if attr.minimum is not None and isinstance(value, int | float) and value < attr.minimum:
            problems.append(f"attribute {name!r} must be at least {attr.minimum:g}, got {value!r}")
        if attr.maximum is not None and isinstance(value, int | float) and value > attr.maximum:
            problems.append(f"attribute {name!r} must be at most {attr.maximum:g}, got {value!r}")
    return problems
