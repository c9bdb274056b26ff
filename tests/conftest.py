"""Fixtures shared by the suites: the store backends.

`store_factory` runs a test once per backend: SQLite (a file in tmp_path) and PostgreSQL (a
fresh schema `pb_test_<random>` of the server at $POINTBOOK_TEST_PG, default
postgresql://postgres@127.0.0.1:5432/test, dropped with everything in it afterwards).

Without a reachable server the PostgreSQL runs are skipped, saying how to enable them; in CI
(CI=true) they fail instead: CI must never pass without the PostgreSQL backend tested.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pointbook.store import PostgresStore, SQLiteStore, Store
from pointbook.store.postgres import redact, split_url

PG_URL = os.environ.get("POINTBOOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL test server's URL, once it has answered."""
    try:
        with psycopg.connect(split_url(PG_URL)[0], connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        why = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        where = redact(PG_URL)
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"PostgreSQL is required in CI but {where} cannot be reached ({why}): start the "
                "server (pg_ctlcluster 15 main start) or point POINTBOOK_TEST_PG at one",
                pytrace=False,
            )
        pytest.skip(
            f"PostgreSQL backend not tested: {where} cannot be reached ({why}). Start "
            "PostgreSQL there, or set POINTBOOK_TEST_PG=postgresql://USER@HOST:PORT/DATABASE"
        )
    return PG_URL


@pytest.fixture
def pg_schemas(pg_url: str) -> Iterator[Callable[[], str]]:
    """A maker of fresh schema names; every schema made is dropped (CASCADE) at teardown."""
    made: list[str] = []

    def new_schema() -> str:
        made.append(f"pb_test_{secrets.token_hex(6)}")
        return made[-1]

    yield new_schema
    with psycopg.connect(split_url(pg_url)[0], autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A maker of fresh, empty stores of one backend; each is closed at teardown."""
    opened: list[Store] = []
    if request.param == "sqlite":
        numbers = itertools.count(1)

        def make() -> Store:
            opened.append(SQLiteStore(tmp_path / f"store-{next(numbers)}.db"))
            return opened[-1]

    else:
        url: str = request.getfixturevalue("pg_url")
        new_schema: Callable[[], str] = request.getfixturevalue("pg_schemas")

        def make() -> Store:
            opened.append(PostgresStore(url, schema=new_schema()))
            return opened[-1]

    yield make
    for store in opened:
        store.close()
