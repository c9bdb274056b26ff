"""API fuzzing (issue 6 item 5, checklist T9): Schemathesis against the served OpenAPI document.

Every operation of /openapi.json is driven with generated requests, valid (positive) and
schema-violating (negative), under a token of each role of the domain, a token of another
domain, an unknown token and no token at all; half the cases aim at the seeded domain and its
real subject, appeal and decision ids so that they get past the 404s. Every response goes
through all of Schemathesis' checks (its defaults, configured as CONFIG says): not a server
error, a documented status code, content type and headers, the response schema, negative data
rejected, positive data accepted, authentication not ignored. The run collects every failure
(not only the first) and fails if there is one, printing each with a curl line to reproduce it.
What the fuzzer found is kept below as plain regression tests.

The app runs in process (ASGI) on a SQLite store with a fixed clock, and small intake limits on
a clock that moves one second per call, so that held and limited items are reached too;
Hypothesis is derandomised, so a run is reproducible: same code, same requests. Sizes: 1,300
cases in CI (one Hypothesis run per operation with 80 generated cases, and one of 40 judgeable
bodies per route that takes a body; a run with little to vary stops early), about 1,150
requests; POINTBOOK_SOAK=1 runs 50,000 cases (checklist T9's nightly figure).

Crash kind simulated: none (input fuzzing; the server process is never killed).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.service.app import create_app
from pointbook.service.auth import ROLES, Principal, hash_token
from pointbook.service.limits import IntakeLimiter, IntakeLimits, Rate
from pointbook.store import SQLiteStore

ROOT = Path(__file__).parent.parent
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DOMAIN = "civic-code"
OTHER = "uk-driving"
SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
CASES = 50_000 if SOAK else 1_300
MIN_REQUESTS = 1_000

# Schema-valid data may still be refused by the domain's rules, which no JSON Schema can say
# (the appealed entry must exist, a pack must lint clean, a date must exist in the domain's
# time zone): a 422 with its reason is a correct answer to it. Everything else keeps
# Schemathesis' defaults. The lint route answers findings (200) for any text, by design: a
# "schema-violating" body is still text to lint, so negative-data rejection does not apply there.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429"]
            }
        },
        "operations": [
            {
                "include-path": "/v1/packs/{domain}/lint",
                "checks": {"negative_data_rejection": {"enabled": False}},
            }
        ],
    }
)


def _tokens() -> dict[str, Principal]:
    out = {
        f"tok-{role}": Principal(role, DOMAIN, "alice" if role == "subject" else None, role)
        for role in ROLES
    }
    out["tok-other-domain-reviewer"] = Principal("reviewer", OTHER, None, "reviewer")
    return out


TOKENS = _tokens()


def _seed(ledger: Ledger) -> dict[str, str]:
    """Real targets for the path parameters: alice's record, an appeal, a decision."""
    for name in ("civic-code.yaml", "uk-driving.yaml"):
        ledger.publish(load_pack_file(ROOT / "examples" / "packs" / name))
    records = [
        RawRecord(
            n,
            "",
            EventIn(
                id=f"seed-{n}",
                domain=DOMAIN,
                subject="alice",
                type="graffiti",
                occurred_at=f"2026-0{n}-02",
                evidence="photo",
            ),
            None,
        )
        for n in (1, 2, 3)
    ]
    report = ledger.ingest(records)
    assert report.accepted == 3, report
    appeal = ledger.file_appeal(DOMAIN, "alice", "not me", event_id="seed-1")
    decisions = ledger.decisions(DOMAIN, "alice")
    assert decisions, "the seeded record should have crossed the hearing threshold"
    return {
        "domain": DOMAIN,
        "subject": "alice",
        "appeal_id": appeal.id,
        "decision_id": decisions[0][0].id,
    }


def _events() -> SearchStrategy[list[dict[str, Any]]]:
    """Batches the domain's rules can judge: known and unknown types, past and future dates,
    a small id space (so ids repeat: duplicates and conflicts), one subject reported often."""
    event = st.fixed_dictionaries(
        {
            "id": st.integers(0, 400).map(lambda n: f"fz-{n}"),
            "domain": st.just(DOMAIN),
            "subject": st.sampled_from(["alice", "alice", "bob", "carol"]),
            "type": st.sampled_from(["littering", "graffiti", "noise_after_hours", "parking"]),
            "occurred_at": st.dates(date(2020, 8, 1), date(2026, 6, 30)).map(date.isoformat),
        },
        optional={
            "evidence": st.text(max_size=20),
            "attributes": st.dictionaries(
                st.sampled_from(["location"] * 5 + ["other"]), st.text(max_size=10), max_size=1
            ),
        },
    )
    return st.lists(event, min_size=5, max_size=25)


