"""Issuer oversight: per issuer, events reported, share appealed, share upheld on appeal.

An issuer is *flagged* when its upheld share (upheld appeals / decided appeals against its
events) is far above the domain's: at least twice the domain's share and at least
``Z_FLAG`` standard errors above it (binomial, with the domain's share as the expected
rate and the issuer's decided appeals as n). Many upheld appeals against one issuer are a
sign of bad evidence or bias. A flag is only raised (or denied) on cells that are shown:
when the issuer's appeals cover fewer than k subjects the flag reads "too few to tell".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pointbook.analytics.privacy import DEFAULT_K, Cell, Shown, is_suppressed, protect
from pointbook.ledger import Ledger

__all__ = ["Z_FLAG", "oversight", "oversight_html", "oversight_rows"]

Z_FLAG = 3.0


def _share(num: Shown, den: Shown) -> Shown:
    if is_suppressed(num) or is_suppressed(den):
        return num if is_suppressed(num) else den
    if not isinstance(den, int | float) or not isinstance(num, int | float) or den == 0:
        return "—"
    return round(float(num) / float(den), 3)


def oversight(
    ledger: Ledger, domain: str, as_of: datetime, k: int = DEFAULT_K, z_flag: float = Z_FLAG
) -> dict[str, Any]:
    """The protected per-issuer table of one domain (events and appeals up to ``as_of``)."""
    ledger.require_domain(domain)
    # issuer -> event id -> subject ; appealed / decided / upheld: issuer -> event -> subject
    reported: dict[str, dict[str, str]] = defaultdict(dict)
    appealed: dict[str, dict[str, str]] = defaultdict(dict)
    decided: dict[str, dict[str, str]] = defaultdict(dict)
    upheld: dict[str, dict[str, str]] = defaultdict(dict)
    for subject, subject_events, subject_appeals in ledger.histories(domain):
        issuer_of: dict[str, str] = {}
        for e in subject_events:
            if e.occurred_at <= as_of:
                issuer = e.issuer or "(none)"
                issuer_of[e.id] = issuer
                reported[issuer][e.id] = subject
        for a in subject_appeals:
            if a.event_id is None or a.event_id not in issuer_of:
                continue
            state = a.state(as_of)
            if state == "not-filed":
                continue
            issuer = issuer_of[a.event_id]
            appealed[issuer][a.event_id] = subject
            if state in ("upheld", "dismissed"):
                decided[issuer][a.event_id] = subject
            if state == "upheld":
                upheld[issuer][a.event_id] = subject

    def cell(d: Mapping[str, str]) -> Cell:
        return Cell.of(len(d), d.values())

    tot_decided = sum(len(d) for d in decided.values())
    tot_upheld = sum(len(d) for d in upheld.values())
    domain_share = tot_upheld / tot_decided if tot_decided else 0.0
    issuers = sorted(reported)
    cols = {
        "events": protect({i: cell(reported[i]) for i in issuers}, k),
        "appealed": protect({i: cell(appealed.get(i, {})) for i in issuers}, k),
        "decided": protect({i: cell(decided.get(i, {})) for i in issuers}, k),
        "upheld": protect({i: cell(upheld.get(i, {})) for i in issuers}, k),
    }
    rows = []
    for i in issuers:
        ev, ap, de, up = (cols[c][i] for c in ("events", "appealed", "decided", "upheld"))
        n = len(decided.get(i, {}))
        share = len(upheld.get(i, {})) / n if n else 0.0
        if n == 0:
            flag: str | bool = "no decided appeals"
        elif is_suppressed(de) or is_suppressed(up):
            flag = "too few to tell"
        else:
            se = math.sqrt(domain_share * (1 - domain_share) / n) if 0 < domain_share < 1 else 0.0
            far = share >= 2 * domain_share and (
                (share - domain_share) / se >= z_flag if se > 0 else share > domain_share
            )
            flag = bool(far)
        rows.append(
            {
                "issuer": i,
                "events": ev,
                "appealed": ap,
                "share_appealed": _share(ap, ev),
                "decided": de,
                "upheld": up,
                "share_upheld": _share(up, de),
                "flag": flag,
            }
        )
    shown_total = protect(
        {"decided": Cell.of(tot_decided, [s for d in decided.values() for s in d.values()])}, k
    )
    return {
        "domain": domain,
        "as_of": as_of.isoformat(),
        "k": k,
        "z_flag": z_flag,
        "domain_decided_appeals": shown_total["decided"],
        "domain_share_upheld": round(domain_share, 3)
        if not is_suppressed(shown_total["decided"])
        else shown_total["decided"],
        "issuers": rows,
    }


HEADER = [
    "issuer",
    "events",
    "appealed",
    "share appealed",
    "decided",
    "upheld",
    "share upheld",
    "flag",
]


def oversight_rows(data: Mapping[str, Any]) -> list[list[object]]:
    out: list[list[object]] = []
    for r in data["issuers"]:
        flag = r["flag"]
        text = "FAR ABOVE DOMAIN" if flag is True else "" if flag is False else str(flag)
        out.append(
            [
                r["issuer"],
                r["events"],
                r["appealed"],
                r["share_appealed"],
                r["decided"],
                r["upheld"],
                r["share_upheld"],
                text,
            ]
        )
    return out


def oversight_html(data: Mapping[str, Any]) -> str:
    from pointbook.analytics.report import esc, table

    return (
        f"<p>Domain share upheld on appeal: {esc(data['domain_share_upheld'])} "
        f"(of {esc(data['domain_decided_appeals'])} decided appeals). An issuer is flagged when its "
        f"share is at least twice the domain's and {data['z_flag']} standard errors above it.</p>"
        + table(HEADER, oversight_rows(data))
    )
