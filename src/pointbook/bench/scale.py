"""`bench scale`: does ingest slow down as the ledger grows?

At each size, the seeded workload of that many events (the same generator as `bench ingest`,
by default one subject per ten events, so a subject's history stays the same length) is
ingested into a fresh store through the same timed path as `bench ingest` (`time_engine`:
`Ledger.ingest`, batches, decisions refreshed), without that command's baselines. Reported
per size: seconds, events/s and microseconds per event, wall clock and the bench process's CPU
time (user and system: on a shared machine, less sensitive to what else runs; for PostgreSQL
the server's CPU is not in it); overall, the ratio of the largest size's time per event to
the smallest's (the issue's target: within 15%, a ratio ≤ 1.15), on both clocks. With a plot
file, microseconds per event against size, as SVG (matplotlib, Agg).
"""

from __future__ import annotations

import gc
import resource
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointbook.bench import fresh_store, generate_workload, open_ledger, peak_rss_mb, write_workload
from pointbook.bench.ingest import time_engine

__all__ = ["DEFAULT_SIZES", "TARGET_RATIO", "plot_scale", "run_scale"]

DEFAULT_SIZES = (1_000_000, 2_000_000, 4_000_000)
EVENTS_PER_SUBJECT = 10
TARGET_RATIO = 1.15
WARMUP_EVENTS = 1000


def _cpu() -> float:
    """This process's CPU time so far (user and system), in seconds."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _one(events: int, subjects: int, backend: str, seed: int, batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pointbook-bench-") as tmp:
        folder = Path(tmp)
        path = folder / "events.jsonl"
        n = write_workload(path, generate_workload(events, subjects, seed))
        gc.collect()
        with fresh_store(backend, folder) as store:
            ledger = open_ledger(store)
            cpu0 = _cpu()
            report, seconds = time_engine(ledger, path, batch_size)
            cpu = _cpu() - cpu0
    return {
        "events": n,
        "subjects": subjects,
        "accepted": report.accepted,
        "rejected": len(report.rejected),
        "entries": report.entries,
        "seconds": seconds,
        "events_per_s": report.accepted / seconds,
        "us_per_event": seconds / report.accepted * 1e6,
        "cpu_seconds": cpu,
        "cpu_us_per_event": cpu / report.accepted * 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_scale(
    sizes: Sequence[int] = DEFAULT_SIZES,
    subjects: int | None = None,
    backend: str = "sqlite",
    seed: int = 2020,
    batch_size: int = 10_000,
    plot: Path | None = None,
) -> dict[str, Any]:
    """One `bench scale` run over ``sizes`` (events), smallest first; the JSON-ready result.
    ``subjects``: a fixed population at every size instead of one subject per ten events."""
    ordered = sorted(set(sizes))
    # One small ingest first, not reported: one-time costs (imports, caches, the rules'
    # compiled expressions) must not land on the smallest size.
    _one(WARMUP_EVENTS, max(2, WARMUP_EVENTS // EVENTS_PER_SUBJECT), backend, seed, batch_size)
    runs = [
        _one(
            size,
            subjects or max(2, size // EVENTS_PER_SUBJECT),
            backend,
            seed,
            batch_size,
        )
        for size in ordered
    ]
    result: dict[str, Any] = {
        "workload": "scale",
        "backend": backend,
        "seed": seed,
        "batch_size": batch_size,
        "events_per_subject": None if subjects else EVENTS_PER_SUBJECT,
        "sizes": runs,
        "ratio_largest_to_smallest": runs[-1]["us_per_event"] / runs[0]["us_per_event"],
        "cpu_ratio_largest_to_smallest": runs[-1]["cpu_us_per_event"] / runs[0]["cpu_us_per_event"],
        "target_ratio": TARGET_RATIO,
        "plot": None if plot is None else str(plot),
    }
    if plot is not None:
        plot_scale(result, plot)
    return result


def plot_scale(result: dict[str, Any], path: Path) -> None:
    """µs per event against size (events), wall clock and CPU time, as SVG; each clock's
    target (1.15 × its value at the smallest size) dashed in its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "pointbook-bench-scale"  # the same figures, the same file
    runs = result["sizes"]
    xs = [r["events"] for r in runs]
    ratio = result["target_ratio"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    try:
        top = 0.0
        lines = (  # wall clock labelled above its points, CPU time below
            ("us_per_event", "wall clock", "#1f5f99", "o", 7),
            ("cpu_us_per_event", "CPU time", "#c0392b", "s", -13),
        )
        for key, label, colour, marker, offset in lines:
            ys = [r[key] for r in runs]
            ax.plot(xs, ys, marker=marker, color=colour, label=f"engine, {label}")
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(
                    f"{y:,.0f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, offset),
                    ha="center",
                    fontsize=8,
                    color=colour,
                )
            ax.axhline(
                ys[0] * ratio,
                linestyle="--",
                color=colour,
                linewidth=0.8,
                alpha=0.6,
                label=f"target, {label}: ≤ {ratio:.2f} × the smallest size",
            )
            top = max(top, *ys, ys[0] * ratio)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.minorticks_off()
        ax.set_ylim(0, top * 1.2)
        ax.set_xlabel("events ingested (log scale)")
        ax.set_ylabel("µs per event")
        ax.set_title(
            f"bench scale ({result['backend']}, seed {result['seed']}, "
            f"batches of {result['batch_size']:,})",
            fontsize=10,
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
