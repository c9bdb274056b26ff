"""The controlled vocabularies behind the pack guardrails.

- ALLOWED and PROHIBITED: rule categories (principle 2: only conduct, never belief or
  belonging). An unknown category is refused as well as a prohibited one.
- SENSITIVE_WORDS and JUSTIFIED_BY: words that, in an event type's or an attribute's name (or
  an attribute's declared values), reveal one of the prohibited groups, and the few rule
  categories that give such a word an innocent meaning (a noisy *party*, rugby *union*).
- RESERVED_EVENT_TYPES and RESERVED_PREFIXES: the exercise of a right is never an input
  (principle 9). The linter refuses a pack declaring them and the ledger refuses such events.

docs/rule-packs.md ("Categories") prints these tables; a test keeps the two in step.
"""

from __future__ import annotations

import re

__all__ = [
    "ALLOWED",
    "JUSTIFIED_BY",
    "PROHIBITED",
    "PROHIBITED_GROUPS",
    "RESERVED_EVENT_TYPES",
    "RESERVED_PREFIXES",
    "SENSITIVE_WORDS",
    "is_reserved_event_type",
    "justifies",
    "sensitive_words",
]

ALLOWED: frozenset[str] = frozenset(
    {
        "road-safety",
        "traffic",
        "vehicle-compliance",
        "public-order",
        "environment",
        "noise",
        "animal-control",
        "sportsmanship",
        "match-conduct",
        "content-quality",
        "community-contribution",
        "moderation",
        "course",
        "administrative",
    }
)

# The prohibited groups of principle 2, in the words printed by every finding.
POLITICAL = "political opinion or expression about authorities"
RELIGION = "religion or belief"
MEMBERSHIP = "trade-union or party membership"
ASSOCIATION = "association with or relationships to other people"
ETHNICITY = "ethnicity or origin"
HEALTH = "health"
SEX_LIFE = "sex life or orientation"
BIOMETRIC = "biometric data"
PURCHASES = "purchases or consumption"

PROHIBITED_GROUPS: tuple[str, ...] = (
    POLITICAL,
    RELIGION,
    MEMBERSHIP,
    ASSOCIATION,
    ETHNICITY,
    HEALTH,
    SEX_LIFE,
    BIOMETRIC,
    PURCHASES,
)

# Each prohibited category, with the group printed when a pack uses it.
PROHIBITED: dict[str, str] = {
    "political-opinion": POLITICAL,
    "political-expression": POLITICAL,
    "religion": RELIGION,
    "belief": RELIGION,
    "trade-union": MEMBERSHIP,
    "party-membership": MEMBERSHIP,
    "association": ASSOCIATION,
    "relationships": ASSOCIATION,
    "ethnicity": ETHNICITY,
    "origin": ETHNICITY,
    "health": HEALTH,
    "sex-life": SEX_LIFE,
    "sexual-orientation": SEX_LIFE,
    "biometric": BIOMETRIC,
    "purchases": PURCHASES,
    "consumption": PURCHASES,
}

# Words that reveal a prohibited group when they are a whole word (between `_`, spaces or
# punctuation) of an event type's name, an attribute's name or a declared value. Plurals are
# listed where they are not just the word plus "s" (that form is matched automatically).
# Ambiguous words that are mostly innocent in a points scheme are left out on purpose:
# `contact` (physical contact in sport), `member`, `relative` (relative speed), `origin`,
# `face`, `drink`, `order`, `vote` (forum votes), `critical`, `comment`.
SENSITIVE_WORDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "political",
            "politics",
            "politician",
            "government",
            "authorities",
            "opinion",
            "protest",
            "petition",
            "dissent",
            "criticism",
            "election",
            "ballot",
        ),
        POLITICAL,
    ),
    **dict.fromkeys(
        (
            "religion",
            "religious",
            "faith",
            "belief",
            "church",
            "churches",
            "mosque",
            "synagogue",
            "temple",
            "worship",
            "prayer",
        ),
        RELIGION,
    ),
    **dict.fromkeys(
        ("party", "parties", "union", "unionist", "membership"),
        MEMBERSHIP,
    ),
    **dict.fromkeys(
        (
            "associate",
            "associated",
            "association",
            "contacts",
            "friend",
            "relatives",
            "family",
            "families",
            "spouse",
            "acquaintance",
            "relationship",
        ),
        ASSOCIATION,
    ),
    **dict.fromkeys(
        ("ethnicity", "ethnic", "race", "racial", "nationality", "tribe", "caste"),
        ETHNICITY,
    ),
    **dict.fromkeys(
        (
            "health",
            "diagnosis",
            "diagnoses",
            "medical",
            "illness",
            "illnesses",
            "disease",
            "disability",
            "pregnancy",
            "pregnant",
            "vaccination",
        ),
        HEALTH,
    ),
    **dict.fromkeys(
        ("sexual", "sexuality", "sex", "orientation", "dating"),
        SEX_LIFE,
    ),
    **dict.fromkeys(
        ("biometric", "fingerprint", "facial", "iris", "retina", "dna", "voiceprint", "gait"),
        BIOMETRIC,
    ),
    **dict.fromkeys(
        (
            "purchase",
            "purchased",
            "buy",
            "bought",
            "buying",
            "shopping",
            "consumption",
        ),
        PURCHASES,
    ),
}

# The rule categories under which a sensitive word has an innocent meaning. A word not listed
# here has none: a rule reading it is refused whatever its category.
JUSTIFIED_BY: dict[str, frozenset[str]] = {
    "party": frozenset({"noise", "public-order"}),  # a noisy party
    "parties": frozenset({"noise", "public-order"}),
    "union": frozenset({"sportsmanship", "match-conduct"}),  # rugby union
    "race": frozenset({"road-safety", "traffic", "sportsmanship", "match-conduct"}),  # a race
    "opinion": frozenset({"content-quality", "moderation"}),  # a post closed as opinion-based
}

_WORD = re.compile(r"[a-z]+")


def sensitive_words(text: str) -> list[str]:
    """The sensitive words of ``text`` (a name or a value), in order, each once."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        key = word if word in SENSITIVE_WORDS else word[:-1] if word.endswith("s") else ""
        if key in SENSITIVE_WORDS and key not in out:
            out.append(key)
    return out


def justifies(category: str, word: str) -> bool:
    """Whether a rule of ``category`` may read something named by the sensitive ``word``."""
    return category in JUSTIFIED_BY.get(word, frozenset())


# Principle 9: exercising a right is never an input. A pack cannot declare these event types
# and the ledger refuses events of these types.
RESERVED_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "record_viewed",
        "record_exported",
        "appeal_filed",
        "appeal_decided",
        "erasure_requested",
        "data_access_requested",
        "complaint_filed",
        "objection_filed",
        "rectification_requested",
        "restriction_requested",
        "share_created",
    }
)
RESERVED_PREFIXES: tuple[str, ...] = ("appeal_", "erasure_", "export_")


def is_reserved_event_type(name: str) -> bool:
    """Whether ``name`` is an event type no pack may declare and no issuer may report."""
    key = name.strip().lower()
    return key in RESERVED_EVENT_TYPES or key.startswith(RESERVED_PREFIXES)
