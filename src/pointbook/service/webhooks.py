"""Webhook delivery from the outbox: at least once, signed, with an idempotency key.

Each decision change sits in the outbox until a receiver answers 2xx. A delivery is a POST of
the change as JSON with headers:

    Idempotency-Key: DECISION_ID:REVISION     drop a repeat you have already processed
    X-Pointbook-Signature: sha256=HEX         HMAC-SHA256 of the body with the shared secret
    X-Pointbook-Timestamp: UNIX_SECONDS       also covered by the signature (replay window)

Failures are retried with exponential backoff; what still fails stays queued for the next run.
Nothing is delivered while the domain's stop switch is on (the ledger's outbox is empty then).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pointbook.ledger import Ledger

__all__ = ["DeliveryReport", "deliver", "sign", "verify_signature"]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver runs: constant-time comparison of the signature it was sent."""
    try:
        expected = sign(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, signature)


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    last_error: str | None = None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def deliver(
    ledger: Ledger,
    domain: str,
    url: str,
    secret: str,
    *,
    attempts: int = 5,
    backoff_s: float = 0.5,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    post: Callable[[str, bytes, dict[str, str], float], int] = _post,
) -> DeliveryReport:
    """Deliver every pending change of ``domain`` to ``url``; acknowledge each 2xx."""
    report = DeliveryReport()
    for seq, key, payload in ledger.outbox(domain, limit=10_000):
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        delay = backoff_s
        for attempt in range(1, attempts + 1):
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                "X-Pointbook-Timestamp": str(ts),
                "X-Pointbook-Signature": sign(secret, ts, body),
            }
            report.attempts += 1
            try:
                status = post(url, body, headers, timeout_s)
            except OSError as exc:  # connection refused, timeout: the outcome is unknown
                status, report.last_error = 0, str(exc)
            if 200 <= status < 300:
                ledger.store.outbox_take([seq], datetime.now(UTC))
                report.delivered += 1
                break
            if status:
                report.last_error = f"HTTP {status}"
            if attempt < attempts:
                sleep(delay)
                delay *= 2
        else:
            report.failed += 1
    return report
