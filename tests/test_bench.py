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

N, M = 2000, 200
NAIVE_CAP = "300"


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
    return bench(tmp_path, *args, *extra, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    return {
        "in_order": ingest(tmp),
        "late": ingest(tmp, "--late-fraction", "0.05"),
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
    assert r["ratio_to_raw"] > 0
    assert r["ratio_to_raw"] == pytest.approx(r["events_per_s"] / r["raw_insert_rows_per_s"])
    assert r["speedup_vs_naive"] > 0
    assert r["speedup_vs_naive"] == pytest.approx(r["events_per_s"] / r["naive_events_per_s"])
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
