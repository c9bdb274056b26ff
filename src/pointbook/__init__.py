"""pointbook: an accountable points ledger.

The library API: load and lint packs, judge and fold events, and the Ledger over a store.
The CLI (`pointbook`) is a thin shell around these.
"""

from pointbook.engine import Decision, Entry, Event, SubjectState, evaluate_subject
from pointbook.errors import (
    ConflictError,
    EventError,
    InvalidTimeError,
    PackError,
    PointbookError,
    PublishError,
    StoreError,
    UnknownDomainError,
)
from pointbook.ledger import Ledger
from pointbook.rules.pack import PackVersion, load_pack_file, load_pack_text

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "Decision",
    "Entry",
    "Event",
    "EventError",
    "InvalidTimeError",
    "Ledger",
    "PackError",
    "PackVersion",
    "PointbookError",
    "PublishError",
    "StoreError",
    "SubjectState",
    "UnknownDomainError",
    "evaluate_subject",
    "load_pack_file",
    "load_pack_text",
]
