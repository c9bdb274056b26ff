"""The condition language compiled to Polars expressions, for judging a batch column by column.

Same tree, same meaning as `conditions.compile_condition`: a comparison on an attribute the
event does not carry is false (never null), except `present: false`; `not` inverts whatever
its child gives. Every comparison is filled to a definite boolean before it is combined, so
three-valued logic never leaks into `not`. `engine/batch.py` evaluates these over the events
of one (version, type) group; a property test checks they agree with the scalar predicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from pointbook.rules.spec import AttributeSpec, ConditionSpec

__all__ = ["POLARS_TYPES", "ROW", "condition_expr", "delta_expr", "frame"]

ROW = "__row"

# Attribute types as columns. Values were checked by `attribute_problems` first: integers are
# below 2**53 and numbers finite and below 1e15, so Int64 and Float64 hold them exactly.
POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "integer": pl.Int64,
    "number": pl.Float64,
    "string": pl.String,
    "boolean": pl.Boolean,
}


def _compare(name: str, op: str, value: Any) -> pl.Expr:
    col = pl.col(name)
    if op == "present":
        return col.is_not_null() if value else col.is_null()
    out: pl.Expr
    if op == "eq":
        out = col == value
    elif op == "ne":
        out = col != value
    elif op == "lt":
        out = col < value
    elif op == "le":
        out = col <= value
    elif op == "gt":
        out = col > value
    elif op == "ge":
        out = col >= value
    elif op == "between":
        lo, hi = value
        out = (col >= lo) & (col <= hi)
    elif op == "in":
        out = col.is_in(list(value))
    elif op == "not_in":
        out = ~col.is_in(list(value))
    else:
        raise AssertionError(f"unknown operator {op}")  # the spec admits no other
    # A missing attribute makes the comparison false, as in the scalar predicate.
    return out.fill_null(False)


def condition_expr(cond: ConditionSpec | None) -> pl.Expr:
    """A (checked) condition tree as a boolean expression over the attribute columns."""
    if cond is None:
        return pl.lit(True)
    if cond.all is not None:
        return (
            pl.all_horizontal([condition_expr(c) for c in cond.all]) if cond.all else pl.lit(True)
        )
    if cond.any is not None:
        return (
            pl.any_horizontal([condition_expr(c) for c in cond.any]) if cond.any else pl.lit(False)
        )
    if cond.not_ is not None:
        return ~condition_expr(cond.not_)
    assert cond.field is not None
    tests = [_compare(cond.field, op, v) for op, v in cond.operators().items()]
    return tests[0] if len(tests) == 1 else pl.all_horizontal(tests)


def delta_expr(points: int | None, attribute: str | None, scale: int) -> pl.Expr:
    """A rule's nominal points per event: a constant, or an attribute (truncated) times scale."""
    if points is not None:
        return pl.lit(points, dtype=pl.Int64)
    assert attribute is not None
    return pl.col(attribute).cast(pl.Int64, strict=False) * scale


def frame(
    attributes: list[Mapping[str, Any]], declared: Mapping[str, AttributeSpec]
) -> pl.DataFrame:
    """The attribute columns of a group of events, one typed column per declared attribute
    (and a row number, so that a type without attributes still has one row per event)."""
    columns: dict[str, list[Any]] = {ROW: list(range(len(attributes)))}
    schema: dict[str, type[pl.DataType]] = {ROW: pl.Int64}
    for name, spec in declared.items():
        columns[name] = [a.get(name) for a in attributes]
        schema[name] = POLARS_TYPES[spec.type]
    return pl.DataFrame(columns, schema=schema, strict=False)
