"""The rule-pack file format, as Pydantic models (the `*Spec` shapes of a YAML document).

The models validate structure and types only; cross-references (event types, attribute
names and types, categories, principles) are the linter's job, so that every problem is
reported with its line and not just the first one.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from pointbook.dates import Duration
from pointbook.rules.durations import parse_duration

__all__ = [
    "AttributeSpec",
    "BalanceSchemeSpec",
    "ConditionSpec",
    "DurationField",
    "EventTypeSpec",
    "ExamplesSpec",
    "LevelSpec",
    "PackSpec",
    "PointsFromSpec",
    "RestorationSpec",
    "RuleSpec",
    "ThresholdSpec",
    "WindowSchemeSpec",
]

_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^(\s*\d+\s*(years?|months?|weeks?|days?|hours?)\s*,?)+$"},
        {
            "type": "object",
            "properties": {
                k: {"type": "integer", "minimum": 0}
                for k in ("years", "months", "weeks", "days", "hours")
            },
            "additionalProperties": False,
        },
    ],
    "examples": ["2 years", "6 months", "1 year 1 day"],
}

DurationField = Annotated[
    Duration,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda d: d.describe(), return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]

Scalar = bool | int | float | str
KEBAB = r"^[a-z0-9]+(?:[-:][a-z0-9]+)*$"
IDENT = r"^[a-z][a-z0-9_]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributeSpec(_Spec):
    """An attribute an event type may carry. Events with undeclared attributes are rejected."""

    type: Literal["integer", "number", "string", "boolean"]
    required: bool = True
    values: list[Scalar] | None = Field(
        default=None, description="The closed set of allowed values, if any."
    )
    minimum: float | None = None
    maximum: float | None = None
    description: str | None = None


def _attr_shorthand(value: Any) -> Any:
    # `over_kmh: integer` is short for `over_kmh: {type: integer}`.
    return {"type": value} if isinstance(value, str) else value


class EventTypeSpec(_Spec):
    description: str | None = None
    attributes: dict[
        Annotated[str, Field(pattern=IDENT)],
        Annotated[AttributeSpec, BeforeValidator(_attr_shorthand)],
    ] = Field(default_factory=dict)
    require: ConditionSpec | None = Field(
        default=None, description="A condition every event of this type must meet, or be rejected."
    )
    require_message: str | None = None


_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "between", "present")


class ConditionSpec(_Spec):
    """A node of a condition tree: exactly one of `all`, `any`, `not`, or a comparison on `field`.

    A comparison may carry several operators, which must all hold (`{field: x, ge: 5, lt: 20}`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    all: list[ConditionSpec] | None = None
    any: list[ConditionSpec] | None = None
    not_: ConditionSpec | None = Field(default=None, alias="not")
    field: str | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    lt: int | float | None = None
    le: int | float | None = None
    gt: int | float | None = None
    ge: int | float | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    between: tuple[int | float, int | float] | None = Field(
        default=None, description="Inclusive range [low, high]."
    )
    present: bool | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> ConditionSpec:
        groups = [g for g in ("all", "any", "not_") if getattr(self, g) is not None]
        ops = self.operators()
        if self.field is not None:
            if groups:
                raise ValueError("a comparison on `field` cannot also hold all/any/not")
            if not ops:
                raise ValueError(
                    f"comparison on {self.field!r} has no operator: add one of {', '.join(_OPS)}"
                )
        else:
            if ops:
                raise ValueError(f"operators {sorted(ops)} need a `field` to compare")
            if len(groups) != 1:
                raise ValueError(
                    "a condition is exactly one of: all, any, not, or a `field` comparison"
                )
        for g in ("all", "any"):
            v = getattr(self, g)
            if v is not None and not v:
                raise ValueError(f"`{g}` needs at least one condition")
        return self

    def operators(self) -> dict[str, Any]:
        out = {}
        for op in _OPS:
            attr = op + "_" if op in ("in",) else op
            v = getattr(self, attr)
            if v is not None:
                out[op] = v
        return out


class BalanceSchemeSpec(_Spec):
    """Everyone starts at `start`; each step is clamped to [floor, ceiling] as it happens."""

    kind: Literal["balance"]
    start: int
    floor: int
    ceiling: int
    daily_cap: int | None = Field(
        default=None,
        ge=1,
        description="Most points per local day from rules marked `daily_cap: true` (net of "
        "capped losses that day); the gain that crosses it earns only the remainder.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> BalanceSchemeSpec:
        if not self.floor <= self.start <= self.ceiling:
            raise ValueError(
                f"need floor <= start <= ceiling, got {self.floor} <= {self.start} <= {self.ceiling}"
            )
        return self


class WindowSchemeSpec(_Spec):
    """Points accumulate; what counts is the sum of entries dated inside the sliding window."""

    kind: Literal["window"]
    length: DurationField
    boundary: Literal["inclusive", "exclusive"] = Field(
        description="inclusive: an entry exactly one window-length old still counts."
    )


class PointsFromSpec(_Spec):
    """Points taken from an integer attribute of the event, times `scale` (e.g. -1)."""

    attribute: str
    scale: int = 1


class ExamplesSpec(_Spec):
    match: list[dict[str, Any]] = Field(default_factory=list)
    no_match: list[dict[str, Any]] = Field(default_factory=list)


class RuleSpec(_Spec):
    id: Annotated[str, Field(pattern=KEBAB)]
    title: str = Field(
        description="Plain words shown to the person, e.g. 'Speeding, 20-29 km/h over'."
    )
    category: str
    basis: str = Field(min_length=3, description="The legal or policy text the rule applies.")
    event: str = Field(description="The event type the rule matches.")
    when: ConditionSpec | None = None
    points: int | PointsFromSpec
    counts_for: DurationField | None = Field(
        default=None,
        description="How long the entry counts; omitted: until restored (balance) or the window (window).",
    )
    tags: list[Annotated[str, Field(pattern=KEBAB)]] = Field(default_factory=list)
    daily_cap: bool = Field(default=False, description="Counts towards the scheme's daily cap.")
    requires_evidence: bool = False
    examples: ExamplesSpec | None = None


class RestorationSpec(_Spec):
    """Time-driven or course credits. Kinds:

    - clean-period: back to the ceiling after `after` without a new point loss
      (`longer_after` when any loss since the balance was last full has one of `longer_if_tags`);
    - small-loss: a loss of at most `max_loss` comes back after `after` without a new loss;
    - entry-return: each loss tagged with one of `tags` comes back `after` its date, unless a
      clean-period restoration came first;
    - course: an event of type `event` credits `points` after `delay`, at most once per
      `min_interval`, never above the ceiling and never at the floor.
    """

    id: Annotated[str, Field(pattern=KEBAB)]
    kind: Literal["clean-period", "small-loss", "entry-return", "course"]
    title: str
    basis: str = Field(min_length=3)
    after: DurationField | None = None
    longer_after: DurationField | None = None
    longer_if_tags: list[str] = Field(default_factory=list)
    max_loss: int | None = Field(default=None, ge=1)
    tags: list[str] = Field(default_factory=list)
    event: str | None = None
    points: int | None = Field(default=None, ge=1)
    min_interval: DurationField | None = None
    delay: DurationField | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> RestorationSpec:
        need = {
            "clean-period": ["after"],
            "small-loss": ["after", "max_loss"],
            "entry-return": ["after", "tags"],
            "course": ["event", "points"],
        }[self.kind]
        missing = [f for f in need if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.kind} restoration needs {', '.join(missing)}")
        if self.longer_after is not None and not self.longer_if_tags:
            raise ValueError("`longer_after` needs `longer_if_tags`")
        return self


class LevelSpec(_Spec):
    value: int
    attributes: dict[str, Scalar] = Field(default_factory=dict)


class ThresholdSpec(_Spec):
    """A condition on the scheme's figure (balance or window sum) that produces decisions.

    mode crossing: a decision each time the figure moves beyond a level it was not beyond
    (re-armed once it is back by more than `margin`); with several levels, one decision for the
    highest level reached by a step. mode while: a decision that holds while the figure stays
    beyond the level (after `grace`), ending when it comes back by more than `margin`.
    """

    id: Annotated[str, Field(pattern=KEBAB)]
    kind: Annotated[str, Field(pattern=KEBAB)]
    title: str
    basis: str = Field(min_length=3)
    direction: Literal["at_or_above", "above", "at_or_below", "below"]
    value: int | None = None
    levels: list[LevelSpec] | None = None
    mode: Literal["crossing", "while"]
    margin: int = Field(default=0, ge=0)
    grace: DurationField | None = None
    notice: DurationField | None = None
    duration: DurationField | None = None
    terminal: bool = Field(
        default=False, description="After this decision no restoration or course credit applies."
    )
    review: Literal["none", "required", "four-eyes"] = Field(
        default="none",
        description="required: a reviewer must confirm the decision before it takes force; "
        "four-eyes: and the reviewer must not be an issuer of the events behind it.",
    )
    resets: bool = Field(
        default=False,
        description="Window schemes: the points counted at the decision stop counting.",
    )

    @model_validator(mode="after")
    def _value_or_levels(self) -> ThresholdSpec:
        if (self.value is None) == (self.levels is None):
            raise ValueError("a threshold has either `value` or `levels`, not both")
        if self.levels is not None:
            vals = [lv.value for lv in self.levels]
            if not vals:
                raise ValueError("`levels` needs at least one level")
            if len(set(vals)) != len(vals):
                raise ValueError("threshold levels must be distinct")
        if self.mode == "while" and self.levels is not None and len(self.levels) > 1:
            raise ValueError(
                "a `while` threshold has a single value: write one threshold per level"
            )
        return self

    def level_list(self) -> list[LevelSpec]:
        if self.levels is not None:
            return list(self.levels)
        assert self.value is not None
        return [LevelSpec(value=self.value)]


_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PackSpec(_Spec):
    """One version of a domain's rule pack."""

    domain: Annotated[str, Field(pattern=KEBAB, max_length=64)]
    version: Annotated[str, Field(pattern=_VERSION.pattern)]
    effective_from: date | datetime = Field(
        description="When this version takes effect (a bare date: the start of that day)."
    )
    timezone: str = "UTC"
    title: str
    purpose: str = Field(min_length=3, description="What the scheme is for, in one sentence.")
    source: str | None = Field(default=None, description="Where the scheme's rules are published.")
    scheme: Annotated[BalanceSchemeSpec | WindowSchemeSpec, Field(discriminator="kind")]
    event_types: dict[Annotated[str, Field(pattern=IDENT)], EventTypeSpec]
    rules: list[RuleSpec]
    restorations: list[RestorationSpec] = Field(default_factory=list)
    thresholds: list[ThresholdSpec] = Field(default_factory=list)
    retention: DurationField | None = Field(
        default=None, description="How long any entry stays on the record after its event."
    )
    contest_window: DurationField | None = Field(
        default=None,
        description="How long a person has to contest an entry; it counts only once final. "
        "Omitted: events are established facts (a paid fine, a conviction) and count at once.",
    )
    notice_within: DurationField | None = Field(
        default=None,
        description="An event recorded later than this after it occurred is void: the notice "
        "that makes an entry valid was not given in time.",
    )
    max_points_per_event: int | None = Field(
        default=None, ge=1, description="No rule may give more points than this for one event."
    )
    incident_cap: int | None = Field(
        default=None,
        ge=1,
        description="Losses from events of one incident (same `incident` id) add up to at most this.",
    )
    appeal_contact: str | None = Field(
        default=None, description="Where a person turns to contest an entry or a decision."
    )
    min_cell: int = Field(
        default=10,
        ge=2,
        description="Aggregate views never show a cell covering fewer than this many subjects.",
    )
    erasure_on_request: bool = Field(
        default=False,
        description="Whether a subject's whole record may be erased on request before retention.",
    )


EventTypeSpec.model_rebuild()
ConditionSpec.model_rebuild()
