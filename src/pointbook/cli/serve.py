"""`pointbook serve` and `pointbook token create`: the HTTP API and portal, and their tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from pointbook.cli.common import DEFAULT_DB, DbOption, console, e, err_console, open_ledger
from pointbook.service.auth import ROLES, Principal, hash_token, new_token, principal_of
from pointbook.service.limits import IntakeLimits, Rate, parse_rate

token_app = typer.Typer(help="Bearer tokens for the API and portal.", no_args_is_help=True)


def create_token(
    db: str, role: str, domain: str, subject: str | None, label: str | None
) -> tuple[str, Principal]:
    if role not in ROLES:
        raise typer.BadParameter(f"--role is one of {', '.join(ROLES)}")
    if (role == "subject") != (subject is not None):
        raise typer.BadParameter("--subject goes with --role subject, and only with it")
    who = Principal(role, domain, subject, label or (subject if role == "subject" else f"{role}"))  # type: ignore[arg-type]
    token = new_token()
    ledger = open_ledger(db)
    try:
        ledger.require_domain(domain)
        ledger.store.insert_token(hash_token(token), who.role, domain, subject, who.label)
    finally:
        ledger.close()
    return token, who


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    domain: Annotated[str, typer.Option("--domain", help="The one domain the token works in.")],
    subject: Annotated[str | None, typer.Option("--subject", help="For a subject token.")] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="A name, e.g. the reviewer's.")
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    token, who = create_token(db, role, domain, subject, label)
    err_console.print(
        f"{who.role} token for {e(domain)} ({e(who.label)}); keep it, it is not shown again:"
    )
    console.print(token)


def _rate(option: str, text: str) -> Rate | None:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    db: DbOption = DEFAULT_DB,
    issuer_limit: Annotated[
        str,
        typer.Option(
            "--issuer-limit",
            metavar="COUNT/SECONDS|off",
            help="New events one issuer may report through the API; over it: 429.",
        ),
    ] = "6000/60",
    subject_review: Annotated[
        str,
        typer.Option(
            "--subject-review",
            metavar="COUNT/SECONDS|off",
            help="Reports against one subject that count automatically; later ones are held "
            "for a reviewer.",
        ),
    ] = "20/3600",
    subject_limit: Annotated[
        str,
        typer.Option(
            "--subject-limit",
            metavar="COUNT/SECONDS|off",
            help="Reports against one subject taken at all; later ones are refused (retry).",
        ),
    ] = "200/3600",
) -> None:
    """Serve the HTTP API (/v1, OpenAPI at /openapi.json, docs at /docs) and the portal."""
    import uvicorn

    from pointbook.service.app import create_app

    limits = IntakeLimits(
        issuer=_rate("--issuer-limit", issuer_limit),
        subject_review=_rate("--subject-review", subject_review),
        subject_max=_rate("--subject-limit", subject_limit),
    )
    ledger = open_ledger(db)
    app = create_app(ledger, lambda h: principal_of(ledger.store.find_token(h)), limits=limits)
    console.print(f"pointbook on http://{host}:{port}/ (API docs at /docs); Ctrl-C to stop")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        ledger.close()


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command("serve")(serve)
