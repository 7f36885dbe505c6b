"""The Grafana dashboards, by audience, written as code with Grafana's grafana-foundation-sdk.

    python deploy/grafana/dashboards.py          # regenerate deploy/grafana/dashboards/*.json
    python deploy/grafana/dashboards.py --check  # exit 1 when a committed file differs from what this generates

finance       spend by team, tool and model; seat spend by tool; billed against estimated; month to date against
              budget and forecast; burn ratio; cost per normalized deployment
effectiveness normalized deployments, ship, abandon and change-failure ratios, contested claims, what the tools
              report (lines, commits, suggestion acceptance, active user-days), waste signals, spikes
pipeline      for SREs: intake by outcome, invalid and duplicate ratios, deployments, freshness, scrape health,
              cardinality guard

Every panel follows Grafana's time picker: figures over the picked range are `increase(<counter>[$__range])`, lines
over time are `rate(<counter>[$__rate_interval])`, from the processing-time counters (docs/INTERFACE.md §3). The
exceptions are state, not sums over a range, and say so in their titles: the calendar month and the budgets, the
provider's billed days, waste and spike scores, freshness, and distinct developers (a HyperLogLog per event-time
window: distinct counts cannot be added up over an arbitrary range). Production deployments are annotations
(`aiyield_deployments_total`). Every query honours `$team` (and `$tool` where the metric has a tool).
tests/deploy/test_dashboards.py checks all of that, runs promtool over every expression, and checks that
regenerating gives the committed files.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

OUT = Path(__file__).resolve().parent / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${DS_PROMETHEUS}")

T = 'team=~"$team"'
TT = 'team=~"$team", tool=~"$tool"'

#: Over the picked range, and per hour over time.
RANGE = "[$__range]"
RATE = "[$__rate_interval]"


def over_range(metric: str, matchers: str, by: str = "") -> str:
    """`sum [by (...)] (increase(metric{...}[$__range]))`: the amount over the picked range."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (increase({metric}{{{matchers}}}{RANGE}))"


