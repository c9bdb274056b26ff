"""Judging a batch column by column: the rules of each (version, event type) group evaluated as
Polars expressions over the group's attribute columns, once per batch rather than once per event.

The ledger judges every incoming event here, one event being a batch of one, so the API, the
CLI and bulk files take one path. The result is the same list of entries `judge.judge` gives
for each event (pack order, same deltas and end dates); tests/test_batch.py checks that on
random events, and the fold, which re-judges stored events one at a time, relies on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import compress
from typing import Any

import polars as pl

from pointbook.engine.judge import make_entry
from pointbook.engine.model import Entry, Event
from pointbook.rules.columnar import ROW, condition_expr, delta_expr, frame
from pointbook.rules.pack import PackVersion, Rule

__all__ = ["judge_batch", "rule_frame"]

# Compiled expressions per (pack content hash, event type): versions never change once
# published, so the hash names the rules exactly. Small: a few dozen types per domain.
_COMPILED: dict[tuple[str, str], list[pl.Expr]] = {}


def _expressions(version: PackVersion, event_type: str, rules: Sequence[Rule]) -> list[pl.Expr]:
    key = (version.content_hash, event_type)
    found = _COMPILED.get(key)
    if found is None:
        found = []
        for k, rule in enumerate(rules):
            spec = version.rule(rule.id)
            assert spec is not None
            found.append(condition_expr(spec.when).alias(f"m{k}"))
            found.append(delta_expr(rule.points, rule.points_attribute, rule.scale).alias(f"d{k}"))
        if len(_COMPILED) > 1024:
            _COMPILED.clear()
        _COMPILED[key] = found
    return found


def rule_frame(
    version: PackVersion, event_type: str, attributes: list[Mapping[str, Any]]
) -> pl.DataFrame:
    """For events of one type with these attributes, in order: per rule k of the type (pack
    order), whether it matches (column m{k}) and its points (d{k})."""
    rules = version.rules_for(event_type)
    declared = version.event_types[event_type].attributes
    return frame(attributes, declared).with_columns(_expressions(version, event_type, rules))


def judge_batch(items: Sequence[tuple[Event, PackVersion]]) -> list[list[Entry]]:
    """The entries of each (event, version in force) pair, in the order given."""
    out: list[list[Entry]] = [[] for _ in items]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (event, version) in enumerate(items):
        if version.rules_for(event.type):
            groups.setdefault((version.content_hash, event.type), []).append(i)
    for members in groups.values():
        first, version = items[members[0]]
        rules = version.rules_for(first.type)
        result = rule_frame(version, first.type, [items[i][0].attributes for i in members])
        matched = [result[f"m{k}"].to_list() for k in range(len(rules))]
        deltas = [result[f"d{k}"].to_list() for k in range(len(rules))]
        rows = range(len(members))
        assert result[ROW].to_list() == list(rows)
        # Rule by rule, over the rows it matched only: each event still gets its entries in
        # pack order.
        for k, rule in enumerate(rules):
            delta_of = deltas[k]
            for row in compress(rows, matched[k]):
                event = items[members[row]][0]
                delta = delta_of[row]
                # The linter makes a points attribute a required integer: never missing here.
                assert delta is not None, (rule.id, event.id)
                out[members[row]].append(make_entry(event, version, rule, delta))
    return out
