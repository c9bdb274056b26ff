"""The `pointbook` command line, run as a real subprocess against a SQLite file in tmp_path.

Every expected figure comes from the public rules as the reference packs and
docs/rule-packs.md state them, never from running pointbook:

* civic-code: start and ceiling 1000, littering -5, illegal dumping -50, each deduction counts
  for 1 year; falling below 900 makes a `hearing-notice` decision with 30 days' notice
  (mode crossing, no duration). Time zone Asia/Shanghai.
* uk-driving: endorsement points add up over 3 years by offence date (boundary inclusive: an
  offence exactly 3 years before another is still added); 12 or more makes a
  `disqualification` decision lasting 6 months (the statutory minimum), after which the
  points that caused it no longer count (`resets: true`). Time zone Europe/London.

A bare `--as-of` date is the end of that local day in the pack's time zone; a bare event date
is the start of that local day.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "examples" / "packs"
REFERENCE_PACKS = sorted(PACKS.glob("*.yaml"))
CIVIC = PACKS / "civic-code.yaml"
UK = PACKS / "uk-driving.yaml"
FR = PACKS / "fr-driving.yaml"

FINDING_RE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+): (?P<severity>error|warning)\[(?P<code>[^\]]+)\]: (?P<message>.+)$"
)

# --------------------------------------------------------------------------------------------
# running the real command
# --------------------------------------------------------------------------------------------


def _env(db: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("POINTBOOK_DB", None)
    if db is not None:
        env["POINTBOOK_DB"] = str(db)
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="200", PYTHONIOENCODING="utf-8")
    return env


def pb(
    *args: str | Path,
    db: Path | None,
    stdin: str | None = None,
    script: bool = False,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `pointbook ARGS` with POINTBOOK_DB=db (unset if None), in ``cwd`` or db's directory."""
    cmd: list[str]
    if script:
        cmd = [str(Path(sys.executable).with_name("pointbook"))]
    else:
        cmd = [sys.executable, "-m", "pointbook"]
    if cwd is None:
        assert db is not None, "give the working directory (a tmp_path) when there is no db"
        cwd = db.parent
    return subprocess.run(
        [*cmd, *(str(a) for a in args)],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env(db),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr
    return proc


def failed(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Assert the exit code and that no traceback was printed; return stdout + stderr."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, (
        f"{proc.args}: expected exit {code}, got {proc.returncode}\n{out}"
    )
    assert "Traceback" not in out, out
    return out


def pb_json(*args: str | Path, db: Path | None, stdin: str | None = None) -> Any:
    return json.loads(ok(pb(*args, "--json", db=db, stdin=stdin)).stdout)


def jsonl(events: Sequence[dict[str, Any] | str]) -> str:
    return "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events)


def event(
    id: str,
    domain: str,
    subject: str,
    type: str,
    occurred_at: str,
    evidence: str | None = "ref",
    issuer: str | None = "test-issuer",
    **attributes: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": id,
        "domain": domain,
        "subject": subject,
        "type": type,
        "occurred_at": occurred_at,
        "attributes": attributes,
    }
    if evidence is not None:
        out["evidence"] = evidence
    if issuer is not None:
        out["issuer"] = issuer
    return out


def civic(id: str, subject: str, type: str, at: str, **attrs: Any) -> dict[str, Any]:
    return event(id, "civic-code", subject, type, at, **attrs)


def uk(id: str, subject: str, at: str, points: int, **attrs: Any) -> dict[str, Any]:
    return event(id, "uk-driving", subject, "endorsement", at, points=points, **attrs)


def counts_from_text(text: str) -> dict[str, int]:
    """The accepted / duplicates / rejected counts of `pointbook ingest` (text mode)."""
    out = {}
    for key, pattern in (
        ("accepted", r"accepted\W+(\d[\d,]*)"),
        ("duplicates", r"duplicates?\W+(\d[\d,]*)"),
        ("rejected", r"rejected\W+(\d[\d,]*)"),
    ):
        m = re.search(pattern, text)
        assert m, f"no {key} count in {text!r}"
        out[key] = int(m.group(1).replace(",", ""))
    return out


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of ``text`` containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def points(db: Path, domain: str, subject: str, as_of: str) -> int:
    view = pb_json("balance", domain, subject, "--as-of", as_of, db=db)
    value = view["points"]
    assert isinstance(value, int)
    return value


# --------------------------------------------------------------------------------------------
# shared ledgers (read-only after set-up)
# --------------------------------------------------------------------------------------------

CIVIC_EVENTS = [
    # 23:00 in Suzhou on 2 May 2021 (15:00 UTC): on local day 2021-05-02.
    civic(
        "civic-alice-1", "subject-alice", "littering", "2021-05-02T23:00:00+08:00", location="Qu"
    ),
    # 20:00 UTC on 2 May is 04:00 on 3 May in Suzhou: on local day 2021-05-03.
    civic("civic-bob-1", "subject-bob", "illegal_dumping", "2021-05-02T20:00:00Z"),
    # 1000 -> 950 -> 900 -> 850: below 900 only at the third.
    civic("civic-carol-1", "subject-carol", "illegal_dumping", "2021-03-01"),
    civic("civic-carol-2", "subject-carol", "illegal_dumping", "2021-03-02"),
    civic("civic-carol-3", "subject-carol", "illegal_dumping", "2021-03-03"),
]

UK_EVENTS = [
    # 3 + 6 + 3 = 12 within 3 years: disqualification on 2021-12-01, 6 months.
    uk("uk-d1-1", "driver-1", "2019-01-10", 3, offence_code="SP30"),
    uk("uk-d1-2", "driver-1", "2020-06-01", 6, offence_code="IN10"),
    uk("uk-d1-3", "driver-1", "2021-12-01", 3, offence_code="SP30"),
    # More than 3 years apart: the first has left the window, 6 points only.
    uk("uk-d2-1", "driver-2", "2016-01-10", 6),
    uk("uk-d2-2", "driver-2", "2019-01-11", 6),
    # Exactly 3 years apart: still added (s.29(2), boundary inclusive): 12.
    uk("uk-d3-1", "driver-3", "2016-01-10", 6),
    uk("uk-d3-2", "driver-3", "2019-01-10", 6),
    # Late evening, local wall time (BST): on local day 2020-07-10.
    uk("uk-d4-1", "driver-4", "2020-07-10T23:30:00", 3),
]


@pytest.fixture(scope="module")
def civic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("civic") / "ledger.db"
    ok(pb("pack", "publish", CIVIC, db=db))
    report = pb_json("ingest", "-", db=db, stdin=jsonl(CIVIC_EVENTS))
    assert report["accepted"] == len(CIVIC_EVENTS)
    assert report["rejected"] == 0
    return db


@pytest.fixture(scope="module")
def uk_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("uk") / "ledger.db"
    ok(pb("pack", "publish", UK, db=db))
    report = pb_json("ingest", "-", db=db, stdin=jsonl(UK_EVENTS))
    assert report["accepted"] == len(UK_EVENTS)
    assert report["rejected"] == 0
    return db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ledger.db"
    yield path
    # The store named by POINTBOOK_DB / --db is the only one: nothing lands in the cwd default.
    assert not (tmp_path / "pointbook.db").exists()


# --------------------------------------------------------------------------------------------
# pack lint
# --------------------------------------------------------------------------------------------

GOOD_PACK = """\
domain: town
version: "1"
effective_from: 2020-01-01
timezone: UTC
title: Town ordinance points
purpose: Testing the pack linter.
scheme:
  kind: balance
  start: 100
  floor: 0
  ceiling: 100
event_types:
  littering:
    attributes:
      location: {type: string, required: false}
rules:
  - id: littering
    title: Littering in a public place
    category: public-order
    basis: Town ordinance art. 1
    event: littering
    when: {field: location, eq: park}
    points: -5
    counts_for: 1 year
    examples:
      match:
        - {location: park}
      no_match:
        - {location: street}
retention: 2 years
"""


def _broken(old: str, new: str) -> str:
    assert GOOD_PACK.count(old) == 1, old
    return GOOD_PACK.replace(old, new)


# name -> (pack text, expected code, the text on the line the finding must point at,
#          words the message must contain)
BROKEN_PACKS: dict[str, tuple[str, str, str | None, tuple[str, ...]]] = {
    "unknown_field": (
        _broken("{field: location, eq: park}", "{field: locaton, eq: park}"),
        "pack/unknown-field",
        "locaton",
        ("locaton", "did you mean 'location'"),
    ),
    "prohibited_category": (
        _broken("category: public-order", "category: religion"),
        "pack/prohibited-category",
        "category: religion",
        ("religion", "principle 2"),
    ),
    "unknown_category": (
        _broken("category: public-order", "category: public-ordre"),
        "pack/unknown-category",
        "category: public-ordre",
        ("public-ordre", "did you mean 'public-order'"),
    ),
    "missing_retention": (
        _broken("retention: 2 years\n", ""),
        "pack/no-retention",
        None,  # a missing key: the start of the document, line 1
        ("retention",),
    ),
    "anchor_alias": (
        _broken(
            "      location: {type: string, required: false}\n",
            "      location: &loc {type: string, required: false}\n"
            "  dumping:\n"
            "    attributes:\n"
            "      location: *loc\n",
        ),
        "pack/yaml",
        "&loc",
        ("anchor",),
    ),
    "failing_example": (
        _broken("- {location: park}", "- {location: harbour}"),
        "pack/example-failed",
        "harbour",
        ("littering", "harbour"),
    ),
}


def _write_broken(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name, (text, *_rest) in BROKEN_PACKS.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text, encoding="utf-8")
        files[name] = f
    good = tmp_path / "good.yaml"
    good.write_text(GOOD_PACK, encoding="utf-8")
    files["good"] = good
    return files


def test_lint_reference_packs_pass_with_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("pointbook")
    assert script.exists(), f"console script missing next to {sys.executable}"
    proc = ok(pb("pack", "lint", *REFERENCE_PACKS, db=None, cwd=tmp_path, script=True))
    assert "error[" not in proc.stdout
    report = json.loads(
        ok(pb("pack", "lint", "--json", *REFERENCE_PACKS, db=None, cwd=tmp_path)).stdout
    )
    assert report["errors"] == 0
    assert all(f["severity"] != "error" for f in report["findings"])


def _expected_line(name: str) -> int:
    text, _code, needle, _words = BROKEN_PACKS[name]
    return 1 if needle is None else line_of(text, needle)


def test_lint_broken_packs_text(tmp_path: Path) -> None:
    files = _write_broken(tmp_path)
    proc = pb("pack", "lint", *files.values(), db=None, cwd=tmp_path)
    failed(proc, 1)
    findings = [m.groupdict() for m in map(FINDING_RE.match, proc.stdout.splitlines()) if m]
    for name, (_text, code, _needle, words) in BROKEN_PACKS.items():
        path = str(files[name])
        mine = [f for f in findings if f["file"] == path]
        hits = [f for f in mine if f["severity"] == "error" and f["code"] == code]
        assert len(hits) == 1, (name, mine)
        assert int(hits[0]["line"]) == _expected_line(name), (name, hits[0])
        for word in words:
            assert word.lower() in hits[0]["message"].lower(), (name, word, hits[0])
    assert not [f for f in findings if f["file"] == str(files["good"])]


def test_lint_broken_packs_json(tmp_path: Path) -> None:
    files = _write_broken(tmp_path)
    proc = pb("pack", "lint", "--json", *files.values(), db=None, cwd=tmp_path)
    failed(proc, 1)
    report = json.loads(proc.stdout)
    assert set(report) >= {"findings", "errors", "warnings"}
    for f in report["findings"]:
        assert set(f) >= {"file", "line", "code", "severity", "message"}
        assert isinstance(f["line"], int)
        assert f["severity"] in ("error", "warning")
    assert report["errors"] == sum(f["severity"] == "error" for f in report["findings"])
    assert report["warnings"] == sum(f["severity"] == "warning" for f in report["findings"])
    assert report["errors"] >= len(BROKEN_PACKS)
    for name, (_text, code, _needle, _words) in BROKEN_PACKS.items():
        hits = [
            (f["code"], f["line"])
            for f in report["findings"]
            if f["file"] == str(files[name]) and f["severity"] == "error" and f["code"] == code
        ]
        assert hits == [(code, _expected_line(name))], (name, report["findings"])
    assert not [f for f in report["findings"] if f["file"] == str(files["good"])]


def test_lint_good_pack_alone_exits_0(tmp_path: Path) -> None:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD_PACK, encoding="utf-8")
    ok(pb("pack", "lint", f, db=None, cwd=tmp_path))


