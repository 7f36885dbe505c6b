"""The live page at the exporter's `/`: what `/metrics` says, for people without Grafana (finance, a newcomer).

This month's spend per team against budget and forecast; spend and normalized deployments hour by hour over the
last 7 days; per team over a window, spend, normalized deployments, cost per normalized deployment and retractions;
the waste flags; billed against estimated spend. Rendered from the same `readout.Snapshot` as `/metrics` and
`aiyield report`, with the same finance and billing functions, so the three never disagree.

One HTML document, server-side: inline CSS, inline SVG charts, no script, no font or file from anywhere else (the
machine may be offline). It reloads itself every `REFRESH_SECONDS` (a meta refresh). Every name that came from an
event (team, tool, model, provider) is HTML-escaped. Pure: the exporter reads, this renders.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Iterable, Sequence

from aiyield.core import billing, finance
from aiyield.core.finance import Budgets
from aiyield.core.measures import Measure
from aiyield.core.windows import SCALE, WINDOWS, window_buckets
from aiyield.readout import DAILY, HOURLY, Billed, Snapshot

REFRESH_SECONDS = 30
DEFAULT_WINDOW = "7d"
CONTENT_TYPE = "text/html; charset=utf-8"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1rem 1.5rem;
color:#1d2330;background:#fbfbfd}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.8rem 0 .5rem;border-bottom:1px solid #dde1ea}
.muted{color:#667085}table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{padding:.3rem .6rem;border-bottom:1px solid #eceef3;vertical-align:middle}
th{text-align:left;font-weight:600;color:#475467;font-size:.85rem}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{white-space:nowrap}.scroll{overflow-x:auto}
.bar{position:relative;height:.9rem;background:#eef0f5;border-radius:3px;min-width:8rem}
.bar span{position:absolute;top:0;bottom:0;left:0;border-radius:3px}
.bar .spent{background:#3b6fd8}.bar .forecast{background:#a9c0ef}
.bar i{position:absolute;top:-.2rem;bottom:-.2rem;width:2px;background:#1d2330}
.over{color:#b42318;font-weight:600}.flag{color:#b42318}
nav a{margin-right:.6rem}nav a.on{font-weight:700;text-decoration:none;color:#1d2330}
svg{display:block;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#667085}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _usd(amount: float | None) -> str:
    return "—" if amount is None else f"${amount:,.2f}"


def _num(amount: float | None, places: int = 2) -> str:
    return "—" if amount is None else f"{amount:,.{places}f}"


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(
    snap: Snapshot, billed: Billed, budgets: Budgets = Budgets(), waste_grace: float = finance.DEFAULT_GRACE_SECONDS,
    window: str = DEFAULT_WINDOW, unfolded: Snapshot | None = None,
) -> str:
    """The page as of `snap.now`. `snap` is the snapshot `/metrics` shows (cardinality-folded); `unfolded`, when
    given, the one read from Redis, for the billed comparison (a model folded into `other` loses its provider)."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    sections = [
        _month(snap, budgets),
        _over_time(snap),
        _teams(snap, window),
        _waste(snap, waste_grace),
        _billed(unfolded or snap, billed),
    ]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv=refresh content="{REFRESH_SECONDS}">'
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        # No favicon request (it would be a 404 in the browser's console).
        '<link rel=icon href="data:,">'
        f"<title>aiyield — live</title><style>{_CSS}</style></head><body>"
        "<h1>aiyield — what your AI coding tools cost and ship</h1>"
        f'<p class=muted>As of {_e(_when(snap.now))}; refreshes every {REFRESH_SECONDS} s. '
        'Prometheus metrics: <a href="/metrics">/metrics</a>.</p>'
        + "".join(sections)
        + "</body></html>\n"
    )


# -- this month ---------------------------------------------------------------------------------------------------


