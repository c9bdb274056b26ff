#!/usr/bin/env python3
"""A small, deterministic mutation tester for the engine (T14).

Each mutant changes one thing in one module: a comparison (`<` ↔ `<=`, `>` ↔ `>=`, `==` ↔ `!=`,
`is` ↔ `is not`, `in` ↔ `not in`), an arithmetic operator (`+` ↔ `-`, `*` → `//`, `//` → `*`),
an integer constant (n → n + 1; 1 → 0), a boolean constant, or `and` ↔ `or`. Mutants are
numbered in source order, so the same source gives the same mutants.

The source tree is copied to a temporary folder and each mutant is written there, never into
the working tree (other processes may be running the real code); the tests run with that copy
first on PYTHONPATH. A mutant is *killed* when the fast test subset fails (or times out); a
survivor of the fast subset is run against the confirming subset before it is reported as
*survived*. The score is killed / (killed + survived).

    .venv/bin/python scripts/mutation.py                       # engine/fold.py and engine/judge.py
    .venv/bin/python scripts/mutation.py --sample 60 --seed 1  # a seeded sample of the mutants
    .venv/bin/python scripts/mutation.py --json mutation.json  # figures and survivors as JSON

Exit status: 0 when it ran (survivors are reported, not an error), 2 when the unmutated code
fails its own tests (no score can be computed then).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TARGETS = ["src/pointbook/engine/fold.py", "src/pointbook/engine/judge.py"]
DEFAULT_FAST = ["tests/test_fold.py"]
# Survivors of the fast subset meet the suites that reach the rest of the fold: the scenarios,
# the properties, and the principles (appeals, erasure, decisions end to end).
DEFAULT_CONFIRM = [
    "tests/test_scenarios.py",
    "tests/test_properties.py",
    "tests/test_principles.py",
]

COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
}


@dataclass(frozen=True)
class Site:
    """One place a mutant can be made: the n-th mutable node of a module, and what changes."""

    file: str
    index: int
    line: int
    kind: str
    before: str
    after: str


def _sites(tree: ast.AST) -> Iterator[tuple[ast.AST, int, str, str, str]]:
    """(node, position, kind, before, after) for every mutation of a module, in source order."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in COMPARE_SWAPS:
                    yield node, i, "compare", type(op).__name__, COMPARE_SWAPS[type(op)].__name__
        elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in BINOP_SWAPS:
            yield node, 0, "arith", type(node.op).__name__, BINOP_SWAPS[type(node.op)].__name__
        elif isinstance(node, ast.BoolOp):
            after = "Or" if isinstance(node.op, ast.And) else "And"
            yield node, 0, "boolop", type(node.op).__name__, after
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            yield node, 0, "bool", repr(node.value), repr(not node.value)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            after = 0 if node.value == 1 else node.value + 1
            yield node, 0, "int", repr(node.value), repr(after)


def sites_of(path: Path, rel: str) -> list[Site]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for n, (node, _i, kind, before, after) in enumerate(_sites(tree)):
        out.append(Site(rel, n, getattr(node, "lineno", 0), kind, before, after))
    return out


def mutate(source: str, index: int) -> str:
    """The module's source with its ``index``-th mutation applied."""
    tree = ast.parse(source)
    for n, (node, i, kind, _before, _after) in enumerate(_sites(tree)):
        if n != index:
            continue
        if kind == "compare":
            assert isinstance(node, ast.Compare)
            node.ops[i] = COMPARE_SWAPS[type(node.ops[i])]()
        elif kind == "arith":
            assert isinstance(node, ast.BinOp | ast.AugAssign)
            node.op = BINOP_SWAPS[type(node.op)]()
        elif kind == "boolop":
            assert isinstance(node, ast.BoolOp)
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif kind == "bool":
            assert isinstance(node, ast.Constant)
            node.value = not node.value
        else:
            assert isinstance(node, ast.Constant) and isinstance(node.value, int)
            node.value = 0 if node.value == 1 else node.value + 1
        return ast.unparse(tree)
    raise IndexError(index)


@dataclass
class Outcome:
    site: Site
    status: str  # killed | survived | timeout
    seconds: float
    by: str  # "fast" or "confirm"