# --------------------------------------------------------------------------------------------
# pack publish / show / schema
# --------------------------------------------------------------------------------------------


def test_publish_twice_is_unchanged_and_show_lists_versions(db: Path) -> None:
    first = ok(pb("pack", "publish", FR, db=db))
    assert "published" in first.stdout
    again = pb_json("pack", "publish", FR, db=db)
    assert [r["version"] for r in again] == ["2011-03-16", "2024-01-01"]
    assert {r["status"] for r in again} == {"unchanged"}
    text = ok(pb("pack", "publish", FR, db=db))
    assert "unchanged" in text.stdout

    shown = pb_json("pack", "show", "fr-driving", db=db)
    assert shown["domain"] == "fr-driving"
    assert [v["version"] for v in shown["versions"]] == ["2011-03-16", "2024-01-01"]
    assert all(v["content_hash"].startswith("sha256:") for v in shown["versions"])
    assert [v["content_hash"] for v in shown["versions"]] == [r["content_hash"] for r in again]
    latest = shown["latest"]
    assert latest["version"] == "2024-01-01"
    rules = {r["id"]: r for r in latest["rules"]}
    # R412-30: a red light costs 4 points.
    assert rules["red-light"]["points"] == -4
    human = ok(pb("pack", "show", "fr-driving", db=db)).stdout
    assert "red-light" in human


