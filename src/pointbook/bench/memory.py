"""`bench memory`: a file far larger than memory through `pointbook ingest`, its peak RSS measured.

The workload is the one `bench ingest` uses (same packs, same shares, same generator), but
written without ever holding it: generated in chunks, each chunk sorted by date and spilled
to disk, the chunks merged into one date-ordered JSON Lines file. The engine then runs as
its own process, the real CLI (`pointbook ingest FILE --db …`), so its peak resident memory
(`getrusage(RUSAGE_CHILDREN)`) is the engine's alone, not the generator's.
"""

from __future__ import annotations

import heapq
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from pointbook.bench import DOMAINS
from pointbook.demo import packs_dir, synthetic_event

__all__ = ["run_memory", "stream_workload"]

CHUNK = 250_000


def _chunk_events(
    rng: random.Random,
    size: int,
    start: dict[str, int],
    names: dict[str, list[str]],
    weights: dict[str, list[float]],
) -> list[tuple[str, str]]:
    """One chunk: (sort key, JSON line) pairs, 90% forum and 10% fr-driving as `bench ingest`."""
    out: list[tuple[str, str]] = []
    for domain, (_, _, ev_share) in DOMAINS.items():
        n = round(size * ev_share)
        for subject in rng.choices(names[domain], weights=weights[domain], k=n):
            eid = f"{domain}-{start[domain]:09d}"
            start[domain] += 1
            e = synthetic_event(rng, domain, eid, subject)
            out.append((f"{e['occurred_at'][:10]}\t{eid}", json.dumps(e, separators=(",", ":"))))
    out.sort()
    return out


def stream_workload(
    path: Path,
    events: int,
    subjects: int,
    seed: int = 2020,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write about ``events`` seeded events in date order to ``path``; memory stays one chunk."""
    rng = random.Random(seed)
    names: dict[str, list[str]] = {}
    weights: dict[str, list[float]] = {}
    for domain, (_, subj_share, _) in DOMAINS.items():
        n_subj = max(1, round(subjects * subj_share))
        weights[domain] = [min(rng.paretovariate(1.5), 12.0) for _ in range(n_subj)]
        names[domain] = [f"{domain[:2]}-{i:07d}" for i in range(n_subj)]
    start = dict.fromkeys(DOMAINS, 0)
    written = 0
    with tempfile.TemporaryDirectory(prefix="pointbook-spill-", dir=path.parent) as tmp:
        spills: list[Path] = []
        left = events
        while left > 0:
            size = min(CHUNK, left)
            chunk = _chunk_events(rng, size, start, names, weights)
            spill = Path(tmp) / f"{len(spills):05d}.tsv"
            with spill.open("w", encoding="utf-8") as f:
                for key, line in chunk:
                    f.write(f"{key}\t{line}\n")
            spills.append(spill)
            left -= size
            if progress:
                progress(len(chunk))
            del chunk
        with ExitStack() as stack, path.open("w", encoding="utf-8") as out:
            files = [stack.enter_context(p.open(encoding="utf-8")) for p in spills]
            for merged in heapq.merge(*(_lines(f) for f in files)):
                out.write(merged.split("\t", 2)[2])
                written += 1
    return written


def _lines(f: IO[str]) -> Iterator[str]:
    yield from f


def run_memory(
    events: int,
    subjects: int,
    seed: int = 2020,
    batch_size: int = 10_000,
    folder: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Generate the file, ingest it with the CLI in a child process; the JSON-ready result."""
    with tempfile.TemporaryDirectory(prefix="pointbook-bench-", dir=folder) as tmp:
        where = Path(tmp)
        path = where / "events.jsonl"
        t0 = time.perf_counter()
        n = stream_workload(path, events, subjects, seed, progress)
        generate_seconds = time.perf_counter() - t0
        db = where / "engine.db"
        cli = [sys.executable, "-m", "pointbook"]
        for pack_file, _, _ in DOMAINS.values():
            subprocess.run(
                [*cli, "pack", "publish", str(packs_dir() / pack_file), "--db", str(db)],
                check=True,
                capture_output=True,
            )
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        done = subprocess.run(
            [*cli, "ingest", str(path), "--db", str(db), "--batch-size", str(batch_size), "--json"],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(
                f"pointbook ingest failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        report = json.loads(done.stdout)
        file_mb = path.stat().st_size / 2**20
        db_mb = sum(p.stat().st_size for p in where.glob("engine.db*")) / 2**20
    return {
        "workload": "memory",
        "backend": "sqlite",
        "events": n,
        "subjects": subjects,
        "seed": seed,
        "batch_size": batch_size,
        "accepted": report.get("accepted"),
        "rejected": report.get("rejected"),
        "generate_seconds": generate_seconds,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "file_mb": file_mb,
        "store_mb": db_mb,
        # ru_maxrss of children is the largest child so far: the ingest is by far the largest.
        "peak_rss_mb": max(peak, before) / 1024,
    }
