"""Folding many subjects on every core: the population-wide work of the ledger.

The engine is pure, so a subject's fold can run in any process and give the same result. The
decision refresh and `Ledger.states` fold every subject of a work list one after the other; a
`FoldPool` runs those folds in worker processes, a few hundred subjects per task, while the
calling process reads the next subjects from the store and writes what came back. The store,
its connection and its locks stay in the calling process: workers only fold.

- Workers are started with "forkserver" (or "spawn" where it is missing), never "fork": the
  service runs threads and holds database connections that a forked child would share.
- Each worker receives the pack versions once, when it starts, as their checked specs and
  texts, and compiles them there (compiled rules do not pickle); a task carries histories.
- The engine's records cross the process boundary as their constructor and field values
  (`_dumps`): default pickling of slotted frozen dataclasses calls a Python `__setstate__` per
  record, and rebuilding states that way cost the calling process about twice as much.
- Small work stays in process (`fold_all`): below `MIN_EVENTS` events, starting workers and
  shipping histories costs more than it saves.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import multiprocessing.connection
import operator
import os
import pickle
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from itertools import chain, islice
from typing import Any, Protocol, TypeVar, cast

from pointbook.engine import evaluate_subject
from pointbook.engine.model import (
    Appeal,
    Decision,
    Entry,
    EntryStatus,
    Event,
    Line,
    SubjectState,
)
from pointbook.rules.pack import PackVersion, compile_pack
from pointbook.rules.spec import PackSpec

__all__ = [
    "CHUNK",
    "JOBS_ENV",
    "MIN_EVENTS",
    "Fold",
    "FoldPool",
    "History",
    "default_jobs",
    "fold_all",
]

# The environment variable that sets the default number of worker processes.
JOBS_ENV = "POINTBOOK_JOBS"
# Below this many events in a work list, folding in process is faster than starting workers.
MIN_EVENTS = 5000
# Subjects per task: big enough that pickling is a small share, small enough to spread evenly.
CHUNK = 250

# One subject's input to the fold: (subject, its events, its appeals).
History = tuple[str, Sequence[Event], Sequence[Appeal]]
R = TypeVar("R")


class Fold(Protocol):
    """What a worker runs per subject: `evaluate_subject`'s signature."""

    def __call__(
        self,
        versions: Sequence[PackVersion],
        events: Sequence[Event],
        as_of: datetime,
        subject: str | None = None,
        appeals: Sequence[Appeal] = (),
    ) -> SubjectState: ...


def default_jobs() -> int:
    """Worker processes when none are asked for: $POINTBOOK_JOBS, else 1 (fold in process).

    Not the number of cores: on two cores the workers did not pay (the calling process still
    reads, decodes and writes most of the work; docs/benchmarks.md), and a library caller's
    script would need a ``__main__`` guard for the workers to start."""
    raw = os.environ.get(JOBS_ENV, "").strip()
    if not raw:
        return 1
    try:
        jobs = int(raw)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ValueError(f"{JOBS_ENV}={raw!r}: give a whole number of worker processes, at least 1")
    return jobs


def fold_all(
    histories: Iterable[History],
    serial: Callable[[History], R],
    parallel: Callable[[Iterator[History]], Iterator[tuple[History, R]]] | None,
    min_events: int = MIN_EVENTS,
) -> Generator[tuple[History, R], None, None]:
    """Each history with its fold, in order. In this process (``serial``) when ``parallel`` is
    None or the whole work list holds fewer than ``min_events`` events; otherwise by
    ``parallel``, which gets every history, the ones read ahead to count them first."""
    rest = iter(histories)
    if parallel is not None:
        head: list[History] = []
        seen = 0
        for h in rest:
            head.append(h)
            seen += len(h[1])
            if seen >= min_events:
                yield from parallel(chain(head, rest))
                return
        rest = iter(head)
    for h in rest:
        yield h, serial(h)


