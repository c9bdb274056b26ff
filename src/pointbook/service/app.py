"""The HTTP API, versioned under /v1: a thin shell over the Ledger.

Errors are RFC 9457 problem+json. Object-level access is checked on every route: a token
asking for a record it may not see gets 404, never 403, so existence does not leak. Ledger
calls are serialised with one lock (one writer per store, as the store expects).
"""

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pointbook.dates import parse_as_of
from pointbook.due_process import ProcessError
from pointbook.errors import (
    ConflictError,
    EventError,
    InvalidTimeError,
    InvariantError,
    PackError,
    PointbookError,
    PublishError,
    StorageFullError,
    StoreError,
    UnknownDomainError,
)
from pointbook.export_schema import ExportRecord
from pointbook.intake import EventIn, read_records, unique_keys
from pointbook.ledger import Ledger
from pointbook.rules.lint import lint_documents
from pointbook.rules.load import MAX_PACK_BYTES, read_pack_documents
from pointbook.rules.pack import load_pack_text
from pointbook.service.auth import Principal, Role, hash_token
from pointbook.service.limits import (
    DEFAULT_LIMITS,
    IntakeLimiter,
    IntakeLimits,
    LimitExceeded,
    limited_ingest,
)
from pointbook.views import appeal_view, decision_view

__all__ = ["MAX_BODY_BYTES", "Problem", "create_app"]

MAX_BODY_BYTES = 5_000_000
PROBLEM = "application/problem+json"
# A balance or explain answer, encoded as FastAPI encodes a route's dict[str, Any] model.
_RECORD_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


