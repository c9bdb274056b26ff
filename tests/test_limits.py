"""Abuse limits (checklist T10) and indeterminate outcomes (T16) on event intake.

T10: 1,000 reports against one subject within a minute, from four issuers: the first reports
count, the burst beyond the per-subject review limit is held for a reviewer (it never deducts on
its own, not even for the past), reports beyond the per-subject limit are refused (and a request
of nothing but refused reports answers 429 with Retry-After, as problem+json); automatic
deductions stay within the cap computed from the limits, a reviewer decides the holds, and the
audit log verifies. The per-issuer limit answers 429 with nothing applied. The limiter's state is
bounded whatever the number of subjects. Both backends, in process, with a test clock.

T16: against a live `pointbook serve`, batches are sent with client timeouts so short that the
client never learns the outcome ("unknown", never "failed"); the same batch is sent again, and
every item answers accepted (it had not landed) or duplicate (it had). The final store equals an
independent replay of the events, sent once, into a fresh ledger: no loss, no double count.

Crash kinds simulated: none for T10; for T16 a client that gives up (the server keeps running;
a killed server is tests/test_crash.py).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pointbook.dates import parse_as_of
from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.service.app import create_app
from pointbook.service.auth import Principal, hash_token, new_token
from pointbook.service.limits import IntakeLimiter, IntakeLimits, Rate
from pointbook.store import SQLiteStore, Store

ROOT = Path(__file__).parent.parent
PACKS = ROOT / "examples" / "packs"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DOMAIN = "civic-code"
LITTERING = -5  # civic-code: littering, -5 points from 1000
SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
ISSUERS = [f"issuer-{n}" for n in range(4)]


class Clock:
    """The limiter's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(
    eid: str, subject: str, type_: str = "littering", at: str = "2026-05-31"
) -> dict[str, Any]:
    return {
        "id": eid,
        "domain": DOMAIN,
        "subject": subject,
        "type": type_,
        "occurred_at": at,
        "evidence": "report",
    }


@dataclass
class Api:
    client: TestClient
    ledger: Ledger
    clock: Clock
    limits: IntakeLimits
    limiter: IntakeLimiter

    def report(self, items: list[dict[str, Any]], issuer: str = "issuer-0") -> Any:
        return self.client.post(f"/v1/domains/{DOMAIN}/events", headers=auth(issuer), json=items)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _api(store: Store, limits: IntakeLimits) -> Iterator[Api]:
    ledger = Ledger(store, now=lambda: NOW)
    ledger.publish(load_pack_file(PACKS / "civic-code.yaml"))
    tokens = {t: Principal("issuer", DOMAIN, None, t) for t in ISSUERS}
    tokens["reviewer"] = Principal("reviewer", DOMAIN, None, "ana")
    lookup = {hash_token(t): p for t, p in tokens.items()}
    clock = Clock()
    limiter = IntakeLimiter(limits, clock=clock)
    with TestClient(create_app(ledger, lookup.get, lambda: NOW, limiter)) as client:
        yield Api(client, ledger, clock, limits, limiter)


@pytest.fixture
def api(store_factory: Callable[[], Store]) -> Iterator[Api]:
    yield from _api(store_factory(), IntakeLimits())


