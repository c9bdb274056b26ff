"""The `pointbook` command line: every operation of the library, for files and scripts.

Errors are translated to messages in one place (`main`): exit 0 ok, 1 errors, findings or
rejects, 2 usage.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from pointbook.cli.common import err_console
from pointbook.errors import PointbookError

app = typer.Typer(
    name="pointbook",
    help="An accountable points ledger: published rules, contestable records, forgiving schemes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from pointbook.cli import analytics as _analytics  # noqa: E402
from pointbook.cli import bench as _bench  # noqa: E402
from pointbook.cli import demo as _demo  # noqa: E402
from pointbook.cli import pack as _pack  # noqa: E402
from pointbook.cli import process as _process  # noqa: E402
from pointbook.cli import records as _records  # noqa: E402
from pointbook.cli import serve as _serve  # noqa: E402

app.add_typer(_pack.app, name="pack")
_records.register(app)
_demo.register(app)
_process.register(app)
_serve.register(app)
_analytics.register(app)
app.add_typer(_bench.app, name="bench")


def main() -> None:
    try:
        app()
    except PointbookError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        sys.exit(1)
    except BrokenPipeError:  # e.g. `pointbook export ... | head`
        sys.exit(0)