def test_publish_content_hash_is_the_file_hash(db: Path) -> None:
    (result,) = pb_json("pack", "publish", CIVIC, db=db)
    assert result["status"] == "published"
    assert result["domain"] == "civic-code"
    assert result["content_hash"] == "sha256:" + hashlib.sha256(CIVIC.read_bytes()).hexdigest()


def _version_of(pack: Path, version: str, effective_from: str) -> str:
    text = pack.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    old_version = f'version: "{doc["version"]}"'
    old_from = f"effective_from: {doc['effective_from']}"
    assert text.count(old_version) == 1 and text.count(old_from) == 1
    return text.replace(old_version, f'version: "{version}"').replace(
        old_from, f"effective_from: {effective_from}"
    )


def test_publish_retroactive_version_refused_once_domain_has_events(db: Path) -> None:
    tmp = db.parent
    ok(pb("pack", "publish", UK, db=db))
    # No events yet: a version dated in the past may still be loaded (a scheme's history).
    history = tmp / "uk-2018.yaml"
    history.write_text(_version_of(UK, "2018-01", "2018-01-01"), encoding="utf-8")
    assert pb_json("pack", "publish", history, db=db)[0]["status"] == "published"

    report = pb_json("ingest", "-", db=db, stdin=jsonl([uk("r1", "driver-r", "2019-05-01", 3)]))
    assert report["accepted"] == 1

    retro = tmp / "uk-2020.yaml"
    retro.write_text(_version_of(UK, "2020-01", "2020-01-01"), encoding="utf-8")
    out = failed(pb("pack", "publish", retro, db=db), 1)
    assert "principle 4" in out.lower() or "retroactive" in out.lower(), out

    future_day = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()
    future = tmp / "uk-future.yaml"
    future.write_text(_version_of(UK, "future", future_day), encoding="utf-8")
    assert pb_json("pack", "publish", future, db=db)[0]["status"] == "published"

    # A published version never changes.
    edited = tmp / "uk-edited.yaml"
    edited.write_text(
        UK.read_text(encoding="utf-8").replace(
            "title: UK driving licence penalty points (totting-up)",
            "title: UK driving licence penalty points (edited)",
        ),
        encoding="utf-8",
    )
    assert edited.read_text(encoding="utf-8") != UK.read_text(encoding="utf-8")
    failed(pb("pack", "publish", edited, db=db), 1)

    shown = pb_json("pack", "show", "uk-driving", db=db)
    assert [v["version"] for v in shown["versions"]] == ["2015-06-08", "2018-01", "future"]
    assert shown["latest"]["title"] == "UK driving licence penalty points (totting-up)"


