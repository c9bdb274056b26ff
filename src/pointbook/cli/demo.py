"""`pointbook demo`: publish the reference packs, generate a seeded population, ingest, summarise."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from pointbook.demo import demo_command

    app.command("demo")(demo_command)
