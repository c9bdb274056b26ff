"""`pointbook appeal | audit | retention | subject | share | domain | outbox`: due process,
tamper evidence, forgetting and sharing."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from pointbook.cli.common import (
    DEFAULT_DB,
    AsOfOption,
    DbOption,
    JsonOption,
    console,
    e,
    err_console,
    open_ledger,
    print_json,
)
from pointbook.dates import parse_as_of
from pointbook.errors import InvalidTimeError
from pointbook.rules.durations import parse_duration
from pointbook.views import appeal_view

appeal_app = typer.Typer(help="Appeals: file, list, decide.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
retention_app = typer.Typer(help="Forgetting: erase what is past retention.", no_args_is_help=True)
subject_app = typer.Typer(help="Subjects: pseudonyms and erasure on request.", no_args_is_help=True)
share_app = typer.Typer(
    help="Single-use codes a person gives to share one record.", no_args_is_help=True
)
domain_app = typer.Typer(help="The per-domain stop switch for decisions.", no_args_is_help=True)
outbox_app = typer.Typer(help="Decision changes queued for delivery.", no_args_is_help=True)

ReasonOption = Annotated[str, typer.Option("--reason", help="Why; kept and shown to the person.")]


@appeal_app.command("file")
def appeal_file(
    domain: Annotated[str, typer.Argument()],
    subject: Annotated[str, typer.Argument()],
    reason: ReasonOption,
    entry: Annotated[
        str | None,
        typer.Option("--entry", help="The contested entry: an event id, or EVENT_ID#RULE_ID."),
    ] = None,
    decision: Annotated[
        str | None, typer.Option("--decision", help="The contested decision id.")
    ] = None,
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """File an appeal. While it is open the contested entry does not count."""
    event_id, _, rule_id = (entry or "").partition("#")
    ledger = open_ledger(db)
    try:
        a = ledger.file_appeal(domain, subject, reason, event_id or None, rule_id or None, decision)
        view = appeal_view(a, ledger.versions(domain)[0].tz)
    finally:
        ledger.close()
    if json_out:
        print_json(view)
    else:
        console.print(f"appeal {e(a.id)} filed; it is open until a reviewer decides")


@appeal_app.command("list")
def appeal_list(
    domain: Annotated[str, typer.Argument()],
    status: Annotated[
        str | None, typer.Option("--status", help="open, upheld or dismissed.")
    ] = None,
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """The appeals of a domain, oldest first."""
    if status not in (None, "open", "upheld", "dismissed"):
        raise typer.BadParameter("--status is open, upheld or dismissed")
    ledger = open_ledger(db)
    try:
        tz = ledger.require_domain(domain)[0].tz
        views = [appeal_view(a, tz) for a in ledger.appeals_of(domain, status)]
    finally:
        ledger.close()
    if json_out:
        print_json(views)
        return
    if not views:
        console.print("No appeals.")
        return
    t = Table(title=f"Appeals in {domain}")
    for c in ("id", "subject", "contests", "filed", "status", "reason", "decision"):
        t.add_column(c)
    for v in views:
        target = v["decision_id"] or (v["event_id"] + (f"#{v['rule_id']}" if v["rule_id"] else ""))
        decided = f"{v['reviewer']}: {v['decision_reason']}" if v["reviewer"] else ""
        t.add_row(
            *(
                e(x)
                for x in (
                    v["id"],
                    v["subject"],
                    target,
                    v["filed_at"],
                    v["status"],
                    v["reason"],
                    decided,
                )
            )
        )
    console.print(t)


@appeal_app.command("decide")
def appeal_decide(
    appeal_id: Annotated[str, typer.Argument()],
    reason: ReasonOption,
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who decides.")],
    uphold: Annotated[bool, typer.Option("--uphold", help="The appeal is right.")] = False,
    dismiss: Annotated[bool, typer.Option("--dismiss", help="The appeal is not.")] = False,
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Decide an appeal: upheld reverses the entry (or cancels the decision); dismissed restores it."""
    if uphold == dismiss:
        raise typer.BadParameter("give exactly one of --uphold or --dismiss")
    ledger = open_ledger(db)
    try:
        a = ledger.decide_appeal(appeal_id, "upheld" if uphold else "dismissed", reviewer, reason)
        view = appeal_view(a, ledger.versions(a.domain)[0].tz)
    finally:
        ledger.close()
    if json_out:
        print_json(view)
    else:
        console.print(f"appeal {e(a.id)} {a.outcome} by {e(reviewer)}")