class FoldPool:
    """Worker processes that fold subjects with the pack versions they were started with.

    Started on first use and kept (a `Ledger` closes it in `close`); started again when asked
    for versions its workers do not hold (a version published since). ``depth`` tasks per
    worker are kept in flight so that none waits while the caller reads or writes.
    """

    def __init__(
        self,
        jobs: int,
        fold: Fold = evaluate_subject,
        chunk: int = CHUNK,
        depth: int = 2,
    ) -> None:
        if jobs < 1:
            raise ValueError("a FoldPool needs at least one worker")
        self.jobs = jobs
        self.chunk = chunk
        self.depth = depth
        self._fold = fold
        self._executor: ProcessPoolExecutor | None = None
        self._held: dict[str, tuple[str, ...]] = {}  # domain -> content hashes the workers hold
        self._lock = threading.Lock()

    def load(self, versions: Mapping[str, Sequence[PackVersion]]) -> None:
        """Make the workers hold ``versions`` (every domain's), starting them if needed."""
        wanted = {d: tuple(v.content_hash for v in vs) for d, vs in versions.items()}
        with self._lock:
            if self._executor is not None and self._held == wanted:
                return
            self._stop()
            packs = {d: [(v.spec, v.text) for v in vs] for d, vs in versions.items()}
            self._executor = ProcessPoolExecutor(
                self.jobs,
                mp_context=_context(),
                initializer=_start_worker,
                initargs=(packs, self._fold),
            )
            self._held = wanted

    def states(
        self, domain: str, histories: Iterable[History], as_of: datetime
    ) -> Iterator[tuple[History, SubjectState]]:
        """Each history with its subject's state as of ``as_of``, in order."""
        return cast(
            Iterator[tuple[History, SubjectState]], self._map(domain, histories, as_of, False)
        )

    def decisions(
        self, domain: str, histories: Iterable[History], as_of: datetime
    ) -> Iterator[tuple[History, tuple[Decision, ...]]]:
        """Each history with its subject's decisions as of ``as_of``, in order (only the
        decisions come back from the workers)."""
        return cast(
            Iterator[tuple[History, tuple[Decision, ...]]],
            self._map(domain, histories, as_of, True),
        )

    def close(self) -> None:
        """Stop the workers (waiting for them); the next `load` starts new ones."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None
        self._held = {}

    def _map(
        self, domain: str, histories: Iterable[History], as_of: datetime, decisions_only: bool
    ) -> Iterator[tuple[History, Any]]:
        executor = self._executor
        if executor is None or domain not in self._held:
            raise RuntimeError(f"FoldPool.load must be given {domain!r}'s versions first")
        rest = iter(histories)
        window: deque[tuple[list[History], Future[bytes]]] = deque()
        try:
            while True:
                # Reading the next chunk (the caller's store reads) overlaps the folds in flight.
                part = list(islice(rest, self.chunk))
                if part:
                    task = executor.submit(_fold_chunk, domain, _dumps(part), as_of, decisions_only)
                    window.append((part, task))
                if not window:
                    return
                if part and len(window) < self.jobs * self.depth:
                    continue
                done, task = window.popleft()
                yield from zip(done, pickle.loads(task.result()), strict=True)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start afresh on the next use.
            with self._lock:
                self._stop()
            raise
        finally:
            for _, task in window:
                task.cancel()


# -- the wire format ----------------------------------------------------------------------------
def _reducer(cls: type[Any]) -> Callable[[Any], tuple[Any, ...]]:
    get = operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))

    def reduce(obj: Any) -> tuple[Any, ...]:
        return cls, get(obj)

    return reduce


_RECORDS = (Event, Entry, Appeal, Line, EntryStatus, Decision, SubjectState)
_DISPATCH: dict[type[Any], Callable[[Any], tuple[Any, ...]]] = {
    cls: _reducer(cls)
    for cls in _RECORDS
    # Rebuilt by calling the class with every field: only valid when every field is an argument.
    if all(f.init for f in dataclasses.fields(cls))
}


def _dumps(obj: Any) -> bytes:
    """Pickle ``obj``, the engine's records as their constructor and field values."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buf.getvalue()


# -- the workers ---------------------------------------------------------------------------------
_context_lock = threading.Lock()


def _context() -> multiprocessing.context.BaseContext:
    """The start method: forkserver where there is one, with this module preloaded so that each
    worker forks ready instead of importing pointbook again; spawn elsewhere."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    with _context_lock:
        # '__main__' is the default preload: workers then need not import the main script.
        ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


_versions: dict[str, list[PackVersion]] = {}
_fold: Fold = evaluate_subject


def _start_worker(packs: dict[str, list[tuple[PackSpec, str]]], fold: Fold) -> None:
    """A worker's initializer: compile the versions once (the loader's last step; the specs
    were checked when loaded), and exit with the process that started it (a killed caller
    must not leave its workers waiting for tasks forever)."""
    global _fold
    for domain, specs in packs.items():
        _versions[domain] = [compile_pack(spec, text) for spec, text in specs]
    _fold = fold
    parent = multiprocessing.parent_process()
    if parent is not None:
        sentinel = parent.sentinel

        def watch() -> None:
            multiprocessing.connection.wait([sentinel])
            os._exit(1)

        threading.Thread(target=watch, name="pointbook-parent-watch", daemon=True).start()


def _fold_chunk(domain: str, payload: bytes, as_of: datetime, decisions_only: bool) -> bytes:
    """A task: fold each history of ``payload``; the states (or their decisions), pickled."""
    try:
        versions = _versions[domain]
        out: list[SubjectState | tuple[Decision, ...]] = []
        for subject, events, appeals in pickle.loads(payload):
            state = _fold(versions, events, as_of, subject=subject, appeals=appeals)
            out.append(state.decisions if decisions_only else state)
        return _dumps(out)
    except Exception as exc:
        raise _portable(exc) from None


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, so the caller gets the same type; else a RuntimeError
    saying what it was (one that does not unpickle would break the whole pool instead)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__qualname__}: {exc}")
    return exc
