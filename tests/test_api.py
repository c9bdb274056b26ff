"""The HTTP API: problem+json errors, and an authorisation matrix over every route.

The matrix checks every route of the OpenAPI document against every role of the route's
domain and of another domain, for the subject's own record and another's: an allowed call
answers, every other answers 401 or 404 (never a record it may not see, never 403).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pointbook.errors import InvariantError, StorageFullError, StoreError
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.service.app import MAX_BODY_BYTES, create_app
from pointbook.service.auth import ROLES, Principal, hash_token
from pointbook.store import Store

ROOT = Path(__file__).parent.parent
NOW = datetime(2026, 6, 1, tzinfo=UTC)
CIVIC = "civic-code"
OTHER = "uk-driving"


def _tokens() -> dict[str, Principal]:
    out = {}
    for domain in (CIVIC, OTHER):
        for role in ROLES:
            subject = "alice" if role == "subject" else None
            out[f"{domain}:{role}"] = Principal(role, domain, subject, f"{role}-{domain}")
    out[f"{CIVIC}:subject-bob"] = Principal("subject", CIVIC, "bob", "bob")
    return out


TOKENS = _tokens()


@pytest.fixture
def client(store_factory: Callable[[], Store]) -> Iterator[TestClient]:
    ledger = Ledger(store_factory(), now=lambda: NOW)
    for name in ("civic-code.yaml", "uk-driving.yaml"):
        ledger.publish(load_pack_file(ROOT / "examples" / "packs" / name))
    lookup = {hash_token(t): p for t, p in TOKENS.items()}
    with TestClient(create_app(ledger, lookup.get, lambda: NOW)) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def report(client: TestClient, items: list[dict[str, Any]]) -> Any:
    return client.post(f"/v1/domains/{CIVIC}/events", headers=auth(f"{CIVIC}:issuer"), json=items)


def event(id: str, subject: str, type_: str = "graffiti", at: str = "2026-01-02") -> dict[str, Any]:
    return {
        "id": id,
        "domain": CIVIC,
        "subject": subject,
        "type": type_,
        "occurred_at": at,
        "evidence": "photo",
    }


def test_published_packs_are_public_and_records_are_not(client: TestClient) -> None:
    assert client.get("/v1/packs").status_code == 200
    assert client.get(f"/v1/packs/{CIVIC}").json()["versions"][0]["text"].startswith("#")
    r = client.get(f"/v1/domains/{CIVIC}/subjects/alice/balance")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert set(r.json()) == {"type", "title", "status", "detail", "instance"}


def test_batch_intake_gives_one_result_per_item_and_is_idempotent(client: TestClient) -> None:
    items = [event("e1", "alice"), event("e2", "alice", "political_comment")]
    first = report(client, items).json()
    assert (first["accepted"], first["rejected"]) == (1, 1)
    assert [i["status"] for i in first["items"]] == ["accepted", "rejected"]
    assert first["items"][1]["code"] == "event/unknown-type"
    again = report(client, items[:1]).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    # civic-code: graffiti -50 from 1000 (the pack's rule `graffiti`).
    r = client.get(f"/v1/domains/{CIVIC}/subjects/alice/balance", headers=auth(f"{CIVIC}:subject"))
    assert r.json()["points"] == 950


def test_json_lines_are_accepted_too(client: TestClient) -> None:
    import json

    body = "\n".join(json.dumps(event(f"l{i}", "alice", "littering")) for i in range(3))
    r = client.post(f"/v1/domains/{CIVIC}/events", headers=auth(f"{CIVIC}:issuer"), content=body)
    assert r.json()["accepted"] == 3


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    big = b"[" + b" " * (MAX_BODY_BYTES + 10) + b"]"
    r = client.post(f"/v1/domains/{CIVIC}/events", headers=auth(f"{CIVIC}:issuer"), content=big)
    assert r.status_code == 413


def test_contest_and_uphold_restores_the_points(client: TestClient) -> None:
    report(client, [event("e1", "alice")])
    filed = client.post(
        f"/v1/domains/{CIVIC}/appeals",
        headers=auth(f"{CIVIC}:subject"),
        json={"entry": "e1", "reason": "It was not me"},
    )
    assert filed.status_code == 201
    aid = filed.json()["id"]
    queue = client.get(
        f"/v1/domains/{CIVIC}/appeals?status=open", headers=auth(f"{CIVIC}:reviewer")
    )
    assert [a["id"] for a in queue.json()["items"]] == [aid]
    decided = client.post(
        f"/v1/domains/{CIVIC}/appeals/{aid}/decision",
        headers=auth(f"{CIVIC}:reviewer"),
        json={"outcome": "upheld", "reason": "Wrong person on the photo"},
    )
    assert decided.json()["status"] == "upheld"
    r = client.get(f"/v1/domains/{CIVIC}/subjects/alice/explain", headers=auth(f"{CIVIC}:subject"))
    assert r.json()["points"] == 1000
    assert any(line["kind"] == "reversed" for line in r.json()["entries"])


def test_record_answers_are_the_ledger_s_views_as_json(store_factory: Callable[[], Store]) -> None:
    import json

    from pydantic import TypeAdapter

    ledger = Ledger(store_factory(), now=lambda: NOW)
    for name in ("civic-code.yaml", "uk-driving.yaml"):
        ledger.publish(load_pack_file(ROOT / "examples" / "packs" / name))
    lookup = {hash_token(t): p for t, p in TOKENS.items()}
    with TestClient(create_app(ledger, lookup.get, lambda: NOW)) as c:
        report(c, [event("e1", "alice"), event("e2", "alice", at="2026-02-01")])
        for kind in ("balance", "explain"):
            r = c.get(
                f"/v1/domains/{CIVIC}/subjects/alice/{kind}", headers=auth(f"{CIVIC}:reviewer")
            )
            assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
            # The bytes of FastAPI's encoding of a dict[str, Any] answer, as before.
            view = ledger.view(CIVIC, "alice", NOW, explain=kind == "explain")
            assert r.content == TypeAdapter(dict[str, Any]).dump_json(view)
        r = c.get(f"/v1/domains/{CIVIC}/subjects/alice/export", headers=auth(f"{CIVIC}:subject"))
        assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
        assert r.json() == json.loads(json.dumps(ledger.export(CIVIC, "alice")))
        bad = c.get(f"/v1/domains/{CIVIC}/subjects/alice/balance", headers=auth("no-such-token"))
        assert (bad.status_code, bad.json()["detail"]) == (401, "unknown or revoked token")
        other = c.get(f"/v1/domains/{CIVIC}/subjects/bob/explain", headers=auth(f"{CIVIC}:subject"))
        assert other.status_code == 404


# -- the authorisation matrix ------------------------------------------------------------------

# (method, path, body, roles allowed in the path's domain; "subject" means own record only)
ROUTES: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/v1/domains/{d}/subjects/{s}/balance", None, {"reviewer", "subject"}),
    ("GET", "/v1/domains/{d}/subjects/{s}/explain", None, {"reviewer", "subject"}),
    ("GET", "/v1/domains/{d}/subjects/{s}/export", None, {"reviewer", "subject"}),
    ("GET", "/v1/domains/{d}/decisions", None, {"reviewer", "subject"}),
    ("GET", "/v1/domains/{d}/appeals", None, {"reviewer", "subject"}),
    ("GET", "/v1/domains/{d}/audit/verify", None, {"auditor"}),
    ("POST", "/v1/domains/{d}/events", [], {"issuer"}),
    ("POST", "/v1/packs/{d}/lint", "domain: x\n", {"operator"}),
    ("POST", "/v1/packs/{d}", "PACK", {"operator"}),
    ("POST", "/v1/domains/{d}/appeals", {"entry": "m1", "reason": "matrix"}, {"subject"}),
    (
        "POST",
        "/v1/domains/{d}/appeals/{a}/decision",
        {"outcome": "dismissed", "reason": "matrix"},
        {"reviewer"},
    ),
    ("POST", "/v1/domains/{d}/decisions/{x}/confirm", {"reason": "matrix"}, {"reviewer"}),
]
SUBJECT_SCOPED = {
    "/v1/domains/{d}/subjects/{s}/balance",
    "/v1/domains/{d}/subjects/{s}/explain",
    "/v1/domains/{d}/subjects/{s}/export",
}


def _call(client: TestClient, method: str, path: str, body: Any, token: str | None) -> Any:
    headers = auth(token) if token else {}
    if isinstance(body, str):
        return client.request(method, path, headers=headers, content=body)
    return client.request(method, path, headers=headers, json=body)


@pytest.mark.parametrize(
    ("method", "template", "body", "allowed"), ROUTES, ids=[r[1] for r in ROUTES]
)
def test_authorisation_matrix(
    client: TestClient, method: str, template: str, body: Any, allowed: set[str]
) -> None:
    # alice and bob: three graffiti each (-150, below 900: a hearing notice each).
    report(
        client,
        [
            event(f"m{i}", who, at=f"2026-01-0{i % 3 + 2}")
            for i, who in enumerate(["alice", "bob"] * 3, start=1)
        ],
    )
    appeal = client.post(
        f"/v1/domains/{CIVIC}/appeals",
        headers=auth(f"{CIVIC}:subject"),
        json={"entry": "m3", "reason": "x"},
    ).json()["id"]
    decision = client.get(
        f"/v1/domains/{CIVIC}/decisions", headers=auth(f"{CIVIC}:reviewer")
    ).json()["items"][0]["id"]
    if body == "PACK":
        body = (ROOT / "examples" / "packs" / "civic-code.yaml").read_text(encoding="utf-8")
    leaks = []
    for token, who in [*TOKENS.items(), (None, None)]:
        for target in ("alice", "bob"):
            path = template.format(d=CIVIC, s=target, a=appeal, x=decision)
            r = _call(client, method, path, body, token)
            own = who is not None and (
                who.role != "subject" or who.subject == target or template not in SUBJECT_SCOPED
            )
            ok = who is not None and who.domain == CIVIC and who.role in allowed and own
            if ok and r.status_code >= 400 and r.status_code not in (409, 422):
                leaks.append(("denied", token, path, r.status_code))
            if not ok and r.status_code not in (401, 404):
                leaks.append(("allowed", token, path, r.status_code))
            if r.status_code == 403:
                leaks.append(("403 leaks existence", token, path))
    assert leaks == []


def test_a_subject_sees_only_its_own_decisions_and_appeals(client: TestClient) -> None:
    for i in range(3):
        report(client, [event(f"b{i}", "bob", at=f"2026-01-0{i + 2}")])  # bob to 850: a notice
    mine = client.get(f"/v1/domains/{CIVIC}/decisions", headers=auth(f"{CIVIC}:subject"))
    assert mine.json()["items"] == []
    bobs = client.get(f"/v1/domains/{CIVIC}/decisions", headers=auth(f"{CIVIC}:subject-bob"))
    assert [d["kind"] for d in bobs.json()["items"]] == ["hearing-notice"]
    other = client.get(
        f"/v1/domains/{CIVIC}/decisions?subject=bob", headers=auth(f"{CIVIC}:subject")
    )
    assert other.status_code == 404


def test_every_route_in_the_openapi_document_is_exercised_here(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    exercised = {
        r[1]
        .replace("{d}", "{domain}")
        .replace("{s}", "{subject}")
        .replace("{a}", "{appeal_id}")
        .replace("{x}", "{decision_id}")
        for r in ROUTES
    } | {"/v1/packs"}
    assert paths - exercised == set()


def test_operators_publish_and_published_versions_never_change(client: TestClient) -> None:
    text = (ROOT / "examples" / "packs" / "civic-code.yaml").read_text(encoding="utf-8")
    same = client.post(f"/v1/packs/{CIVIC}", headers=auth(f"{CIVIC}:operator"), content=text)
    assert same.status_code == 201 and [v["status"] for v in same.json()] == ["unchanged"]
    changed = text.replace("points: -50", "points: -60", 1)
    r = client.post(f"/v1/packs/{CIVIC}", headers=auth(f"{CIVIC}:operator"), content=changed)
    assert r.status_code == 409 and "never change" in r.json()["detail"]
    assert (
        client.post(f"/v1/packs/{CIVIC}", headers=auth(f"{CIVIC}:issuer"), content=text).status_code
        == 404
    )


def test_confirming_a_decision_its_pack_does_not_submit_to_review_is_refused(
    client: TestClient,
) -> None:
    for i in range(3):
        report(client, [event(f"c{i}", "alice", at=f"2026-01-0{i + 2}")])
    (d,) = client.get(f"/v1/domains/{CIVIC}/decisions", headers=auth(f"{CIVIC}:reviewer")).json()[
        "items"
    ]
    r = client.post(
        f"/v1/domains/{CIVIC}/decisions/{d['id']}/confirm",
        headers=auth(f"{CIVIC}:reviewer"),
        json={"reason": "seen"},
    )
    assert r.status_code == 422 and "needs no confirmation" in r.json()["detail"]
    r = client.post(
        f"/v1/domains/{CIVIC}/decisions/{d['id']}/confirm",
        headers=auth(f"{CIVIC}:subject"),
        json={"reason": "seen"},
    )
    assert r.status_code == 404


def test_the_openapi_document_is_valid(client: TestClient) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json()
    validate(doc)  # raises on an invalid document
    assert doc["info"]["title"] == "pointbook"
    assert all(path.startswith("/v1/") for path in doc["paths"])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StorageFullError("the disk is full"), 507),
        (StoreError("the store is busy"), 503),
        (InvariantError("an entry gives 7 points; its rule gives 5"), 500),
    ],
)
def test_a_store_or_invariant_failure_is_not_called_a_refusal(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    # RFC 9110 15.6.1/15.6.4 and RFC 4918 11.5: the server failed (500), could not reach or
    # lock its store (503) or ran out of storage (507); 422 would tell the client its request
    # was wrong. The problem body keeps the actionable message.
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(Ledger, "ingest", fail)
    r = report(client, [event("e1", "alice")])
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    assert str(error) in r.json()["detail"]
    documented = client.get("/openapi.json").json()["paths"]
    assert any(
        str(status) in op.get("responses", {}) for ops in documented.values() for op in ops.values()
    )
