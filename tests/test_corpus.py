"""The bad-input corpus (issue 6, item 4); tests/corpus/README.md is its manifest.

Every broken file and request under tests/corpus/ must give a clear error naming its line or
field, exit 1 (or the documented code) or a 4xx problem+json, never a traceback or a 500, and
leave nothing half-applied: the good lines of a mixed file land and the bad ones are reported,
a refused pack publishes nothing, and `audit verify` passes afterwards.

The expected lines, codes and words come from the manifest, written from the files and the
documented behaviour (docs/cli.md, docs/rule-packs.md, docs/api.md), never from running
pointbook. Files too big or too binary to commit are written here from the manifest's recipe.

Crash kind: none. These are input faults: no process is killed and no write is interrupted.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from pointbook.cli import main
from pointbook.dates import end_of_day
from pointbook.engine import Event
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.service.app import create_app
from pointbook.service.auth import Principal, hash_token
from pointbook.store import Store

CORPUS = Path(__file__).parent / "corpus"
BASE = CORPUS / "base.yaml"
DOMAIN = "corpus-town"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
OK_ID = re.compile(rb"ok-[a-z0-9]+-[0-9]+")
BAD_ID = re.compile(r"^(bad|void)-")
# Each stored event has its rule's one entry (tests/corpus/base.yaml).
POINTS = {"littering": -5, "speeding": -10}

# --------------------------------------------------------------------------------------------
# the manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """A row of the events, generated or packs table."""

    file: str
    line: int | None
    code: str | None
    needle: str | None


@dataclass(frozen=True)
class Call:
    """A row of the requests table."""

    file: str | None
    method: str
    path: str
    token: str
    content_type: str | None
    status: int
    needle: str


def _cell(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == "`" and text.endswith("`") and text.count("`") == 2:
        return text[1:-1]
    return text


def _tables() -> dict[str, list[list[str]]]:
    """The README's tables by section (## name), header and separator rows left out."""
    tables: dict[str, list[list[str]]] = {}
    section = ""
    for line in (CORPUS / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("| ") and section:
            cells = [_cell(c) for c in line.strip().strip("|").split(" | ")]
            if cells[0] in ("file", "---") or set(line) <= {"|", "-", " "}:
                continue
            tables.setdefault(section, []).append(cells)
    return tables


def _none(text: str) -> str | None:
    return None if text == "—" else text


def _expects(section: str) -> list[Expect]:
    out = []
    for file, line, _what, code, needle in _tables()[section]:
        out.append(Expect(file, None if line == "—" else int(line), _none(code), _none(needle)))
    return out


def _calls() -> list[Call]:
    out = []
    for file, request, token, ctype, _what, status, needle in _tables()["requests"]:
        method, path = _cell(request).split(" ", 1)
        out.append(Call(_none(file), method, path, token, _none(ctype), int(status), needle))
    return out


EVENTS = _expects("events")
GENERATED = _expects("generated")
EXPORTS = _expects("exports")
PACKS = _expects("packs")
CALLS = _calls()


def _by_file(rows: list[Expect]) -> dict[str, list[Expect]]:
    out: dict[str, list[Expect]] = {}
    for r in rows:
        out.setdefault(r.file, []).append(r)
    return out


def test_the_manifest_lists_every_file_and_every_row_has_one() -> None:
    listed = {r.file for r in EVENTS + PACKS} | {c.file for c in CALLS if c.file}
    on_disk = {
        str(p.relative_to(CORPUS))
        for sub in ("events", "packs", "requests")
        for p in (CORPUS / sub).iterdir()
    }
    assert on_disk - listed == set(), "corpus files with no row in tests/corpus/README.md"
    committed = {f for f in listed if not f.startswith("generated/")}
    assert committed - on_disk == set(), "manifest rows naming files that do not exist"
    generated = {r.file for r in GENERATED + EXPORTS} | {
        c.file for c in CALLS if c.file and c.file.startswith("generated/")
    }
    assert generated == set(GENERATE), "every generated/ row needs a recipe here, and back"


# --------------------------------------------------------------------------------------------
# files written at test time (the generated/ rows)
# --------------------------------------------------------------------------------------------


def _event(id: str, **kw: object) -> bytes:
    body = {
        "id": id,
        "domain": DOMAIN,
        "subject": f"p-{id}",
        "type": "littering",
        "occurred_at": "2021-03-02",
    }
    body.update(kw)
    return json.dumps(body, separators=(",", ":")).encode()


CSV_HEADER = b"id,domain,subject,type,occurred_at,attr.location\n"


def _csv_row(id: str, location: bytes = b"") -> bytes:
    return f"{id},{DOMAIN},p-{id},littering,2021-03-02,".encode() + location + b"\n"


def _base_lines() -> list[bytes]:
    return BASE.read_bytes().splitlines(keepends=True)


GENERATE: dict[str, Callable[[], bytes]] = {
    "generated/ten-mb-line.jsonl": lambda: (
        b"\n".join(
            [
                _event("ok-gen-1"),
                _event("bad-gen-2", attributes={"location": "x" * 10_000_000}),
                _event("ok-gen-3"),
            ]
        )
        + b"\n"
    ),
    "generated/ten-mb-cell.csv": lambda: (
        CSV_HEADER
        + _csv_row("ok-gcsv-2")
        + _csv_row("bad-gcsv-3", b"x" * 10_000_000)
        + _csv_row("ok-gcsv-4")
    ),
    "generated/not-utf8.jsonl": lambda: (
        _event("ok-u8-1")
        + b"\n"
        + _event("bad-u8-2", attributes={"location": "caf?"}).replace(b"caf?", b"caf\xff")
        + b"\n"
        + _event("ok-u8-3")
        + b"\n"
    ),
    "generated/not-utf8.csv": lambda: (
        CSV_HEADER
        + b"".join(_csv_row(f"ok-u8c-{n}", b"Main St") for n in range(2, 152))
        + _csv_row("bad-u8c-152", b"caf\xff")
        + _csv_row("ok-u8c-153")
    ),
    "generated/not-utf8-header.csv": lambda: (
        CSV_HEADER.replace(b"location", b"locati\xffon") + _csv_row("bad-u8h-2")
    ),
    "generated/deep.jsonl": lambda: (
        _event("bad-deep-1", attributes={"location": "X"}).replace(
            b'"X"', b"[" * 100_000 + b"]" * 100_000
        )
        + b"\n"
        + _event("ok-deep-2")
        + b"\n"
    ),
    "generated/deep-pack.yaml": lambda: b"title: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "generated/not-utf8-pack.yaml": lambda: b"".join(
        [*_base_lines()[:2], b"# caf\xff\n", *_base_lines()[2:]]
    ),
    "generated/huge-pack.yaml": lambda: BASE.read_bytes() + b"# padding\n" * 250_000,
    "generated/deep-events.json": lambda: b"[" * 100_000 + b"]" * 100_000,
    "generated/deep-events.jsonl": lambda: b'{"id":"bad-x","attributes":{"x":' + b"[" * 100_000,
    "generated/not-utf8-events.json": lambda: b'[{"id":"bad-\xff","domain":"corpus-town"}]',
    "generated/deep-appeal.json": lambda: b'{"entry":' + b"[" * 100_000,
    "generated/export-deep.json": lambda: b"[" * 100_000 + b"]" * 100_000,
    "generated/export-truncated.json": lambda: b'{"domain": "corpus-town", "subject": "al',
    "generated/export-not-utf8.json": lambda: b"\xff\xfe",
    "generated/export-list.json": lambda: b"[1, 2, 3]",
}