def _appeals(targets: dict[str, str]) -> SearchStrategy[dict[str, Any]]:
    entries = st.sampled_from(["seed-1", "seed-2", "seed-3#graffiti", "fz-1", "nothing"])
    reason = st.text(min_size=1, max_size=40)
    return st.one_of(
        st.fixed_dictionaries({"entry": entries, "reason": reason}),
        st.fixed_dictionaries({"decision": st.just(targets["decision_id"]), "reason": reason}),
    )


def _judgeable_bodies(
    op: Any, targets: dict[str, str]
) -> tuple[str, SearchStrategy[Any], str] | None:
    """(role, bodies, media type) the domain's rules get past, for the routes with a body."""
    method, path = op.method.upper(), op.path
    if path.endswith("/events"):
        return "issuer", _events(), "application/json"
    if path.endswith("/appeals") and method == "POST":
        return "subject", _appeals(targets), "application/json"
    if path.endswith("/decision"):
        verdict = st.fixed_dictionaries(
            {"outcome": st.sampled_from(["upheld", "dismissed"]), "reason": st.just("seen")}
        )
        return "reviewer", verdict, "application/json"
    if path.startswith("/v1/packs/{domain}") and method == "POST":
        # A new version of the domain's pack, as data (written out as YAML): the first
        # publish answers 201 published, later ones 201 unchanged; lint finds nothing.
        text = (ROOT / "examples" / "packs" / "civic-code.yaml").read_text("utf-8")
        pack = yaml.safe_load(text)
        pack.update(version="2027-fuzz", effective_from="2027-01-01")
        return "operator", st.just(pack), "application/yaml"
    return None


def _strategies(schema: Any, targets: dict[str, str]) -> list[tuple[str, SearchStrategy[Any], int]]:
    """(operation, strategy, share of the cases) runs: for each operation, {positive, negative}
    × {no token, an unknown token, each role's token and another domain's} × {generated path
    parameters, the real targets}; and for the routes that take a body, a run of bodies the
    domain's rules can judge. Separate runs, so that each gets its share of the cases."""
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    anonymous: list[dict[str, str] | None] = [None, {"Authorization": "Bearer pb_unknown"}]
    tokens = [{"Authorization": f"Bearer {t}"} for t in TOKENS]
    out: list[tuple[str, SearchStrategy[Any], int]] = []
    for result in schema.get_all_operations():
        op = result.ok()
        names = re.findall(r"{(\w+)}", op.path)
        fixed = {n: targets[n] for n in names if n in targets} or None
        generated = []
        for mode in modes:
            generated += [op.as_strategy(mode, headers=h) for h in anonymous]
            generated += [op.as_strategy(mode, headers=h, path_parameters=fixed) for h in tokens]
        generated += [op.as_strategy(modes[0], headers=h) for h in tokens]
        label = f"{op.method.upper()} {op.path}"
        out.append((label, st.one_of(generated), 2))
        if body := _judgeable_bodies(op, targets):
            # Built directly (op.Case), not generated: cheap, and past the domain's rules.
            role, bodies, media = body
            made = bodies.map(
                lambda b, op=op, role=role, media=media, fixed=fixed: op.Case(
                    headers={"Authorization": f"Bearer tok-{role}"},
                    path_parameters=fixed,
                    body=b,
                    media_type=media,
                )
            )
            out.append((label, made, 1))
    return out


