"""`pointbook whatif | report | oversight`: operators' aggregate views (never a record)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pointbook.analytics.privacy import domain_k
from pointbook.cli.common import (
    DEFAULT_DB,
    AsOfOption,
    DbOption,
    JsonOption,
    as_of_instant,
    console,
    e,
    open_ledger,
    print_json,
)
from pointbook.cli.records import progress_bar
from pointbook.dates import day_start, end_of_day, parse_instant
from pointbook.errors import InvalidTimeError
from pointbook.ledger import Ledger

KOption = Annotated[
    int | None,
    typer.Option(
        "--k",
        min=1,
        help="Suppress every cell covering fewer than k subjects; default: the pack's `min_cell` (10).",
    ),
]
HtmlOption = Annotated[
    Path | None, typer.Option("--html", help="Also write a self-contained HTML page here.")
]


def _bound(ledger: Ledger, domain: str, value: str | None, end: bool, hint: str) -> datetime | None:
    if value is None:
        return None
    tz = ledger.require_domain(domain)[0].tz
    try:
        d = date.fromisoformat(value.strip())
        return end_of_day(d, tz) if end else day_start(d, tz)
    except ValueError:
        pass
    try:
        return parse_instant(value, tz).astimezone(UTC)
    except InvalidTimeError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from exc


def _table(title: str, header: list[str], rows: list[list[object]]) -> None:
    t = Table(title=title)
    for h in header:
        t.add_column(h, justify="left" if h == header[0] else "right")
    for r in rows:
        t.add_row(*(e(c) for c in r))
    console.print(t)


def whatif(
    domain: Annotated[str, typer.Argument(help="The domain whose stored events are replayed.")],
    candidate: Annotated[Path, typer.Argument(help="The candidate pack file (YAML).")],
    start: Annotated[
        str | None, typer.Option("--from", help="Replay only events on or after this date.")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="Replay only events up to this date (and compare as of it)."),
    ] = None,
    db: DbOption = DEFAULT_DB,
    k: KOption = None,
    html_out: HtmlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Replay a domain's events under a candidate pack, as if it had been in force; writes nothing."""
    from pointbook.analytics.whatif import run_whatif, whatif_html, whatif_view
    from pointbook.rules.pack import load_pack_file

    ledger = open_ledger(db)
    try:
        k = domain_k(ledger, domain, k)
        versions = load_pack_file(candidate)
        since = _bound(ledger, domain, start, False, "--from")
        until = _bound(ledger, domain, end, True, "--to")
        subjects = len(ledger.store.subjects(domain))
        with progress_bar() as bar:
            # On standard error, and only for a population worth waiting for.
            big = subjects >= 10_000
            # A large population is read in bulk before the first subject is replayed: its
            # rows are counted as they come (how many there are is not known ahead).
            rows = bar.add_task("reading stored rows", total=None, visible=False)
            task = bar.add_task("replaying", total=subjects, visible=big)
            result = run_whatif(
                ledger,
                domain,
                versions,
                start=since,
                end=until,
                progress=lambda n: bar.advance(task, n),
                reading=lambda n: bar.update(rows, advance=n, visible=big),
            )
        view = whatif_view(result, k)
    finally:
        ledger.close()
    if html_out is not None:
        html_out.write_text(whatif_html(view), encoding="utf-8")
    if json_out:
        print_json(view)
        return
    console.print(
        f"{e(domain)}: candidate {e(', '.join(view['candidate_versions']))} replayed over "
        f"{e(view['summary']['subjects_replayed'])} subjects as of {e(view['as_of'])} "
        f"in {view['seconds']} s; nothing was written."
    )
    _table("Summary", ["figure", "value"], [[a, b] for a, b in view["summary"].items()])
    _table(
        "Change in points",
        ["change", "subjects"],
        [[a, b] for a, b in view["change_distribution"].items()],
    )
    _table(
        "Decisions appearing",
        ["kind", "decisions"],
        [[a, b] for a, b in view["decisions_appearing"].items()],
    )
    _table(
        "Decisions disappearing",
        ["kind", "decisions"],
        [[a, b] for a, b in view["decisions_disappearing"].items()],
    )
    _table(
        "Points by rule",
        ["rule", "published", "candidate"],
        [[r, v["before"], v["after"]] for r, v in view["points_by_rule"].items()],
    )
    _table(
        "Rules that drive the difference",
        ["rule", "points difference", "subjects changed"],
        [[d["rule"], d["points_difference"], d["subjects_changed"]] for d in view["drivers"]],
    )
    if html_out is not None:
        console.print(f"wrote {e(html_out)}")


def report(
    domain: Annotated[str, typer.Argument(help="The domain to report on.")],
    as_of: AsOfOption = None,
    db: DbOption = DEFAULT_DB,
    k: KOption = None,
    html_out: HtmlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Population report: points, decisions, rules, expiries and appeals, as protected aggregates."""
    from pointbook.analytics.oversight import oversight as oversight_data
    from pointbook.analytics.report import population_report, report_html

    ledger = open_ledger(db)
    try:
        k = domain_k(ledger, domain, k)
        when = as_of_instant(ledger, domain, as_of)
        rep = population_report(ledger, domain, when, k)
        over = oversight_data(ledger, domain, when, k)
    finally:
        ledger.close()
    if html_out is not None:
        html_out.write_text(report_html(rep, over), encoding="utf-8")
    if json_out:
        print_json(rep)
        return
    console.print(f"{e(domain)} as of {e(rep['as_of'])}: {e(rep['subjects'])} subjects")
    for key, col in (
        ("points_distribution", "points"),
        ("decisions_by_month", "month"),
        ("decisions_by_kind", "kind"),
        ("points_by_rule", "rule"),
        ("expiring_next_90_days", "week"),
    ):
        _table(key.replace("_", " "), [col, "value"], [[a, b] for a, b in rep[key].items()])
    for key, col in (("appeals_by_rule", "rule"), ("appeals_by_issuer", "issuer")):
        _table(
            key.replace("_", " "),
            [col, "open", "upheld", "dismissed"],
            [[c, v["open"], v["upheld"], v["dismissed"]] for c, v in rep[key].items()],
        )
    if html_out is not None:
        console.print(f"wrote {e(html_out)}")


def oversight(
    domain: Annotated[str, typer.Argument(help="The domain whose issuers are reviewed.")],
    as_of: AsOfOption = None,
    db: DbOption = DEFAULT_DB,
    k: KOption = None,
    json_out: JsonOption = False,
) -> None:
    """Per issuer: events reported, share appealed, share upheld, and a flag when far above the domain."""
    from pointbook.analytics.oversight import HEADER, oversight_rows
    from pointbook.analytics.oversight import oversight as oversight_data

    ledger = open_ledger(db)
    try:
        k = domain_k(ledger, domain, k)
        when = as_of_instant(ledger, domain, as_of)
        data = oversight_data(ledger, domain, when, k)
    finally:
        ledger.close()
    if json_out:
        print_json(data)
        return
    console.print(
        f"{e(domain)} as of {e(data['as_of'])}: domain share upheld on appeal "
        f"{e(data['domain_share_upheld'])} of {e(data['domain_decided_appeals'])} decided appeals"
    )
    _table("Issuers", HEADER, oversight_rows(data))


def register(app: typer.Typer) -> None:
    app.command("whatif")(whatif)
    app.command("report")(report)
    app.command("oversight")(oversight)
