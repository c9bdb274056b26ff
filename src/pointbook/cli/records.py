"""`pointbook ingest | balance | explain | decisions | export`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pointbook.cli.common import (
    DEFAULT_DB,
    AsOfOption,
    DbOption,
    JsonOption,
    as_of_instant,
    console,
    e,
    err_console,
    open_ledger,
    print_json,
)
from pointbook.dates import describe_as_of
from pointbook.intake import parse_json, read_records
from pointbook.views import decision_view

PROGRESS_MIN_LINES = 5000


def _count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def ingest(
    file: Annotated[str, typer.Argument(help="A JSON Lines or CSV file, or - for standard input.")],
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="jsonl or csv; default from the file name (.csv), else jsonl."
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Write each rejected line, with its line number and reason, to this JSON Lines file.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Events per atomic batch.")
    ] = 5000,
    json_out: JsonOption = False,
) -> None:
    """Ingest events; print accepted / duplicate / rejected counts. Exit 1 if any line was rejected."""
    kind = fmt or ("csv" if file.lower().endswith(".csv") else "jsonl")
    if kind not in ("jsonl", "csv"):
        raise typer.BadParameter("--format is jsonl or csv")
    stream: IO[bytes]
    total = 0
    if file == "-":
        stream = sys.stdin.buffer
    else:
        path = Path(file)
        if not path.is_file():
            raise typer.BadParameter(f"{file}: no such file")
        total = _count_lines(path)
        stream = path.open("rb")
    ledger = open_ledger(db)
    try:
        records = read_records(stream, kind)
        if total >= PROGRESS_MIN_LINES:
            with progress_bar() as bar:
                task = bar.add_task("ingesting", total=total)
                # A batch another writer raced is checked again by the ledger itself.
                report = ledger.ingest(
                    records, batch_size, progress=lambda n: bar.advance(task, n), refresh=False
                )
                dirty = len(report.subjects)
                task2 = bar.add_task("deciding", total=dirty)
                ledger.refresh_decisions(progress=lambda n: bar.advance(task2, n))
        else:
            report = ledger.ingest(records, batch_size)
    finally:
        ledger.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if rejects is not None:
        with rejects.open("w", encoding="utf-8") as out:
            for r in report.rejected:
                out.write(
                    json.dumps(
                        {
                            "line": r.line,
                            "id": r.event_id,
                            "code": r.code,
                            "reason": r.reason,
                            "text": r.text,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
    if json_out:
        print_json(report.to_json())
    else:
        console.print(
            f"accepted {report.accepted:,} · duplicates {report.duplicates:,} · rejected "
            f"{len(report.rejected):,} · entries {report.entries:,}"
        )
        for r in report.rejected[:10]:
            err_console.print(f"{e(file)}:{r.line}: {e(r.code)}: {e(r.reason)}", highlight=False)
        if len(report.rejected) > 10:
            more = f"… and {len(report.rejected) - 10:,} more"
            err_console.print(
                more
                + (f" (all in {rejects})" if rejects else " (use --rejects FILE to keep them all)")
            )
    if report.rejected:
        raise typer.Exit(1)


def _headline(
    domain: str, subject: str, view: dict[str, Any], when: datetime, tz: ZoneInfo
) -> None:
    console.print(
        f"[bold]{e(domain)}[/] / [bold]{e(subject)}[/] as of {e(describe_as_of(when, tz))}: "
        f"[bold]{view['points']}[/] points ({e(_scheme_words(view))})"
    )


def _scheme_words(view: dict[str, object]) -> str:
    s = view["scheme"]
    assert isinstance(s, dict)
    if s["kind"] == "balance":
        return f"balance between {s['floor']} and {s['ceiling']}"
    return f"sum of points within {s['length']} ({s['boundary']})"


def _print_decisions(decisions: list[dict[str, object]], with_subject: bool = False) -> None:
    if not decisions:
        console.print("No decisions.")
        return
    t = Table(title="Decisions")
    cols = [
        "id",
        *(["subject"] if with_subject else []),
        "kind",
        "status",
        "triggered",
        "effective",
        "ends",
    ]
    for c in cols:
        t.add_column(c)
    for d in decisions:
        row = [
            d["id"],
            *([d["subject"]] if with_subject else []),
            d["kind"],
            d["status"],
            d["triggered_at"],
            d["effective_at"],
            d["ends_at"] or "—",
        ]
        t.add_row(*(e(x) for x in row))
    console.print(t)


def _subject_view(
    db: str, domain: str, subject: str, as_of: str | None, explain: bool
) -> tuple[dict[str, Any], datetime, ZoneInfo]:
    ledger = open_ledger(db)
    try:
        when = as_of_instant(ledger, domain, as_of)
        view = ledger.view(domain, subject, when, explain=explain)
        return view, when, ledger.versions(domain)[0].tz
    finally:
        ledger.close()


def balance(
    domain: Annotated[str, typer.Argument()],
    subject: Annotated[str, typer.Argument()],
    as_of: AsOfOption = None,
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """A subject's points (balance or window sum) and decisions as of a time."""
    view, when, tz = _subject_view(db, domain, subject, as_of, explain=False)
    if json_out:
        print_json(view)
        return
    _headline(domain, subject, view, when, tz)
    _print_decisions(view["decisions"])