def corpus_file(name: str, tmp: Path) -> Path:
    """The corpus file ``name``, written to ``tmp`` first when it is a generated one."""
    if not name.startswith("generated/"):
        return CORPUS / name
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(GENERATE[name]())
    return path


# --------------------------------------------------------------------------------------------
# the command line, in-process: `python -m pointbook` is `main()`
# --------------------------------------------------------------------------------------------


def cli(*args: str | Path) -> tuple[int, str, str]:
    """Run `pointbook ARGS` through main(); (exit code, stdout, stderr). Any exception other
    than the exit propagates: a traceback fails the test rather than pass for exit 1."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["pointbook", *(str(a) for a in args)]
    code: int
    with mock.patch.object(sys, "argv", argv), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def publish_base(db: str) -> None:
    code, _, err = cli("pack", "publish", BASE, "--db", db)
    assert code == 0, err


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "base.db"
    publish_base(str(path))  # the ledger is closed: the file holds everything (no -wal left)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path


@pytest.fixture
def base_db(_template: Path, tmp_path: Path) -> Callable[[], str]:
    """A maker of SQLite stores holding only base.yaml (copies of one published once)."""
    count = iter(range(1_000_000))

    def make() -> str:
        path = tmp_path / f"store-{next(count)}.db"
        shutil.copyfile(_template, path)
        return str(path)

    return make


def stored(db: str, verify: bool = True) -> dict[str, str]:
    """Every stored event of the domain: id -> type, after checking its entries (one per event,
    the rule's points) and, with ``verify``, that the audit chain verifies."""
    ledger = Ledger.open(db)
    try:
        out: dict[str, str] = {}
        subjects = ledger.store.subjects(DOMAIN)
        for subject, events in ledger.store.subject_events(DOMAIN, subjects).items():
            entries = ledger.store.subject_entries(DOMAIN, subject)
            for ev in events:
                out[ev.id] = ev.type
                mine = [(n.rule_id, n.delta) for n in entries if n.event_id == ev.id]
                assert mine == [(ev.type, POINTS[ev.type])], f"entries of {ev.id}: {mine}"
            assert len(entries) == len(events), f"entries without an event for {subject}"
        if verify:  # what `pointbook audit verify` runs
            result = ledger.verify()
            assert result.ok, result
    finally:
        ledger.close()
    return out


def assert_verifies(db: str) -> None:
    code, out, err = cli("audit", "verify", "--db", db, "--json")
    assert code == 0 and json.loads(out)["ok"] is True, out + err


# --------------------------------------------------------------------------------------------
# events through `pointbook ingest`
# --------------------------------------------------------------------------------------------


SUMMARY = re.compile(
    r"accepted (?P<accepted>[\d,]+) · duplicates (?P<duplicates>[\d,]+) · "
    r"rejected (?P<rejected>[\d,]+) · entries (?P<entries>[\d,]+)"
)


def ingest_and_check(
    db: str,
    path: Path,
    rows: list[Expect],
    tmp: Path,
    *extra: str,
    before: set[str] | None = None,
    verify: bool = True,
) -> tuple[dict[str, int], set[str]]:
    """Ingest ``path`` and check it against its manifest rows (``before``: the ids stored
    already, read from the store if not given); the counts printed and the ids stored after."""
    if before is None:
        before = set(stored(db, verify=False))
    rejects = tmp / f"{path.name}.rejects.jsonl"
    code, out, err = cli("ingest", path, "--db", db, "--rejects", rejects, *extra)
    expected = {(r.line, r.code): r.needle or "" for r in rows if r.line is not None}
    assert code == (1 if expected else 0), f"exit {code}: {err}"
    summary = SUMMARY.fullmatch(out.strip())
    assert summary, out
    report = {k: int(v.replace(",", "")) for k, v in summary.groupdict().items()}
    got = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    reasons = {(r["line"], r["code"]): r["reason"] for r in got}
    assert sorted(reasons) == sorted(expected), f"rejects of {path.name}: {reasons}"
    for key, needle in expected.items():
        assert needle in reasons[key], f"{path.name}:{key[0]}: {reasons[key]!r} lacks {needle!r}"
    for r in got[:10]:  # the first ten are printed, each naming its line
        assert f"{path}:{r['line']}: {r['code']}:" in err, err
    good = {m.decode() for m in OK_ID.findall(path.read_bytes())}
    after = set(stored(db, verify=verify))
    assert after == before | good, f"stored after {path.name}: {sorted(after)}"
    assert not [i for i in after if BAD_ID.match(i)]
    assert report["accepted"] == len(good - before)
    assert report["rejected"] == len(expected)
    assert report["entries"] == report["accepted"]
    return report, after


def _order(name: str) -> list[str]:
    """Files to ingest before ``name`` into the same store (a run 2 follows its run 1)."""
    return [name.replace("-run2.", "-run1.")] if "-run2." in name else []


EVENT_FILES = sorted({r.file for r in EVENTS + GENERATED if not r.file.endswith(".yaml")})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", EVENT_FILES)
def test_event_file(name: str, base_db: Callable[[], str], tmp_path: Path) -> None:
    """SQLite, one fresh store per file."""
    rows = _by_file(EVENTS + GENERATED)
    db = base_db()
    before: set[str] = set()
    for first in _order(name):
        _, before = ingest_and_check(db, corpus_file(first, tmp_path), rows[first], tmp_path)
    ingest_and_check(db, corpus_file(name, tmp_path), rows[name], tmp_path, before=before)


@pytest.mark.timeout(300)
def test_every_event_file_on_postgres(
    pg_url: str, pg_schemas: Callable[[], str], tmp_path: Path
) -> None:
    """PostgreSQL, the whole corpus in order into one schema: it refuses U+0000 in text, so a
    line carrying one must be rejected on its own and not fail its batch's COPY."""
    rows = _by_file(EVENTS + GENERATED)
    db = f"{pg_url}?schema={pg_schemas()}"
    publish_base(db)
    ids: set[str] = set()
    for name in sorted(EVENT_FILES, key=lambda n: (bool(_order(n)), n)):
        path = corpus_file(name, tmp_path)
        _, ids = ingest_and_check(db, path, rows[name], tmp_path, before=ids, verify=False)
    assert_verifies(db)  # once, over everything: each verify reads the whole chain


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_duplicates_across_batches_keep_the_first_content(
    base_db: Callable[[], str], tmp_path: Path, batch_size: str
) -> None:
    """The same file in batches of 1 and 2: line 3's conflict with line 1 is then found in the
    store, not in the batch; the rejects are the same and the first content stays."""
    db = base_db()
    name = "events/duplicates.jsonl"
    report, _ = ingest_and_check(
        db, CORPUS / name, _by_file(EVENTS)[name], tmp_path, "--batch-size", batch_size
    )
    assert report["duplicates"] == 1  # line 2 repeats line 1 exactly
    events = _events(db, "dup-a", "dup-c")
    # Line 1 said 2021-03-02, local midnight in Asia/Shanghai (line 3 said 03-03); line 5 said
    # 12 km/h (line 6 said 30).
    assert events["ok-dup-1"].occurred_at == datetime(2021, 3, 1, 16, tzinfo=UTC)
    assert events["ok-dup-5"].attributes == {"over_kmh": 12}


def _events(db: str, *subjects: str) -> dict[str, Event]:
    ledger = Ledger.open(db)
    try:
        found = ledger.store.subject_events(DOMAIN, list(subjects))
    finally:
        ledger.close()
    return {e.id: e for events in found.values() for e in events}


def test_a_conflict_across_runs_keeps_the_first_report(
    base_db: Callable[[], str], tmp_path: Path
) -> None:
    db = base_db()
    rows = _by_file(EVENTS)
    for run in ("run1", "run2"):
        name = f"events/conflict-{run}.jsonl"
        report, _ = ingest_and_check(db, CORPUS / name, rows[name], tmp_path)
    assert report["duplicates"] == 1  # run 2's line 1 repeats run 1's line 1
    assert {i: e.evidence for i, e in _events(db, "run-a").items()} == {
        "ok-run-1": "photo-1",
        "ok-run-2": "photo-2",  # not run 2's "photo-2-edited"
        "ok-run-3": "photo-3",
    }


# --------------------------------------------------------------------------------------------
# packs through `pointbook pack lint` and `pointbook pack publish`
# --------------------------------------------------------------------------------------------

PACK_ROWS = PACKS + [r for r in GENERATED if r.file.endswith(".yaml")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("row", PACK_ROWS, ids=[r.file for r in PACK_ROWS])
def test_pack_file(row: Expect, tmp_path: Path) -> None:
    path = corpus_file(row.file, tmp_path)
    assert row.code is not None and row.needle is not None
    code, out, err = cli("pack", "lint", path, "--json")
    assert code == 1, f"lint exit {code}: {out}{err}"
    findings = json.loads(out)["findings"]
    hits = [
        f
        for f in findings
        if f["code"] == row.code
        and f["severity"] == "error"
        and row.needle in f["message"]
        and (row.line is None or f["line"] == row.line)
    ]
    assert hits, f"no {row.code} finding at line {row.line} naming {row.needle!r}: {findings}"

    db = str(tmp_path / "store.db")
    code, out, err = cli("pack", "publish", path, "--db", db)
    assert code == 1, f"publish exit {code}: {out}{err}"
    assert err.startswith("error: ") and row.needle in err, err
    if row.line is not None:
        assert f"{path}:{row.line}:" in err, err
    ledger = Ledger.open(db)
    try:
        assert ledger.store.domains() == [], "a refused pack published something"
    finally:
        ledger.close()


def test_a_refused_second_version_leaves_the_published_first_alone(
    base_db: Callable[[], str],
) -> None:
    """Over a store holding base.yaml (whose rules the file's valid first version repeats), the
    refused two-version file adds nothing: version 1 stays the only one, byte for byte."""
    db = base_db()
    code, _, err = cli("pack", "publish", CORPUS / "packs/second-version-bad.yaml", "--db", db)
    assert code == 1 and "loyalty" in err
    ledger = Ledger.open(db)
    try:
        rows = ledger.store.pack_rows(DOMAIN)
    finally:
        ledger.close()
    assert [r.version for r in rows] == ["1"]
    assert rows[0].text == BASE.read_text(encoding="utf-8")
    assert_verifies(db)


@pytest.mark.parametrize("row", EXPORTS, ids=[r.file for r in EXPORTS])
def test_import_of_a_broken_export(row: Expect, base_db: Callable[[], str], tmp_path: Path) -> None:
    db = base_db()
    assert row.code is not None and row.needle is not None
    code, out, err = cli("import", corpus_file(row.file, tmp_path), "--db", db)
    assert code == int(row.code), f"exit {code}: {out}{err}"
    flat = re.sub(r"[\s│╭╮╰╯─]+", " ", err)  # the usage error's box wraps long lines
    assert row.needle in flat, err
    assert stored(db) == {}


# --------------------------------------------------------------------------------------------
# the real command, on the largest files
# --------------------------------------------------------------------------------------------


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POINTBOOK_DB"}
    return subprocess.run(
        [sys.executable, "-m", "pointbook", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**env, "NO_COLOR": "1", "COLUMNS": "200"},
    )


@pytest.mark.timeout(300)
def test_the_real_command_on_the_largest_files(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    publish_base(str(db))
    big = corpus_file("generated/ten-mb-line.jsonl", tmp_path)
    proc = _run("ingest", big, "--db", db, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("accepted 2 · duplicates 0 · rejected 1 · entries 2"), proc.stdout
    assert f"{big}:2: event/invalid: line is longer than 1000000 bytes" in proc.stderr
    assert "Traceback" not in proc.stderr

    packs = sorted((CORPUS / "packs").glob("*.yaml"))
    proc = _run("pack", "lint", *packs, "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    with_errors = {
        f["file"] for f in json.loads(proc.stdout)["findings"] if f["severity"] == "error"
    }
    assert with_errors == {str(p) for p in packs}

    # An unsafe loader would have run `touch pointbook-corpus-pwned` in the working directory.
    assert "python/object/apply" in proc.stdout
    assert not (tmp_path / "pointbook-corpus-pwned").exists()


# --------------------------------------------------------------------------------------------
# the HTTP API
# --------------------------------------------------------------------------------------------

ROLES = ("issuer", "operator", "reviewer", "subject", "auditor")


@pytest.fixture
def api(store_factory: Callable[[], Store]) -> Iterator[tuple[TestClient, Ledger]]:
    ledger = Ledger(store_factory(), now=lambda: NOW)
    ledger.publish(load_pack_file(BASE))
    tokens = {
        f"t-{role}": Principal(role, DOMAIN, "alice" if role == "subject" else None, role)
        for role in ROLES
    }
    lookup = {hash_token(t): p for t, p in tokens.items()}
    app = create_app(ledger, lookup.get, lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, ledger


def _authorization(token: str) -> str:
    if token in ROLES:
        return f"Bearer t-{token}"
    token = _cell(token.split(" (")[0])
    return "Bearer " + "x" * 10_000 if "…" in token else token


def _send(client: TestClient, call: Call, tmp: Path) -> tuple[int, str, str]:
    path = call.path if call.path.startswith("/v1/") else f"/v1/domains/{DOMAIN}{call.path}"
    headers = {"Authorization": _authorization(call.token)}
    if call.content_type:
        headers["Content-Type"] = call.content_type
    body = corpus_file(call.file, tmp).read_bytes() if call.file else None
    r = client.request(call.method, path, content=body, headers=headers)
    return r.status_code, r.headers.get("content-type", ""), r.text


@pytest.mark.timeout(120)
def test_requests(api: tuple[TestClient, Ledger], tmp_path: Path) -> None:
    client, ledger = api
    sent: dict[tuple[object, ...], tuple[int, str, str]] = {}
    for call in CALLS:
        key = (call.file, call.method, call.path, call.token, call.content_type)
        if key not in sent:  # rows about one request share its answer
            sent[key] = _send(client, call, tmp_path)
        status, ctype, text = sent[key]
        where = f"{call.method} {call.path} {call.file or ''}"
        assert status == call.status, f"{where}: {status} {text[:300]}"
        assert call.needle in (json.loads(text)["detail"] if status >= 400 else text), (
            f"{where}: {text[:300]} lacks {call.needle!r}"
        )
        if status >= 400:
            assert ctype.startswith("application/problem+json"), f"{where}: {ctype}"
    found = ledger.store.subject_events(DOMAIN, ledger.store.subjects(DOMAIN))
    assert {e.id for events in found.values() for e in events} == {"ok-19", "ok-25"}, (
        "only the good items of the accepted request land"
    )
    assert ledger.verify().ok


@pytest.mark.timeout(120)
def test_pack_files_through_the_api(api: tuple[TestClient, Ledger], tmp_path: Path) -> None:
    """Each refused pack file, POSTed for publication: a 4xx naming its line and problem, and
    the domain keeps exactly its one published version."""
    client, ledger = api
    for row in PACK_ROWS:
        assert row.needle is not None
        body = corpus_file(row.file, tmp_path).read_bytes()
        r = client.post(
            f"/v1/packs/{DOMAIN}",
            content=body,
            headers={"Authorization": "Bearer t-operator", "Content-Type": "application/yaml"},
        )
        assert 400 <= r.status_code < 500, f"{row.file}: {r.status_code} {r.text[:300]}"
        assert r.headers["content-type"].startswith("application/problem+json")
        detail = r.json()["detail"]
        assert row.needle in detail, f"{row.file}: {detail}"
        if row.line is not None:
            assert f":{row.line}:" in detail or f"line {row.line}," in detail, detail
    assert [r.version for r in ledger.store.pack_rows(DOMAIN)] == ["1"]
    assert ledger.verify().ok


# --------------------------------------------------------------------------------------------
# a large mixed file: the corpus's faults, seeded, among good lines
# --------------------------------------------------------------------------------------------

SOAK = os.environ.get("POINTBOOK_SOAK") == "1"
MIXED_LINES = 200_000 if SOAK else 2_000
MIXED_SEED = 20240601


def _mixed_file(path: Path, n: int, seed: int) -> tuple[dict[int, str], dict[str, int]]:
    """``n`` lines, about one in ten broken in one of the corpus's ways. Returns the broken
    lines' codes by line number, and each subject's expected balance as of the end of 2021:
    every event is dated in the first half of 2021, so each loss still counts then (littering
    for 1 year, speeding for 2) and, with only losses, the balance is 100 minus their sum,
    floored at 0 (docs/rule-packs.md: each step is clamped as it happens)."""
    import random

    rng = random.Random(seed)
    lines: list[bytes] = []
    broken: dict[int, str] = {}
    losses: dict[str, int] = {}
    good: list[tuple[str, bytes]] = []  # (id, line) of lines that land, for conflicts
    for number in range(1, n + 1):
        subject = f"m{rng.randrange(n // 20 + 1)}"
        when = f"2021-{rng.randint(1, 6):02d}-{rng.randint(1, 28):02d}"
        kind = rng.choice(["littering", "speeding"])
        attrs = {"over_kmh": rng.randint(1, 200)} if kind == "speeding" else {}
        base = {"domain": DOMAIN, "subject": subject, "type": kind, "occurred_at": when}
        fault = rng.randrange(10) == 0
        if not fault:
            eid = f"ok-mix-{number}"
            line = json.dumps({"id": eid, **base, "attributes": attrs}).encode()
            lines.append(line)
            good.append((eid, line))
            losses[subject] = losses.get(subject, 0) + POINTS[kind]
            continue
        eid = f"bad-mix-{number}"
        line = json.dumps({"id": eid, **base, "attributes": attrs}).encode()
        how = rng.randrange(7)
        if how == 0:
            line, code = line[: len(line) // 2], "event/invalid"  # truncated
        elif how == 1:
            line, code = line.replace(b'"subject": "', b'"subject": "\xff'), "event/invalid"
        elif how == 2:
            line = json.dumps({"id": eid, **base, "type": "littering"}).encode()
            line, code = line[:-1] + b', "attributes": {"weight_kg": NaN}}', "event/invalid"
        elif how == 3:
            line, code = line.replace(kind.encode(), b"loitering"), "event/unknown-type"
        elif how == 4:
            line, code = line.replace(when.encode(), b"0001-01-01"), "event/time"
        elif how == 5:
            line, code = line.replace(b'{"id": ', b'{"id": "x", "id": ', 1), "event/invalid"
        elif good:  # an id already reported, with other content
            eid, first = rng.choice(good)
            line, code = (
                first.replace(b'"occurred_at": "2021', b'"occurred_at": "2020'),
                "event/conflict",
            )
        else:
            line, code = line[:10], "event/invalid"
        lines.append(line)
        broken[number] = code
    path.write_bytes(b"\n".join(lines) + b"\n")
    return broken, {s: max(0, 100 + loss) for s, loss in losses.items()}


@pytest.mark.timeout(3600 if SOAK else 120)
def test_a_large_mixed_file(base_db: Callable[[], str], tmp_path: Path) -> None:
    """Figures for docs/reliability.md: seed, lines, broken lines, seconds."""
    import time

    path = tmp_path / "mixed.jsonl"
    broken, balances = _mixed_file(path, MIXED_LINES, MIXED_SEED)
    db = base_db()
    rejects = tmp_path / "rejects.jsonl"
    started = time.perf_counter()
    code, out, err = cli("ingest", path, "--db", db, "--rejects", rejects, "--batch-size", "500")
    seconds = time.perf_counter() - started
    assert code == 1, err
    got = {
        r["line"]: r["code"]
        for r in map(json.loads, rejects.read_text(encoding="utf-8").splitlines())
    }
    assert got == broken, f"seed {MIXED_SEED}: rejects differ from the lines broken"
    good = {m.decode() for m in OK_ID.findall(path.read_bytes())}
    assert set(stored(db)) == good
    summary = SUMMARY.fullmatch(out.strip())
    assert summary, out
    assert int(summary["accepted"].replace(",", "")) == len(good)
    assert int(summary["rejected"].replace(",", "")) == len(broken)
    ledger = Ledger.open(db)
    try:
        tz = ledger.versions(DOMAIN)[0].tz
        as_of = end_of_day(date(2021, 12, 31), tz)
        points = {s.subject: s.points for s in ledger.states(DOMAIN, as_of)}
    finally:
        ledger.close()
    assert points == balances, f"seed {MIXED_SEED}: balances differ from the model"
    print(
        f"\nmixed file: seed {MIXED_SEED}, {MIXED_LINES:,} lines, {len(broken):,} broken, "
        f"{len(good):,} good, {len(balances):,} subjects, ingest {seconds:.1f} s"
    )
