"""The peer `bench ingest` compares the engine with: pinax-points 2.0.0, a published Django
points app, awarding the same points on SQLite.

Django is configured in this process (`settings.configure`, an SQLite file in the run's
temporary folder, the apps contenttypes, auth and pinax.points, `migrate`), a user is created
for each subject of the events, and then, timed: each event line is parsed, its points are
computed by the compiled rule predicates the naive reference uses (bench/naive.py `_score`),
and pinax's `award_points` records them for the subject's user, every event inside ONE
transaction (`transaction.atomic`). pinax keeps a per-user total and a leaderboard position
(`TargetStat.update_positions` after every award, which reads and rewrites the positions of
every user between the old and the new total): that is its own cost, measured as published.

The peer is optional (the `bench` extra: `pip install -e ".[bench]"`); nothing else in
pointbook imports Django, and this module imports it only inside `run_peer`. Django 3.2 runs
unchanged on Python 3.11; it and pinax only raise deprecation warnings on import (the `cgi`
module, `locale.getdefaultlocale`, `ugettext_lazy`, `default_app_config`, `providing_args`),
which are silenced here and nowhere else.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pointbook.bench.naive import _score, _versions

__all__ = ["PEER_MISSING", "PeerRun", "peer_installed", "peer_label", "run_peer"]

PEER_MISSING = 'not installed (pip install -e ".[bench]")'
PEER_NAME = "pinax-points"


@dataclass(frozen=True, slots=True)
class PeerRun:
    events: int  # events awarded (one award each, in one transaction)
    subjects: int  # users created (not timed)
    points: int  # the sum of the points awarded, as pinax's totals report it
    seconds: float


def peer_installed() -> bool:
    """Whether pinax-points and Django can be imported (without importing them)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("django", "pinax.points"))
    except (ImportError, ValueError):
        return False


def peer_label() -> str:
    """The peer's name and the versions measured, e.g. `pinax-points 2.0.0 (Django 3.2.25)`."""
    v = importlib.metadata.version
    return f"{PEER_NAME} {v(PEER_NAME)} (Django {v('django')}) on SQLite"


@contextmanager
def _quiet() -> Iterator[None]:
    # Django 3.2 and pinax-points 2.0.0 on Python 3.11 warn of their own deprecations only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield


def _django(db: Path) -> Any:
    """Django configured on the SQLite file ``db`` and migrated; the `django.db` module.
    Settings can be configured once per process: a later run points the default connection
    at its own file and migrates it."""
    django = importlib.import_module("django")
    settings = importlib.import_module("django.conf").settings
    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)}},
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "pinax.points"],
            USE_TZ=False,
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            PINAX_POINTS_ALLOW_NEGATIVE_TOTALS=True,
        )
        django.setup()
    db_module = importlib.import_module("django.db")
    db_module.connections.close_all()
    db_module.connections["default"].settings_dict["NAME"] = str(db)
    importlib.import_module("django.core.management").call_command(
        "migrate", verbosity=0, interactive=False
    )
    return db_module


def run_peer(path: Path, limit: int, folder: Path) -> PeerRun:
    """Award the points of the first ``limit`` events of the JSON Lines file ``path`` with
    pinax-points, in one transaction, on a new SQLite file in ``folder``."""
    with path.open("rb") as f:
        lines = [line for _, line in zip(range(limit), f, strict=False)]
    subjects = sorted({json.loads(line)["subject"] for line in lines})
    versions = _versions()
    db_file = folder / "peer.db"
    for stale in (db_file, db_file.with_name("peer.db-journal")):
        stale.unlink(missing_ok=True)
    with _quiet():
        db = _django(db_file)
        user_model = importlib.import_module("django.contrib.auth.models").User
        pinax = importlib.import_module("pinax.points.models")
        user_model.objects.bulk_create([user_model(username=s) for s in subjects])
        users = {u.username: u for u in user_model.objects.all()}
        award = pinax.award_points
        expected = 0
        t0 = time.perf_counter()
        with db.transaction.atomic():
            for line in lines:
                event = json.loads(line)
                _, delta, _ = _score(versions, event, None)
                award(users[event["subject"]], delta, reason=event["id"][:140])
                expected += delta
        seconds = time.perf_counter() - t0
        total = sum(pinax.TargetStat.objects.values_list("points", flat=True))
        awarded = pinax.AwardedPointValue.objects.count()
        db.connections.close_all()
    if awarded != len(lines) or total != expected:
        raise RuntimeError(
            f"pinax-points recorded {awarded} awards totalling {total} points for"
            f" {len(lines)} events totalling {expected}"
        )
    return PeerRun(len(lines), len(subjects), int(total), seconds)