def test_publish_refuses_a_pack_that_does_not_lint(db: Path) -> None:
    bad = db.parent / "bad.yaml"
    text = BROKEN_PACKS["prohibited_category"][0]
    bad.write_text(text, encoding="utf-8")
    out = failed(pb("pack", "publish", bad, db=db), 1)
    assert f"{bad}:{line_of(text, 'category: religion')}:" in out
    assert "principle 2" in out
    assert "town" in failed(pb("pack", "show", "town", db=db), 1)


def test_publish_reports_the_effective_date_in_the_pack_time_zone(db: Path) -> None:
    # civic-code takes effect at the start of 3 September 2020 in Asia/Shanghai
    # (2 September 16:00 UTC): the date a person reads must be the one the pack states.
    proc = ok(pb("pack", "publish", CIVIC, db=db))
    assert "2020-09-03" in proc.stdout, proc.stdout
    assert "2020-09-02" not in proc.stdout, proc.stdout


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_pack_schema_is_a_json_schema_of_one_version(tmp_path: Path) -> None:
    proc = ok(pb("pack", "schema", db=None, cwd=tmp_path))
    schema = json.loads(proc.stdout)
    assert schema.get("type") == "object"
    props = schema["properties"]
    assert {"domain", "version", "effective_from", "scheme", "rules"} <= set(props)
    for ref in _refs(schema):
        assert ref.startswith("#/"), ref
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        assert isinstance(target, dict)
    # Every key a reference pack uses is a schema property, and the required ones are there.
    for f in REFERENCE_PACKS:
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            assert set(doc) <= set(props), (f.name, set(doc) - set(props))
            assert set(schema.get("required", [])) <= set(doc), f.name
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return
    jsonschema.Draft202012Validator.check_schema(schema)


# --------------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------------