def run_tests(copy_src: Path, tests: list[str], timeout_s: float) -> tuple[str, float]:
    """'pass', 'fail' or 'timeout' for ``tests`` against the copy of the source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy_src) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("POINTBOOK_SOAK", None)  # the subsets at their normal size
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    return ("pass" if done.returncode == 0 else "fail"), time.monotonic() - started


def check_copy_is_used(copy_src: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy_src))
    where = subprocess.run(
        [sys.executable, "-c", "import pointbook; print(pointbook.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(copy_src)):
        sys.exit(f"the tests would import pointbook from {where}, not from the mutated copy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", default=DEFAULT_TARGETS)
    ap.add_argument("--fast", nargs="+", default=DEFAULT_FAST, help="tests run on every mutant")
    ap.add_argument("--confirm", nargs="*", default=DEFAULT_CONFIRM, help="tests run on survivors")
    ap.add_argument("--sample", type=int, default=0, help="run a seeded sample of N mutants")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write figures and survivors here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pb-mutants-") as tmp:
        copy_src = Path(tmp) / "src"
        shutil.copytree(
            ROOT / "src", copy_src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
        check_copy_is_used(copy_src)
        status, base_fast = run_tests(copy_src, args.fast, 3600)
        if status != "pass":
            print(f"the unmutated code fails {args.fast}: fix that first", file=sys.stderr)
            return 2
        status, base_confirm = (
            run_tests(copy_src, args.confirm, 7200) if args.confirm else ("pass", 0.0)
        )
        if status != "pass":
            print(f"the unmutated code fails {args.confirm}: fix that first", file=sys.stderr)
            return 2
        sites = [s for t in args.targets for s in sites_of(ROOT / t, t)]
        chosen = sites
        if args.sample and args.sample < len(sites):
            chosen = sorted(
                random.Random(args.seed).sample(sites, args.sample), key=lambda s: (s.file, s.index)
            )
        print(
            f"{len(sites)} mutants in {', '.join(args.targets)}; running {len(chosen)}", flush=True
        )
        outcomes = []
        started = time.monotonic()
        for n, site in enumerate(chosen, start=1):
            outcomes.append(run_mutant(site, copy_src, args, base_fast, base_confirm))
            o = outcomes[-1]
            print(
                f"[{n}/{len(chosen)}] {o.status:8} {site.file}:{site.line} {site.kind} "
                f"{site.before} -> {site.after} ({o.seconds:.1f} s, {o.by})",
                flush=True,
            )
        report(outcomes, len(sites), time.monotonic() - started, args)
    return 0


def run_mutant(
    site: Site, copy_src: Path, args: argparse.Namespace, base_fast: float, base_confirm: float
) -> Outcome:
    target = copy_src / Path(site.file).relative_to("src")
    original = (ROOT / site.file).read_text(encoding="utf-8")
    target.write_text(mutate(original, site.index), encoding="utf-8")
    try:
        status, secs = run_tests(copy_src, args.fast, max(60.0, 10 * base_fast))
        if status != "pass":
            return Outcome(site, "killed" if status == "fail" else "timeout", secs, "fast")
        if not args.confirm:
            return Outcome(site, "survived", secs, "fast")
        status, more = run_tests(copy_src, args.confirm, max(120.0, 5 * base_confirm))
        if status == "pass":
            return Outcome(site, "survived", secs + more, "confirm")
        return Outcome(site, "killed" if status == "fail" else "timeout", secs + more, "confirm")
    finally:
        target.write_text(original, encoding="utf-8")


def report(outcomes: list[Outcome], total: int, seconds: float, args: argparse.Namespace) -> None:
    killed = sum(o.status in ("killed", "timeout") for o in outcomes)
    survived = [o for o in outcomes if o.status == "survived"]
    score = 100.0 * killed / len(outcomes) if outcomes else 0.0
    print(
        f"\nmutation score: {killed}/{len(outcomes)} killed ({score:.1f}%), "
        f"{len(survived)} survived, of {total} mutants; {seconds:.0f} s"
    )
    for o in survived:
        s = o.site
        print(f"  survivor: {s.file}:{s.line} {s.kind} {s.before} -> {s.after}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "mutants": total,
                    "run": len(outcomes),
                    "killed": killed,
                    "survived": len(survived),
                    "score": round(score, 1),
                    "seconds": round(seconds),
                    "sample_seed": args.seed if args.sample else None,
                    "outcomes": [asdict(o) for o in outcomes],
                },
                indent=2,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    sys.exit(main())
