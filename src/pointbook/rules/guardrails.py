"""The principle guardrails of the pack linter: what no pack may say, whatever else it says.

Each check names the principle it enforces and what to do instead. They run on every lint
(`pointbook pack lint`, `pack publish`, loading a pack file) through `lint_documents`, which
has no parameter to leave any of them out; nothing else in pointbook compiles a pack.

- check_cross_domain (principle 1): nothing names another domain. Runs on the raw document,
  before schema validation, so the principle is reported even when the schema refuses the key.
- check_event_type_names, check_sensitive_attributes (principle 2): names and values that
  reveal a prohibited category (categories.SENSITIVE_WORDS, justified only by JUSTIFIED_BY).
- check_outside_references (principle 3): a condition field is a bare attribute name.
- check_endless_deductions (principle 7): every loss of a balance scheme ends.
- check_reserved_event_types (principle 9): exercising a right is never an input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from pointbook.rules import categories
from pointbook.rules.findings import Finding
from pointbook.rules.load import PackDocument, PathKey
from pointbook.rules.spec import ConditionSpec, PackSpec, PointsFromSpec, RuleSpec

__all__ = [
    "GUARDRAILS",
    "RAW_GUARDRAILS",
    "check_cross_domain",
    "check_endless_deductions",
    "check_event_type_names",
    "check_outside_references",
    "check_reserved_event_types",
    "check_sensitive_attributes",
    "condition_at",
    "is_identifier",
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NO_OPTION = "no option turns this off"


def _err(doc: PackDocument, path: PathKey, code: str, msg: str) -> Finding:
    return Finding(doc.file, doc.line_of(path), code, "error", msg)


def _warn(doc: PackDocument, path: PathKey, code: str, msg: str) -> Finding:
    return Finding(doc.file, doc.line_of(path), code, "warning", msg)


def is_identifier(name: str) -> bool:
    """Whether ``name`` can only be a bare attribute name (no dot, bracket, colon, space…)."""
    return bool(_IDENTIFIER.match(name))


# ---------------------------------------------------------------------------------------------
# Principle 1: one domain, one purpose
# ---------------------------------------------------------------------------------------------

# Keys that are prose: a domain named in a sentence is not a reference. A condition's `field`
# is left to check_outside_references (principle 3), which explains it better.
_PROSE = frozenset(
    {"title", "basis", "description", "purpose", "source", "require_message", "examples", "field"}
)
_FIGURES = "balance|balances|points|score|figure|window|record|decisions?"
_DOMAIN_VALUE = re.compile(r"^\s*domains?\s*[:=/]\s*(?P<name>[A-Za-z0-9_*-]+)", re.I)
_FIGURE_VALUE = re.compile(
    rf"^\s*(?P<name>[a-z0-9]+(?:[-_][a-z0-9]+)*)\s*[.:/]\s*(?:{_FIGURES})\s*$", re.I
)


def _is_domain_key(key: str) -> bool:
    return any(w in ("domain", "domains") for w in re.split(r"[^a-z0-9]+", key.lower()))


def _domain_in_value(value: str, own: str | None) -> str | None:
    """The foreign domain a string value refers to (`domain:x`, `x.balance`), if any."""
    for pattern in (_DOMAIN_VALUE, _FIGURE_VALUE):
        m = pattern.match(value)
        if m and m.group("name") != own:
            return m.group("name")
    return None


def _walk(data: Any, path: PathKey) -> Iterator[tuple[PathKey, Any]]:
    yield path, data
    if isinstance(data, dict):
        for k, v in data.items():
            if str(k) not in _PROSE:
                yield from _walk(v, (*path, str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk(v, (*path, i))


def _where(data: dict[str, Any], path: PathKey) -> str:
    """`threshold 'blacklist'` for a path inside a listed item with an id, else the key path."""
    if len(path) >= 2 and isinstance(path[1], int):
        items = data.get(str(path[0]))
        if isinstance(items, list) and path[1] < len(items) and isinstance(items[path[1]], dict):
            item_id = items[path[1]].get("id")
            if item_id is not None:
                return f"{str(path[0]).rstrip('s')} {item_id!r}"
    return ".".join(str(p) for p in path) or "the version"


def check_cross_domain(doc: PackDocument) -> list[Finding]:
    """Principle 1: below the top-level `domain`, nothing may name a domain."""
    data = doc.data
    if not isinstance(data, dict):
        return []
    own = data.get("domain") if isinstance(data.get("domain"), str) else None
    why = (
        "principle 1 (one domain, one purpose): balances, windows, thresholds and their "
        "consequences only ever read and act in the pack's own domain"
    )
    out: list[Finding] = []
    flagged: list[PathKey] = []
    for path, value in _walk(data, ()):
        if path == ("domain",) or any(path[: len(p)] == p for p in flagged):
            continue
        key = path[-1] if path else None
        if isinstance(key, str) and _is_domain_key(key) and value != own:
            flagged.append(path)
            out.append(
                _err(
                    doc,
                    path,
                    "pack/cross-domain",
                    f"{_where(data, path)} names other domains with {key!r} ({value!r}); {why}. "
                    f"Remove {key!r}: a pack speaks for its top-level domain only, and a scheme "
                    f"that needs another figure is another domain with its own pack; "
                    f"{_NO_OPTION}",
                )
            )
        elif isinstance(value, str) and (foreign := _domain_in_value(value, own)) is not None:
            out.append(
                _err(
                    doc,
                    path,
                    "pack/cross-domain",
                    f"{_where(data, path)} refers to domain {foreign!r} ({value!r}); {why}. "
                    f"Remove the reference; {_NO_OPTION}",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Principle 2: only conduct, never belief or belonging
# ---------------------------------------------------------------------------------------------


def _words_message(words: list[str]) -> str:
    return ", ".join(f"{w!r} ({categories.SENSITIVE_WORDS[w]})" for w in words)


def _hint(words: list[str], what: str) -> str:
    """How a word with an innocent meaning could be used, for the words that have one."""
    parts = [
        f"{w!r} only {what} {' or '.join(sorted(categories.JUSTIFIED_BY[w]))}"
        for w in words
        if w in categories.JUSTIFIED_BY
    ]
    return f" ({'; '.join(parts)})" if parts else ""


def _unjustified(words: list[str], category_list: list[str]) -> list[str]:
    """The words not justified by every one of the categories (all of them, if none)."""
    if not category_list:
        return words
    return [w for w in words if not all(categories.justifies(c, w) for c in category_list)]


def check_event_type_names(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    """Principle 2: an event type whose name reveals a prohibited category is refused."""
    out = []
    for name in spec.event_types:
        rule_categories = [r.category for r in spec.rules if r.event == name]
        bad = _unjustified(categories.sensitive_words(name), rule_categories)
        if bad:
            out.append(
                _err(
                    doc,
                    ("event_types", name),
                    "pack/prohibited-event-type",
                    f"event type {name!r} contains {_words_message(bad)}: principle 2 (only "
                    "conduct, never belief or belonging) refuses events about these. Name the "
                    "conduct itself in neutral words (`graffiti`, `noise_after_hours`), or "
                    "remove the event type"
                    f"{_hint(bad, 'when every rule matching it has category')}; {_NO_OPTION}",
                )
            )
    return out


def _comparisons(node: ConditionSpec, path: PathKey) -> Iterator[tuple[ConditionSpec, PathKey]]:
    for group in ("all", "any"):
        children = getattr(node, group)
        if children is not None:
            for i, child in enumerate(children):
                yield from _comparisons(child, (*path, group, i))
            return
    if node.not_ is not None:
        yield from _comparisons(node.not_, (*path, "not"))
        return
    yield node, path


def condition_at(cond: ConditionSpec, path: PathKey) -> ConditionSpec | None:
    """The node of ``cond`` at ``path`` (as check_condition reports it; a trailing key is ignored)."""
    node: ConditionSpec | None = cond
    parts = list(path)
    while parts and node is not None:
        part = parts.pop(0)
        if part in ("all", "any") and parts and isinstance(parts[0], int):
            children = getattr(node, str(part)) or []
            index = parts.pop(0)
            assert isinstance(index, int)
            node = children[index] if index < len(children) else None
        elif part == "not":
            node = node.not_
        else:
            break
    return node


def _rule_reads(rule: RuleSpec, i: int) -> Iterator[tuple[str, PathKey, list[tuple[str, Any]]]]:
    """(attribute, path, [(operator, literal)]) for every attribute a rule reads."""
    if rule.when is not None:
        for node, path in _comparisons(rule.when, ("rules", i, "when")):
            if node.field is not None:
                yield node.field, (*path, "field"), list(node.operators().items())
    if isinstance(rule.points, PointsFromSpec):
        yield rule.points.attribute, ("rules", i, "points", "attribute"), []


def check_sensitive_attributes(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    """Principle 2: a sensitive attribute is a warning where declared, an error where read."""
    out = []
    for et_name, et in spec.event_types.items():
        for attr_name, attr in et.attributes.items():
            path: PathKey = ("event_types", et_name, "attributes", attr_name)
            words = categories.sensitive_words(attr_name)
            value_words = [
                w
                for v in attr.values or []
                if isinstance(v, str)
                for w in categories.sensitive_words(v)
                if w not in words
            ]
            if words or value_words:
                what = (
                    f"its name contains {_words_message(words)}"
                    if words
                    else f"its values contain {_words_message(sorted(set(value_words)))}"
                )
                out.append(
                    _warn(
                        doc,
                        path,
                        "pack/sensitive-attribute",
                        f"attribute {attr_name!r} of {et_name!r}: {what}. Principle 2 forbids "
                        "judging these; a rule may read it only under a category that gives "
                        "the word an innocent meaning (docs/rule-packs.md, Categories). Rename "
                        "it for the conduct it records, or drop it",
                    )
                )
    for i, rule in enumerate(spec.rules):
        for attr_name, path, ops in _rule_reads(rule, i):
            bad = _unjustified(categories.sensitive_words(attr_name), [rule.category])
            literal_words = [
                w
                for _, lit in ops
                for v in (lit if isinstance(lit, list | tuple) else [lit])
                if isinstance(v, str)
                for w in categories.sensitive_words(v)
            ]
            bad_literals = _unjustified(list(dict.fromkeys(literal_words)), [rule.category])
            if not bad and not bad_literals:
                continue
            what = (
                f"reads {attr_name!r}, whose name contains {_words_message(bad)}"
                if bad
                else f"compares {attr_name!r} with {_words_message(bad_literals)}"
            )
            out.append(
                _err(
                    doc,
                    path,
                    "pack/sensitive-attribute",
                    f"rule {rule.id!r} {what}, and its category {rule.category!r} does not "
                    "justify it: principle 2 (only conduct, never belief or belonging). Judge "
                    "the conduct itself, not who the person is or what they believe"
                    f"{_hint(bad or bad_literals, 'under category')}; {_NO_OPTION}",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Principle 3: only the person's own conduct
# ---------------------------------------------------------------------------------------------


def _conditions(spec: PackSpec) -> Iterator[tuple[ConditionSpec, PathKey]]:
    for name, et in spec.event_types.items():
        if et.require is not None:
            yield et.require, ("event_types", name, "require")
    for i, rule in enumerate(spec.rules):
        if rule.when is not None:
            yield rule.when, ("rules", i, "when")


# Attribute names that would smuggle another person or a ledger figure into an event (R6).
OUTSIDE_ATTRIBUTES = frozenset(
    {
        "subject",
        "subject_id",
        "other_subject",
        "person",
        "person_id",
        "user",
        "user_id",
        "citizen",
        "citizen_id",
        "balance",
        "score",
        "rating",
        "credit_score",
    }
)


def check_outside_references(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    """Principle 3: a condition's `field` is one attribute name, never a path or a lookup, and
    no attribute may carry another person's identity or a ledger figure (R6)."""
    out = []
    for type_name, et in spec.event_types.items():
        for attr_name in et.attributes:
            if attr_name.lower() in OUTSIDE_ATTRIBUTES:
                out.append(
                    _err(
                        doc,
                        ("event_types", type_name, "attributes", attr_name),
                        "pack/outside-reference",
                        f"event type {type_name!r} declares attribute {attr_name!r}: an event "
                        "describes the person's own conduct; it cannot carry a person's identity "
                        "(the event's subject is not an attribute) or anyone's balance or score "
                        "(principle 3). Remove the attribute",
                    )
                )
    for cond, base in _conditions(spec):
        for node, path in _comparisons(cond, base):
            if node.field is None or is_identifier(node.field):
                continue
            out.append(
                _err(
                    doc,
                    (*path, "field"),
                    "pack/outside-reference",
                    f"condition field {node.field!r} is not an attribute name: the condition "
                    "language has no way to refer to other subjects, other domains, balances or "
                    "lookups, only to the judged event's own attributes (principle 3, only the "
                    "person's own conduct). Write one declared attribute, e.g. `field: over_kmh`",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Principle 7: forgiveness and forgetting
# ---------------------------------------------------------------------------------------------


def _can_lose(rule: RuleSpec, spec: PackSpec) -> bool:
    """Whether a rule can give a negative number of points."""
    if isinstance(rule.points, int):
        return rule.points < 0
    scale = rule.points.scale
    if scale == 0:
        return False
    et = spec.event_types.get(rule.event)
    attr = et.attributes.get(rule.points.attribute) if et is not None else None
    if attr is None:
        return scale < 0
    numbers = [v for v in attr.values or [] if isinstance(v, int | float)]
    low = min(numbers) if numbers else attr.minimum
    high = max(numbers) if numbers else attr.maximum
    # scale * x < 0 needs x > 0 for a negative scale, x < 0 for a positive one.
    return (high is None or high > 0) if scale < 0 else (low is None or low < 0)


def _returned_by(rule: RuleSpec, spec: PackSpec) -> str | None:
    """The restoration that returns every loss of ``rule``, if any."""
    for rest in spec.restorations:
        if rest.kind == "clean-period":
            return rest.id
        if (
            rest.kind == "small-loss"
            and isinstance(rule.points, int)
            and rest.max_loss is not None
            and -rule.points <= rest.max_loss
        ):
            return rest.id
        if rest.kind == "entry-return" and set(rest.tags) & set(rule.tags):
            return rest.id
    return None


def check_endless_deductions(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    """Principle 7: in a balance scheme every loss ends (counts_for, or a restoration)."""
    if spec.scheme.kind != "balance":
        return []  # a window ends every entry by construction
    out = []
    for i, rule in enumerate(spec.rules):
        if rule.counts_for is not None or not _can_lose(rule, spec):
            continue
        if _returned_by(rule, spec) is not None:
            continue
        out.append(
            _err(
                doc,
                ("rules", i, "points"),
                "pack/endless-deduction",
                f"rule {rule.id!r} can take points away and nothing ever gives them back: "
                "principle 7 (forgiveness and forgetting) needs every deduction to end. Add "
                "`counts_for: N years` to the rule, or a restoration that returns it (a "
                "`clean-period`; a `small-loss` whose max_loss covers it; an `entry-return` "
                f"naming one of its tags); {_NO_OPTION}",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Principle 9: exercising a right costs nothing
# ---------------------------------------------------------------------------------------------


def check_reserved_event_types(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    """Principle 9: viewing, exporting, appealing, asking for erasure… is never an input."""
    why = (
        "is the exercise of a right (viewing, exporting, contesting, complaining, asking for "
        "erasure or rectification, sharing one's record), which principle 9 says can never be "
        "an input to a rule; the ledger refuses such events"
    )
    out = []
    for name in spec.event_types:
        if categories.is_reserved_event_type(name):
            out.append(
                _err(
                    doc,
                    ("event_types", name),
                    "pack/reserved-event-type",
                    f"event type {name!r} {why}. Remove it; {_NO_OPTION}",
                )
            )
    uses: list[tuple[PathKey, str, str]] = [
        (("rules", i, "event"), f"rule {r.id!r}", r.event) for i, r in enumerate(spec.rules)
    ]
    uses += [
        (("restorations", i, "event"), f"restoration {r.id!r}", r.event)
        for i, r in enumerate(spec.restorations)
        if r.event is not None
    ]
    for path, who, event in uses:
        if categories.is_reserved_event_type(event):
            out.append(
                _err(
                    doc,
                    path,
                    "pack/reserved-event-type",
                    f"{who} matches {event!r}, which {why}. Remove the rule; {_NO_OPTION}",
                )
            )
    return out


def check_proportionality(doc: PackDocument, spec: PackSpec) -> list[Finding]:
    """R14: with `max_points_per_event`, no rule may give more points than that for one event
    (for points taken from an attribute, the attribute's declared maximum must respect it)."""
    cap = spec.max_points_per_event
    if cap is None:
        return []
    out = []
    for i, rule in enumerate(spec.rules):
        if isinstance(rule.points, int):
            worst: float | None = abs(rule.points)
        else:
            et = spec.event_types.get(rule.event)
            attr = et.attributes.get(rule.points.attribute) if et else None
            bounds = (
                [] if attr is None else [b for b in (attr.minimum, attr.maximum) if b is not None]
            )
            worst = (
                None if len(bounds) < 2 else max(abs(b) for b in bounds) * abs(rule.points.scale)
            )
        if worst is None or worst > cap:
            shown = "an unbounded number of" if worst is None else f"{worst:g}"
            out.append(
                Finding(
                    doc.file,
                    doc.line_of(("rules", i, "points")),
                    "pack/over-cap",
                    "error",
                    f"rule {rule.id!r} can give {shown} points for one event, over the pack's "
                    f"max_points_per_event of {cap} (R14, proportionality): lower the points or "
                    "bound the attribute with minimum and maximum",
                )
            )
    return out


Guardrail = Callable[[PackDocument, PackSpec], list[Finding]]

# Checks on a validated version (lint.CHECKS runs them) and on the raw document (run before
# schema validation, so they report even a version the schema refuses).
GUARDRAILS: list[Guardrail] = [
    check_event_type_names,
    check_sensitive_attributes,
    check_outside_references,
    check_endless_deductions,
    check_reserved_event_types,
    check_proportionality,
]
RAW_GUARDRAILS: list[Callable[[PackDocument], list[Finding]]] = [check_cross_domain]