def test_ingest_mixed_file_keeps_good_lines_and_reports_bad_ones(db: Path) -> None:
    tmp = db.parent
    ok(pb("pack", "publish", UK, db=db))
    future_day = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    lines: list[dict[str, Any] | str] = [
        uk("m1", "driver-m", "2020-01-10", 3, offence_code="SP30"),  # 1 good
        '{"id": "m-broken", "domain": "uk-driving", ',  # 2 not JSON
        uk("m2", "driver-m", "2020-06-01T08:15:00+01:00", 6),  # 3 good (date-time)
        "",  # 4 blank: skipped, still counted
        event("m3", "atlantis", "driver-m", "endorsement", "2020-06-01", points=3),  # 5
        event("m4", "uk-driving", "driver-m", "speeding", "2020-06-01", points=3),  # 6
        uk("m5", "driver-m", "2020-06-01", 3, colour="red"),  # 7 undeclared attribute
        event("m6", "uk-driving", "driver-m", "endorsement", "2020-06-01", points="three"),  # 8
        uk("m7", "driver-m", "2015-06-07", 3),  # 9 the day before the first version
        uk("m8", "driver-m", future_day, 3),  # 10 in the future
        uk("m1", "driver-m", "2020-01-11", 3, offence_code="SP30"),  # 11 same id, other content
        uk("m9", "driver-m", "2021-02-03", 2),  # 12 good
    ]
    src = tmp / "events.jsonl"
    src.write_text(jsonl(lines), encoding="utf-8")
    rejects = tmp / "rejects.jsonl"
    proc = pb("ingest", src, "--rejects", rejects, db=db)
    out = failed(proc, 1)
    assert counts_from_text(proc.stdout) == {"accepted": 3, "duplicates": 0, "rejected": 8}, out

    rows = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        assert set(r) >= {"line", "id", "code", "reason", "text"}
        assert isinstance(r["code"], str) and r["code"]
        assert isinstance(r["reason"], str) and r["reason"]
    by_line = {r["line"]: r for r in rows}
    assert sorted(by_line) == [2, 5, 6, 7, 8, 9, 10, 11]
    source_lines = src.read_text(encoding="utf-8").splitlines()
    for n, r in by_line.items():
        assert r["text"] == source_lines[n - 1], n
    expected_ids = {2: None, 5: "m3", 6: "m4", 7: "m5", 8: "m6", 9: "m7", 10: "m8", 11: "m1"}
    assert {n: r["id"] for n, r in by_line.items()} == expected_ids
    assert "atlantis" in by_line[5]["reason"]
    assert "speeding" in by_line[6]["reason"]
    assert "colour" in by_line[7]["reason"]
    assert "points" in by_line[8]["reason"] and "integer" in by_line[8]["reason"]
    assert "before" in by_line[9]["reason"]
    assert "future" in by_line[10]["reason"]
    assert "m1" in by_line[11]["reason"]
    # The rejection codes of docs/cli.md.
    assert {n: r["code"] for n, r in by_line.items()} == {
        2: "event/invalid",
        5: "event/unknown-domain",
        6: "event/unknown-type",
        7: "event/attributes",
        8: "event/attributes",
        9: "event/before-first-version",
        10: "event/future",
        11: "event/conflict",
    }

    record = json.loads(ok(pb("export", "uk-driving", "driver-m", db=db)).stdout)
    assert sorted(e["id"] for e in record["events"]) == ["m1", "m2", "m9"]
    m1 = next(e for e in record["events"] if e["id"] == "m1")
    assert m1["occurred_at"].startswith("2020-01-10")  # the first report of m1 stands
    # 3 + 6 + 2 within 3 years.
    assert points(db, "uk-driving", "driver-m", "2021-02-03") == 11


def test_reingesting_the_same_file_gives_duplicates_and_exit_0(db: Path) -> None:
    tmp = db.parent
    ok(pb("pack", "publish", CIVIC, db=db))
    src = tmp / "civic.jsonl"
    src.write_text(
        jsonl(
            [
                civic("r1", "subject-r", "littering", "2021-05-02", location="Guanqian St"),
                civic("r2", "subject-r", "noise_after_hours", "2021-05-03"),
                civic("r3", "subject-r", "dog_fouling", "2021-05-04T09:00:00+08:00"),
            ]
        ),
        encoding="utf-8",
    )
    rejects = tmp / "rejects.jsonl"
    first = pb_json("ingest", src, "--rejects", rejects, db=db)
    assert {k: first[k] for k in ("accepted", "duplicates", "rejected", "entries")} == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": 0,
        "entries": 3,
    }
    assert rejects.read_text(encoding="utf-8") == ""
    second = pb_json("ingest", src, db=db)
    assert (second["accepted"], second["duplicates"], second["rejected"]) == (0, 3, 0)
    assert second["entries"] == 0
    third = ok(pb("ingest", src, db=db))
    assert counts_from_text(third.stdout) == {"accepted": 0, "duplicates": 3, "rejected": 0}
    # -5 littering, -10 noise, -5 dog fouling, all counting.
    assert points(db, "civic-code", "subject-r", "2021-05-04") == 980

    # The same id with other content, in a later file: a conflict, and the first report stands.
    changed = tmp / "changed.jsonl"
    changed.write_text(
        jsonl([civic("r2", "subject-r", "graffiti", "2021-05-03")]), encoding="utf-8"
    )
    proc = pb("ingest", changed, "--json", "--rejects", rejects, db=db)
    failed(proc, 1)
    assert json.loads(proc.stdout)["rejected"] == 1
    (row,) = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    assert (row["line"], row["id"]) == (1, "r2")
    assert points(db, "civic-code", "subject-r", "2021-05-04") == 980


