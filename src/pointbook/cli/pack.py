"""`pointbook pack ...`: lint, publish, show and the JSON Schema of the pack format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from pointbook.cli.common import (
    DEFAULT_DB,
    DbOption,
    JsonOption,
    console,
    e,
    open_ledger,
    print_json,
)
from pointbook.dates import format_local
from pointbook.errors import PackError
from pointbook.rules.findings import Finding, has_errors
from pointbook.rules.lint import lint_documents
from pointbook.rules.load import read_pack_documents
from pointbook.rules.spec import PackSpec, PointsFromSpec

app = typer.Typer(help="Rule packs: lint, publish, show, schema.", no_args_is_help=True)


@app.command("lint")
def lint(
    files: Annotated[list[Path], typer.Argument(help="Pack files to check.")],
    json_out: JsonOption = False,
) -> None:
    """Check pack files and run their rules' examples. Exit 1 when any error is found."""
    findings: list[Finding] = []
    versions = 0
    for path in files:
        try:
            docs = read_pack_documents(path)
        except PackError as exc:
            findings.append(
                Finding(str(path), _line_of(str(exc)), "pack/yaml", "error", _msg(str(exc)))
            )
            continue
        found, specs = lint_documents(docs)
        findings += found
        versions += sum(1 for s in specs if s is not None)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    if json_out:
        print_json(
            {"findings": [f.to_json() for f in findings], "errors": errors, "warnings": warnings}
        )
    else:
        for f in findings:
            colour = "red" if f.severity == "error" else "yellow"
            console.print(f"[{colour}]{e(f.format())}[/]")
        summary = f"{len(files)} file(s), {versions} valid version(s): {errors} error(s), {warnings} warning(s)"
        console.print(("[red]" if errors else "[green]") + e(summary) + "[/]")
    if has_errors(findings):
        raise typer.Exit(1)


def _line_of(message: str) -> int:
    parts = message.split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 1


def _msg(message: str) -> str:
    parts = message.split(":", 2)
    return parts[2].strip() if len(parts) > 2 and parts[1].isdigit() else message


@app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(help="A pack file (one or more versions).")],
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Lint and publish every version of a pack file not yet published."""
    ledger = open_ledger(db)
    try:
        results = ledger.publish_file(file)
        zones = {r.domain: ledger.versions(r.domain)[0].tz for r in results}
    finally:
        ledger.close()

    def tz_of(domain: str) -> ZoneInfo:
        return zones[domain]

    if json_out:
        print_json(
            [
                {
                    "domain": r.domain,
                    "version": r.version,
                    "effective_from": r.effective_from.isoformat(),
                    "status": r.status,
                    "content_hash": r.content_hash,
                }
                for r in results
            ]
        )
        return
    for r in results:
        console.print(
            f"{e(r.domain)} version {e(r.version)} (effective {format_local(r.effective_from, tz_of(r.domain))}): "
            f"[bold]{r.status}[/] {r.content_hash[:19]}…"
        )


@app.command("show")
def show(
    domain: Annotated[str, typer.Argument(help="The domain, e.g. fr-driving.")],
    db: DbOption = DEFAULT_DB,
    json_out: JsonOption = False,
) -> None:
    """Show a domain's published versions and the rules of the one in force."""
    ledger = open_ledger(db)
    try:
        versions = ledger.require_domain(domain)
        rows = ledger.store.pack_rows(domain)
    finally:
        ledger.close()
    tz = versions[0].tz
    current = versions[-1]
    if json_out:
        print_json(
            {
                "domain": domain,
                "versions": [
                    {
                        "version": r.version,
                        "effective_from": format_local(r.effective_from, tz),
                        "published_at": r.published_at.isoformat(timespec="seconds"),
                        "content_hash": r.content_hash,
                    }
                    for r in rows
                ],
                "latest": json.loads(
                    current.spec.model_dump_json(by_alias=True, exclude_none=True)
                ),
            }
        )
        return
    spec = current.spec
    console.print(f"[bold]{e(spec.title)}[/] ({e(domain)})\n{e(spec.purpose)}")
    vt = Table(title="Published versions")
    for col in ("version", "effective from", "published", "content hash"):
        vt.add_column(col)
    for r in rows:
        vt.add_row(
            e(r.version),
            format_local(r.effective_from, tz),
            r.published_at.isoformat(timespec="seconds"),
            r.content_hash[:19] + "…",
        )
    console.print(vt)
    rt = Table(title=f"Rules of version {current.version}")
    for col in ("rule", "event", "points", "counts for", "category", "basis"):
        rt.add_column(col)
    for rule in spec.rules:
        pts = rule.points if isinstance(rule.points, int) else _points_from(rule.points)
        counts = rule.counts_for.describe() if rule.counts_for else "until restored / window"
        rt.add_row(e(rule.id), e(rule.event), e(pts), e(counts), e(rule.category), e(rule.basis))
    console.print(rt)


def _points_from(p: PointsFromSpec) -> str:
    return f"{'-' if p.scale < 0 else ''}{p.attribute}" + (
        f" x{abs(p.scale)}" if abs(p.scale) != 1 else ""
    )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of one pack version."""
    print_json(PackSpec.model_json_schema(by_alias=True))
