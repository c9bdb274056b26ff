"""`pointbook bench`: the figures are there and consistent. Correctness only: no assertion on
any speed (a slow or busy machine must not fail the suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pointbook.bench import generate_workload
from pointbook.bench.peer import PEER_MISSING, peer_installed

N, M = 2000, 200
NAIVE_CAP = "300"
PEER_CAP = 40  # pinax-points spends tens of ms per award: a short prefix


def bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pointbook", "bench", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON object per workload"
    result: dict[str, Any] = json.loads(lines[0])
    return result


def ingest(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    args = ["ingest", "--events", str(N), "--subjects", str(M), "--naive-cap", NAIVE_CAP]
    args += ["--peer-cap", str(PEER_CAP)]
    return bench(tmp_path, *args, *extra, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    return {
        "in_order": ingest(tmp),
        "late": ingest(tmp, "--late-fraction", "0.05", "--no-peer"),
        "recompute": bench(tmp, "recompute", "--events", str(N), "--subjects", str(M)),
    }


def check_ingest(r: dict[str, Any]) -> None:
    for key in (
        "events",
        "seconds",
        "events_per_s",
        "raw_insert_rows_per_s",
        "ratio_to_raw",
        "naive_events_per_s",
        "speedup_vs_naive",
        "peak_rss_mb",
    ):
        assert key in r, key
    assert r["workload"] == "ingest"
    assert (r["events"], r["accepted"], r["duplicates"], r["rejected"]) == (N, N, 0, 0)
    assert r["raw_rows"] == N
    assert r["naive_events"] == int(NAIVE_CAP)
    assert r["entries"] > 0
    for key in ("seconds", "events_per_s", "raw_insert_rows_per_s", "naive_events_per_s"):
        assert r[key] > 0, key
    assert r["events_per_s"] == pytest.approx(N / r["seconds"])
    # One process's CPU over the timed part: some, and no more than its cores could give.
    assert 0 < r["cpu_seconds"] <= r["seconds"] * (os.cpu_count() or 1)
    assert r["ratio_to_raw"] > 0
    assert r["ratio_to_raw"] == pytest.approx(r["events_per_s"] / r["raw_insert_rows_per_s"])
    assert r["speedup_vs_naive"] > 0
    assert r["speedup_vs_naive"] == pytest.approx(r["events_per_s"] / r["naive_events_per_s"])
    # The raw-ledger baseline re-inserts what the ingest stored: at least each event and entry
    # row with its audit record (docs/benchmarks.md).
    assert r["raw_ledger_rows"] >= 2 * (N + r["entries"])
    assert r["raw_ledger_rows_per_s"] == pytest.approx(
        r["raw_ledger_rows"] / r["raw_ledger_seconds"]
    )
    assert r["ratio_to_raw_ledger"] == pytest.approx(r["raw_ledger_seconds"] / r["seconds"])
    assert r["peak_rss_mb"] > 0
    assert r["balances"], "a few subjects' balances, to compare runs"


def test_ingest_reports_every_figure_and_accepts_every_event(
    runs: dict[str, dict[str, Any]],
) -> None:
    check_ingest(runs["in_order"])
    assert runs["in_order"]["backend"] == "sqlite"


def test_late_arrivals_give_the_same_balances_as_date_order(
    runs: dict[str, dict[str, Any]],
) -> None:
    in_order, late = runs["in_order"], runs["late"]
    check_ingest(late)
    assert late["late_fraction"] == 0.05
    assert late["entries"] == in_order["entries"]
    assert len(in_order["balances"]) >= 6
    assert {k.split("/")[0] for k in in_order["balances"]} == {"fr-driving", "forum"}
    assert late["balances"] == in_order["balances"]


def test_recompute_reports_every_figure(runs: dict[str, dict[str, Any]]) -> None:
    r = runs["recompute"]
    assert r["workload"] == "recompute"
    assert (r["events"], r["accepted"], r["rejected"]) == (N, N, 0)
    assert 0 < r["subjects"] <= M
    assert 0 < r["groupby_subjects"] <= r["subjects"]
    assert r["entries"] == runs["in_order"]["entries"]
    for key in ("seconds", "subjects_per_s", "groupby_seconds", "groupby_subjects_per_s"):
        assert r[key] > 0, key
    assert r["subjects_per_s"] == pytest.approx(r["subjects"] / r["seconds"])
    assert r["ratio_to_groupby"] > 0
    assert r["ratio_to_groupby"] == pytest.approx(r["subjects_per_s"] / r["groupby_subjects_per_s"])
    # The compiled re-score covers both reference packs and gives every subject's points as
    # Ledger.states does.
    assert r["kernel_domains"] == ["forum", "fr-driving"]
    assert r["kernel_same_points"] is True
    assert r["kernel_seconds"] > 0
    assert r["kernel_ratio_to_groupby"] == pytest.approx(
        r["kernel_subjects_per_s"] / r["groupby_subjects_per_s"]
    )
    # The stricter baseline: the same group-by over rows read into Arrow, the same sums.
    assert r["groupby_arrow_same_sums"] is True
    assert r["groupby_arrow_seconds"] > 0
    assert r["kernel_ratio_to_groupby_arrow"] == pytest.approx(
        r["kernel_subjects_per_s"] / (r["groupby_subjects"] / r["groupby_arrow_seconds"])
    )


def test_ingest_on_postgres(tmp_path: Path, pg_url: str) -> None:
    r = ingest(tmp_path, "--backend", "postgres", env={"POINTBOOK_BENCH_PG": pg_url})
    check_ingest(r)
    assert r["backend"] == "postgres"


def test_an_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pointbook", "bench", "ingest", "--backend", "oracle"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "--backend" in done.stderr


# -- the pinax-points peer -------------------------------------------------------------------
def peer_sum(events: int) -> int:
    """The points of the workload's first ``events`` events by the naive reference's rules."""
    from pointbook.bench.naive import _score, _versions

    versions = _versions()
    found = generate_workload(N, M, 2020)[:events]
    return sum(_score(versions, e, None)[1] for e in found)


def test_ingest_reports_the_peer_when_installed_and_says_so_when_not(
    runs: dict[str, dict[str, Any]],
) -> None:
    r = runs["in_order"]
    if not peer_installed():
        assert r["peer"] == PEER_MISSING
        assert "peer_events" not in r
        return
    assert r["peer"].startswith("pinax-points 2.0.0 (Django 3.2.")
    assert r["peer_events"] == PEER_CAP
    assert r["peer_seconds"] > 0
    assert r["peer_events_per_s"] == pytest.approx(PEER_CAP / r["peer_seconds"])
    assert r["speedup_vs_peer"] == pytest.approx(r["events_per_s"] / r["peer_events_per_s"])
    # pinax's own totals after the transaction: the same points the rules give
    assert r["peer_points"] == peer_sum(PEER_CAP)


def test_no_peer_skips_it(runs: dict[str, dict[str, Any]]) -> None:
    late = runs["late"]
    assert late["peer"] == "not run (--no-peer)"
    assert not {"peer_events", "peer_events_per_s", "speedup_vs_peer"} & set(late)


def test_without_the_bench_extra_ingest_says_how_to_install_the_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pointbook.bench import ingest as bench_ingest

    monkeypatch.setattr(bench_ingest, "peer_installed", lambda: False)
    r = bench_ingest.run_ingest(300, 30, naive_cap=20)
    assert r["peer"] == 'not installed (pip install -e ".[bench]")'
    assert not {"peer_events", "peer_events_per_s", "speedup_vs_peer"} & set(r)
    assert (r["accepted"], r["naive_events"]) == (300, 20)


def test_django_is_imported_only_by_the_peer() -> None:
    import re

    imports = re.compile(
        r"^\s*(import|from)\s+(django|pinax)\b|import_module\(\s*[\"'](django|pinax)"
    )
    src = Path(__file__).parents[1] / "src" / "pointbook"
    users = [
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if any(imports.search(line) for line in p.read_text(encoding="utf-8").splitlines())
    ]
    assert users == ["bench/peer.py"]


# -- bench whatif -----------------------------------------------------------------------------
def whatif_bench(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "pointbook", "bench", "whatif", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.strip().splitlines()]


def test_whatif_reports_each_domain_against_one_fold_and_reads_a_given_store(
    tmp_path: Path,
) -> None:
    from pointbook.bench import open_ledger, write_workload
    from pointbook.bench.ingest import time_engine
    from pointbook.store import SQLiteStore

    built = whatif_bench(tmp_path, "--events", str(N), "--subjects", str(M))
    assert [r["domain"] for r in built] == ["forum", "fr-driving"], "one object per domain"
    for r in built:
        assert (r["workload"], r["backend"], r["store"]) == ("whatif", "sqlite", "built")
        assert r["as_of"] == "2025-12-31T23:59:59.999999+00:00"
        assert 0 < r["subjects"] <= r["one_fold_subjects"] <= M
        assert 0 <= r["reused"] <= r["subjects"] and r["subjects_changed"] <= r["subjects"]
        for key in ("seconds", "cpu_seconds", "one_fold_seconds", "one_fold_cpu_seconds"):
            assert r[key] > 0, key
        assert r["events_per_s"] == pytest.approx(r["events"] / r["seconds"])
        assert r["ratio_to_one_fold"] == pytest.approx(r["seconds"] / r["one_fold_seconds"])
        assert r["cpu_ratio_to_one_fold"] == pytest.approx(
            r["cpu_seconds"] / r["one_fold_cpu_seconds"]
        )
        assert r["peak_rss_mb"] > 0
    forum, fr = built
    assert sum(r["events"] for r in built) == N, "every event is by the end of 2025"
    assert 0 < forum["reused"] < forum["subjects"], "a rules-only change: some folds reused"
    assert forum["subjects_changed"] > 0, "the raised penalty reaches the workload's events"
    assert fr["reused"] == 0, "a moved threshold: no subject's fold is the same"
    # Both reference packs are ones the compiled fold models: each what-if is timed against
    # the reference fold's, and gives the same figures.
    for r in built:
        assert r["path"] == "kernel"
        assert r["same_as_fold_path"] is True
        assert r["speedup_vs_fold_path"] == pytest.approx(r["fold_path_seconds"] / r["seconds"])

    # The same workload in a store built apart, given with --db: the same figures, nothing
    # written to it.
    db = tmp_path / "given.db"
    events = tmp_path / "events.jsonl"
    write_workload(events, generate_workload(N, M, 2020))
    ledger = open_ledger(SQLiteStore(db))
    time_engine(ledger, events, 10_000)
    root = ledger.store.audit_root()
    ledger.close()
    size, mtime = db.stat().st_size, db.stat().st_mtime_ns
    given = whatif_bench(tmp_path, "--db", str(db))
    same = ("domain", "events", "subjects", "reused", "subjects_changed", "one_fold_subjects")
    assert [{k: r[k] for k in same} for r in given] == [{k: r[k] for k in same} for r in built]
    assert {r["store"] for r in given} == {"given"}
    only = whatif_bench(tmp_path, "--db", str(db), "--domain", "fr-driving")
    assert [r["domain"] for r in only] == ["fr-driving"]
    assert {k: only[0][k] for k in same} == next(
        {k: r[k] for k in same} for r in built if r["domain"] == "fr-driving"
    )
    assert (db.stat().st_size, db.stat().st_mtime_ns) == (size, mtime)
    store = SQLiteStore(db)
    try:
        assert store.audit_root() == root
    finally:
        store.close()


def test_whatif_refuses_a_store_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    done = subprocess.run(
        [sys.executable, "-m", "pointbook", "bench", "whatif", "--db", str(missing)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no such store" in done.stderr
    assert not missing.exists(), "never created"


# -- bench query ------------------------------------------------------------------------------
def check_percentiles(r: dict[str, Any], prefix: str, mean: bool = True) -> None:
    p50, p99, top = (r[f"{prefix}_{k}_ms"] for k in ("p50", "p99", "max"))
    assert 0 < p50 <= p99 <= top, prefix
    if mean:
        assert 0 < r[f"{prefix}_mean_ms"] <= top, prefix


def test_query_reports_library_and_http_figures_with_their_baselines(tmp_path: Path) -> None:
    args = ["--subjects", "100", "--entries", "800", "--samples", "40"]
    r = bench(tmp_path, "query", *args, "--clients", "3", "--seconds", "1")
    assert r["workload"] == "query"
    assert (r["events"], r["accepted"], r["rejected"]) == (800, 800, 0)
    assert 0 < r["entries"] <= 800
    assert 0 < r["subjects_with_events"] <= 100
    assert r["store_mb"] > 0
    assert r["build_events_per_s"] == pytest.approx(800 / r["build_seconds"])
    assert 1 <= r["subject_events_mean"] <= r["subject_events_max"]
    for prefix in ("balance", "explain", "raw_balance"):
        check_percentiles(r, prefix)
    for prefix in ("balance_cpu", "explain_cpu"):
        assert 0 < r[f"{prefix}_p50_ms"] <= r[f"{prefix}_p99_ms"], prefix
    assert r["balance_ratio_to_raw"] > 0
    assert (r["http_domain"], r["http_clients"]) == ("forum", 3)
    for prefix in ("http_balance", "http_floor"):
        check_percentiles(r, prefix, mean=False)
        assert r[f"{prefix}_requests"] > 0 and r[f"{prefix}_errors"] == 0, prefix
        assert r[f"{prefix}_requests_per_s"] > 0, prefix
    assert r["http_seconds"] > 0 and r["http_warmup_s"] == 0.25
    assert r["http_points_match"] is True, "the API answers the library's balances"
    assert r["http_server_rss_mb"] > 0
    assert r["targets"] == {
        "balance_p99_ms": 1.0,
        "explain_p99_ms": 5.0,
        "http_balance_p99_ms": 10.0,
    }
    assert "profile" not in r


def test_query_reads_an_existing_store_without_building_one(tmp_path: Path) -> None:
    from pointbook.bench import generate_workload, open_ledger, write_workload
    from pointbook.intake import read_records
    from pointbook.store.sqlite import SQLiteStore

    path, db = tmp_path / "events.jsonl", tmp_path / "kept.db"
    write_workload(path, generate_workload(400, 60, 7))
    ledger = open_ledger(SQLiteStore(db))
    with path.open("rb") as f:
        ledger.ingest(read_records(f, "jsonl"), 100, refresh=True)
    records = ledger.store.verify().records
    ledger.close()
    args = ["--samples", "20", "--clients", "2", "--seconds", "1", "--db", str(db)]
    r = bench(tmp_path, "query", *args)
    assert (r["store"], r["events"], r["accepted"]) == (str(db), 400, 400)
    assert "build_seconds" not in r
    assert r["subjects"] == r["subjects_with_events"] <= 60
    check_percentiles(r, "balance")
    assert r["http_points_match"] is True
    # The HTTP load's token is gone again: the store keeps only the records of both.
    store = SQLiteStore(db)
    try:
        assert store.conn.execute("SELECT COUNT(*) FROM pb_tokens").fetchone() == (0,)
        after = store.verify()
        assert after.ok and after.records == records + 2
        kinds = store.conn.execute("SELECT kind FROM pb_audit ORDER BY seq DESC LIMIT 2")
        assert [k for (k,) in kinds] == ["token-removal", "token"]
    finally:
        store.close()


def test_a_given_store_is_opened_as_it_is_read_only_or_not(tmp_path: Path) -> None:
    from pointbook.bench import BenchStoreError, open_existing
    from pointbook.errors import StoreError
    from pointbook.store.sqlite import SQLiteStore

    missing = tmp_path / "missing.db"
    with pytest.raises(BenchStoreError, match="no such store"):
        open_existing(str(missing), read_only=False)
    assert not missing.exists(), "never created"
    db = tmp_path / "kept.db"
    SQLiteStore(db).close()
    store = open_existing(str(db))
    try:
        with pytest.raises(StoreError, match="readonly"):
            store.insert_token("h" * 64, "reviewer", "forum", None, "bench")
    finally:
        store.close()
    store = open_existing(f"sqlite:///{db}", read_only=False)
    try:
        store.insert_token("h" * 64, "reviewer", "forum", None, "bench")
        assert store.delete_token("forum", "h" * 64) and store.verify().ok
    finally:
        store.close()


def test_percentiles_are_nearest_rank() -> None:
    from pointbook.bench.query import percentiles

    got = percentiles([i * 1_000_000 for i in range(1, 101)], "x")
    assert got == {"x_p50_ms": 50.0, "x_p99_ms": 99.0, "x_mean_ms": 50.5, "x_max_ms": 100.0}


# -- bench scale ------------------------------------------------------------------------------
def test_scale_reports_each_size_the_ratio_and_a_plot(tmp_path: Path) -> None:
    plot = tmp_path / "img" / "scale.svg"
    r = bench(tmp_path, "scale", "--sizes", "600,300", "--plot", str(plot))
    assert r["workload"] == "scale"
    assert [s["events"] for s in r["sizes"]] == [300, 600], "smallest first"
    assert [s["subjects"] for s in r["sizes"]] == [30, 60], "one subject per ten events"
    for s in r["sizes"]:
        assert s["accepted"] == s["events"] and s["rejected"] == 0
        assert 0 < s["entries"] <= s["events"]
        assert s["events_per_s"] == pytest.approx(s["events"] / s["seconds"])
        assert s["us_per_event"] == pytest.approx(1e6 / s["events_per_s"])
        assert s["cpu_seconds"] > 0
        assert s["cpu_us_per_event"] == pytest.approx(s["cpu_seconds"] / s["events"] * 1e6)
    small, large = r["sizes"][0], r["sizes"][-1]
    assert r["ratio_largest_to_smallest"] == pytest.approx(
        large["us_per_event"] / small["us_per_event"]
    )
    assert r["cpu_ratio_largest_to_smallest"] == pytest.approx(
        large["cpu_us_per_event"] / small["cpu_us_per_event"]
    )
    assert r["target_ratio"] == 1.15
    assert r["plot"] == str(plot)
    text = plot.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "µs per event" in text or "&#181;s per event" in text


def test_scale_with_a_fixed_population() -> None:
    from pointbook.bench.scale import run_scale

    r = run_scale([200], subjects=15)
    assert [s["subjects"] for s in r["sizes"]] == [15]
    assert r["events_per_subject"] is None
    assert r["ratio_largest_to_smallest"] == r["cpu_ratio_largest_to_smallest"] == 1.0
    assert r["plot"] is None


@pytest.mark.parametrize("sizes", ["", "10,x", "0"])
def test_bad_sizes_are_a_usage_error(sizes: str) -> None:
    from typer.testing import CliRunner

    from pointbook.cli import app

    done = CliRunner().invoke(app, ["bench", "scale", "--sizes", sizes])
    assert done.exit_code == 2
    assert "--sizes" in done.output


def test_stages_share_out_the_engines_cpu(tmp_path: Path) -> None:
    """`bench ingest --stages`: every stage the ingest passes through took some CPU; the
    top-level stages and `other` add up to the engine's CPU; what is spent inside the writes
    fits inside them."""
    from pointbook.bench.stages import INNER, TOP

    r = ingest(tmp_path, "--stages", "--no-peer")
    check_ingest(r)
    spent = r["stages"]
    top, inner = [k for k, _ in TOP], [k for k, _ in INNER]
    assert set(spent) == {*top, *inner, "other"}
    for key in [*top, *inner]:
        # Every event was checked, hashed, looked up, judged and written; every subject folded.
        assert spent[key] > 0, key
    assert spent["other"] > 0  # reading the lines
    assert sum(spent[k] for k in top) + spent["other"] == pytest.approx(r["cpu_seconds"])
    assert spent["rows"] + spent["audit"] <= spent["write_batch"] + spent["_write_refresh"]


def test_timed_stages_put_every_function_back(tmp_path: Path) -> None:
    import pointbook.ledger as ledger_module
    from pointbook.bench.stages import timed_stages
    from pointbook.ledger import Ledger
    from pointbook.store import SQLiteStore, audit_sql, rows

    def current() -> list[object]:
        return [
            Ledger.check_event,
            Ledger._write_refresh,
            ledger_module.content_hash,
            ledger_module.evaluate_subject,
            SQLiteStore.write_batch,
            SQLiteStore.subject_events,
            rows.event_rows,
            audit_sql.append,
        ]

    before = current()
    led = Ledger(SQLiteStore(tmp_path / "s.db"))
    with timed_stages(led):
        assert all(a is not b for a, b in zip(current(), before, strict=True))
    assert current() == before
    led.close()
