"""The HTTP API, versioned under /v1: a thin shell over the Ledger.

Errors are RFC 9457 problem+json. Object-level access is checked on every route: a token
asking for a record it may not see gets 404, never 403, so existence does not leak. Ledger
calls are serialised with one lock (one writer per store, as the store expects).
"""

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pointbook.dates import parse_as_of
from pointbook.due_process import ProcessError
from pointbook.errors import (
    ConflictError,
    EventError,
    InvalidTimeError,
    PackError,
    PointbookError,
    PublishError,
    UnknownDomainError,
)
from pointbook.intake import read_records
from pointbook.ledger import Ledger
from pointbook.rules.lint import lint_documents
from pointbook.rules.load import read_pack_documents
from pointbook.rules.pack import load_pack_text
from pointbook.service.auth import Principal, Role, hash_token
from pointbook.views import appeal_view, decision_view

__all__ = ["MAX_BODY_BYTES", "Problem", "create_app"]

MAX_BODY_BYTES = 5_000_000
PROBLEM = "application/problem+json"


class Problem(Exception):
    """An error answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type = status, title, detail, type_


def _problem(status: int, title: str, detail: str, instance: str) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


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
) -> FastAPI:
    clock = now or (lambda: datetime.now(UTC))
    lock = threading.RLock()
    app = FastAPI(
        title="pointbook",
        version="1",
        description="An accountable points ledger. Published packs are public; records are not.",
    )

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
        return _problem(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)

    @app.exception_handler(PointbookError)
    async def on_pointbook(request: Request, exc: PointbookError) -> Response:
        if not request.url.path.startswith("/v1/") and request.method == "POST":
            # A portal form: answer a page a person can read, with a way back.
            return HTMLResponse(
                _form_error(str(exc), request.headers.get("referer")), status_code=422
            )
        status = 422
        title = "Refused"
        if isinstance(exc, UnknownDomainError):
            status, title = 404, "Not found"
        elif isinstance(exc, ConflictError | PublishError):
            status, title = 409, "Conflict"
        elif isinstance(exc, PackError | EventError | InvalidTimeError | ProcessError):
            status, title = 422, "Refused"
        return _problem(status, title, str(exc), request.url.path)

    # -- authentication ------------------------------------------------------------------------
    def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Problem(401, "Unauthorized", "send `Authorization: Bearer TOKEN`")
        found = token_lookup(hash_token(authorization[7:].strip()))
        if found is None:
            raise Problem(401, "Unauthorized", "unknown or revoked token")
        return found

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

    @app.post("/v1/packs/{domain}/lint", tags=["packs"])
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

    @app.post("/v1/packs/{domain}", tags=["packs"], status_code=201)
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
    @app.post("/v1/domains/{domain}/events", tags=["events"])
    async def report_events(domain: str, request: Request, who: Who) -> dict[str, Any]:
        """A batch of events: a JSON array, or JSON Lines. Idempotent by event id; one result
        per item. Over MAX_BODY_BYTES: 413."""
        need(who, domain, "issuer")
        raw = await _body_bytes(request)
        lines = _as_lines(raw)
        import io

        records = list(read_records(io.BytesIO(lines), "jsonl"))
        for rec in records:
            if rec.event is not None and rec.event.domain != domain:
                raise Problem(
                    422,
                    "Refused",
                    f"item {rec.line}: domain {rec.event.domain!r} is not {domain!r}",
                )
        with locked() as led:
            report = led.ingest(records)
        rejected = {r.line: r for r in report.rejected}
        items = []
        for rec in records:
            if rec.line in rejected:
                r = rejected[rec.line]
                items.append(
                    {
                        "item": rec.line,
                        "id": r.event_id,
                        "status": "rejected",
                        "code": r.code,
                        "reason": r.reason,
                    }
                )
            else:
                items.append(
                    {
                        "item": rec.line,
                        "id": rec.event.id if rec.event else None,
                        "status": "accepted",
                    }
                )
        return {
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "rejected": len(report.rejected),
            "items": items,
        }

    # -- one record ---------------------------------------------------------------------------------
    @app.get("/v1/domains/{domain}/subjects/{subject}/balance", tags=["records"])
    def balance(domain: str, subject: str, who: Who, as_of: str | None = None) -> dict[str, Any]:
        need_record(who, domain, subject)
        with locked() as led:
            return led.view(domain, subject, as_of_param(domain, as_of))

    @app.get("/v1/domains/{domain}/subjects/{subject}/explain", tags=["records"])
    def explain(domain: str, subject: str, who: Who, as_of: str | None = None) -> dict[str, Any]:
        need_record(who, domain, subject)
        with locked() as led:
            return led.view(domain, subject, as_of_param(domain, as_of), explain=True)

    @app.get("/v1/domains/{domain}/subjects/{subject}/export", tags=["records"])
    def export(domain: str, subject: str, who: Who) -> dict[str, Any]:
        need_record(who, domain, subject)
        with locked() as led:
            return led.export(domain, subject)

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

    @app.post("/v1/domains/{domain}/decisions/{decision_id}/confirm", tags=["decisions"])
    def confirm(domain: str, decision_id: str, body: ConfirmIn, who: Who) -> dict[str, Any]:
        need(who, domain, "reviewer")
        with locked() as led:
            row = led.confirm_decision(domain, decision_id, who.label, body.reason)
            return {"id": row.decision.id, "confirmed_by": who.label}

    # -- appeals ---------------------------------------------------------------------------------------
    @app.post("/v1/domains/{domain}/appeals", tags=["appeals"], status_code=201)
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

    @app.post("/v1/domains/{domain}/appeals/{appeal_id}/decision", tags=["appeals"])
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
    @app.get("/v1/domains/{domain}/audit/verify", tags=["audit"])
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
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Problem(
                    413, "Content too large", f"a request body is at most {MAX_BODY_BYTES:,} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _body_text(request: Request) -> str:
        raw = await _body_bytes(request)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Problem(
                422, "Invalid request", f"the body is not UTF-8 (byte {exc.start})"
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


def _as_lines(raw: bytes) -> bytes:
    """A JSON array becomes JSON Lines; JSON Lines pass as they are."""
    stripped = raw.lstrip()
    if stripped.startswith(b"["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            raise Problem(422, "Invalid request", f"not a JSON array: {exc}") from exc
        if not isinstance(items, list):
            raise Problem(422, "Invalid request", "expected a JSON array of events")
        return b"\n".join(json.dumps(i).encode() for i in items)
    return raw
