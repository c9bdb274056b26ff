"""The population report: protected aggregates of one domain as of a time, with plots.

Plots are rendered by matplotlib (Agg backend) to SVG and embedded as ``data:`` URIs, so the
HTML file is self-contained: it fetches nothing. SVG output is reproducible (a fixed
``svg.hashsalt``, no date in the metadata, text drawn as paths).
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure

from pointbook.analytics.privacy import (
    DEFAULT_K,
    Cell,
    Shown,
    is_suppressed,
    marker,
    protect,
)
from pointbook.analytics.whatif import counting_by_rule
from pointbook.dates import local_date
from pointbook.ledger import Ledger

__all__ = ["bar_chart", "html_page", "population_report", "report_html", "stacked_chart"]

matplotlib.rcParams["svg.hashsalt"] = "pointbook"
matplotlib.rcParams["svg.fonttype"] = "path"
matplotlib.rcParams["font.family"] = "DejaVu Sans"

OUTCOMES = ("open", "upheld", "dismissed")
EXPIRY_DAYS = 90


# -- plots ---------------------------------------------------------------------------------
def _svg(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "pointbook"})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(v: Shown) -> float:
    return 0.0 if is_suppressed(v) or isinstance(v, str) else float(v)


def bar_chart(
    title: str, shown: Mapping[str, Shown], xlabel: str, ylabel: str, k: int = DEFAULT_K
) -> str:
    """A bar chart of protected values as a data: URI; suppressed bars are marked, not drawn."""
    fig = Figure(figsize=(7.5, 3.6), dpi=100)
    ax = fig.add_subplot()
    labels = list(shown) or ["(none)"]
    values = [_num(shown[x]) for x in shown] or [0.0]
    xs = range(len(labels))
    ax.bar(xs, values, color="#3b6ea5")
    top = max([abs(v) for v in values] + [1.0])
    for x, label in zip(xs, labels, strict=True):
        if label in shown and is_suppressed(shown[label]):
            ax.text(x, 0, marker(k), ha="center", va="bottom", fontsize=8, color="#a33")
    ax.set_xticks(
        list(xs),
        labels,
        rotation=30 if len(labels) > 6 else 0,
        ha="right" if len(labels) > 6 else "center",
        fontsize=8,
    )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(min(0.0, min(values) * 1.1), max(0.0, top * 1.1) if max(values) > 0 else top * 0.1)
    fig.tight_layout()
    return _svg(fig)


def stacked_chart(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[Shown]],
    xlabel: str,
    k: int = DEFAULT_K,
) -> str:
    """Stacked bars (one series per outcome) of protected counts."""
    fig = Figure(figsize=(7.5, 3.6), dpi=100)
    ax = fig.add_subplot()
    cats = list(categories) or ["(none)"]
    bottom = [0.0] * len(cats)
    colours = ["#c9a227", "#3b6ea5", "#8a8a8a", "#6a9955"]
    for i, (name, values) in enumerate(series.items()):
        vals = [_num(v) for v in values] or [0.0] * len(cats)
        ax.bar(range(len(cats)), vals, bottom=bottom, label=name, color=colours[i % 4])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for x in range(len(categories)):
        if any(is_suppressed(vs[x]) for vs in series.values()):
            ax.text(
                x,
                bottom[x],
                f"some {marker(k)}",
                ha="center",
                va="bottom",
                fontsize=7,
                color="#a33",
            )
    ax.set_xticks(
        range(len(cats)),
        cats,
        rotation=30 if len(cats) > 5 else 0,
        ha="right" if len(cats) > 5 else "center",
        fontsize=8,
    )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("appeals")
    ax.set_ylim(0, max([*bottom, 1.0]) * 1.2)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig)


# -- html ------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;display:block;margin:.5rem 0}
.note{color:#555;font-size:.9rem}.flag{color:#a33;font-weight:bold}
"""