class Problem(Exception):
    """An error answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type = status, title, detail, type_


def _problem(
    status: int,
    title: str,
    detail: str,
    instance: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# -- the OpenAPI document: every answer a route can give is documented, so that a fuzzer (and a
# client generator) can hold the service to it (tests/test_fuzz_api.py).
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": False,
}
_PROBLEM_WHY = {
    400: "The body could not be parsed, or the client left before it was complete",
    401: "No valid bearer token",
    404: "Nothing at this address for this token (existence never leaks)",
    405: "Method not allowed (the Allow header lists the allowed ones)",
    409: "A conflict: a published version never changes",
    413: "The body, or its count of new events, is over the limit",
    422: "Refused, with the reason in detail",
    429: "An intake limit was reached: retry after Retry-After seconds",
    500: "A check before a write found an impossible result: nothing of the write was stored",
    503: "The store could not be reached or was busy: nothing was changed; retry later",
    507: "The disk that holds the store is full: nothing of the write was stored",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for problem+json answers with these status codes."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        doc: dict[str, Any] = {
            "description": _PROBLEM_WHY[code],
            "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}},
        }
        if code == 429:
            doc["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying the same request",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        out[code] = doc
    return out


class ItemOut(BaseModel):
    """One reported item: accepted (stored), duplicate (the id was already stored with the same
    content: nothing changed), held (stored, held for a reviewer: it does not count on its
    own), limited (not stored: retry the same id after retry_after seconds) or rejected."""

    item: int
    id: str | None
    status: str = Field(pattern="^(accepted|duplicate|held|limited|rejected)$")
    code: str | None = None
    reason: str | None = None
    retry_after: int | None = None


class IngestOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accepted: int
    duplicates: int
    rejected: int
    held: int
    limited: int
    items: list[ItemOut]


class VerifyOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    records: int
    root: str | None
    first_bad: int | None
    reason: str | None


_EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A JSON array of events, or JSON Lines (one event per line)",
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": EventIn.model_json_schema()},
            },
            "application/jsonl": {"schema": {"type": "string"}},
        },
    }
}
_PACK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A pack file (YAML, UTF-8)",
        "content": {"application/yaml": {"schema": {"type": "string"}}},
    }
}


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry: str | None = Field(
        default=None, max_length=300, description="EVENT_ID or EVENT_ID#RULE_ID"
    )
    decision: str | None = Field(default=None, max_length=100)
    reason: str = Field(min_length=1, max_length=2000)


class AppealDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(pattern="^(upheld|dismissed)$")
    reason: str = Field(min_length=1, max_length=2000)


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="confirmed", min_length=1, max_length=2000)


def create_app(
    ledger: Ledger,
    token_lookup: Callable[[str], Principal | None],
    now: Callable[[], datetime] | None = None,
    limits: IntakeLimits | IntakeLimiter | None = DEFAULT_LIMITS,
) -> FastAPI:
    """The API and portal on ``ledger``. ``limits``: the abuse limits on event intake (see
    service/limits.py; a limiter to share or to drive with a test clock; None: no limits)."""
    clock = now or (lambda: datetime.now(UTC))
    lock = threading.RLock()
    limiter = IntakeLimiter(limits) if isinstance(limits, IntakeLimits) else limits
    app = FastAPI(
        title="pointbook",
        version="1",
        description="An accountable points ledger. Published packs are public; records are not.",
        responses=_errors(401, 404, 422, 500, 503, 507),
    )
    app.state.limiter = limiter

    @contextmanager
    def locked() -> Iterator[Ledger]:
        with lock:
            yield ledger

    # -- errors -------------------------------------------------------------------------------
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return _problem(exc.status, exc.title, exc.detail, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _problem(422, "Invalid request", f"{where}: {first['msg']}", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say what is Allowed.
        return _problem(
            exc.status_code, str(exc.detail), str(exc.detail), request.url.path, exc.headers
        )

    @app.exception_handler(LimitExceeded)
    async def on_limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        title = "Too many requests" if exc.status == 429 else "Content too large"
        return _problem(exc.status, title, exc.detail, request.url.path, exc.headers())

    @app.exception_handler(PointbookError)
    async def on_pointbook(request: Request, exc: PointbookError) -> Response:
        status = 422
        title = "Refused"
        if isinstance(exc, UnknownDomainError):
            status, title = 404, "Not found"
        elif isinstance(exc, ConflictError | PublishError):
            status, title = 409, "Conflict"
        elif isinstance(exc, PackError | EventError | InvalidTimeError | ProcessError):
            status, title = 422, "Refused"
        elif isinstance(exc, StorageFullError):
            status, title = 507, "Insufficient storage"
        elif isinstance(exc, StoreError):
            status, title = 503, "Store unavailable"
        elif isinstance(exc, InvariantError):
            status, title = 500, "Internal error"
        if not request.url.path.startswith("/v1/") and request.method == "POST":
            # A portal form: answer a page a person can read, with a way back.
            return HTMLResponse(
                _form_error(str(exc), request.headers.get("referer")), status_code=status
            )
        return _problem(status, title, str(exc), request.url.path)

    # -- authentication ------------------------------------------------------------------------
    bearer = HTTPBearer(
        auto_error=False, description="A token from `pointbook token create` (one domain, one role)"
    )

    Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]

    def caller(credentials: HTTPAuthorizationCredentials | None) -> Principal:
        if credentials is None:
            raise Problem(401, "Unauthorized", "send `Authorization: Bearer TOKEN`")
        found = token_lookup(hash_token(credentials.credentials.strip()))
        if found is None:
            raise Problem(401, "Unauthorized", "unknown or revoked token")
        return found

    def principal(credentials: Bearer) -> Principal:
        return caller(credentials)

    Who = Annotated[Principal, Depends(principal)]

    def need(who: Principal, domain: str, *roles: Role) -> None:
        # A token of another domain, or of a role that may not use the route, learns nothing:
        # the domain's resources do not exist for it.
        if who.domain != domain or who.role not in roles:
            raise Problem(404, "Not found", "nothing at this address for this token")

    def need_record(who: Principal, domain: str, subject: str) -> None:
        if not who.can_read(domain, subject):
            raise Problem(404, "Not found", "no such record for this token")

    def as_of_param(domain: str, value: str | None) -> datetime:
        tz = ledger.require_domain(domain)[0].tz
        try:
            return parse_as_of(value, tz, clock())
        except InvalidTimeError as exc:
            raise Problem(422, "Invalid request", f"as_of: {exc}") from exc

    # -- packs (public reads) ----------------------------------------------------------------------
    @app.get("/v1/packs", tags=["packs"])
    def list_packs() -> list[dict[str, Any]]:
        """Every domain's published versions (public)."""
        with locked() as led:
            out = []
            for domain in led.store.domains():
                versions = led.versions(domain)
                out.append(
                    {
                        "domain": domain,
                        "title": versions[-1].spec.title,
                        "versions": [
                            {
                                "version": v.version,
                                "effective_from": v.effective_from.isoformat(),
                                "content_hash": v.content_hash,
                            }
                            for v in versions
                        ],
                    }
                )
            return out

    @app.get("/v1/packs/{domain}", tags=["packs"])
    def show_pack(domain: str) -> dict[str, Any]:
        """A domain's published versions with their full text (public)."""
        with locked() as led:
            versions = led.require_domain(domain)
            return {
                "domain": domain,
                "versions": [
                    {
                        "version": v.version,
                        "effective_from": v.effective_from.isoformat(),
                        "content_hash": v.content_hash,
                        "text": v.text,
                        "spec": json.loads(
                            v.spec.model_dump_json(by_alias=True, exclude_none=True)
                        ),
                    }
                    for v in versions
                ],
            }

    @app.post(
        "/v1/packs/{domain}/lint",
        tags=["packs"],
        responses=_errors(400, 413),
        openapi_extra=_PACK_BODY,
    )
    async def lint_pack(domain: str, request: Request, who: Who) -> dict[str, Any]:
        """Lint a pack file (YAML in the body) without publishing it."""
        need(who, domain, "operator")
        text = await _body_text(request)
        try:
            docs = read_pack_documents(f"{domain}.yaml", text)
        except PackError as exc:
            return {"findings": [{"message": str(exc), "severity": "error"}], "errors": 1}
        findings, _ = lint_documents(docs)
        return {
            "findings": [f.to_json() for f in findings],
            "errors": sum(1 for f in findings if f.severity == "error"),
        }

    @app.post(
        "/v1/packs/{domain}",
        tags=["packs"],
        status_code=201,
        responses=_errors(400, 409, 413),
        openapi_extra=_PACK_BODY,
    )
    async def publish_pack(domain: str, request: Request, who: Who) -> list[dict[str, Any]]:
        """Publish the versions of a pack file (YAML in the body) for this domain."""
        need(who, domain, "operator")
        text = await _body_text(request)
        versions = load_pack_text(text, f"{domain}.yaml")
        if any(v.domain != domain for v in versions):
            raise Problem(422, "Refused", f"the pack's domain is not {domain}")
        with locked() as led:
            return [
                {"version": r.version, "status": r.status, "content_hash": r.content_hash}
                for r in led.publish(versions)
            ]

    # -- events ----------------------------------------------------------------------------------
    @app.post(
        "/v1/domains/{domain}/events",
        tags=["events"],
        response_model=None,
        responses={200: {"model": IngestOut}, **_errors(400, 413, 429)},
        openapi_extra=_EVENTS_BODY,
    )
    async def report_events(domain: str, request: Request, who: Who) -> dict[str, Any]:
        """A batch of events: a JSON array, or JSON Lines. Idempotent by event id; one result
        per item (a retry of a stored id answers `duplicate`). Over MAX_BODY_BYTES: 413. Under
        the intake limits (docs/api.md): 429 with Retry-After, or items held or limited."""
        need(who, domain, "issuer")
        raw = await _body_bytes(request)
        lines = _as_lines(raw, request.headers.get("content-type"))
        import io

        records = list(read_records(io.BytesIO(lines), "jsonl"))
        # A malformed item (not JSON, or not the published shape of an event) makes the whole
        # request malformed: refused with the item and field, nothing applied. Items that are
        # well formed but refused by the domain's rules get their own result in a 200.
        broken = [rec for rec in records if rec.event is None]
        if broken:
            raise Problem(
                422,
                "Invalid request",
                "; ".join(f"item {rec.line}: {rec.error}" for rec in broken[:5])
                + (f" (and {len(broken) - 5} more)" if len(broken) > 5 else "")
                + ": nothing was applied",
            )
        for rec in records:
            if rec.event is not None and rec.event.domain != domain:
                raise Problem(
                    422,
                    "Refused",
                    f"item {rec.line}: domain {rec.event.domain!r} is not {domain!r}",
                )

        def ingest() -> dict[str, Any]:
            with locked() as led:
                return limited_ingest(led, limiter, domain, who.label, records)

        # In a worker thread: a large batch must not stall the event loop (and every other
        # request) while it is written.
        return await run_in_threadpool(ingest)

    # -- one record ---------------------------------------------------------------------------------
    # The reads of one record are the most frequent requests. Each does all its work in one
    # worker thread: the token check, the read and the JSON encoding. A sync route with a sync
    # token dependency took three thread hops (the dependency, the route, and the validation
    # of its answer as dict[str, Any], which can never fail), and export encoded its answer
    # on the event loop. The answers, and their bytes, are what they were; the declared
    # response models keep the OpenAPI document as it was.
    def record_answer(
        domain: str,
        subject: str,
        credentials: HTTPAuthorizationCredentials | None,
        as_of: str | None,
        explain: bool,
    ) -> Response:
        need_record(caller(credentials), domain, subject)
        with locked() as led:
            body = led.view(domain, subject, as_of_param(domain, as_of), explain=explain)
        # The encoder FastAPI used for these routes' declared model (pydantic's, to bytes).
        return Response(_RECORD_JSON.dump_json(body, by_alias=True), media_type="application/json")

    @app.get(
        "/v1/domains/{domain}/subjects/{subject}/balance",
        tags=["records"],
        response_model=dict[str, Any],
    )
    async def balance(
        domain: str, subject: str, credentials: Bearer, as_of: str | None = None
    ) -> Response:
        return await run_in_threadpool(record_answer, domain, subject, credentials, as_of, False)

    @app.get(
        "/v1/domains/{domain}/subjects/{subject}/explain",
        tags=["records"],
        response_model=dict[str, Any],
    )
    async def explain(
        domain: str, subject: str, credentials: Bearer, as_of: str | None = None
    ) -> Response:
        return await run_in_threadpool(record_answer, domain, subject, credentials, as_of, True)

    def export_answer(
        domain: str, subject: str, credentials: HTTPAuthorizationCredentials | None
    ) -> Response:
        need_record(caller(credentials), domain, subject)
        with locked() as led:
            body = led.export(domain, subject)
        return JSONResponse(jsonable_encoder(body))  # as FastAPI encoded it, off the event loop

    @app.get(
        "/v1/domains/{domain}/subjects/{subject}/export",
        tags=["records"],
        response_model=None,
        responses={200: {"model": ExportRecord}},
    )
    async def export(domain: str, subject: str, credentials: Bearer) -> Response:
        return await run_in_threadpool(export_answer, domain, subject, credentials)

    # -- decisions ---------------------------------------------------------------------------------
    @app.get("/v1/domains/{domain}/decisions", tags=["decisions"])
    def decisions(
        domain: str,
        who: Who,
        subject: str | None = None,
        as_of: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        need(who, domain, "reviewer", "subject")
        if who.role == "subject":
            if subject is not None and subject != who.subject:
                raise Problem(404, "Not found", "no such record for this token")
            subject = who.subject
        with locked() as led:
            tz = led.require_domain(domain)[0].tz
            rows = led.decisions(domain, subject, as_of_param(domain, as_of))
            page = rows[offset : offset + limit]
            return {
                "items": [decision_view(d, s, tz) for d, s in page],
                "total": len(rows),
                "next_offset": offset + limit if offset + limit < len(rows) else None,
            }

    @app.post(
        "/v1/domains/{domain}/decisions/{decision_id}/confirm",
        tags=["decisions"],
        responses=_errors(400),
    )
    def confirm(domain: str, decision_id: str, body: ConfirmIn, who: Who) -> dict[str, Any]:
        need(who, domain, "reviewer")
        with locked() as led:
            row = led.confirm_decision(domain, decision_id, who.label, body.reason)
            return {"id": row.decision.id, "confirmed_by": who.label}

    # -- appeals ---------------------------------------------------------------------------------------
    @app.post(
        "/v1/domains/{domain}/appeals", tags=["appeals"], status_code=201, responses=_errors(400)
    )
    def file_appeal(domain: str, body: AppealIn, who: Who) -> dict[str, Any]:
        need(who, domain, "subject")
        assert who.subject is not None
        event_id, _, rule_id = (body.entry or "").partition("#")
        with locked() as led:
            a = led.file_appeal(
                domain, who.subject, body.reason, event_id or None, rule_id or None, body.decision
            )
            return appeal_view(a, led.versions(domain)[0].tz)

    @app.get("/v1/domains/{domain}/appeals", tags=["appeals"])
    def list_appeals(
        domain: str,
        who: Who,
        status: Annotated[str | None, Query(pattern="^(open|upheld|dismissed)$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        need(who, domain, "reviewer", "subject")
        with locked() as led:
            tz = led.require_domain(domain)[0].tz
            found = led.appeals_of(domain, status)
            if who.role == "subject":
                found = [a for a in found if a.subject == who.subject]
            page = found[offset : offset + limit]
            return {
                "items": [appeal_view(a, tz) for a in page],
                "total": len(found),
                "next_offset": offset + limit if offset + limit < len(found) else None,
            }

    @app.post(
        "/v1/domains/{domain}/appeals/{appeal_id}/decision",
        tags=["appeals"],
        responses=_errors(400),
    )
    def decide_appeal(
        domain: str, appeal_id: str, body: AppealDecisionIn, who: Who
    ) -> dict[str, Any]:
        need(who, domain, "reviewer")
        with locked() as led:
            found = led.store.appeal(appeal_id)
            if found is None or found.domain != domain:
                raise Problem(404, "Not found", f"no appeal {appeal_id} in {domain}")
            a = led.decide_appeal(appeal_id, body.outcome, who.label, body.reason)
            return appeal_view(a, led.versions(domain)[0].tz)

    # -- audit -----------------------------------------------------------------------------------------
    @app.get(
        "/v1/domains/{domain}/audit/verify",
        tags=["audit"],
        response_model=None,
        responses={200: {"model": VerifyOut}},
    )
    def audit_verify(domain: str, who: Who) -> dict[str, Any]:
        need(who, domain, "auditor")
        with locked() as led:
            r = led.verify()
            return {
                "ok": r.ok,
                "records": r.records,
                "root": r.root,
                "first_bad": r.first_bad,
                "reason": r.reason,
            }

    async def _body_bytes(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise Problem(
                413, "Content too large", f"a request body is at most {MAX_BODY_BYTES:,} bytes"
            )
        chunks = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise Problem(
                        413,
                        "Content too large",
                        f"a request body is at most {MAX_BODY_BYTES:,} bytes",
                    )
                chunks.append(chunk)
        except ClientDisconnect as exc:
            # A client that gave up mid-body (a timeout): nothing was read, nothing is applied;
            # the same request sent again settles the outcome (T16).
            raise Problem(
                400, "Bad request", "the client left before the body was complete: nothing applied"
            ) from exc
        return b"".join(chunks)

    async def _body_text(request: Request) -> str:
        raw = await _body_bytes(request)
        if len(raw) > MAX_PACK_BYTES:  # the limit `pack lint` and `pack publish` apply to a file
            raise Problem(413, "Content too large", f"a pack file is over {MAX_PACK_BYTES} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise Problem(
                422, "Invalid request", f"the body is not UTF-8 (line {line}, byte {exc.start})"
            ) from exc

    from pointbook.service.portal import mount_portal

    mount_portal(app, ledger, token_lookup, clock, locked)
    return app


def _form_error(message: str, back: str | None) -> str:
    from html import escape

    link = escape(back) if back and back.startswith("http") else "/"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>Not done · pointbook</title><link rel="stylesheet" href="/static/portal.css">'
        '</head><body><main id="main"><h1>That could not be done</h1>'
        f'<p class="error" role="alert">{escape(message)}</p>'
        f'<p><a href="{link}">Go back</a></p></main></body></html>'
    )


def _as_lines(raw: bytes, content_type: str | None = None) -> bytes:
    """A JSON array becomes JSON Lines; JSON Lines pass as they are. A body declared
    `application/json` is a JSON array or is refused whole (422): it is not read line by line."""
    stripped = raw.lstrip()
    declared = (content_type or "").partition(";")[0].strip().lower() == "application/json"
    if stripped.startswith(b"[") or declared:
        try:
            # An item that repeats a key is ambiguous (which value wins depends on the reader):
            # refused, never silently resolved. Deep nesting is refused, not a server error.
            items = json.loads(stripped, object_pairs_hook=unique_keys)
        except RecursionError:
            raise Problem(422, "Invalid request", "not a JSON array: nested too deeply") from None
        except ValueError as exc:
            raise Problem(
                422,
                "Invalid request",
                f"not a JSON array: {exc} (send JSON Lines as application/jsonl)",
            ) from exc
        if not isinstance(items, list):
            raise Problem(
                422,
                "Invalid request",
                "expected a JSON array of events (send JSON Lines as application/jsonl)",
            )
        return b"\n".join(json.dumps(i).encode() for i in items)
    return raw
