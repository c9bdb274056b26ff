"""The docs are a contract: every command, lint code and rejection code is documented."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from pointbook.cli import app

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "pointbook"


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            names += [f"{name} {sub}" for sub in cmd.commands]
        else:
            names.append(name)
    return sorted(names)


def test_every_cli_command_has_a_section_in_docs_cli() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    headers = set(re.findall(r"^#{2,3} ([a-z][a-z ]*?)(?: [A-Z|.\[\]_-]+)*$", doc, re.M))
    missing = [c for c in _commands() if c not in headers]
    assert not missing, f"undocumented commands: {missing}"


def _codes(prefix: str) -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        found |= set(re.findall(rf'"({prefix}/[a-z-]+)"', path.read_text(encoding="utf-8")))
    return found


def test_every_lint_code_is_documented() -> None:
    doc = (ROOT / "docs" / "rule-packs.md").read_text(encoding="utf-8")
    codes = _codes("pack") - {"pack/internal"}
    assert codes, "found no lint codes in the source"
    assert sorted(c for c in codes if f"`{c}`" not in doc) == []


def test_every_rejection_code_is_documented() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    codes = _codes("event")
    assert len(codes) > 5
    assert sorted(c for c in codes if f"`{c}`" not in doc) == []


def test_readme_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = section.split("```console", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_published_export_schema_is_the_one_the_code_validates_with() -> None:
    import json

    from pointbook.export_schema import export_json_schema

    published = json.loads((ROOT / "docs" / "export.schema.json").read_text(encoding="utf-8"))
    assert published == export_json_schema(), "regenerate with `pointbook export --schema`"
