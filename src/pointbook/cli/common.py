"""What the CLI commands share: consoles, the --db option, time parsing, JSON output."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from pointbook.dates import parse_as_of
from pointbook.errors import InvalidTimeError
from pointbook.ledger import Ledger

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="POINTBOOK_DB",
        help="The store: a SQLite file path (default ./pointbook.db).",
        show_default=True,
    ),
]
DEFAULT_DB = "pointbook.db"
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="A date (the end of that day in the pack's time zone) or an ISO date-time; default now.",
    ),
]


def open_ledger(db: str) -> Ledger:
    return Ledger.open(db)


def as_of_instant(ledger: Ledger, domain: str, value: str | None) -> datetime:
    tz = ledger.require_domain(domain)[0].tz
    try:
        return parse_as_of(value, tz, datetime.now(UTC))
    except InvalidTimeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from exc


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def e(text: object) -> str:
    """Escape text for Rich markup."""
    return escape(str(text))
