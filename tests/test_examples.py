"""Every shipped pack loads and lints clean, and the public surface is what it says."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

import pointbook
import pointbook.engine
from pointbook.rules.lint import lint_documents
from pointbook.rules.load import read_pack_documents
from pointbook.rules.pack import load_pack_file

PACKS = sorted((Path(__file__).parent.parent / "examples" / "packs").glob("*.yaml"))
EXPECTED_DOMAINS = {"fr-driving", "uk-driving", "forum", "cricket", "civic-code"}


@pytest.mark.parametrize("path", PACKS, ids=lambda p: p.name)
def test_reference_pack_lints_without_any_finding(path: Path) -> None:
    findings, specs = lint_documents(read_pack_documents(path))
    assert findings == []
    assert all(s is not None for s in specs)


@pytest.mark.parametrize("path", PACKS, ids=lambda p: p.name)
def test_reference_pack_cites_its_sources_in_a_header(path: Path) -> None:
    head = path.read_text(encoding="utf-8").splitlines()[:5]
    assert head[0].startswith("#"), "a reference pack opens with a comment citing its source"
    for v in load_pack_file(path):
        assert v.spec.retention is not None
        for rule in v.spec.rules:
            assert rule.examples is not None and rule.examples.match, rule.id


def test_the_five_reference_domains_ship() -> None:
    domains = {load_pack_file(p)[0].domain for p in PACKS}
    assert domains == EXPECTED_DOMAINS


def test_fr_driving_carries_its_history_as_versions() -> None:
    versions = load_pack_file(Path(__file__).parent.parent / "examples/packs/fr-driving.yaml")
    assert [v.version for v in versions] == ["2011-03-16", "2024-01-01"]


@pytest.mark.parametrize("module", [pointbook, pointbook.engine])
def test_public_names_are_sorted_and_exist(module: ModuleType) -> None:
    names = module.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(module, name), name