def test_ingest_from_stdin_with_db_option(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere.db"

    def run(*args: str | Path, stdin: str | None = None) -> Any:
        # POINTBOOK_DB is unset: the store is named by --db only.
        return json.loads(ok(pb(*args, "--db", store, db=None, cwd=tmp_path, stdin=stdin)).stdout)

    run("pack", "publish", CIVIC, "--json")
    events = [
        civic("s1", "subject-s", "littering", "2021-05-02"),
        civic("s2", "subject-s", "graffiti", "2021-05-03"),
    ]
    report = run("ingest", "-", "--json", stdin=jsonl(events))
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (2, 0, 0)
    view = run("balance", "civic-code", "subject-s", "--as-of", "2021-05-03", "--json")
    assert view["points"] == 1000 - 5 - 50
    assert store.exists()
    assert not (tmp_path / "pointbook.db").exists()


def _csv_text(rows: list[dict[str, str]], header: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


CSV_HEADER = [
    "id",
    "domain",
    "subject",
    "type",
    "occurred_at",
    "attr.location",
    "attr.points",
    "attr.offence_code",
    "evidence",
    "issuer",
]


def _row(**kw: str) -> dict[str, str]:
    return {h: kw.get(h.replace("attr.", "attr_"), "") for h in CSV_HEADER}


def test_ingest_csv_with_attribute_columns(db: Path) -> None:
    tmp = db.parent
    ok(pb("pack", "publish", CIVIC, db=db))
    ok(pb("pack", "publish", UK, db=db))
    rows = [
        _row(
            id="csv-1",
            domain="civic-code",
            subject="subject-c",
            type="littering",
            occurred_at="2021-05-02",
            attr_location="Guanqian St",
            evidence="photo-1",
            issuer="officer-7",
        ),
        # attr.location left empty: an optional attribute the event does not carry.
        _row(
            id="csv-2",
            domain="civic-code",
            subject="subject-c",
            type="littering",
            occurred_at="2021-06-01T10:00:00+08:00",
        ),
        # integer attribute from a CSV cell; optional offence_code left empty.
        _row(
            id="csv-3",
            domain="uk-driving",
            subject="driver-c",
            type="endorsement",
            occurred_at="2020-01-10",
            attr_points="3",
            attr_offence_code="SP30",
        ),
        _row(
            id="csv-4",
            domain="uk-driving",
            subject="driver-c",
            type="endorsement",
            occurred_at="2020-02-10",
            attr_points="6",
        ),
    ]
    src = tmp / "events.csv"
    src.write_text(_csv_text(rows, CSV_HEADER), encoding="utf-8")
    report = pb_json("ingest", src, db=db)
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (4, 0, 0)
    assert report["entries"] == 4
    assert points(db, "civic-code", "subject-c", "2021-06-01") == 990
    assert points(db, "uk-driving", "driver-c", "2020-02-10") == 9

    # A bad row is reported with its physical line number (the header is line 1).
    bad = [
        _row(
            id="csv-5",
            domain="uk-driving",
            subject="driver-c",
            type="endorsement",
            occurred_at="2020-03-10",
            attr_points="2",
        ),
        _row(
            id="csv-6",
            domain="uk-driving",
            subject="driver-c",
            type="endorsement",
            occurred_at="2020-03-11",
            attr_points="three",
        ),
    ]
    src2 = tmp / "more.csv"
    src2.write_text(_csv_text(bad, CSV_HEADER), encoding="utf-8")
    rejects = tmp / "rejects.jsonl"
    proc = pb("ingest", src2, "--json", "--rejects", rejects, db=db)
    failed(proc, 1)
    report = json.loads(proc.stdout)
    assert (report["accepted"], report["rejected"]) == (1, 1)
    (row,) = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    assert (row["line"], row["id"]) == (3, "csv-6")
    assert "points" in row["reason"]


# --------------------------------------------------------------------------------------------
# balance
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        ("2021-05-01", 1000),  # before the offence
        ("2021-05-02", 995),  # the offence's own day counts (end of that local day)
        ("2022-05-01", 995),  # still inside its year
        ("2022-05-02", 1000),  # a year on it stops counting
    ],
)
def test_balance_civic_littering(civic_db: Path, as_of: str, expected: int) -> None:
    view = pb_json("balance", "civic-code", "subject-alice", "--as-of", as_of, db=civic_db)
    assert set(view) >= {"domain", "subject", "as_of", "points", "decisions"}
    assert view["domain"] == "civic-code"
    assert view["subject"] == "subject-alice"
    assert view["as_of"].startswith(as_of)
    assert view["points"] == expected
    assert view["decisions"] == []


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        # 20:00 UTC on 2 May is 3 May in Suzhou: a bare date is a local day.
        ("2021-05-02", 1000),
        ("2021-05-03", 950),
        # date-times are instants as written
        ("2021-05-02T19:59:59Z", 1000),
        ("2021-05-02T20:00:01Z", 950),
        ("2021-05-03T03:59:59+08:00", 1000),
    ],
)
def test_balance_as_of_uses_the_pack_time_zone(civic_db: Path, as_of: str, expected: int) -> None:
    assert points(civic_db, "civic-code", "subject-bob", as_of) == expected