@audit_app.command("verify")
def audit_verify(db: DbOption = DEFAULT_DB, json_out: JsonOption = False) -> None:
    """Recompute the chain and every row's commitment; exit 1 naming the first bad record."""
    ledger = open_ledger(db)
    try:
        result = ledger.verify()
    finally:
        ledger.close()
    if json_out:
        print_json(
            {
                "ok": result.ok,
                "records": result.records,
                "root": result.root,
                "first_bad": result.first_bad,
                "reason": result.reason,
            }
        )
    elif result.ok:
        console.print(f"audit log verified: {result.records:,} records, root {result.root}")
    else:
        err_console.print(f"[red]audit log broken[/]: {e(result.reason)}")
    if not result.ok:
        raise typer.Exit(1)


@retention_app.command("run")
def retention_run(
    as_of: AsOfOption = None, db: DbOption = DEFAULT_DB, json_out: JsonOption = False
) -> None:
    """Erase the details of every event past its pack's retention (the audit log keeps hashes)."""
    from datetime import UTC, datetime

    ledger = open_ledger(db)
    try:
        domains = ledger.store.domains()
        tz = ledger.versions(domains[0])[0].tz if domains else ZoneInfo("UTC")
        try:
            when = None if as_of is None else parse_as_of(as_of, tz, datetime.now(UTC))
        except InvalidTimeError as exc:
            raise typer.BadParameter(str(exc), param_hint="--as-of") from exc
        done = ledger.run_retention(when)
    finally:
        ledger.close()
    if json_out:
        print_json(done)
        return
    for domain, n in sorted(done.items()):
        console.print(f"{e(domain)}: details of {n:,} event(s) erased")