@pytest.fixture
def served_schema(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    ledger = Ledger(SQLiteStore(tmp_path / "fuzz.db"), now=lambda: NOW)
    targets = _seed(ledger)
    lookup = {hash_token(t): p for t, p in TOKENS.items()}
    # Small limits, so the run reaches held, limited and 429 answers; the limiter's clock moves
    # one second per request, so the run does not depend on its speed.
    ticks = itertools.count()
    limits = IntakeLimits(
        issuer=Rate(300, 60), subject_review=Rate(5, 3600), subject_max=Rate(40, 3600)
    )
    app = create_app(
        ledger, lookup.get, lambda: NOW, IntakeLimiter(limits, clock=lambda: float(next(ticks)))
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    yield schema, targets
    ledger.close()


@pytest.mark.timeout(3600 if SOAK else 600)
def test_fuzz_every_route_with_every_token(served_schema: tuple[Any, dict[str, str]]) -> None:
    schema, targets = served_schema
    sent: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    failures: dict[str, str] = {}
    by_check: Counter[str] = Counter()
    items: Counter[str] = Counter()

    def drive(case: Any) -> None:
        label = f"{case.method.upper()} {case.operation.path}"
        sent[label] += 1
        try:
            response = case.call()
            statuses[(label, response.status_code)] += 1
            if label.endswith("/events") and response.status_code == 200:
                items.update(i["status"] for i in response.json()["items"])
            case.validate_response(response)
        except (Exception, BaseExceptionGroup) as exc:  # collect every failure, fail once
            for failure in getattr(exc, "exceptions", [exc]):
                title = getattr(failure, "title", type(failure).__name__)
                by_check[title] += 1
                failures.setdefault(f"{label}: {title}", str(exc)[:2000])

    # One Hypothesis run per operation, so that every route gets its share: an operation with
    # little to vary (GET /v1/packs) stops early when Hypothesis has tried everything.
    runs = _strategies(schema, targets)
    per_share = -(-CASES // sum(share for _, _, share in runs))
    started = time.monotonic()
    for _, strategy, share in runs:
        settings(
            max_examples=per_share * share,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(given(case=strategy)(drive))()
    seconds = time.monotonic() - started
    total = sum(sent.values())
    print(
        f"\nfuzz: {total} requests over {len(sent)} operations in {seconds:.0f} s "
        f"(derandomised, {per_share * 2} generated cases per operation); failures by check: "
        f"{dict(by_check) or 0}"
    )
    for label in sorted(sent):
        codes = sorted((c, n) for (lab, c), n in statuses.items() if lab == label)
        print(f"  {label}: {sent[label]} requests, statuses {codes}")
    print(f"  reported items by status: {dict(sorted(items.items()))}")
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in sorted(failures.items()))
    assert total >= MIN_REQUESTS, f"only {total} requests were generated"
    assert {"accepted", "duplicate", "held", "rejected"} <= set(items), items
    operations = {label for label, _, _ in runs}
    assert set(sent) == operations, f"operations never exercised: {operations - set(sent)}"
    # Every route was reached with a request it accepted, except confirming a decision: no
    # reference pack submits its decisions to review, so the answer is always a 422.
    ok = {label for (label, code), _ in statuses.items() if 200 <= code < 300}
    unconfirmable = {"POST /v1/domains/{domain}/decisions/{decision_id}/confirm"}
    assert operations - unconfirmable <= ok, f"routes never answered 2xx: {operations - ok}"


# -- what the fuzzer found, kept as regression tests ---------------------------------------------
@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ledger = Ledger(SQLiteStore(tmp_path / "found.db"), now=lambda: NOW)
    _seed(ledger)
    lookup = {hash_token(t): p for t, p in TOKENS.items()}
    with TestClient(create_app(ledger, lookup.get, lambda: NOW)) as c:
        yield c
    ledger.close()


def test_every_answer_is_documented_in_the_openapi_document(client: TestClient) -> None:
    """Found: 401, 404, 409, 413 and 429 answers were undocumented, and 422 was documented
    with FastAPI's validation shape while the service answers problem+json."""
    doc = client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"401", "404", "422"} <= codes, (method, path)
            problem = op["responses"]["422"]["content"]
            assert list(problem) == ["application/problem+json"], (method, path)
    events = doc["paths"]["/v1/domains/{domain}/events"]["post"]
    assert {"413", "429"} <= set(events["responses"])
    assert events["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert "requestBody" in events
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_a_405_keeps_its_allow_header(client: TestClient) -> None:
    """Found: the problem+json handler dropped the headers of Starlette's errors."""
    r = client.delete("/v1/packs")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_body_sent_as_json_is_a_json_array(client: TestClient) -> None:
    """Found: a body declared application/json but not JSON was read as JSON Lines and
    answered 200 with one rejected item."""
    r = client.post(
        f"/v1/domains/{DOMAIN}/events",
        headers={"Authorization": "Bearer tok-issuer", "Content-Type": "application/json"},
        content=b"\x00",
    )
    assert r.status_code == 422 and "JSON array" in r.json()["detail"]


def test_a_malformed_item_refuses_the_whole_request(client: TestClient) -> None:
    """Found: items of the wrong shape (issuer: false) were answered 200 with per-item
    rejections next to accepted ones; now the request is malformed, nothing is applied."""
    good = {
        "id": "ok-1",
        "domain": DOMAIN,
        "subject": "bob",
        "type": "littering",
        "occurred_at": "2026-05-01",
    }
    r = client.post(
        f"/v1/domains/{DOMAIN}/events",
        headers={"Authorization": "Bearer tok-issuer"},
        json=[good, {**good, "id": "bad-1", "issuer": False}],
    )
    assert r.status_code == 422
    assert "item 2: issuer" in r.json()["detail"] and "nothing was applied" in r.json()["detail"]
    assert (
        client.get(
            f"/v1/domains/{DOMAIN}/subjects/bob/balance",
            headers={"Authorization": "Bearer tok-reviewer"},
        ).json()["points"]
        == 1000
    )
