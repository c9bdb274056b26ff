"""The pure engine: events and pack versions in; entries, figures and decisions out.

No I/O and no clock: every function takes the time it needs as a parameter.
"""

from pointbook.engine.fold import evaluate_subject
from pointbook.engine.judge import judge, validate_event
from pointbook.engine.model import Appeal, Decision, Entry, Event, Line, SubjectState

__all__ = [
    "Appeal",
    "Decision",
    "Entry",
    "Event",
    "Line",
    "SubjectState",
    "evaluate_subject",
    "judge",
    "validate_event",
]
