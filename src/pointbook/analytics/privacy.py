"""Privacy of aggregates: the one function every aggregate cell goes through.

A *cell* is one figure of an aggregate (a count, a sum of points, a share) together with the
set of subjects it covers. A cell covering fewer than ``k`` subjects (but more than none) is
never shown: it is replaced by the marker ``"<k"`` (``"<10"`` by default). Within a group of
cells shown beside their total (the bars of one chart, the columns of one table), one
suppressed cell could be recovered by subtraction, so when exactly one cell of a group is
suppressed the next smallest non-empty cell is suppressed too (complementary suppression).

A cell covering nobody is shown as it is (0 covers no individual).

k comes from the ``--k`` option (default 10). A per-domain setting read from the pack is
future work: the pack format has no such field yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_K", "Cell", "Shown", "is_suppressed", "marker", "protect"]

DEFAULT_K = 10

Shown = int | float | str


@dataclass(frozen=True, slots=True)
class Cell:
    """A figure and how many distinct subjects it covers."""

    value: int | float
    subjects: int

    @classmethod
    def of(cls, value: int | float, subjects: Iterable[str]) -> Cell:
        return cls(value, len(set(subjects)))


def marker(k: int) -> str:
    return f"<{k}"


def is_suppressed(shown: Shown) -> bool:
    return isinstance(shown, str) and shown.startswith("<")


def protect(cells: Mapping[str, Cell], k: int = DEFAULT_K) -> dict[str, Shown]:
    """The shown value of each cell of one group: suppressed below k subjects.

    A single figure is a group of one. Keys keep their order.
    """
    if k < 1:
        raise ValueError("k is at least 1")
    hidden = {key for key, c in cells.items() if 0 < c.subjects < k}
    if len(hidden) == 1 and len(cells) > 1:
        rest = sorted(
            (c.subjects, key) for key, c in cells.items() if key not in hidden and c.subjects > 0
        )
        if rest:
            hidden.add(rest[0][1])
    out: dict[str, Shown] = {}
    for key, c in cells.items():
        out[key] = marker(k) if key in hidden else c.value
    return out


def protect_one(cell: Cell, k: int = DEFAULT_K) -> Shown:
    """One figure on its own: a group of one through :func:`protect`."""
    return protect({"": cell}, k)[""]


__all__ += ["protect_one"]


def domain_k(ledger: Any, domain: str, k: int | None = None) -> int:
    """The smallest cell an aggregate of ``domain`` shows: ``k`` if given, else the pack's
    `min_cell`. The CLI and the portal both ask here, so they cannot disagree."""
    if k is not None:
        return k
    return int(ledger.require_domain(domain)[-1].spec.min_cell)