def _problem_429(r: Any) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert set(r.json()) == {"type", "title", "status", "detail", "instance"}
    retry_after = int(r.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


@pytest.mark.timeout(300)
def test_a_thousand_reports_against_one_subject_in_a_minute(api: Api) -> None:
    """T10: the burst is held for a reviewer, then refused; deductions stay within the cap."""
    review, maximum = api.limits.subject_review, api.limits.subject_max
    assert review is not None and maximum is not None
    reports, per_request, minute = 1000, 10, 60.0
    answers: dict[str, str] = {}
    refused_requests = 0
    for n in range(reports // per_request):
        api.clock.now = n * minute * per_request / reports  # spread over one minute
        ids = [f"r-{n * per_request + i:04d}" for i in range(per_request)]
        r = api.report([event(i, "target") for i in ids], ISSUERS[n % len(ISSUERS)])
        if r.status_code == 429:
            _problem_429(r)  # every report of the request was over the per-subject limit
            refused_requests += 1
            answers.update(dict.fromkeys(ids, "refused"))
            continue
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            answers[item["id"]] = item["status"]
            if item["status"] == "limited":
                assert item["retry_after"] >= 1
    elapsed = api.clock.now
    counts = {s: list(answers.values()).count(s) for s in set(answers.values())}
    # The independent bound: a token bucket lets at most its size plus what refills in the
    # elapsed time through.
    auto_cap = review.count + int(elapsed * review.per_second)
    taken_cap = maximum.count + int(elapsed * maximum.per_second)
    assert counts.get("accepted", 0) <= auto_cap
    assert counts.get("accepted", 0) + counts.get("held", 0) <= taken_cap
    assert counts.get("held", 0) > 0 and refused_requests > 0, counts
    assert sum(counts.values()) == reports
    # What the store says: every accepted report counts, every held one does not, at any date.
    state = api.ledger.state(DOMAIN, "target", NOW)
    counting = [s for s in state.entries if s.counts]
    assert len(counting) == counts["accepted"] <= auto_cap
    assert state.points == 1000 + LITTERING * counts["accepted"]
    assert not [s for s in state.entries if s.entry.event_id in _ids(answers, "limited")]
    held = _ids(answers, "held")
    tz = api.ledger.versions(DOMAIN)[0].tz
    past = api.ledger.state(DOMAIN, "target", parse_as_of("2026-05-31", tz, NOW))
    assert past.points == state.points, "a held report counted on the day it happened"
    # The reviewer's queue lists the holds; no decision was triggered by a held report.
    queue = api.client.get(
        f"/v1/domains/{DOMAIN}/appeals?status=open&limit=500", headers=auth("reviewer")
    ).json()
    assert {a["event_id"] for a in queue["items"]} == held
    assert all(a["reason"].startswith("held for review") for a in queue["items"])
    for d, _ in api.ledger.decisions(DOMAIN, "target"):
        assert d.trigger.removeprefix("event ") not in held
    # A reviewer dismisses one hold (the report then counts) and upholds another (void).
    first, second = sorted(queue["items"], key=lambda a: a["event_id"])[:2]
    for appeal, outcome in ((first, "dismissed"), (second, "upheld")):
        r = api.client.post(
            f"/v1/domains/{DOMAIN}/appeals/{appeal['id']}/decision",
            headers=auth("reviewer"),
            json={"outcome": outcome, "reason": "checked the report"},
        )
        assert r.status_code == 200, r.text
    after = api.ledger.state(DOMAIN, "target", NOW)
    assert after.points == state.points + LITTERING
    assert api.ledger.verify().ok
    print(
        f"\nT10: {reports} reports against one subject in {elapsed:.0f} s (test clock) from "
        f"{len(ISSUERS)} issuers: {counts}; requests answered 429: {refused_requests}; "
        f"automatic deductions {counts['accepted']} (cap {auto_cap}), held {counts['held']}"
    )


def _ids(answers: dict[str, str], status: str) -> set[str]:
    return {i for i, s in answers.items() if s == status}


def test_the_issuer_limit_answers_429_and_applies_nothing(
    store_factory: Callable[[], Store],
) -> None:
    limits = IntakeLimits(issuer=Rate(30, 60), subject_review=None, subject_max=None)
    for api in _api(store_factory(), limits):
        batch = [[event(f"b{n}-{i}", f"s{i}") for i in range(10)] for n in range(5)]
        for items in batch[:3]:
            assert api.report(items).json()["accepted"] == 10
        r = api.report(batch[3])
        retry_after = _problem_429(r)
        assert "retry the same request" in r.json()["detail"]
        assert api.ledger.store.event_hashes(DOMAIN, [e["id"] for e in batch[3]]) == {}
        # Ids already stored cost nothing: a retry of a stored batch answers duplicate.
        again = api.report(batch[0]).json()
        assert {i["status"] for i in again["items"]} == {"duplicate"}
        # Another issuer has its own budget.
        assert api.report(batch[3], "issuer-1").json()["accepted"] == 10
        api.clock.now += retry_after
        assert api.report(batch[4]).json()["accepted"] == 10
        # More new events than the burst can ever hold: split it, it is never 429.
        r = api.report([event(f"big-{i}", f"s{i}") for i in range(31)])
        assert r.status_code == 413 and "split it" in r.json()["detail"]


def test_the_limiter_state_is_bounded() -> None:
    """However many subjects are reported, the limiter keeps at most max_keys buckets per
    limit, and its memory stops growing once it is full."""
    limits = IntakeLimits(issuer=None, max_keys=1_000)
    clock = Clock()
    limiter = IntakeLimiter(limits, clock=clock)

    def report(rounds: range) -> int:
        for n in rounds:
            clock.now = n * 0.01
            new = [(f"e{n}-{i}", f"s{n}-{i}") for i in range(500)]
            limiter.commit(limiter.plan(DOMAIN, "issuer", new))
        return limiter.keys()

    tracemalloc.start()
    try:
        keys_full = report(range(10))  # 5,000 subjects: the buckets are full
        full, _ = tracemalloc.get_traced_memory()
        keys_end = report(range(10, 70))  # 30,000 more
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert keys_full == keys_end == 2 * limits.max_keys  # review and max, per subject
    assert end - full < 100_000, f"the limiter grew by {end - full} bytes after it was full"


# -- T16: indeterminate outcomes against a live server ------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Live:
    base: tuple[str, int]
    db: Path
    token: str
    process: subprocess.Popen[bytes]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pointbook", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    db = tmp_path / "t16.db"
    token = new_token()
    ledger = Ledger(SQLiteStore(db))
    try:
        ledger.publish(load_pack_file(PACKS / "civic-code.yaml"))
        ledger.store.insert_token(hash_token(token), "issuer", DOMAIN, None, "issuer")
    finally:
        ledger.close()
    port = _free_port()
    limits = ["--issuer-limit", "off", "--subject-review", "off", "--subject-limit", "off"]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pointbook", "serve", "--port", str(port), "--db", str(db), *limits],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "pointbook serve did not answer in 60 s"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield Live(("127.0.0.1", port), db, token, process)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _post(live: Live, body: bytes, timeout: float) -> tuple[str, Any]:
    """("answered", json) or ("unknown", None): a timeout says nothing about the outcome."""
    conn = http.client.HTTPConnection(*live.base, timeout=timeout)
    try:
        conn.request(
            "POST",
            f"/v1/domains/{DOMAIN}/events",
            body,
            {"Authorization": f"Bearer {live.token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        return "answered", json.loads(response.read())
    except TimeoutError:
        return "unknown", None
    finally:
        conn.close()


@pytest.mark.timeout(600)
def test_a_timed_out_request_is_resolved_by_sending_the_same_ids(live: Live) -> None:
    """T16 against a live server: client-side timeouts, then the same batch again."""
    attempts = 12 if SOAK else 6
    size = 1000  # under the ledger's 5,000-event transaction: a batch lands whole or not at all
    sent: list[dict[str, Any]] = []
    outcomes = {"unknown": 0, "answered first time": 0}
    resolved = {"accepted": 0, "duplicate": 0}
    for n in range(attempts):
        batch = [
            event(f"t16-{n}-{i}", f"p{i % 97}", "littering", f"2026-0{1 + i % 5}-{1 + i % 28:02d}")
            for i in range(size)
        ]
        sent += batch
        body = json.dumps(batch).encode()
        # From far too short to merely short: some requests never reach the server whole,
        # others are applied after the client has left.
        kind, answer = _post(live, body, timeout=[0.001, 0.01, 0.05, 0.1, 0.2, 0.4][n % 6])
        if kind == "answered":
            outcomes["answered first time"] += 1
            assert {i["status"] for i in answer["items"]} == {"accepted"}
            continue
        outcomes["unknown"] += 1
        kind, answer = _post(live, body, timeout=120)
        assert kind == "answered", "the retry with a generous timeout must be answered"
        statuses = {i["status"] for i in answer["items"]}
        # All or nothing: the first attempt landed whole (duplicate) or not at all (accepted).
        assert statuses in ({"accepted"}, {"duplicate"}), statuses
        resolved[statuses.pop()] += 1
    assert live.process.poll() is None, "the server must survive clients that give up"
    live.process.terminate()
    live.process.wait(timeout=30)
    # The store equals an independent replay of the events, each sent once.
    served = Ledger(SQLiteStore(live.db), now=lambda: NOW)
    replay = Ledger(SQLiteStore(live.db.with_name("replay.db")), now=lambda: NOW)
    try:
        replay.publish(load_pack_file(PACKS / "civic-code.yaml"))
        records = [RawRecord(i, "", EventIn.model_validate(e), None) for i, e in enumerate(sent)]
        assert replay.ingest(records).accepted == len(sent)
        ids = [e["id"] for e in sent]
        assert len(served.store.event_hashes(DOMAIN, ids)) == len(set(ids)) == len(sent)
        for subject in sorted({e["subject"] for e in sent}):
            mine = served.state(DOMAIN, subject, NOW)
            theirs = replay.state(DOMAIN, subject, NOW)
            assert (mine.points, len(mine.entries)) == (theirs.points, len(theirs.entries))
        assert served.verify().ok
    finally:
        served.close()
        replay.close()
    assert outcomes["unknown"] == sum(resolved.values())
    print(
        f"\nT16: {attempts} batches of {size} events; outcomes unknown after a client timeout: "
        f"{outcomes['unknown']}, resolved by sending the same ids: {resolved} "
        f"(answered first time: {outcomes['answered first time']}); misreported: 0"
    )


def test_serve_takes_the_limits_as_options(tmp_path: Path) -> None:
    """The options reach the app: a bad value is a usage error naming the option."""
    r = _cli("serve", "--issuer-limit", "lots", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "--issuer-limit" in r.stderr and "COUNT/SECONDS" in r.stderr
