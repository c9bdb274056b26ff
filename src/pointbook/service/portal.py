"""The portal: server-rendered pages for the person whose points these are, for reviewers, and
for everyone (published packs in plain words). Works without JavaScript.

Sign-in takes a token and sets a session cookie (HttpOnly, SameSite=Strict); every form carries
a CSRF token tied to the session (double-submit before sign-in).
"""

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pointbook.dates import describe_as_of
from pointbook.due_process import ProcessError
from pointbook.ledger import Ledger
from pointbook.service.auth import Principal, hash_token
from pointbook.views import appeal_view, decision_view

__all__ = ["mount_portal"]

HERE = Path(__file__).parent
COOKIE = "pb_session"
PRE = "pb_csrf"


def _chart(lines: list[dict[str, Any]], start: int, label: str) -> str:
    """A step chart of the figure over time, as accessible SVG (with a text alternative)."""
    points = [(line["occurred_at"][:10], line["figure"]) for line in lines]
    if not points:
        return "<p>No changes yet.</p>"
    values = [start, *(v for _, v in points)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1
    w, h, pad = 600, 200, 30
    n = len(points)
    xs = [pad + i * (w - 2 * pad) / max(n, 1) for i in range(n + 1)]

    def y(v: int) -> float:
        return float(h - pad - (v - lo) * (h - 2 * pad) / span)

    path = [f"M{xs[0]:.1f},{y(start):.1f}"]
    for i, (_, v) in enumerate(points, start=1):
        path.append(f"H{xs[i]:.1f}V{y(v):.1f}")
    path.append(f"H{w - pad}")
    desc = "; ".join(f"{d}: {v}" for d, v in points[-12:])
    return (
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-t chart-d">'
        f'<title id="chart-t">{escape(label)}</title><desc id="chart-d">{escape(desc)}</desc>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#4a5562"/>'
        f'<text x="{pad}" y="{y(hi) - 6:.1f}">{hi}</text><text x="{pad}" y="{h - pad + 16}">{lo}</text>'
        f'<text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">{escape(points[-1][0])}</text>'
        f'<path d="{"".join(path)}" fill="none" stroke="#0b5cab" stroke-width="3"/></svg>'
    )


def mount_portal(
    app: FastAPI,
    ledger: Ledger,
    token_lookup: Callable[[str], Principal | None],
    clock: Callable[[], datetime],
    locked: Callable[[], AbstractContextManager[Ledger]],
) -> None:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    sessions: dict[str, tuple[Principal, str]] = {}

    def current(request: Request) -> tuple[Principal | None, str]:
        sid = request.cookies.get(COOKIE)
        if sid and sid in sessions:
            return sessions[sid]
        return None, request.cookies.get(PRE) or ""

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        who, csrf = current(request)
        fresh = None
        if who is None and not csrf:
            csrf = fresh = secrets.token_urlsafe(16)
        response = templates.TemplateResponse(
            request, name, {"who": who, "csrf": csrf, **context}, status_code=status
        )
        if fresh:
            response.set_cookie(PRE, fresh, httponly=True, samesite="strict")
        return response

    def check_csrf(request: Request, sent: str) -> Principal | None:
        who, csrf = current(request)
        if not csrf or not secrets.compare_digest(csrf, sent):
            raise ProcessError("the form expired: reload the page and try again")
        return who

    def signed_in(request: Request, role: str) -> Principal | Response:
        who, _ = current(request)
        if who is None or who.role != role:
            return RedirectResponse("/signin", status_code=303)
        return who

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> Response:
        with locked() as led:
            packs = [
                {"domain": d, "title": led.versions(d)[-1].spec.title} for d in led.store.domains()
            ]
        return page(request, "home.html", title="Schemes", packs=packs)

    @app.get("/packs/{domain}", response_class=HTMLResponse, include_in_schema=False)
    def pack_page(request: Request, domain: str) -> Response:
        with locked() as led:
            versions = led.require_domain(domain)
        v = versions[-1]
        spec = v.spec
        rules = []
        for r in spec.rules:
            pts = (
                r.points
                if isinstance(r.points, int)
                else f"the event's {r.points.attribute}" + (" (lost)" if r.points.scale < 0 else "")
            )
            counts = (
                r.counts_for.describe()
                if r.counts_for
                else ("the window" if spec.scheme.kind == "window" else "until restored")
            )
            rules.append({"title": r.title, "points": pts, "counts": counts, "basis": r.basis})
        thresholds = []
        for t in spec.thresholds:
            levels = ", ".join(str(lv.value) for lv in t.level_list())
            words = t.direction.replace("_", " ")
            notice = f", after {t.notice.describe()} of notice" if t.notice else ""
            review = ", confirmed by a reviewer" if t.review != "none" else ""
            thresholds.append(f"{t.title}: when the points are {words} {levels}{notice}{review}.")
        restorations = [f"{r.title}." for r in spec.restorations]
        window = spec.scheme.length.describe() if spec.scheme.kind == "window" else ""
        retention = spec.retention.describe() if spec.retention else "after the retention period"
        return page(
            request,
            "pack.html",
            title=spec.title,
            spec=spec,
            version=v,
            effective=v.effective_from.astimezone(v.tz).date().isoformat(),
            rules=rules,
            thresholds=thresholds,
            restorations=restorations,
            window=window,
            retention=retention,
        )

    @app.get("/signin", response_class=HTMLResponse, include_in_schema=False)
    def signin_form(request: Request) -> Response:
        return page(request, "signin.html", title="Sign in")

    @app.post("/signin", include_in_schema=False)
    def signin(request: Request, token: str = Form(...), csrf: str = Form(...)) -> Response:
        _, pre = current(request)
        if not pre or not secrets.compare_digest(pre, csrf):
            return page(
                request, "signin.html", 400, title="Sign in", error="The form expired: try again."
            )
        who = token_lookup(hash_token(token.strip()))
        if who is None or who.role not in ("subject", "reviewer", "operator", "auditor"):
            return page(
                request,
                "signin.html",
                401,
                title="Sign in",
                error="This token cannot sign in to the portal.",
            )
        sid = secrets.token_urlsafe(24)
        sessions[sid] = (who, secrets.token_urlsafe(16))
        landing = {"subject": "/me", "reviewer": "/review"}.get(who.role, "/reports")
        response = RedirectResponse(landing, status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict")
        response.delete_cookie(PRE)
        return response

    @app.post("/signout", include_in_schema=False)
    def signout(request: Request, csrf: str = Form(...)) -> Response:
        check_csrf(request, csrf)
        sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/me", response_class=HTMLResponse, include_in_schema=False)
    def me(request: Request, flash: str | None = None) -> Response:
        who = signed_in(request, "subject")
        if isinstance(who, Response):
            return who
        assert who.subject is not None
        with locked() as led:
            versions = led.require_domain(who.domain)
            view = led.view(who.domain, who.subject, explain=True)
            appeals = led.store.appeals(who.domain, [who.subject]).get(who.subject, [])
            events = led.store.subject_events(who.domain, [who.subject])[who.subject]
        tz = versions[0].tz
        scheme = view["scheme"]
        if scheme["kind"] == "balance":
            words = f"Balance between {scheme['floor']} and {scheme['ceiling']}; everyone starts at {scheme['start']}."
            start = scheme["start"]
        else:
            words = f"The total of your points from the last {scheme['length']}."
            start = 0
        open_targets = {a.event_id for a in appeals if a.outcome is None and a.event_id}
        return page(
            request,
            "me.html",
            title="My record",
            view=view,
            as_of_words=describe_as_of(clock(), tz),
            scheme_words=words,
            chart=_chart(view["entries"], start, "Points over time"),
            appeals=[appeal_view(a, tz) for a in appeals],
            contested=open_targets,
            evidence={e.id: e.evidence for e in events if e.evidence},
            flash=flash,
        )

    @app.get("/me/export", include_in_schema=False)
    def me_export(request: Request) -> Response:
        who = signed_in(request, "subject")
        if isinstance(who, Response):
            return who
        assert who.subject is not None
        with locked() as led:
            record = led.export(who.domain, who.subject)
        return JSONResponse(
            record, headers={"Content-Disposition": "attachment; filename=record.json"}
        )

    @app.post("/me/contest", include_in_schema=False)
    def contest(
        request: Request, entry: str = Form(...), reason: str = Form(...), csrf: str = Form(...)
    ) -> Response:
        who = check_csrf(request, csrf)
        if who is None or who.role != "subject" or who.subject is None:
            return RedirectResponse("/signin", status_code=303)
        event_id, _, rule_id = entry.partition("#")
        with locked() as led:
            led.file_appeal(who.domain, who.subject, reason, event_id, rule_id or None)
        return RedirectResponse(
            "/me?flash=Your+appeal+was+filed.+A+reviewer+will+decide.", status_code=303
        )

    @app.get("/reports", response_class=HTMLResponse, include_in_schema=False)
    def reports(request: Request) -> Response:
        """Operators and auditors: the population report and issuer oversight of their domain,
        aggregates only, every cell under the pack's `min_cell` suppressed."""
        who, _ = current(request)
        if who is None or who.role not in ("operator", "auditor"):
            return RedirectResponse("/signin", status_code=303)
        from pointbook.analytics.oversight import oversight as oversight_data
        from pointbook.analytics.privacy import domain_k
        from pointbook.analytics.report import population_report, report_html

        with locked() as led:
            k = domain_k(led, who.domain)
            rep = population_report(led, who.domain, clock(), k)
            over = oversight_data(led, who.domain, clock(), k)
        return HTMLResponse(report_html(rep, over))

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review(request: Request, flash: str | None = None) -> Response:
        who = signed_in(request, "reviewer")
        if isinstance(who, Response):
            return who
        with locked() as led:
            tz = led.require_domain(who.domain)[0].tz
            items = []
            for a in led.appeals_of(who.domain, "open"):
                view = led.view(who.domain, a.subject, explain=True)
                line = next(
                    (
                        x
                        for x in view["entries"]
                        if x["event_id"] == a.event_id
                        and x["kind"] in ("entry", "contested", "pending")
                    ),
                    None,
                )
                events = led.store.subject_events(who.domain, [a.subject])[a.subject]
                evidence = next((e.evidence for e in events if e.id == a.event_id), None)
                target = f"entry {a.event_id}" if a.event_id else f"decision {a.decision_id}"
                items.append(
                    {
                        "appeal": appeal_view(a, tz),
                        "line": line,
                        "points": view["points"],
                        "target": target,
                        "evidence": evidence,
                    }
                )
            pending = [
                {**decision_view(d, s, tz), "requires_review": d.requires_review}
                for d, s in led.decisions(who.domain)
                if s == "pending"
            ]
        return page(
            request,
            "review.html",
            title="Review queue",
            domain=who.domain,
            appeals=items,
            pending=pending,
            flash=flash,
        )

    @app.post("/review/appeals/{appeal_id}", include_in_schema=False)
    def decide(
        request: Request,
        appeal_id: str,
        outcome: str = Form(...),
        reason: str = Form(...),
        csrf: str = Form(...),
    ) -> Response:
        who = check_csrf(request, csrf)
        if who is None or who.role != "reviewer":
            return RedirectResponse("/signin", status_code=303)
        with locked() as led:
            found = led.store.appeal(appeal_id)
            if found is None or found.domain != who.domain:
                return RedirectResponse("/review", status_code=303)
            led.decide_appeal(appeal_id, outcome, who.label, reason)
        return RedirectResponse(f"/review?flash=Appeal+{appeal_id}+{outcome}.", status_code=303)

    @app.post("/review/decisions/{decision_id}/confirm", include_in_schema=False)
    def confirm(request: Request, decision_id: str, csrf: str = Form(...)) -> Response:
        who = check_csrf(request, csrf)
        if who is None or who.role != "reviewer":
            return RedirectResponse("/signin", status_code=303)
        with locked() as led:
            led.confirm_decision(who.domain, decision_id, who.label, "confirmed in the portal")
        return RedirectResponse("/review?flash=Decision+confirmed.", status_code=303)