def esc(x: object) -> str:
    return html.escape(str(x))


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, intro: str, sections: Sequence[tuple[str, str]], k: int) -> str:
    body = "".join(f"<section><h2>{esc(h)}</h2>{content}</section>" for h, content in sections)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><p>{intro}</p>"
        f'<p class="note">Every figure is an aggregate; a cell covering fewer than {k} subjects '
        f"is shown as {esc(marker(k))} (and, where a total would give it away, one more cell "
        "with it). No individual record appears here.</p>"
        f"{body}</body></html>\n"
    )


def img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{esc(alt)}">'


# -- the report ------------------------------------------------------------------------------
def _points_bins(points: Sequence[int], n: int = 10) -> list[tuple[str, int, int]]:
    if not points:
        return []
    lo, hi = min(points), max(points)
    width = max(1, -(-(hi - lo + 1) // n))
    out = []
    x = lo
    while x <= hi:
        out.append((f"{x}-{x + width - 1}" if width > 1 else str(x), x, x + width - 1))
        x += width
    return out


def _cells(groups: Mapping[str, Sequence[str]]) -> dict[str, Cell]:
    """Count of items per key, each item a subject id (one per counted thing)."""
    return {key: Cell.of(len(subj), subj) for key, subj in groups.items()}


def population_report(
    ledger: Ledger, domain: str, as_of: datetime, k: int = DEFAULT_K, chunk: int = 500
) -> dict[str, Any]:
    """The protected aggregates of one domain as of ``as_of``: JSON-ready."""
    versions = ledger.require_domain(domain)
    tz = versions[0].tz
    points: dict[str, int] = {}
    decisions: dict[str, list[str]] = defaultdict(list)  # month -> subjects
    decisions_kind: dict[str, list[str]] = defaultdict(list)
    by_rule: dict[str, list[Any]] = defaultdict(lambda: [0, set()])
    expiring: dict[str, list[str]] = defaultdict(list)  # week -> subjects
    appeals_rule: dict[tuple[str, str], list[str]] = defaultdict(list)
    appeals_issuer: dict[tuple[str, str], list[str]] = defaultdict(list)
    horizon = as_of + timedelta(days=EXPIRY_DAYS)
    for subject, subject_events, aps in ledger.histories(domain, chunk):
        st = _evaluate(versions, subject_events, as_of, subject, aps)
        points[subject] = st.points
        cancelled = {a.decision_id for a in aps if a.outcome == "upheld" and a.decision_id}
        for d in st.decisions:
            if d.id not in cancelled:
                decisions[local_date(d.triggered_at, tz).strftime("%Y-%m")].append(subject)
                decisions_kind[d.kind].append(subject)
        for rid, pts in counting_by_rule(st).items():
            by_rule[rid][0] += pts
            by_rule[rid][1].add(subject)
        for es in st.entries:
            if es.counts and es.ends_at is not None and as_of < es.ends_at <= horizon:
                week = min(12, (es.ends_at - as_of).days // 7) + 1
                expiring[f"week {week:02d}"].append(subject)
        rules_of: dict[str, set[str]] = defaultdict(set)
        for es in st.entries:
            rules_of[es.entry.event_id].add(es.entry.rule_id)
        issuer_of = {e.id: e.issuer or "(none)" for e in subject_events}
        kind_of = {d.id: d.kind for d in st.decisions}
        for a in aps:
            state = a.state(as_of)
            if state == "not-filed":
                continue
            if a.event_id is not None:
                rules = {a.rule_id} if a.rule_id else rules_of.get(a.event_id, {"(no rule)"})
                for r in rules:
                    appeals_rule[(r, state)].append(subject)
                appeals_issuer[(issuer_of.get(a.event_id, "(unknown)"), state)].append(subject)
            else:
                label = f"decision: {kind_of.get(a.decision_id or '', 'decision')}"
                appeals_rule[(label, state)].append(subject)
    bins = _points_bins(list(points.values()))
    dist = {
        label: Cell.of(n, [s for s, p in points.items() if lo <= p <= hi])
        for label, lo, hi in bins
        for n in [sum(1 for p in points.values() if lo <= p <= hi)]
    }
    weeks = {f"week {w:02d}": expiring.get(f"week {w:02d}", []) for w in range(1, 14)}

    def outcome_table(groups: Mapping[tuple[str, str], list[str]]) -> dict[str, dict[str, Shown]]:
        keys = sorted({key for key, _ in groups})
        out: dict[str, dict[str, Shown]] = {}
        for key in keys:
            out[key] = protect(_cells({o: groups.get((key, o), []) for o in OUTCOMES}), k)
        return out

    return {
        "domain": domain,
        "as_of": as_of.isoformat(),
        "k": k,
        "subjects": protect({"subjects": Cell(len(points), len(points))}, k)["subjects"],
        "points_distribution": protect(dist, k),
        "decisions_by_month": protect(_cells(dict(sorted(decisions.items()))), k),
        "decisions_by_kind": protect(_cells(dict(sorted(decisions_kind.items()))), k),
        "points_by_rule": protect({r: Cell.of(v[0], v[1]) for r, v in sorted(by_rule.items())}, k),
        "expiring_next_90_days": protect(_cells(weeks), k),
        "appeals_by_rule": outcome_table(appeals_rule),
        "appeals_by_issuer": outcome_table(appeals_issuer),
    }


def _evaluate(versions: Any, events: Any, as_of: datetime, subject: str, aps: Any) -> Any:
    from pointbook.engine import evaluate_subject

    return evaluate_subject(versions, events, as_of, subject=subject, appeals=aps)


def _outcome_section(title: str, data: Mapping[str, Mapping[str, Shown]], by: str, k: int) -> str:
    cats = list(data)
    series = {o: [data[c][o] for c in cats] for o in OUTCOMES}
    chart = stacked_chart(title, cats, series, by, k)
    rows = [[c, *(data[c][o] for o in OUTCOMES)] for c in cats]
    return img(chart, title) + table([by, *OUTCOMES], rows)


def _simple_section(title: str, data: Mapping[str, Shown], xlabel: str, ylabel: str, k: int) -> str:
    return img(bar_chart(title, data, xlabel, ylabel, k), title) + table(
        [xlabel, ylabel], list(data.items())
    )


def report_html(rep: Mapping[str, Any], oversight: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page (plots embedded as data: URIs)."""
    k = int(rep["k"])
    sections = [
        (
            "Points distribution",
            _simple_section(
                "Subjects by points", rep["points_distribution"], "points", "subjects", k
            ),
        ),
        (
            "Decisions over time",
            _simple_section(
                "Decisions by month triggered", rep["decisions_by_month"], "month", "decisions", k
            )
            + table(["kind", "decisions"], list(rep["decisions_by_kind"].items())),
        ),
        (
            "Points by rule",
            _simple_section(
                "Points counting now, by rule", rep["points_by_rule"], "rule", "points", k
            ),
        ),
        (
            f"Entries expiring in the next {EXPIRY_DAYS} days",
            _simple_section(
                "Entries that stop counting, by week",
                rep["expiring_next_90_days"],
                "week",
                "entries",
                k,
            ),
        ),
        (
            "Appeals and outcomes by rule",
            _outcome_section("Appeals by rule", rep["appeals_by_rule"], "rule", k),
        ),
        (
            "Appeals and outcomes by issuer",
            _outcome_section("Appeals by issuer", rep["appeals_by_issuer"], "issuer", k),
        ),
    ]
    if oversight is not None:
        from pointbook.analytics.oversight import oversight_html

        sections.append(("Issuer oversight", oversight_html(oversight)))
    intro = (
        f"Domain <b>{esc(rep['domain'])}</b> as of {esc(rep['as_of'])}: "
        f"{esc(rep['subjects'])} subjects."
    )
    return html_page(f"pointbook report: {rep['domain']}", intro, sections, k)
