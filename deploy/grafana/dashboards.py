"""The Grafana dashboards, by audience, written as code with Grafana's grafana-foundation-sdk.

    python deploy/grafana/dashboards.py          # regenerate deploy/grafana/dashboards/*.json
    python deploy/grafana/dashboards.py --check  # exit 1 when a committed file differs from what this generates

finance       spend by team, tool and model; month to date against budget and forecast; burn rate; cost per
              normalized deployment
effectiveness normalized deployments, ship, abandon and retraction rates, contested claims, waste signals, spikes
pipeline      for SREs: intake by outcome, invalid and duplicate ratios, freshness, scrape health, cardinality guard

Every query reads only metrics the exporter serves (docs/FINANCE.md, "Metrics"), pins `window="$window"` on windowed metrics
and honours `$team` (and `$tool` where the metric has a tool). tests/deploy/test_dashboards.py checks all of that,
runs promtool over every expression, and checks that regenerating gives the committed files.
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
WINDOWS = ("1h", "24h", "7d", "30d")

T = 'team=~"$team"'
TW = 'team=~"$team", window="$window"'
TTW = 'team=~"$team", tool=~"$tool", window="$window"'


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
        .query("label_values(aiyield_spend_usd, team)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).all_value(".*").multi(True)
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def tool_variable():
    return (
        gd.QueryVariable("tool").label("Tool").datasource(DS)
        .query('label_values(aiyield_spend_usd{team=~"$team"}, tool)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).all_value(".*").multi(True)
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def window_variable():
    return (
        gd.CustomVariable("window").label("Window").values(",".join(WINDOWS))
        .current(VariableOption(selected=True, text="24h", value="24h"))
    )


def base(uid: str, title: str, description: str, tags: list[str]):
    global _ids
    _ids = itertools.count(1)  # panel ids restart in every dashboard, so each file is stable on its own
    return (
        gd.Dashboard(title).uid(uid).description(description).tags(["aiyield", *tags])
        .time("now-24h", "now").refresh("1m").timezone("utc").readonly()
        .with_variable(datasource_variable())
    )


def finance():
    d = base("aiyield-finance", "aiyield: finance", "AI spend against budgets: month to date, forecast, burn rate.",
             ["finance"])
    d.with_variable(team_variable()).with_variable(tool_variable()).with_variable(window_variable())
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
    d.with_panel(ts("Budget burn rate", "none", (f"max by (team) (aiyield_budget_burn_rate{{{T}}})", "{{team}}"),
                    description="Last-24h spend / the daily spend that would use exactly the budget. 1 = on pace."))
    d.with_row(row("Spend over the last $window"))
    d.with_panel(ts("Spend by team", "currencyUSD", (f"sum by (team) (aiyield_spend_usd{{{TTW}}})", "{{team}}"), w=8))
    d.with_panel(ts("Spend by tool", "currencyUSD", (f"sum by (tool) (aiyield_spend_usd{{{TTW}}})", "{{tool}}"), w=8))
    d.with_panel(ts("Spend by model", "currencyUSD", (f"sum by (model) (aiyield_spend_usd{{{TTW}}})", "{{model}}"), w=8))
    d.with_panel(ts("Seat spend by tool", "currencyUSD",
                    (f'sum by (tool) (aiyield_spend_usd{{model="seats", {TTW}}})', "{{tool}}"),
                    description="[seats] prices of the organisation file over the month's days (aiyield pull)."))
    d.with_panel(ts("Tokens by type", "short", (f"sum by (type) (aiyield_tokens{{{TTW}}})", "{{type}}")))
    d.with_panel(ts("Cost per normalized deployment by team", "currencyUSD",
                    (f"max by (team) (aiyield_cost_per_normalized_deployment_usd{{{TW}}})", "{{team}}")))
    d.with_panel(ts("Token events without a price (their spend is unknown)", "none",
                    (f"sum by (model) (aiyield_unpriced_token_events{{{TTW}}})", "{{model}}"),
                    description="Add these models to the price file (AIYIELD_PRICES) or send cost_usd."))
    d.with_panel(grid("Teams: spend, output and cost per normalized deployment ($window)",
                      f"sum by (team) (aiyield_spend_usd{{{TTW}}})",
                      f"sum by (team) (aiyield_normalized_deployments{{{TW}}})",
                      f"max by (team) (aiyield_cost_per_normalized_deployment_usd{{{TW}}})",
                      f"sum by (team) (aiyield_month_forecast_usd{{{T}}})"))
    return d


def effectiveness():
    d = base("aiyield-effectiveness", "aiyield: effectiveness",
             "What AI work ships and survives: normalized deployments, ship and retraction rates, waste signals.",
             ["engineering"])
    d.with_variable(team_variable()).with_variable(tool_variable()).with_variable(window_variable())
    shipped = f'sum(aiyield_tasks{{status="shipped", {TTW}}})'
    completed = f'sum(aiyield_tasks{{status="completed", {TTW}}})'
    d.with_row(row("Output over the last $window"))
    d.with_panel(single("Normalized deployments", "none", f"sum(aiyield_normalized_deployments{{{TW}}})", w=6))
    d.with_panel(single("Ship rate", "percentunit", f"{shipped}\n/\n({completed} > 0)", w=6))
    d.with_panel(single("Retraction rate", "percentunit",
                        f"sum(aiyield_retracted_normalized_deployments{{{TW}}})\n/\n"
                        f"((sum(aiyield_normalized_deployments{{{TW}}}) + sum(aiyield_retracted_normalized_deployments{{{TW}}})) > 0)",
                        w=6, description="Credits retracted (rollback or revert) / credits given: the AI change-failure rate."))
    d.with_panel(single("Active developers", "none", f"sum(aiyield_active_developers{{{TW}}})", w=6))
    d.with_panel(ts("Normalized deployments by team", "none",
                    (f"sum by (team) (aiyield_normalized_deployments{{{TW}}})", "{{team}}")))
    d.with_panel(ts("Tasks by status", "none", (f"sum by (status) (aiyield_tasks{{{TTW}}})", "{{status}}")))
    d.with_panel(ts("Ship rate by team", "percentunit",
                    (f'sum by (team) (aiyield_tasks{{status="shipped", {TTW}}})\n/\n'
                     f'(sum by (team) (aiyield_tasks{{status="completed", {TTW}}}) > 0)', "{{team}}"), w=8))
    d.with_panel(ts("Abandon rate by team", "percentunit",
                    (f'sum by (team) (aiyield_tasks{{status="abandoned", {TTW}}})\n/\n'
                     f'(sum by (team) (aiyield_tasks{{status=~"completed|abandoned", {TTW}}}) > 0)', "{{team}}"), w=8))
    d.with_panel(ts("Retracted normalized deployments by reason", "none",
                    (f"sum by (team, reason) (aiyield_retracted_normalized_deployments{{{TW}}})", "{{team}} {{reason}}"), w=8))
    d.with_panel(ts("Contested claims by team", "none",
                    (f"sum by (team) (aiyield_contested_claims{{{TW}}})", "{{team}}"), w=8))
    d.with_panel(ts("Active developers by team", "none",
                    (f"max by (team) (aiyield_active_developers{{{TW}}})", "{{team}}"), w=8))
    d.with_panel(ts("Cost per normalized deployment by team", "currencyUSD",
                    (f"max by (team) (aiyield_cost_per_normalized_deployment_usd{{{TW}}})", "{{team}}"), w=8))
    d.with_row(row("What the tools report over the last $window (their own figures: context, never credit)"))
    d.with_panel(ts("Lines the tools report, by tool", "short",
                    (f"sum by (tool, type) (aiyield_tool_lines{{{TTW}}})", "{{tool}} {{type}}"), w=8,
                    description="Written (Claude Code), suggested and accepted (Copilot, Cursor): docs/CONNECTORS.md."))
    d.with_panel(ts("Suggestion acceptance rate by tool", "percentunit",
                    (f'sum by (tool) (aiyield_tool_suggestions{{type="accepted", {TTW}}})\n/\n'
                     f'(sum by (tool) (aiyield_tool_suggestions{{type="shown", {TTW}}}) > 0)', "{{tool}}"), w=8))
    d.with_panel(ts("Active user-days by tool", "short",
                    (f"sum by (tool, type) (aiyield_tool_active_user_days{{{TTW}}})", "{{tool}} {{type}}"), w=8,
                    description="Daily active (and engaged) users summed over the window's days, as the vendors report them."))
    d.with_row(row("Waste signals and spikes"))
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
    d.with_variable(window_variable())
    d.with_row(row("Intake"))
    d.with_panel(ts("Events by outcome", "ops",
                    ("sum by (outcome) (rate(aiyield_events_total[$__rate_interval]))", "{{outcome}}")))
    d.with_panel(ts("Invalid and duplicate ratio", "percentunit",
                    ('sum by (outcome) (rate(aiyield_events_total{outcome=~"invalid|duplicate"}[$__rate_interval]))\n'
                     "/ ignoring (outcome) group_left ()\nsum(rate(aiyield_events_total[$__rate_interval]))", "{{outcome}}")))
    d.with_panel(ts("Events by type and outcome", "ops",
                    ("sum by (type, outcome) (rate(aiyield_events_total[$__rate_interval]))", "{{type}} {{outcome}}")))
    d.with_panel(single("Data freshness", "s", "time() - max(aiyield_last_event_timestamp_seconds)", w=6))
    d.with_panel(single("Exporter up", "none", 'max(up{job="aiyield-exporter"})', w=6))
    d.with_panel(ts("Data freshness by event type", "s",
                    ("time() - max by (type) (aiyield_last_event_timestamp_seconds)", "{{type}}")))
    d.with_row(row("Guards over the last $window"))
    d.with_panel(ts("Names folded into `other` by the cardinality guard", "none",
                    ('sum by (label) (aiyield_cardinality_overflow{window="$window"})', "{{label}}")))
    return d


DASHBOARDS = {"finance": finance, "effectiveness": effectiveness, "pipeline": pipeline}


def render(name: str) -> str:
    built = DASHBOARDS[name]().build()
    return json.dumps(built, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


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
