"""CPU per stage of the timed ingest (`bench ingest --stages`).

The stages are the functions the ingest spends its time in, each timed with the process's CPU
clock around every call while the timed run lasts (then put back as they were): cheaper than
cProfile, which inflates the Python-heavy stages several times over and so skews their
shares. Only this process is timed: with `--jobs`, the folds run on workers and the refresh's
fold shows only what stayed here. "rows and commitments" and "audit chain" are spent inside
both writes (the batches' and the refresh's); `other` is the engine's CPU less the top-level
stages: reading and validating lines, and the loops around the stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pointbook.ledger as ledger_module
from pointbook.ledger import Ledger
from pointbook.store import audit_sql, rows

__all__ = ["INNER", "TOP", "timed_stages"]

# (stage, what it is): the top-level stages, none of which calls another.
TOP: list[tuple[str, str]] = [
    ("check_event", "check each record"),
    ("content_hash", "content hash"),
    ("event_hashes", "duplicate look-up"),
    ("judge_batch", "judge"),
    ("check_batch", "batch invariants"),
    ("write_batch", "write batches"),
    ("evaluate_subject", "refresh: fold"),
    ("subject_events", "refresh: read events"),
    ("_write_refresh", "refresh: write decisions"),
]
# Spent inside the two writes above (both of them).
INNER: list[tuple[str, str]] = [
    ("rows", "of the writes: rows and commitments"),
    ("audit", "of the writes: audit chain"),
]
_ROWS = (
    "event_rows",
    "entry_rows",
    "event_records",
    "decision_rows",
    "outbox_rows",
    "decision_records",
    "outbox_records",
)


@contextmanager
def timed_stages(ledger: Ledger) -> Iterator[dict[str, float]]:
    """CPU seconds per stage (the keys of `TOP` and `INNER`) of what ``ledger`` does inside
    the block."""
    spent = dict.fromkeys([k for k, _ in TOP] + [k for k, _ in INNER], 0.0)
    undo: list[tuple[Any, str, Any]] = []

    def time_it(owner: Any, name: str, stage: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - start

        undo.append((owner, name, real))
        setattr(owner, name, timed)

    store = type(ledger.store)
    time_it(Ledger, "check_event", "check_event")
    time_it(Ledger, "_write_refresh", "_write_refresh")
    for name in ("content_hash", "judge_batch", "check_batch", "evaluate_subject"):
        time_it(ledger_module, name, name)  # as the ledger calls them
    for name in ("event_hashes", "write_batch", "subject_events"):
        time_it(store, name, name)
    for name in _ROWS:
        time_it(rows, name, "rows")
    time_it(audit_sql, "append", "audit")
    try:
        yield spent
    finally:
        for owner, name, real in reversed(undo):
            setattr(owner, name, real)
