"""The controlled vocabulary of rule categories (principle 2: only conduct, never belief or belonging)."""

from __future__ import annotations

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

# Each prohibited category, with the reason printed when a pack uses it.
PROHIBITED: dict[str, str] = {
    "political-opinion": "political opinion or expression about authorities",
    "religion": "religion or belief",
    "belief": "religion or belief",
    "trade-union": "trade-union membership",
    "party-membership": "party membership",
    "association": "association with or relationships to other people",
    "ethnicity": "ethnicity or origin",
    "health": "health",
    "sex-life": "sex life or orientation",
    "biometric": "biometric data",
    "purchases": "purchases and consumption",
}
