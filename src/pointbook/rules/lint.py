"""The pack linter: one function per check, each returning findings with a line.

`lint_documents` runs the raw guardrails on every document (principle 1 is reported even when
the schema refuses the key that breaks it), validates the structure of every document, then
runs CHECKS on each valid version and VERSION_CHECKS across the versions of the file. A
version whose only schema problems are unknown keys is also checked without those keys, so
its other problems (the principles above all) are reported at once; it stays invalid. A check
that crashes becomes a finding, not a traceback (a broken pack must still get a full report).

The principle checks live in `guardrails` and are registered in CHECKS; `lint_documents` has
no parameter to select or skip checks, and no caller can leave a guardrail out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from pointbook.dates import parse_instant, zone
from pointbook.errors import InvalidTimeError
from pointbook.rules import categories
from pointbook.rules.attributes import attribute_problems
from pointbook.rules.conditions import check_condition, compile_condition, suggest
from pointbook.rules.findings import Finding
from pointbook.rules.guardrails import GUARDRAILS, RAW_GUARDRAILS, condition_at, is_identifier
from pointbook.rules.load import PackDocument, PathKey
from pointbook.rules.spec import (
    ConditionSpec,
    LevelSpec,
    PackSpec,
    PointsFromSpec,
    RestorationSpec,
    RuleSpec,
    ThresholdSpec,
)

__all__ = ["CHECKS", "VERSION_CHECKS", "lint_documents"]

Check = Callable[[PackDocument, PackSpec], list[Finding]]

_MODELS: dict[str, type] = {
    "": PackSpec,
    "rules": RuleSpec,
    "restorations": RestorationSpec,
    "thresholds": ThresholdSpec,
    "levels": LevelSpec,
    "when": ConditionSpec,
    "require": ConditionSpec,
    "points": PointsFromSpec,
}


def _err(doc: PackDocument, path: PathKey, code: str, msg: str) -> Finding:
    return Finding(doc.file, doc.line_of(path), code, "error", msg)


def _warn(doc: PackDocument, path: PathKey, code: str, msg: str) -> Finding:
    return Finding(doc.file, doc.line_of(path), code, "warning", msg)


def _known_path(doc: PackDocument, loc: tuple[str | int, ...]) -> PathKey:
    path: PathKey = ()
    for part in loc:
        candidate = (*path, part)
        if candidate in doc.lines:
            path = candidate
    return path


def _schema_findings(doc: PackDocument, exc: ValidationError) -> list[Finding]:
    out = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        path = _known_path(doc, loc)
        where = ".".join(str(p) for p in loc) or "(document)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden" and loc:
            key = str(loc[-1])
            parent = next((str(p) for p in reversed(loc[:-1]) if isinstance(p, str)), "")
            model = _MODELS.get(parent, PackSpec if len(loc) == 1 else None)
            fields = []
            if model is not None:
                fields = [f.alias or n for n, f in model.model_fields.items()]  # type: ignore[attr-defined]
            msg = f"unknown key {key!r}{suggest(key, fields)}"
        elif e["type"] == "missing":
            msg = f"missing required key {str(loc[-1])!r}"
        out.append(_err(doc, path, "pack/schema", f"{where}: {msg}"))
    return out


def check_ids(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    out = []
    for section in ("rules", "restorations", "thresholds"):
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(spec, section)):
            if item.id in seen:
                out.append(
                    _err(
                        doc,
                        (section, i, "id"),
                        "pack/duplicate-id",
                        f"{section[:-1]} id {item.id!r} is already used at line "
                        f"{doc.line_of((section, seen[item.id], 'id'))}; ids are never reused",
                    )
                )
            seen.setdefault(item.id, i)
    return out


def check_categories(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    out = []
    for i, rule in enumerate(spec.rules):
        path = ("rules", i, "category")
        if rule.category in categories.PROHIBITED:
            out.append(
                _err(
                    doc,
                    path,
                    "pack/prohibited-category",
                    f"rule {rule.id!r}: category {rule.category!r} "
                    f"({categories.PROHIBITED[rule.category]}) is refused by principle 2 (only "
                    "conduct, never belief or belonging); judge conduct under an allowed "
                    "category, or remove the rule; no option turns this off",
                )
            )
        elif rule.category not in categories.ALLOWED:
            out.append(
                _err(
                    doc,
                    path,
                    "pack/unknown-category",
                    f"rule {rule.id!r}: unknown category {rule.category!r}"
                    f"{suggest(rule.category, sorted(categories.ALLOWED))} (allowed: "
                    f"{', '.join(sorted(categories.ALLOWED))})",
                )
            )
    return out


def _condition_findings(
    doc: PackDocument, spec: PackSpec, cond: ConditionSpec, event: str, base: PathKey
) -> list[Finding]:
    et = spec.event_types[event]
    out = []
    for sub, code, msg in check_condition(cond, et.attributes, event):
        node = condition_at(cond, sub)
        if (
            code == "pack/unknown-field"
            and node is not None
            and not is_identifier(node.field or "")
        ):
            continue  # not a name at all: guardrails.check_outside_references explains why
        out.append(_err(doc, (*base, *sub), code, msg))
    return out


def check_references(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    out = []
    types = sorted(spec.event_types)
    for name, et in spec.event_types.items():
        if et.require is not None:
            out += _condition_findings(
                doc, spec, et.require, name, ("event_types", name, "require")
            )
        for attr_name, attr in et.attributes.items():
            for v in attr.values or []:
                bad = (attr.type in ("integer", "number")) == isinstance(v, str)
                if bad or (attr.type == "boolean") != isinstance(v, bool):
                    out.append(
                        _err(
                            doc,
                            ("event_types", name, "attributes", attr_name, "values"),
                            "pack/type-mismatch",
                            f"value {v!r} of {attr_name!r} is not {attr.type}",
                        )
                    )
    for i, rule in enumerate(spec.rules):
        if rule.event not in spec.event_types:
            out.append(
                _err(
                    doc,
                    ("rules", i, "event"),
                    "pack/unknown-event-type",
                    f"rule {rule.id!r} matches event type {rule.event!r}, which this version does "
                    f"not declare{suggest(rule.event, types)}",
                )
            )
            continue
        if rule.when is not None:
            out += _condition_findings(doc, spec, rule.when, rule.event, ("rules", i, "when"))
        if isinstance(rule.points, PointsFromSpec):
            pattr = spec.event_types[rule.event].attributes.get(rule.points.attribute)
            if pattr is None or pattr.type != "integer" or not pattr.required:
                out.append(
                    _err(
                        doc,
                        ("rules", i, "points", "attribute"),
                        "pack/points-attribute",
                        f"rule {rule.id!r} takes points from {rule.points.attribute!r}, which must "
                        f"be a required integer attribute of {rule.event!r}"
                        f"{suggest(rule.points.attribute, list(spec.event_types[rule.event].attributes))}",
                    )
                )
            elif pattr.minimum is None or pattr.maximum is None:
                # Without bounds one report can move a balance by any amount, and a value
                # beyond what the store holds stops the whole batch it arrives in.
                out.append(
                    _warn(
                        doc,
                        ("rules", i, "points", "attribute"),
                        "pack/unbounded-points",
                        f"rule {rule.id!r} takes points from {rule.points.attribute!r}, which has "
                        f"no {'minimum' if pattr.minimum is None else 'maximum'}: one event can "
                        "give any number of points; declare minimum and maximum on the attribute",
                    )
                )
    return out


def check_examples(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    out = []
    compiled = {r.id: compile_condition(r.when) for r in spec.rules if r.event in spec.event_types}
    for i, rule in enumerate(spec.rules):
        if rule.examples is None or rule.event not in spec.event_types:
            continue
        et = spec.event_types[rule.event]
        siblings = [r for r in spec.rules if r.event == rule.event and r.id != rule.id]
        for kind in ("match", "no_match"):
            for j, attrs in enumerate(getattr(rule.examples, kind)):
                path = ("rules", i, "examples", kind, j)
                problems = attribute_problems(rule.event, et, attrs)
                if problems:
                    out.append(_err(doc, path, "pack/example-invalid", "; ".join(problems)))
                    continue
                got = compiled[rule.id](attrs)
                if got != (kind == "match"):
                    out.append(
                        _err(
                            doc,
                            path,
                            "pack/example-failed",
                            f"rule {rule.id!r}: example {attrs} should "
                            f"{'' if kind == 'match' else 'not '}match but "
                            f"{'does not' if kind == 'match' else 'does'}",
                        )
                    )
                if kind == "match":
                    also = [s.id for s in siblings if compiled[s.id](attrs)]
                    if also:
                        out.append(
                            _warn(
                                doc,
                                path,
                                "pack/overlap",
                                f"example {attrs} matches rule {rule.id!r} and also "
                                f"{', '.join(repr(a) for a in also)}: each matching rule gives its "
                                "own entry",
                            )
                        )
        if not rule.examples.match:
            out.append(
                _warn(doc, ("rules", i, "examples"), "pack/example-invalid", "no `match` example")
            )
    return out


def check_scheme(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    out = []
    window = spec.scheme.kind == "window"
    all_tags = {t for r in spec.rules for t in r.tags}
    for i, r in enumerate(spec.rules):
        if r.daily_cap and (window or getattr(spec.scheme, "daily_cap", None) is None):
            out.append(
                _err(
                    doc,
                    ("rules", i, "daily_cap"),
                    "pack/scheme",
                    f"rule {r.id!r} counts towards a daily cap but the scheme declares none; add "
                    "`daily_cap: N` to a balance scheme",
                )
            )
        if window and r.counts_for is None:
            continue
    for i, rest in enumerate(spec.restorations):
        path = ("restorations", i)
        if window:
            out.append(_err(doc, path, "pack/scheme", "restorations apply to balance schemes only"))
            continue
        named = [*rest.longer_if_tags, *rest.tags]
        # A tag no rule carries yet is fine (a scale may lack a class); none carried is a typo.
        for tag in named if named and not set(named) & all_tags else []:
            if tag not in all_tags:
                out.append(
                    _warn(
                        doc,
                        path,
                        "pack/scheme",
                        f"restoration {rest.id!r} names tag {tag!r}, which no rule carries"
                        f"{suggest(tag, sorted(all_tags))}",
                    )
                )
        if rest.kind == "course" and rest.event not in spec.event_types:
            out.append(
                _err(
                    doc,
                    (*path, "event"),
                    "pack/unknown-event-type",
                    f"course restoration {rest.id!r} uses undeclared event type {rest.event!r}"
                    f"{suggest(rest.event or '', sorted(spec.event_types))}",
                )
            )
    for i, th in enumerate(spec.thresholds):
        if th.resets and not window:
            out.append(
                _err(
                    doc,
                    ("thresholds", i, "resets"),
                    "pack/scheme",
                    "`resets` applies to window schemes only",
                )
            )
    return out


def check_retention(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    if spec.retention is None or spec.retention.is_zero():
        return [
            _err(
                doc,
                (),
                "pack/no-retention",
                "the version must say how long any entry stays on the record: add `retention: "
                "N years` (principle 7, forgiveness and forgetting)",
            )
        ]
    return []


def check_time(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    try:
        tz = zone(spec.timezone)
        parse_instant(spec.effective_from, tz)
    except InvalidTimeError as exc:
        return [_err(doc, ("timezone",), "pack/schema", str(exc))]
    return []


CHECKS: list[Check] = [
    check_time,
    check_ids,
    check_categories,
    *GUARDRAILS,
    check_references,
    check_examples,
    check_scheme,
    check_retention,
]


def check_versions(docs: list[PackDocument], specs: list[PackSpec | None]) -> list[Finding]:
    out = []
    first: tuple[PackDocument, PackSpec] | None = None
    prev_from: datetime | None = None
    seen: set[str] = set()
    for doc, spec in zip(docs, specs, strict=True):
        if spec is None:
            continue
        if first is None:
            first = (doc, spec)
        else:
            fdoc, fspec = first
            pairs = [
                ("domain", "pack/domain-mismatch", fspec.domain, spec.domain),
                ("scheme", "pack/scheme-change", fspec.scheme.kind, spec.scheme.kind),
                ("timezone", "pack/timezone-change", fspec.timezone, spec.timezone),
            ]
            for key, code, a, b in pairs:
                if a != b:
                    out.append(
                        _err(
                            doc,
                            (key,),
                            code,
                            f"all versions of a domain share one {key}: {b!r} differs from "
                            f"{a!r} at line {fdoc.line_of((key,))}",
                        )
                    )
        if spec.version in seen:
            out.append(
                _err(doc, ("version",), "pack/version-order", f"version {spec.version!r} repeats")
            )
        seen.add(spec.version)
        try:
            at = parse_instant(spec.effective_from, zone(spec.timezone))
        except InvalidTimeError:
            continue
        if prev_from is not None and at <= prev_from:
            out.append(
                _err(
                    doc,
                    ("effective_from",),
                    "pack/version-order",
                    "versions must be in order of effective_from, each later than the one before",
                )
            )
        prev_from = at
    return out


VERSION_CHECKS = [check_versions]


def _run(checks: list[Check], doc: PackDocument, spec: PackSpec) -> list[Finding]:
    out: list[Finding] = []
    for check in checks:
        try:
            out += check(doc, spec)
        except Exception as exc:  # a crashing check is a finding, never a traceback
            out.append(_err(doc, (), "pack/internal", f"check {check.__name__} failed: {exc!r}"))
    return out


def _raw_findings(doc: PackDocument) -> list[Finding]:
    out: list[Finding] = []
    for check in RAW_GUARDRAILS:
        try:
            out += check(doc)
        except Exception as exc:  # a crashing check is a finding, never a traceback
            out.append(_err(doc, (), "pack/internal", f"check {check.__name__} failed: {exc!r}"))
    return out


def _without_unknown_keys(data: Any, exc: ValidationError) -> PackSpec | None:
    """The version read without the keys the schema called unknown; None for other errors."""
    errors = exc.errors()
    if not errors or any(e["type"] != "extra_forbidden" or not e["loc"] for e in errors):
        return None
    pruned = copy.deepcopy(data)
    for e in errors:
        *parents, key = e["loc"]
        node = pruned
        for part in parents:
            in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
            if in_list or (isinstance(node, dict) and part in node):
                node = node[part]
            elif not isinstance(node, dict):
                return None
            # else: a union's tag in the location (`scheme.balance.x`), not a key of the data
        if not isinstance(node, dict) or key not in node:
            return None
        del node[key]
    try:
        return PackSpec.model_validate(pruned)
    except ValidationError:
        return None  # the schema findings already say what is wrong


def lint_documents(docs: list[PackDocument]) -> tuple[list[Finding], list[PackSpec | None]]:
    """Lint every document; return all findings and the valid specs (None where invalid).

    Every check runs, always: there is deliberately no way to choose or skip checks.
    """
    findings: list[Finding] = []
    specs: list[PackSpec | None] = []
    for doc in docs:
        if not isinstance(doc.data, dict):
            findings.append(
                _err(
                    doc,
                    (),
                    "pack/schema",
                    "a pack version is a mapping of keys (domain, version, …)",
                )
            )
            specs.append(None)
            continue
        findings += _raw_findings(doc)
        try:
            spec = PackSpec.model_validate(doc.data)
        except ValidationError as exc:
            findings += _schema_findings(doc, exc)
            specs.append(None)
            pruned = _without_unknown_keys(doc.data, exc)
            if pruned is not None:
                findings += _run(CHECKS, doc, pruned)
            continue
        own = _run(CHECKS, doc, spec)
        findings += own
        specs.append(None if any(f.severity == "error" for f in own) else spec)
    for vcheck in VERSION_CHECKS:
        findings += vcheck(docs, specs)
    findings.sort(key=lambda f: (f.file, f.line))
    return findings, specs
