"""Bearer tokens and per-domain roles.

A token is random; only its SHA-256 is stored. Each token belongs to one domain and one role
(and, for a subject, one subject): a token of one domain sees nothing of another.

    operator  publishes and lints packs of its domain
    issuer    reports events to its domain
    reviewer  reads records, decides appeals and confirms decisions in its domain
    subject   reads and contests its own record only
    auditor   verifies the audit log and reads the k-suppressed reports; never an individual
              record
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

__all__ = ["ROLES", "Principal", "Role", "hash_token", "new_token", "principal_of"]

Role = Literal["operator", "issuer", "reviewer", "subject", "auditor"]
ROLES: tuple[Role, ...] = ("operator", "issuer", "reviewer", "subject", "auditor")


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    domain: str
    subject: str | None
    label: str

    def can_read(self, domain: str, subject: str) -> bool:
        """Object-level access to one subject's record."""
        if domain != self.domain:
            return False
        if self.role == "subject":
            return subject == self.subject
        return self.role == "reviewer"


def principal_of(row: tuple[str, str, str | None, str] | None) -> Principal | None:
    """A Principal from the store's (role, domain, subject, label) of a token."""
    if row is None or row[0] not in ROLES:
        return None
    return Principal(row[0], row[1], row[2], row[3])


def new_token() -> str:
    return "pb_" + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
