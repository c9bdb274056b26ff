"""`pointbook token create` and `pointbook serve`, as a person runs them: a real server
process on loopback, tokens from the CLI, calls over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


def cli(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POINTBOOK_DB": str(db)}
    return subprocess.run(
        [sys.executable, "-m", "pointbook", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def call(url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "serve.db"
    assert cli("pack", "publish", "examples/packs/civic-code.yaml", db=db).returncode == 0
    events = tmp_path / "e.jsonl"
    events.write_text(
        json.dumps(
            {
                "id": "g1",
                "domain": "civic-code",
                "subject": "resident-3",
                "type": "graffiti",
                "occurred_at": "2026-02-01",
                "evidence": "photo",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    assert cli("ingest", str(events), db=db).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "POINTBOOK_DB": str(db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pointbook", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/v1/packs", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield base, db
    proc.terminate()
    proc.wait(timeout=10)


def test_tokens_from_the_cli_open_the_right_doors(served: tuple[str, Path]) -> None:
    base, db = served
    made = cli(
        "token",
        "create",
        "--role",
        "subject",
        "--domain",
        "civic-code",
        "--subject",
        "resident-3",
        db=db,
    )
    assert made.returncode == 0, made.stderr
    subject = made.stdout.strip()
    reviewer = cli(
        "token", "create", "--role", "reviewer", "--domain", "civic-code", "--label", "ana", db=db
    ).stdout.strip()
    status, view = call(f"{base}/v1/domains/civic-code/subjects/resident-3/balance", subject)
    assert (status, view["points"]) == (200, 950)  # civic-code: graffiti -50 from 1000
    status, _ = call(f"{base}/v1/domains/civic-code/subjects/resident-4/balance", subject)
    assert status == 404
    status, appeal = call(
        f"{base}/v1/domains/civic-code/appeals", subject, {"entry": "g1", "reason": "not me"}
    )
    assert status == 201
    status, decided = call(
        f"{base}/v1/domains/civic-code/appeals/{appeal['id']}/decision",
        reviewer,
        {"outcome": "upheld", "reason": "wrong wall"},
    )
    assert (status, decided["reviewer"]) == (200, "ana")
    assert (
        call(f"{base}/v1/domains/civic-code/subjects/resident-3/balance", subject)[1]["points"]
        == 1000
    )
    status, problem = call(
        f"{base}/v1/domains/civic-code/subjects/resident-3/balance", "pb_not-a-token"
    )
    assert status == 401 and problem["title"] == "Unauthorized"
    # The token is stored only as a hash.
    assert subject.encode() not in db.read_bytes()


def test_token_create_refuses_a_subject_token_without_a_subject(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    cli("pack", "publish", "examples/packs/civic-code.yaml", db=db)
    r = cli("token", "create", "--role", "subject", "--domain", "civic-code", db=db)
    assert r.returncode == 2 and "--subject" in r.stderr