def _month(snap: Snapshot, budgets: Budgets) -> str:
    rows = snap.month(budgets)
    label = rows[0].month if rows else finance.month_label(finance.month_bounds(snap.now)[0])
    head = f"<h2>This month ({_e(label)}, UTC): spend against budget and forecast</h2>"
    if not rows:
        return head + "<p class=muted>No spend yet this month.</p>"
    scale = max(max(r.month_to_date_usd, r.forecast_usd, r.budget_usd or 0) for r in rows) or 1.0
    body = []
    for r in rows:
        over = r.budget_usd is not None and r.forecast_usd > r.budget_usd
        ratio = "—" if r.forecast_vs_budget is None else f"{r.forecast_vs_budget:.0%}"
        marker = "" if r.budget_usd is None else f'<i style="left:{100 * r.budget_usd / scale:.2f}%" title="budget"></i>'
        bar = (
            f'<div class=bar><span class=forecast style="width:{100 * r.forecast_usd / scale:.2f}%"></span>'
            f'<span class=spent style="width:{100 * r.month_to_date_usd / scale:.2f}%"></span>{marker}</div>'
        )
        body.append(
            f"<tr><td class=name>{_e(r.team)}</td><td class=n>{_usd(r.month_to_date_usd)}</td>"
            f"<td class=n>{_usd(r.forecast_usd)}</td><td class=n>{_usd(r.budget_usd)}</td>"
            f"<td class=\"n{' over' if over else ''}\">{ratio}</td><td>{bar}</td></tr>"
        )
    return (
        head + "<div class=scroll><table><thead><tr><th>team</th><th class=n>spent<br>to date</th>"
        "<th class=n>forecast</th><th class=n>budget</th><th class=n>forecast<br>/ budget</th>"
        "<th>spent (dark), forecast (light), budget (line)</th></tr></thead><tbody>" + "".join(body)
        + "</tbody></table></div>"
    )


# -- over time ----------------------------------------------------------------------------------------------------


def _over_time(snap: Snapshot) -> str:
    hours = sorted(window_buckets(HOURLY, snap.now))
    spend = _total_by_bucket(snap.over_time(HOURLY, Measure.SPEND))
    credit = _total_by_bucket(snap.over_time(HOURLY, Measure.CREDIT))
    days = sorted(window_buckets(DAILY, snap.now))
    daily = _total_by_bucket(snap.over_time(DAILY, Measure.SPEND))
    return (
        "<h2>Over time (all teams, by event time)</h2>"
        + _bars("Spend per hour, last 7 days (USD)", [(h, spend.get(h, 0.0)) for h in hours], "#3b6fd8", money=True)
        + _bars("Normalized deployments per hour, last 7 days", [(h, credit.get(h, 0.0)) for h in hours], "#2e9e6b")
        + _bars("Spend per day (UTC), last 42 days (USD)", [(d, daily.get(d, 0.0)) for d in days], "#6d5bd0",
                money=True)
    )