def test_balance_event_late_on_day_d_counts_as_of_d(uk_db: Path) -> None:
    assert points(uk_db, "uk-driving", "driver-4", "2020-07-09") == 0
    assert points(uk_db, "uk-driving", "driver-4", "2020-07-10") == 3


def test_balance_human_output(civic_db: Path) -> None:
    proc = ok(pb("balance", "civic-code", "subject-alice", "--as-of", "2021-06-01", db=civic_db))
    assert "995" in proc.stdout


def test_uk_points_add_up_to_a_disqualification(uk_db: Path) -> None:
    before = pb_json("balance", "uk-driving", "driver-1", "--as-of", "2021-11-30", db=uk_db)
    assert before["points"] == 9
    assert before["decisions"] == []

    at = pb_json("balance", "uk-driving", "driver-1", "--as-of", "2021-12-01", db=uk_db)
    (d,) = at["decisions"]
    assert set(d) >= {"kind", "status", "effective_at", "ends_at"}
    assert d["kind"] == "disqualification"
    assert d["status"] == "in_force"
    assert d["effective_at"].startswith("2021-12-01")  # no notice
    assert d["ends_at"].startswith("2022-06-01")  # 6 months minimum
    # The points that caused the disqualification no longer count (s.29(1)(b), resets).
    assert at["points"] == 0

    after = pb_json("balance", "uk-driving", "driver-1", "--as-of", "2022-07-01", db=uk_db)
    assert [x["status"] for x in after["decisions"]] == ["ended"]


def test_uk_window_is_three_years_inclusive(uk_db: Path) -> None:
    # 2016-01-10 is more than 3 years before 2019-01-11: only 6 points, no decision.
    d2 = pb_json("balance", "uk-driving", "driver-2", "--as-of", "2019-01-11", db=uk_db)
    assert d2["points"] == 6
    assert d2["decisions"] == []
    # Exactly 3 years before is still added: 12, disqualification.
    d3 = pb_json("balance", "uk-driving", "driver-3", "--as-of", "2019-01-10", db=uk_db)
    assert [x["kind"] for x in d3["decisions"]] == ["disqualification"]


# --------------------------------------------------------------------------------------------
# explain
# --------------------------------------------------------------------------------------------


def test_explain_lists_entries_and_what_changes_next(civic_db: Path) -> None:
    view = pb_json("explain", "civic-code", "subject-alice", "--as-of", "2021-06-01", db=civic_db)
    assert view["points"] == 995
    entries = [x for x in view["entries"] if x.get("event_id") == "civic-alice-1"]
    assert entries, view["entries"]
    e = entries[0]
    assert set(e) >= {
        "event_id",
        "rule_id",
        "pack_version",
        "delta",
        "occurred_at",
        "counts",
        "expires_at",
        "reason",
    }
    assert e["rule_id"] == "littering"
    assert e["pack_version"] == "2020-09"
    assert e["delta"] == -5
    assert e["occurred_at"].startswith("2021-05-02")
    assert e["counts"] is True
    assert e["expires_at"].startswith("2022-05-02")
    assert isinstance(e["reason"], str) and e["reason"]
    assert isinstance(view["upcoming"], list)
    assert any(str(u.get("occurred_at", "")).startswith("2022-05-02") for u in view["upcoming"]), (
        view["upcoming"]
    )

    later = pb_json("explain", "civic-code", "subject-alice", "--as-of", "2022-06-01", db=civic_db)
    assert later["points"] == 1000
    (old,) = [
        x
        for x in later["entries"]
        if x.get("event_id") == "civic-alice-1"
        and x.get("rule_id") == "littering"
        and x["delta"] == -5
    ]
    assert old["counts"] is False
    assert later["upcoming"] == []


def test_explain_human_output(civic_db: Path) -> None:
    proc = ok(pb("explain", "civic-code", "subject-alice", "--as-of", "2021-06-01", db=civic_db))
    assert "995" in proc.stdout
    assert "Littering" in proc.stdout


# --------------------------------------------------------------------------------------------
# decisions
# --------------------------------------------------------------------------------------------


def test_decisions_hearing_notice_below_900(civic_db: Path) -> None:
    all_now = pb_json("decisions", "civic-code", db=civic_db)
    for d in all_now:
        assert set(d) >= {"id", "subject", "kind", "status", "effective_at", "ends_at"}
    (d,) = all_now
    assert d["subject"] == "subject-carol"
    assert d["kind"] == "hearing-notice"
    assert d["triggered_at"].startswith("2021-03-03")  # 850: the first step below 900
    assert d["effective_at"].startswith("2021-04-02")  # 30 days' notice
    assert d["ends_at"] is None
    assert d["status"] == "in_force"

    during_notice = pb_json(
        "decisions",
        "civic-code",
        "--subject",
        "subject-carol",
        "--as-of",
        "2021-03-10",
        db=civic_db,
    )
    assert [(x["id"], x["status"]) for x in during_notice] == [(d["id"], "pending")]
    assert pb_json("decisions", "civic-code", "--subject", "subject-alice", db=civic_db) == []


