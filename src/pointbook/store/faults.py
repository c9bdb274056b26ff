"""A storage shim that injects faults into a SQLite store, for the deterministic simulation (T6).

`FaultyConnection` stands in for the store's sqlite3 connection and, when its `FaultPlan`
draws one (from a seeded RNG, so a seed replays the same faults), injects:

- ``crash``: the process dies mid-transaction, after some statements and before COMMIT. Every
  later call on the connection raises too (a dead process runs nothing more); the caller
  reopens the store from the file, as a restarted process would.
- ``torn``: a multi-row insert dies after some of its rows: the same crash, inside one
  statement.
- ``crash-after-commit``: COMMIT succeeds, then the process dies before answering: the write
  is durable but never acknowledged (an indeterminate outcome for the client).
- ``eio``: COMMIT fails with an I/O error. SQLite documents that after an I/O error the
  transaction "may or may not" have been rolled back; both cases are drawn (``eio-rolled-back``
  and ``eio-open``). The process lives on.

What is simulated is the death of the process (like `kill -9`) and failing system calls, not a
power loss: committed pages are never lost here (that is T2's question, see docs).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultPlan", "FaultyConnection", "SimulatedCrash", "attach"]


class SimulatedCrash(BaseException):
    """The simulated process died here. A BaseException, so no `except Exception` in pointbook
    can swallow it: nothing after the crash point runs, as in a real crash."""


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@dataclass
class FaultPlan:
    """When to inject which fault. Probabilities are per write statement (crash, torn) and
    per COMMIT (eio, crash-after-commit); ``armed`` turns injection off for checks."""

    rng: random.Random
    crash: float = 0.02
    torn: float = 0.05
    eio: float = 0.03
    crash_after_commit: float = 0.03
    armed: bool = True
    injected: list[str] = field(default_factory=list)

    def _draw(self, p: float) -> bool:
        return self.armed and self.rng.random() < p

    def at_statement(self) -> str | None:
        return "crash" if self._draw(self.crash) else None

    def at_rows(self, n: int) -> int | None:
        """The number of rows a torn multi-row write gets through, or None."""
        if n > 1 and self._draw(self.torn):
            return self.rng.randrange(1, n)
        return None

    def at_commit(self) -> str | None:
        if self._draw(self.eio):
            return self.rng.choice(["eio-rolled-back", "eio-open"])
        if self._draw(self.crash_after_commit):
            return "crash-after-commit"
        return None


class FaultyConnection:
    """A sqlite3 connection that fails as its plan says; everything else is delegated."""

    def __init__(self, conn: sqlite3.Connection, plan: FaultPlan) -> None:
        self._conn = conn
        self.plan = plan
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _die(self, what: str) -> SimulatedCrash:
        self.dead = True
        self.plan.injected.append(what)
        return SimulatedCrash(what)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        if self.dead:
            raise SimulatedCrash("the process is dead")
        verb = sql.lstrip()[:8].upper()
        if verb.startswith("COMMIT"):
            return self._commit(sql)
        if self._conn.in_transaction and verb.startswith(_WRITES) and self.plan.at_statement():
            raise self._die("crash")
        return self._conn.execute(sql, params)

    def _commit(self, sql: str) -> sqlite3.Cursor:
        fault = self.plan.at_commit()
        if fault is None:
            return self._conn.execute(sql)
        if fault == "crash-after-commit":
            self._conn.execute(sql)
            raise self._die(fault)
        self.plan.injected.append(fault)
        if fault == "eio-rolled-back":
            self._conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        if self.dead:
            raise SimulatedCrash("the process is dead")
        listed = list(rows)
        if self._conn.in_transaction and self.plan.at_statement():
            raise self._die("crash")
        cut = self.plan.at_rows(len(listed)) if self._conn.in_transaction else None
        if cut is None:
            return self._conn.executemany(sql, listed)
        return self._conn.executemany(sql, self._torn(listed, cut))

    def _torn(self, rows: list[Sequence[Any]], cut: int) -> Iterator[Sequence[Any]]:
        yield from rows[:cut]
        raise self._die("torn")

    def close(self) -> None:
        self._conn.close()


def attach(store: Any, plan: FaultPlan) -> FaultyConnection:
    """Put a faulty connection in front of ``store`` (a SQLiteStore); returns it."""
    faulty = FaultyConnection(store.conn, plan)
    store.conn = faulty
    return faulty