def per_hour(metric: str, matchers: str, by: str = "") -> str:
    """`sum [by (...)] (rate(metric{...}[$__rate_interval])) * 3600`: the amount per hour, over time."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{matchers}}}{RATE})) * 3600"


_ids = itertools.count(1)


def query(expr: str, legend: str = "__auto", ref: str = "A"):
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)


def _targets(panel, queries):
    for i, q in enumerate(queries):
        expr, legend = q if isinstance(q, tuple) else (q, "__auto")
        panel.with_target(query(expr, legend, chr(ord("A") + i)))
    return panel


def ts(title: str, unit: str, *queries, description: str = "", w: int = 12, h: int = 8):
    panel = timeseries.Panel().id(next(_ids)).title(title).unit(unit).datasource(DS).span(w).height(h)
    if description:
        panel.description(description)
    return _targets(panel, queries)


def single(title: str, unit: str, expr: str, description: str = "", w: int = 4):
    panel = stat.Panel().id(next(_ids)).title(title).unit(unit).datasource(DS).span(w).height(4)
    if description:
        panel.description(description)
    return _targets(panel, [expr])


def grid(title: str, *queries, description: str = ""):
    panel = table.Panel().id(next(_ids)).title(title).datasource(DS).span(24).height(8)
    if description:
        panel.description(description)
    for i, q in enumerate(queries):
        panel.with_target(query(q, "__auto", chr(ord("A") + i)).instant().format("table"))
    return panel


def row(title: str):
    return gd.Row(title).id(next(_ids))


def datasource_variable():
    return gd.DatasourceVariable("DS_PROMETHEUS").label("Data source").type("prometheus")


def team_variable():
    return (
        gd.QueryVariable("team").label("Team").datasource(DS)
        .query("label_values(aiyield_spend_usd_total, team)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).all_value(".*").multi(True)
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def tool_variable():
    return (
        gd.QueryVariable("tool").label("Tool").datasource(DS)
        .query('label_values(aiyield_spend_usd_total{team=~"$team"}, tool)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).all_value(".*").multi(True)
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


#: Production deployments as annotations on every dashboard: one mark per scrape interval that saw any.
DEPLOYMENTS = (
    'sum by (status) (increase(aiyield_deployments_total{environment="production"}[$__rate_interval])) > 0'
)


def deployments_annotation():
    return (
        gd.AnnotationQuery().name("Production deployments").datasource(DS).enable(True).icon_color("#5794F2")
        .expr(DEPLOYMENTS)
    )


#: Grafana's Prometheus annotation fields the SDK's model does not carry, added to the rendered JSON.
ANNOTATION_EXTRAS = {"titleFormat": "Production deployment {{status}}", "tagKeys": "status", "useValueForTime": False}


def base(uid: str, title: str, description: str, tags: list[str]):
    global _ids
    _ids = itertools.count(1)  # panel ids restart in every dashboard, so each file is stable on its own
    return (
        gd.Dashboard(title).uid(uid).description(description).tags(["aiyield", *tags])
        .time("now-24h", "now").refresh("1m").timezone("utc").readonly()
        .with_variable(datasource_variable())
        .annotation(deployments_annotation())
    )


def given_minus_retracted(by: str = "team") -> str:
    """Normalized deployments that survived over the range: given - retracted (a team without retractions: given)."""
    given = over_range("aiyield_normalized_deployments_total", T, by)
    retracted = over_range("aiyield_retracted_normalized_deployments_total", T, by)
    return f"({given} - ({retracted} or {given} * 0))"


def finance():
    d = base("aiyield-finance", "aiyield: finance",
             "AI spend over the picked range, billed against estimated, and the month against budgets.", ["finance"])
    d.with_variable(team_variable()).with_variable(tool_variable())
    d.with_row(row("Spend over the picked range"))
    d.with_panel(single("Spend", "currencyUSD", over_range("aiyield_spend_usd_total", TT), w=6))
    d.with_panel(single("Normalized deployments (surviving)", "none", given_minus_retracted(by=""), w=6))
    d.with_panel(single("Cost per normalized deployment", "currencyUSD",
                        f"{over_range('aiyield_spend_usd_total', T)}\n/\n({given_minus_retracted(by='')} > 0)", w=6,
                        description="Spend / normalized deployments given and not retracted, over the picked range."))
    d.with_panel(single("Tokens", "short", over_range("aiyield_tokens_total", TT), w=6))
    d.with_panel(ts("Spend by team (USD per hour)", "currencyUSD", (per_hour("aiyield_spend_usd_total", TT, "team"), "{{team}}"), w=8))
    d.with_panel(ts("Spend by tool (USD per hour)", "currencyUSD", (per_hour("aiyield_spend_usd_total", TT, "tool"), "{{tool}}"), w=8))
    d.with_panel(ts("Spend by model (USD per hour)", "currencyUSD", (per_hour("aiyield_spend_usd_total", TT, "model"), "{{model}}"), w=8))
    d.with_panel(ts("Tokens by type (per hour)", "short", (per_hour("aiyield_tokens_total", TT, "type"), "{{type}}")))
    d.with_panel(ts("Token events without a price (per hour; their spend is unknown)", "none",
                    (per_hour("aiyield_unpriced_token_events_total", TT, "model"), "{{model}}"),
                    description="Add these models to the price file (AIYIELD_PRICES) or send cost_usd."))
    d.with_panel(grid("Spend by tool and model over the picked range",
                      over_range("aiyield_spend_usd_total", TT, "tool, model")))
    d.with_panel(grid("Seat spend by tool over the picked range",
                      over_range("aiyield_spend_usd_total", f'model="seats", {TT}', "tool"),
                      description="[seats] prices of the organisation file over the month's days (aiyield pull)."))
    d.with_panel(grid("Teams over the picked range: spend, normalized deployments, cost per normalized deployment",
                      over_range("aiyield_spend_usd_total", TT, "team"),
                      given_minus_retracted(),
                      f"{over_range('aiyield_spend_usd_total', T, 'team')}\n/ on (team)\n({given_minus_retracted()} > 0)"))
    d.with_row(row("Billed by the provider against aiyield's estimate (the provider's whole UTC days)"))
    d.with_panel(ts("Billed and estimated, last 7 billed days", "currencyUSD",
                    ('sum by (provider) (aiyield_billed_usd{days="7"})', "{{provider}} billed"),
                    ('sum by (provider) (aiyield_billed_estimated_usd{days="7"})', "{{provider}} estimated"),
                    description="Bills are per UTC day and come a day late (`aiyield reconcile`): a fixed run of "
                                "days, not the picked range."))
    d.with_panel(ts("Spend capture (estimated / billed), last 7 billed days", "percentunit",
                    ('max by (provider) (aiyield_spend_capture_ratio{days="7"})', "{{provider}}")))
    d.with_row(row("Calendar month to date (UTC)"))
    d.with_panel(single("Month to date", "currencyUSD", f"sum(aiyield_month_spend_usd{{{T}}})", w=6))
    d.with_panel(single("Month-end forecast", "currencyUSD", f"sum(aiyield_month_forecast_usd{{{T}}})", w=6,
                        description="Month to date + a weekday-seasonal run rate for the rest of the month."))
    d.with_panel(single("Budget", "currencyUSD", f"sum(aiyield_budget_usd{{{T}}})", w=6))
    d.with_panel(single("Forecast / budget", "percentunit",
                        f"sum(aiyield_month_forecast_usd{{{T}}}) / (sum(aiyield_budget_usd{{{T}}}) > 0)", w=6))
    d.with_panel(ts("Month to date: spend, forecast and budget", "currencyUSD",
                    (f"sum by (team) (aiyield_month_spend_usd{{{T}}})", "{{team}} spent"),
                    (f"sum by (team) (aiyield_month_forecast_usd{{{T}}})", "{{team}} forecast"),
                    (f"max by (team) (aiyield_budget_usd{{{T}}})", "{{team}} budget")))
    d.with_panel(ts("Budget burn ratio", "none", (f"max by (team) (aiyield_budget_burn_ratio{{{T}}})", "{{team}}"),
                    description="Last-24h spend / the daily spend that would use exactly the budget. 1 = on pace."))
    return d


def effectiveness():
    d = base("aiyield-effectiveness", "aiyield: effectiveness",
             "What AI work ships and survives: normalized deployments, ship and change-failure ratios, waste signals.",
             ["engineering"])
    d.with_variable(team_variable()).with_variable(tool_variable())
    given = over_range("aiyield_normalized_deployments_total", T)
    retracted = over_range("aiyield_retracted_normalized_deployments_total", T)
    shipped = over_range("aiyield_tasks_total", f'status="shipped", {TT}')
    completed = over_range("aiyield_tasks_total", f'status="completed", {TT}')
    d.with_row(row("Output over the picked range"))
    d.with_panel(single("Normalized deployments given", "none", given, w=6))
    d.with_panel(single("Ship ratio", "percentunit", f"{shipped}\n/\n({completed} > 0)", w=6,
                        description="Tasks shipped / tasks completed, as processed over the picked range."))
    d.with_panel(single("AI change-failure ratio", "percentunit", f"({retracted} or vector(0))\n/\n({given} > 0)", w=6,
                        description="Credit retracted (rollback or revert) / credit given, over the picked range."))
    d.with_panel(single("Active developers (last 7 days, by event time)", "none",
                        f'sum(aiyield_active_developers{{{T}, window="7d"}})', w=6,
                        description="Distinct pseudonymised developers: a distinct count is kept per event-time "
                                    "window and cannot be summed over an arbitrary range."))
    d.with_panel(ts("Normalized deployments given by team (per hour)", "none",
                    (per_hour("aiyield_normalized_deployments_total", T, "team"), "{{team}}")))
    d.with_panel(ts("Tasks by status (per hour)", "none", (per_hour("aiyield_tasks_total", TT, "status"), "{{status}}")))
    d.with_panel(ts("Retracted normalized deployments by reason (per hour)", "none",
                    (per_hour("aiyield_retracted_normalized_deployments_total", T, "team, reason"), "{{team}} {{reason}}"), w=8))
    d.with_panel(ts("Contested claims by team (per hour)", "none",
                    (per_hour("aiyield_contested_claims_total", T, "team"), "{{team}}"), w=8))
    d.with_panel(ts("Active developers by team (last 24 hours, by event time)", "none",
                    (f'max by (team) (aiyield_active_developers{{{T}, window="24h"}})', "{{team}}"), w=8))
    def tasks(status: str) -> str:
        return over_range("aiyield_tasks_total", f"status=~\"{status}\", {TT}", "team")

    def ratio(numerator: str, denominator: str) -> str:
        return f"{numerator}\n/ on (team)\n({denominator} > 0)"

    by_team = {name: over_range(f"aiyield_{name}_total", T, "team")
               for name in ("normalized_deployments", "retracted_normalized_deployments")}
    d.with_panel(grid("Teams over the picked range: given, retracted, change-failure, ship and abandon ratios",
                      by_team["normalized_deployments"], by_team["retracted_normalized_deployments"],
                      ratio(by_team["retracted_normalized_deployments"], by_team["normalized_deployments"]),
                      ratio(tasks("shipped"), tasks("completed")),
                      ratio(tasks("abandoned"), tasks("completed|abandoned"))))
    d.with_row(row("What the tools report (their own figures: context, never credit; docs/CONNECTORS.md)"))
    d.with_panel(ts("Lines the tools report by tool (per hour)", "short",
                    (per_hour("aiyield_tool_lines_total", TT, "tool, change"), "{{tool}} {{change}}"), w=8,
                    description="Added and removed (Claude Code), suggested and accepted (Copilot, Cursor)."))
    d.with_panel(ts("Commits by tool (per hour)", "short", (per_hour("aiyield_tool_commits_total", TT, "tool"), "{{tool}}"), w=8))
    d.with_panel(ts("Pull requests by tool (per hour)", "short",
                    (per_hour("aiyield_tool_pull_requests_total", TT, "tool"), "{{tool}}"), w=8))
    accepted, shown = (per_hour("aiyield_tool_suggestions_total", f'stage="{stage}", {TT}', "tool")
                       for stage in ("accepted", "shown"))
    d.with_panel(ts("Suggestion acceptance ratio by tool", "percentunit",
                    (f"{accepted}\n/ on (tool)\n({shown} > 0)", "{{tool}}"),
                    description="Code suggestions accepted / shown (Copilot, Cursor), as the pulls bring them in."))
    d.with_panel(grid("Active user-days by tool over the picked range",
                      over_range("aiyield_tool_active_user_days_total", TT, "tool, engagement"),
                      description="Daily active (and engaged) users as the vendors report them, summed over days: "
                                  "user-days, not distinct users."))
    d.with_row(row("Waste signals and spikes (as of now: fixed look-backs, docs/FINANCE.md)"))
    d.with_panel(ts("Waste signals flagged", "none",
                    (f"max by (team, signal) (aiyield_waste_signal{{{T}}})", "{{team}} {{signal}}"), w=8,
                    description="1 when flagged. Definitions and thresholds: docs/FINANCE.md."))
    d.with_panel(ts("Waste scores", "none",
                    (f"max by (team, signal) (aiyield_waste_score{{{T}}})", "{{team}} {{signal}}"), w=8))
    d.with_panel(ts("Usage spike score", "none", (f"max by (team) (aiyield_usage_spike_score{{{T}}})", "{{team}}"), w=8,
                    description="Last hour's spend / the team's usual spend for that hour. Growth, not waste by itself."))
    return d


def pipeline():
    d = base("aiyield-pipeline", "aiyield: pipeline", "For SREs: intake, rejections, freshness, scrape health.", ["sre"])
    d.with_row(row("Intake"))
    d.with_panel(ts("Events by outcome", "ops",
                    ("sum by (outcome) (rate(aiyield_events_total[$__rate_interval]))", "{{outcome}}")))
    d.with_panel(ts("Invalid and duplicate ratio", "percentunit",
                    ('sum by (outcome) (rate(aiyield_events_total{outcome=~"invalid|duplicate"}[$__rate_interval]))\n'
                     "/ ignoring (outcome) group_left ()\nsum(rate(aiyield_events_total[$__rate_interval]))", "{{outcome}}")))
    d.with_panel(ts("Events by type and outcome", "ops",
                    ("sum by (type, outcome) (rate(aiyield_events_total[$__rate_interval]))", "{{type}} {{outcome}}")))
    d.with_panel(ts("Deployments by environment and status (per hour)", "none",
                    (per_hour("aiyield_deployments_total", 'environment=~".+"', "environment, status"),
                     "{{environment}} {{status}}")))
    d.with_panel(single("Data freshness (now)", "s", "time() - max(aiyield_last_event_timestamp_seconds)", w=6))
    d.with_panel(single("Exporter up (now)", "none", 'max(up{job="aiyield-exporter"})', w=6))
    d.with_panel(ts("Data freshness by event type", "s",
                    ("time() - max by (type) (aiyield_last_event_timestamp_seconds)", "{{type}}")))
    d.with_row(row("Guards"))
    d.with_panel(ts("Names folded into `other` by the cardinality guard (per hour)", "none",
                    (per_hour("aiyield_cardinality_overflow_total", 'label=~".+"', "label"), "{{label}}")))
    return d


DASHBOARDS = {"finance": finance, "effectiveness": effectiveness, "pipeline": pipeline}


def render(name: str) -> str:
    built = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    for annotation in built["annotations"]["list"]:
        if annotation.get("expr") == DEPLOYMENTS:
            annotation.update(ANNOTATION_EXTRAS)
    return json.dumps(built, sort_keys=True, indent=2) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in DASHBOARDS:
        path = OUT / f"{name}.json"
        text = render(name)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{path} differs from deploy/grafana/dashboards.py: run `python deploy/grafana/dashboards.py`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
