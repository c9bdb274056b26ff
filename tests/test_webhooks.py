"""Webhooks: each decision change delivered at least once, signed, retried, never while stopped.

A real HTTP receiver runs on loopback in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.service.webhooks import deliver, verify_signature
from pointbook.store import SQLiteStore, Store

ROOT = Path(__file__).parent.parent
SECRET = "s3cret"


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: list[dict[str, Any]] = []
        self.seen: set[str] = set()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify_signature(
                SECRET,
                self.headers["X-Pointbook-Timestamp"],
                body,
                self.headers["X-Pointbook-Signature"],
            )
            state.calls.append({"key": self.headers["Idempotency-Key"], "ok": ok})
            status = 500 if len(state.calls) <= state.fail_first else (200 if ok else 401)
            if status == 200:
                state.seen.add(self.headers["Idempotency-Key"])
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ledger(store_factory: Callable[[], Store]) -> Iterator[Ledger]:
    led = Ledger(store_factory(), now=lambda: datetime(2026, 6, 1, tzinfo=UTC))
    led.publish(load_pack_file(ROOT / "examples" / "packs" / "civic-code.yaml"))
    # civic-code: three graffiti (-50 each) take resident r1 from 1000 to 850 < 900: a notice.
    recs = [
        RawRecord(
            i,
            "",
            EventIn.model_validate(
                {
                    "id": f"g{i}",
                    "domain": "civic-code",
                    "subject": "r1",
                    "type": "graffiti",
                    "occurred_at": f"2026-01-0{i + 1}",
                }
            ),
            None,
        )
        for i in range(1, 4)
    ]
    led.ingest(recs)
    yield led


def test_each_change_is_delivered_once_signed(
    ledger: Ledger, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    report = deliver(ledger, "civic-code", url, SECRET, sleep=lambda s: None)
    assert (report.delivered, report.failed) == (1, 0)
    assert [c["ok"] for c in state.calls] == [True]
    again = deliver(ledger, "civic-code", url, SECRET, sleep=lambda s: None)
    assert again.delivered == 0, "an acknowledged change is not sent again"


def test_failures_are_retried_with_backoff_and_the_key_lets_receivers_drop_repeats(
    ledger: Ledger, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.fail_first = 2
    waits: list[float] = []
    report = deliver(ledger, "civic-code", url, SECRET, sleep=waits.append, backoff_s=0.5)
    assert report.delivered == 1 and report.attempts == 3
    assert waits == [0.5, 1.0]
    assert len({c["key"] for c in state.calls}) == 1  # the same idempotency key each time


def test_what_keeps_failing_stays_queued(ledger: Ledger) -> None:
    report = deliver(
        ledger,
        "civic-code",
        "http://127.0.0.1:9/none",
        SECRET,
        attempts=2,
        sleep=lambda s: None,
        timeout_s=1,
    )
    assert (report.delivered, report.failed) == (0, 1)
    assert len(ledger.outbox("civic-code")) == 1


def test_nothing_leaves_while_the_domain_is_stopped(
    ledger: Ledger, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    ledger.set_switch("civic-code", True, "incident review", "ops")
    assert deliver(ledger, "civic-code", url, SECRET, sleep=lambda s: None).delivered == 0
    assert state.calls == []
    ledger.set_switch("civic-code", False, "resolved", "ops")
    assert deliver(ledger, "civic-code", url, SECRET, sleep=lambda s: None).delivered == 1


def test_a_wrong_secret_fails_the_receivers_check() -> None:
    from pointbook.service.webhooks import sign

    body = b'{"a":1}'
    assert not verify_signature(SECRET, "100", body, sign("other", 100, body))
    assert verify_signature(SECRET, "100", body, sign(SECRET, 100, body))


def test_the_cli_delivers_with_the_secret_from_the_environment(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    import os
    import subprocess
    import sys

    state, url = receiver
    db = tmp_path / "cli.db"
    led = Ledger(SQLiteStore(db))
    led.publish(load_pack_file(ROOT / "examples" / "packs" / "civic-code.yaml"))
    led.ingest(
        [
            RawRecord(
                i,
                "",
                EventIn.model_validate(
                    {
                        "id": f"g{i}",
                        "domain": "civic-code",
                        "subject": "r1",
                        "type": "graffiti",
                        "occurred_at": f"2025-01-0{i}",
                    }
                ),
                None,
            )
            for i in range(1, 4)
        ]
    )
    led.close()
    base = [
        sys.executable,
        "-m",
        "pointbook",
        "outbox",
        "deliver",
        "civic-code",
        "--url",
        url,
        "--db",
        str(db),
    ]
    env = {k: v for k, v in os.environ.items() if k != "POINTBOOK_WEBHOOK_SECRET"}
    missing = subprocess.run(base, capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "POINTBOOK_WEBHOOK_SECRET" in missing.stderr
    done = subprocess.run(
        base, capture_output=True, text=True, env={**env, "POINTBOOK_WEBHOOK_SECRET": SECRET}
    )
    assert done.returncode == 0, done.stderr
    assert [c["ok"] for c in state.calls] == [True]
