"""The hash-chained audit log (principle 8): commitments, not personal data.

Every write appends a record `(seq, at, kind, domain, ref, commitment)`; its hash commits to
the previous record's hash, so changing, removing or reordering a record breaks the chain.
Each commitment is the SHA-256 of a data row's canonical content, salted for rows holding
personal data: once retention or an erasure request removes the content (and its salt), the
chain still verifies and the commitment reveals nothing. `verify` recomputes both the chain
and every row's commitment, so a row changed behind pointbook's back is caught too.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pointbook.engine.canonical import canonical_text

__all__ = [
    "GENESIS",
    "AuditRecord",
    "VerifyResult",
    "chain_hash",
    "commit",
    "new_salt",
    "verify_chain",
]

GENESIS = "0" * 64
ERASED = "erased"


def new_salt() -> str:
    return secrets.token_hex(16)


def canonical(value: Any) -> bytes:
    return canonical_text(value).encode()


def commit(value: Any, salt: str | None = None) -> str:
    """The commitment to a row: SHA-256 over an optional salt and its canonical JSON."""
    # The bytes hashed are salt, NUL, JSON: joined before encoding, hashed in one call.
    text = canonical_text(value)
    return hashlib.sha256((f"{salt}\x00{text}" if salt else text).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at_us: int
    kind: str
    domain: str
    ref: str
    commitment: str
    prev: str
    hash: str


def chain_hash(
    prev: str, seq: int, at_us: int, kind: str, domain: str, ref: str, commitment: str
) -> str:
    # A tuple encodes as the same JSON array as a list.
    text = canonical_text((prev, seq, at_us, kind, domain, ref, commitment))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int
    root: str
    first_bad: int | None = None
    reason: str | None = None


def verify_chain(
    records: Iterable[AuditRecord],
    current: Callable[[str], str | tuple[str, ...] | None],
    unaudited: Callable[[set[str]], list[str]],
) -> VerifyResult:
    """Check the chain, then that each ref's latest commitment matches its row today.

    ``current(ref)`` recomputes the commitment of the row behind ``ref`` as stored now (None if
    the row is gone), or the commitments it accepts (an older format besides the current one);
    ``unaudited(refs)`` lists rows present in the store with no record.
    """
    prev = GENESIS
    latest: dict[str, AuditRecord] = {}
    n = 0
    for n, rec in enumerate(records, start=1):
        if rec.seq != n:
            return VerifyResult(
                False,
                n - 1,
                prev,
                rec.seq,
                f"record {rec.seq} is out of place: expected record {n} (a record was removed or reordered)",
            )
        if rec.prev != prev:
            return VerifyResult(
                False,
                n - 1,
                prev,
                rec.seq,
                f"record {rec.seq} does not follow record {n - 1}: the chain was broken",
            )
        expected = chain_hash(
            prev, rec.seq, rec.at_us, rec.kind, rec.domain, rec.ref, rec.commitment
        )
        if rec.hash != expected:
            return VerifyResult(
                False,
                n - 1,
                prev,
                rec.seq,
                f"record {rec.seq} ({rec.kind} {rec.ref}) was changed: its hash does not match its content",
            )
        prev = rec.hash
        latest[rec.ref] = rec
    for ref, rec in sorted(latest.items(), key=lambda kv: kv[1].seq):
        now = current(ref)
        if rec.commitment == ERASED:
            if now is not None:
                return VerifyResult(
                    False,
                    n,
                    prev,
                    rec.seq,
                    f"{ref} was erased at record {rec.seq} but a row is back in its place",
                )
            continue
        if now is None:
            return VerifyResult(
                False,
                n,
                prev,
                rec.seq,
                f"{ref} (record {rec.seq}) is missing from the store: the row was removed",
            )
        if rec.commitment not in ((now,) if isinstance(now, str) else now):
            return VerifyResult(
                False,
                n,
                prev,
                rec.seq,
                f"{ref} (record {rec.seq}) was changed after it was written",
            )
    extra = unaudited(set(latest))
    if extra:
        return VerifyResult(
            False,
            n,
            prev,
            None,
            f"{extra[0]} is in the store but was never written through pointbook (no audit record)",
        )
    return VerifyResult(True, n, prev)