def explain(
    domain: Annotated[str, typer.Argument()],
    subject: Annotated[str, typer.Argument()],
    as_of: AsOfOption = None,
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Every entry and restoration behind a subject's figure, in plain words, and what changes next."""
    view, when, tz = _subject_view(db, domain, subject, as_of, explain=True)
    if json_out:
        print_json(view)
        return
    _headline(domain, subject, view, when, tz)
    t = Table(title="Why", show_lines=False, expand=True)
    t.add_column("date", no_wrap=True)
    t.add_column("change", justify="right", no_wrap=True)
    t.add_column("points", justify="right")
    t.add_column("reason", ratio=1)
    for line in view["entries"]:
        change = f"{line['applied']:+d}" + (
            f" (of {line['delta']:+d})" if line["applied"] != line["delta"] else ""
        )
        status = ""
        if line["counts"] is True and line["expires_at"]:
            status = f"counts until {line['expires_at']}"
        elif line["counts"] is False and line["kind"] == "entry":
            status = (
                f"stopped counting {line['expires_at']}" if line["expires_at"] else "does not count"
            )
        source = " · ".join(
            x
            for x in (
                f"event {line['event_id']}" if line["event_id"] else "",
                f"rule {line['rule_id']} @ {line['pack_version']}"
                if line["rule_id"] and line["pack_version"]
                else (line["rule_id"] or ""),
                status,
            )
            if x
        )
        t.add_row(
            e(line["occurred_at"]),
            e(change),
            e(line["figure"]),
            f"{e(line['reason'])}\n[dim]{e(source)}[/]",
        )
    console.print(t)
    if view["upcoming"]:
        u = Table(title="Upcoming (if nothing new is reported)")
        for c in ("date", "change", "points after", "reason"):
            u.add_column(c)
        for line in view["upcoming"]:
            u.add_row(
                *(
                    e(x)
                    for x in (
                        line["occurred_at"],
                        f"{line['applied']:+d}",
                        line["figure"],
                        line["reason"],
                    )
                )
            )
        console.print(u)
    else:
        console.print("Nothing is scheduled to change.")
    _print_decisions(view["decisions"])


def decisions(
    domain: Annotated[str, typer.Argument(help="The domain, or `confirm` to confirm a decision.")],
    decision_id: Annotated[
        str | None, typer.Argument(help="With `confirm`: the decision to confirm.")
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="Only this subject's decisions.")
    ] = None,
    as_of: AsOfOption = None,
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="With `confirm`: who confirms.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="With `confirm`: why.")] = "confirmed",
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """A domain's decisions (or one subject's) with their status as of a time;
    `decisions confirm ID --reviewer NAME` confirms one that its pack says a reviewer must."""
    ledger = open_ledger(db)
    try:
        if domain == "confirm":
            if decision_id is None or reviewer is None:
                raise typer.BadParameter("usage: pointbook decisions confirm ID --reviewer NAME")
            owner = next(
                (
                    dom
                    for dom in ledger.store.domains()
                    if any(
                        r.decision.id == decision_id for r in ledger.store.current_decisions(dom)
                    )
                ),
                None,
            )
            if owner is None:
                raise typer.BadParameter(f"no decision {decision_id}")
            ledger.confirm_decision(owner, decision_id, reviewer, reason)
            console.print(f"decision {e(decision_id)} confirmed by {e(reviewer)}")
            return
        if decision_id is not None:
            raise typer.BadParameter(f"unexpected argument {decision_id!r}")
        when = as_of_instant(ledger, domain, as_of)
        tz = ledger.versions(domain)[0].tz
        views = [
            decision_view(d, status, tz) for d, status in ledger.decisions(domain, subject, when)
        ]
    finally:
        ledger.close()
    if json_out:
        print_json(views)
        return
    _print_decisions(views, with_subject=True)


def export(
    domain: Annotated[str | None, typer.Argument()] = None,
    subject: Annotated[str | None, typer.Argument()] = None,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the JSON Schema of an export instead.")
    ] = False,
    db: DbOption = DEFAULT_DB,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of standard output."),
    ] = None,
) -> None:
    """The subject's whole record in the domain, as JSON."""
    if schema:
        from pointbook.export_schema import export_json_schema

        print_json(export_json_schema())
        return
    if domain is None or subject is None:
        raise typer.BadParameter("usage: pointbook export DOMAIN SUBJECT (or --schema)")
    ledger = open_ledger(db)
    try:
        record = ledger.export(domain, subject)
    finally:
        ledger.close()
    if output is None:
        print_json(record)
    else:
        output.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        err_console.print(f"wrote {output}")


def import_(
    file: Annotated[Path, typer.Argument(help="A file written by `pointbook export`.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Load an exported record into a store where its domain has no events yet."""
    try:
        # parse_json: a file nested too deeply is a reason, not a RecursionError traceback.
        record = parse_json(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{file}: cannot read an export: {exc}") from exc
    ledger = open_ledger(db)
    try:
        n = ledger.import_record(record)
    finally:
        ledger.close()
    console.print(
        f"imported {n:,} event(s) of {e(record.get('subject'))} in {e(record.get('domain'))}"
    )


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("ingest")(ingest)
    app.command("balance")(balance)
    app.command("explain")(explain)
    app.command("decisions")(decisions)
    app.command("export")(export)
