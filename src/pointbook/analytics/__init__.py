"""Operators' tools: what-if replays of a candidate pack, population reports, issuer oversight.

Every figure these tools show is an aggregate, and every aggregate passes through
:func:`pointbook.analytics.privacy.protect` (cells covering fewer than k subjects are
suppressed). No subject id ever leaves this package.
"""

from pointbook.analytics.privacy import DEFAULT_K, Cell, protect

__all__ = ["DEFAULT_K", "Cell", "protect"]