def _total_by_bucket(by_team: dict[str, dict[int, float]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for buckets in by_team.values():
        for start, amount in buckets.items():
            out[start] = out.get(start, 0.0) + amount
    return out


def _bars(title: str, points: Sequence[tuple[int, float]], color: str, money: bool = False) -> str:
    """A bar chart as inline SVG; each bar's exact value in its tooltip."""
    width, height, left, bottom, top = 1000, 150, 10, 20, 18
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((v for _t, v in points), default=0.0)
    fmt = _usd if money else _num
    step = plot_w / max(len(points), 1)
    bars = []
    for i, (start, value) in enumerate(points):
        if value <= 0:
            continue
        h = max(plot_h * value / peak, 1.0)
        bars.append(
            f'<rect x="{left + i * step:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{_e(_when(start))}: {_e(fmt(value))}</title></rect>'
        )
    first, last = (_when(points[0][0]), _when(points[-1][0])) if points else ("", "")
    return (
        f"<figure><figcaption>{_e(title)}: peak {_e(fmt(peak))}</figcaption>"
        f'<svg viewBox="0 0 {width} {height}" role=img aria-label="{_e(title)}">'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#c9ced8"/>'
        # The scale: the top of the plot is the peak (the axis labels sit inside, so no amount is ever cut off).
        f'<line x1="{left}" y1="{top}" x2="{width - 10}" y2="{top}" stroke="#eceef3"/>'
        f'<text x="{left}" y="{top - 5}">{_e(fmt(peak))}</text>'
        f'<text x="{left}" y="{height - 4}">{_e(first)}</text>'
        f'<text x="{width - 10}" y="{height - 4}" text-anchor=end>{_e(last)}</text>'
        + "".join(bars)
        + "</svg></figure>"
    )


# -- teams over a window ------------------------------------------------------------------------------------------


def _teams(snap: Snapshot, window: str) -> str:
    nav = "".join(
        f'<a href="/?window={w}"{" class=on" if w == window else ""}>{w}</a>' for w in WINDOWS
    )
    rows = snap.team_summary(window)
    retracted: dict[str, dict[str, float]] = {}
    for (team, reason), amount in snap.series(window, Measure.RETRACTED):
        retracted.setdefault(team, {})[reason] = amount / SCALE[Measure.RETRACTED]
    head = (
        f"<h2>Teams, last {_e(window)}: spend, normalized deployments, cost per normalized deployment</h2>"
        f"<nav>Window: {nav}</nav>"
    )
    if not rows:
        return head + "<p class=muted>No team has sent anything yet.</p>"
    body = []
    for r in rows:
        back = retracted.get(r.team, {})
        body.append(
            f"<tr><td class=name>{_e(r.team)}</td><td class=n>{_usd(r.spend_usd)}</td>"
            f"<td class=n>{_num(r.normalized_deployments)}</td>"
            f"<td class=n>{_usd(r.cost_per_normalized_deployment_usd)}</td>"
            f"<td class=n>{_num(back.get('rollback', 0.0))}</td><td class=n>{_num(back.get('revert', 0.0))}</td>"
            f"<td class=n>{r.tasks_completed:,}</td><td class=n>{r.tasks_shipped:,}</td>"
            f"<td class=n>{r.active_developers:,}</td></tr>"
        )
    return (
        head + "<div class=scroll><table><thead><tr><th>team</th><th class=n>spend</th>"
        "<th class=n>normalized<br>deployments</th><th class=n>cost per normalized<br>deployment</th>"
        "<th class=n>retracted<br>(rollback)</th><th class=n>retracted<br>(revert)</th><th class=n>tasks<br>completed</th>"
        "<th class=n>tasks<br>shipped</th><th class=n>active<br>developers</th></tr></thead><tbody>"
        + "".join(body) + "</tbody></table></div>"
        "<p class=muted>Retracted: normalized deployments credited, then taken back because the deployment was rolled "
        "back or the code reverted within the survival window (the AI change-failure signal).</p>"
    )


# -- waste --------------------------------------------------------------------------------------------------------


def _waste(snap: Snapshot, waste_grace: float) -> str:
    flagged = []
    for team, fig in snap.figures().items():
        for reading in finance.waste(fig, snap.now, waste_grace):
            if reading.flagged:
                flagged.append((team, reading.signal, reading.score))
    head = "<h2>Waste flags</h2>"
    if not flagged:
        return head + "<p class=muted>No team is flagged (docs/FINANCE.md says what each signal means).</p>"
    return head + _table(
        ("team", "signal", "score"),
        ((f"<td class='name flag'>{_e(team)}</td>", f"<td>{_e(signal.replace('_', ' '))}</td>",
          f"<td class=n>{score:,.2f}</td>") for team, signal, score in flagged),
        numeric={2},
    )


# -- billed against estimated -------------------------------------------------------------------------------------


def _billed(snap: Snapshot, billed: Billed) -> str:
    history = min(window_buckets(DAILY, snap.now))
    estimated = billing.provider_daily_spend(snap.buckets.get(DAILY, {}))
    readings = billing.readings(billed.days, estimated, history)
    head = "<h2>Billed against estimated spend</h2>"
    if not readings:
        return head + (
            "<p class=muted>No bill reconciled yet: <code>aiyield reconcile</code> fetches the providers' billed "
            "cost (README, “Billed spend”).</p>"
        )
    return head + _table(
        ("provider", "days (UTC)", "billed", "estimated by aiyield", "captured"),
        ((f"<td class=name>{_e(r.provider)}</td>", f"<td>{_e(r.window)}</td>", f"<td class=n>{_usd(r.billed_usd)}</td>",
          f"<td class=n>{_usd(r.estimated_usd)}</td>",
          f"<td class=n>{'—' if r.capture_ratio is None else f'{r.capture_ratio:.0%}'}</td>") for r in readings),
        numeric={2, 3, 4},
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int] = frozenset()) -> str:
    """A table of ready cells (`<td>...</td>`); the `numeric` columns' headers align right, as their numbers do."""
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>" + "".join(
        "<tr>" + "".join(cells) + "</tr>" for cells in rows
    ) + "</tbody></table></div>"