@subject_app.command("erase")
def subject_erase(
    domain: Annotated[str, typer.Argument()],
    subject: Annotated[str, typer.Argument()],
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Erase a subject's whole record in a domain, where the pack allows erasure on request."""
    ledger = open_ledger(db)
    try:
        counts = ledger.erase_subject(domain, subject)
    finally:
        ledger.close()
    if json_out:
        print_json(counts)
    else:
        console.print(f"{e(subject)} erased from {e(domain)}: {sum(counts.values()):,} row(s)")


@subject_app.command("pseudonym")
def subject_pseudonym(
    domain: Annotated[str, typer.Argument()],
    external_id: Annotated[str, typer.Argument(help="The person's identifier outside pointbook.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """The subject id for a person in one domain (a keyed hash: not joinable across domains)."""
    ledger = open_ledger(db)
    try:
        console.print(ledger.pseudonym(domain, external_id))
    finally:
        ledger.close()


@share_app.command("create")
def share_create(
    domain: Annotated[str, typer.Argument()],
    subject: Annotated[str, typer.Argument()],
    valid: Annotated[str, typer.Option("--valid", help="How long the code works.")] = "21 days",
    db: DbOption = DEFAULT_DB,
) -> None:
    """A single-use code the person gives to someone who must check this one record."""
    try:
        duration = parse_duration(valid)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--valid") from exc
    ledger = open_ledger(db)
    try:
        code, expires = ledger.create_share(domain, subject, duration)
    finally:
        ledger.close()
    console.print(f"share code {code} (one use, until {expires.isoformat(timespec='seconds')})")


@share_app.command("redeem")
def share_redeem(
    code: Annotated[str, typer.Argument()],
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Show the one record a share code was made for; the code then stops working."""
    ledger = open_ledger(db)
    try:
        domain, subject = ledger.redeem_share(code)
        view = ledger.view(domain, subject)
    finally:
        ledger.close()
    if json_out:
        print_json(view)
    else:
        console.print(f"{e(domain)} / {e(subject)}: {view['points']} points")


def _switch(domain: str, stopped: bool, reason: str, by: str, db: str) -> None:
    ledger = open_ledger(db)
    try:
        ledger.set_switch(domain, stopped, reason, by)
    finally:
        ledger.close()
    console.print(f"{e(domain)}: decisions {'stopped' if stopped else 'running'}")


@domain_app.command("stop")
def domain_stop(
    domain: Annotated[str, typer.Argument()],
    reason: ReasonOption,
    by: Annotated[str, typer.Option("--by", help="Who stops it.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Stop decisions taking force and leaving the outbox (reads and appeals still work)."""
    _switch(domain, True, reason, by, db)


@domain_app.command("start")
def domain_start(
    domain: Annotated[str, typer.Argument()],
    reason: ReasonOption,
    by: Annotated[str, typer.Option("--by", help="Who starts it.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Let decisions take force again."""
    _switch(domain, False, reason, by, db)


@outbox_app.command("list")
def outbox_list(
    domain: Annotated[str, typer.Argument()],
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Decision changes waiting for delivery (none while the domain is stopped)."""
    ledger = open_ledger(db)
    try:
        items = ledger.outbox(domain)
    finally:
        ledger.close()
    if json_out:
        print_json([{"seq": s, "key": k, "payload": p} for s, k, p in items])
        return
    for s, k, p in items:
        console.print(f"{s}\t{e(k)}\t{e(p['kind'])}\t{e(p['change'])}")


@outbox_app.command("ack")
def outbox_ack(
    domain: Annotated[str, typer.Argument()],
    seqs: Annotated[list[int], typer.Argument(help="Delivered items' numbers.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Mark outbox items delivered."""
    from datetime import UTC, datetime

    ledger = open_ledger(db)
    try:
        ledger.require_domain(domain)
        ledger.store.outbox_take(seqs, datetime.now(UTC))
    finally:
        ledger.close()


@outbox_app.command("deliver")
def outbox_deliver(
    domain: Annotated[str, typer.Argument()],
    url: Annotated[str, typer.Option("--url", help="The receiver's webhook URL.")],
    secret_env: Annotated[
        str,
        typer.Option("--secret-env", help="Environment variable holding the shared HMAC secret."),
    ] = "POINTBOOK_WEBHOOK_SECRET",
    attempts: Annotated[int, typer.Option("--attempts", min=1, max=20)] = 5,
    db: DbOption = DEFAULT_DB,
) -> None:
    """POST every pending change (signed, with an idempotency key), retrying with backoff.
    Exit 1 if some stay queued."""
    import os

    from pointbook.service.webhooks import deliver

    secret = os.environ.get(secret_env)
    if not secret:
        raise typer.BadParameter(
            f"set the shared secret in ${secret_env}", param_hint="--secret-env"
        )
    ledger = open_ledger(db)
    try:
        report = deliver(ledger, domain, url, secret, attempts=attempts)
    finally:
        ledger.close()
    console.print(f"delivered {report.delivered} · still queued {report.failed}")
    if report.failed:
        err_console.print(f"last error: {e(report.last_error)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(appeal_app, name="appeal")
    app.add_typer(audit_app, name="audit")
    app.add_typer(retention_app, name="retention")
    app.add_typer(subject_app, name="subject")
    app.add_typer(share_app, name="share")
    app.add_typer(domain_app, name="domain")
    app.add_typer(outbox_app, name="outbox")