def test_decisions_by_subject_uk(uk_db: Path) -> None:
    ds = pb_json("decisions", "uk-driving", db=uk_db)
    assert sorted(d["subject"] for d in ds) == ["driver-1", "driver-3"]
    assert {d["kind"] for d in ds} == {"disqualification"}
    mine = pb_json("decisions", "uk-driving", "--subject", "driver-1", db=uk_db)
    assert [d["subject"] for d in mine] == ["driver-1"]
    assert mine[0]["status"] == "ended"  # 6 months after 2021-12-01, long past
    human = ok(pb("decisions", "uk-driving", db=uk_db)).stdout
    assert "disqualification" in human


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def test_export_is_the_subjects_whole_record_only(civic_db: Path) -> None:
    proc = ok(pb("export", "civic-code", "subject-alice", db=civic_db))
    record = json.loads(proc.stdout)
    assert record["subject"] == "subject-alice"
    assert [e["id"] for e in record["events"]] == ["civic-alice-1"]
    assert record["events"][0]["attributes"] == {"location": "Qu"}
    assert record["entries"]
    assert any(x.get("event_id") == "civic-alice-1" for x in record["entries"])
    (version,) = record["pack_versions"]
    assert version["version"] == "2020-09"
    assert version["content_hash"] == "sha256:" + hashlib.sha256(CIVIC.read_bytes()).hexdigest()
    for other in ("subject-bob", "subject-carol", "civic-bob-1", "civic-carol-1", "civic-carol-3"):
        assert other not in proc.stdout


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("balance", "atlantis", "someone"),
        ("balance", "atlantis", "someone", "--json"),
        ("explain", "atlantis", "someone"),
        ("decisions", "atlantis"),
        ("export", "atlantis", "someone"),
        ("pack", "show", "atlantis"),
    ],
)
def test_unknown_domain_is_an_error_not_a_traceback(db: Path, args: tuple[str, ...]) -> None:
    out = failed(pb(*args, db=db), 1)
    assert "atlantis" in out


@pytest.mark.parametrize(
    "args",
    [
        ("balance",),
        ("balance", "civic-code"),
        ("ingest",),
        ("frobnicate",),
        ("balance", "civic-code", "someone", "--no-such-option"),
        ("pack", "lint"),
    ],
)
def test_usage_errors_exit_2(db: Path, args: tuple[str, ...]) -> None:
    failed(pb(*args, db=db), 2)


@pytest.mark.parametrize("value", ["notadate", "2021-02-30"])
def test_malformed_as_of_is_a_usage_error(civic_db: Path, value: str) -> None:
    # A malformed option value is a usage error (exit 2), like `ingest --format xml`.
    out = failed(pb("balance", "civic-code", "subject-alice", "--as-of", value, db=civic_db), 2)
    assert value in out


def test_demo_runs_small_is_reproducible_and_prints_tokens(tmp_path: Path) -> None:
    """`pointbook demo` (without serving): packs published, a seeded population ingested,
    a summary, and demo tokens that really open the portal's doors."""
    db = tmp_path / "demo.db"
    packs = Path(__file__).parent.parent / "examples" / "packs"
    args = ("demo", "--no-serve", "--subjects", "200", "--events", "3000", "--packs", packs)
    first = ok(pb(*args, db=db))
    assert "accepted 3,000 · duplicates 0 · rejected 0" in first.stdout
    assert "Demo tokens for" in first.stdout and "pb_" in first.stdout
    again = ok(pb(*args, db=db))
    assert "accepted 0 · duplicates 3,000 · rejected 0" in again.stdout
    assert ok(pb("audit", "verify", db=db)).returncode == 0


def test_a_demo_store_made_from_another_text_of_the_packs_says_what_to_do(
    tmp_path: Path,
) -> None:
    """Published versions never change: a demo store made from an earlier text of a bundled
    pack (a comment edited) is refused, with the store named and how to go on."""
    db = tmp_path / "demo.db"
    packs = tmp_path / "packs"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "packs", packs)
    args = ("demo", "--no-serve", "--subjects", "50", "--events", "300", "--packs", packs)
    ok(pb(*args, db=db))
    forum = packs / "forum-reputation.yaml"
    forum.write_text("# an edited comment\n" + forum.read_text(encoding="utf-8"), encoding="utf-8")
    out = failed(pb(*args, db=db))
    assert "already published with different content" in out
    assert str(db) in out and "make clean" in out and "--db" in out


def test_an_error_message_is_printed_as_written_never_as_markup(tmp_path: Path) -> None:
    """A name a user typed can hold text that looks like terminal markup: `[/x]` must neither
    crash the error printer nor vanish, and `[bold]` must be shown as typed."""
    db = tmp_path / "pb.db"
    out = failed(pb("balance", "[/x][bold]", "s1", db=db))
    assert "[/x][bold]" in out
