"""The exporter's metric families from a fixed snapshot: names, labels, values, and the exact exposition text."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from aiyield.core.cardinality import Caps
from aiyield.core.finance import Budgets
from aiyield.core.measures import Measure
from aiyield.core.windows import SCALE, WINDOWS, series, split_series
from aiyield.exporter import metric_families
from aiyield.exposition import Renderer
from aiyield.readout import Amounts, Snapshot, fold

#: 2026-06-17 10:20 UTC, a Wednesday.
NOW = 1_781_691_600.0
EXPOSITION = Path(__file__).parent / "exporter_exposition.txt"
BUDGETS = Budgets({"payments": 3000.0, "finance-only": 100.0})


def index(named: dict[str, int]) -> Amounts:
    """Amounts by series name (as stored) to amounts by measure and labels (as the readout holds them)."""
    out: Amounts = {}
    for name, amount in named.items():
        measure, labels = split_series(name)
        out.setdefault(measure, {})[tuple(labels)] = amount
    return out


def snapshot() -> Snapshot:
    sums = {w: {} for w in WINDOWS}
    sums["1h"] = {
        series(Measure.SPEND, "payments", "claude-code", "claude-sonnet-4"): 3 * SCALE["spend"] // 2,
        series(Measure.TOKENS, "payments", "claude-code", "claude-sonnet-4", "input"): 1000,
        series(Measure.TASKS, "payments", "claude-code", "completed"): 2,
        series(Measure.TASKS, "payments", "claude-code", "shipped"): 1,
        series(Measure.CREDIT, "payments"): SCALE["credit"] // 2,
        series(Measure.SPEND, "growth", "codex", "gpt-5"): 40 * SCALE["spend"],
        series(Measure.UNPRICED, "growth", "codex", "mystery"): 3,
    }
    sums["24h"] = {
        **sums["1h"],
        series(Measure.RETRACTED, "payments", "rollback"): SCALE["credit"] // 4,
        series(Measure.RETRACTED, "payments", "revert"): SCALE["credit"],
        series(Measure.CONTESTED, "growth"): 6,
        series(Measure.TASKS, "growth", "codex", "abandoned"): 25,
        series(Measure.OVERFLOW, "model"): 7,
    }
    hour = int(NOW // 3600) * 3600
    day = int(NOW // 86400) * 86400
    hourly = {hour - h * 3600: {series(Measure.SPEND, "payments", "claude-code", "claude-sonnet-4"): SCALE["spend"]}
              for h in range(1, 24 * 7)}
    daily = {day - d * 86400: {series(Measure.SPEND, "payments", "claude-code", "claude-sonnet-4"): 24 * SCALE["spend"]}
             for d in range(0, 20)}
    return Snapshot(
        now=NOW, sums={w: index(named) for w, named in sums.items()}, developers={w: {"payments": 3, "growth": 1} for w in WINDOWS}, teams={"payments", "growth"},
        events_total={("token", "accepted"): 10, ("token", "invalid"): 1}, last_ts={"token": 1700000000.0},
        totals=index({
            series(Measure.SPEND, "payments", "claude-code", "claude-sonnet-4"): 5 * SCALE["spend"] // 2,
            series(Measure.TOKENS, "payments", "claude-code", "claude-sonnet-4", "input"): 1500,
            series(Measure.TASKS, "payments", "claude-code", "shipped"): 2,
            series(Measure.CREDIT, "payments"): 3 * SCALE["credit"] // 2,
            series(Measure.RETRACTED, "payments", "rollback"): SCALE["credit"] // 2,
            series(Measure.DEPLOYMENTS, "production", "succeeded"): 4,
            series(Measure.DEPLOYMENTS, "other", "failed"): 1,
            series(Measure.CONTEXT, "payments", "claude-code", "lines_added"): 120,
        }),
        # growth has been spending for 20 minutes and never shipped: past the 15-minute grace.
        buckets={
            window: {start: index(named) for start, named in by_start.items()}
            for window, by_start in {
                "7d": hourly, "days": daily, "1h": {int(NOW - 1200) // 60 * 60: {series(Measure.SPEND, "growth", "codex", "gpt-5"): 1}},
            }.items()
        },
    )


class Fixed(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self):
        return metric_families(self.snap, BUDGETS)


def registry(snap: Snapshot | None = None) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(Fixed(snap or snapshot()))
    return r


def test_values():
    r = registry()
    assert r.get_sample_value("aiyield_spend_usd", {"team": "payments", "tool": "claude-code", "model": "claude-sonnet-4", "window": "1h"}) == 1.5
    assert r.get_sample_value("aiyield_normalized_deployments", {"team": "payments", "window": "1h"}) == 0.5
    assert r.get_sample_value("aiyield_cost_per_normalized_deployment_usd", {"team": "payments", "window": "1h"}) == 3.0
    # A team with spend and no deployments: zero deployments shown, cost per deployment absent.
    assert r.get_sample_value("aiyield_normalized_deployments", {"team": "growth", "window": "1h"}) == 0
    assert r.get_sample_value("aiyield_cost_per_normalized_deployment_usd", {"team": "growth", "window": "1h"}) is None
    assert r.get_sample_value("aiyield_tasks", {"team": "payments", "tool": "claude-code", "status": "shipped", "window": "1h"}) == 1
    assert r.get_sample_value("aiyield_events_total", {"type": "token", "outcome": "invalid"}) == 1
    assert r.get_sample_value("aiyield_active_developers", {"team": "payments", "window": "30d"}) == 3
    assert r.get_sample_value("aiyield_retracted_normalized_deployments", {"team": "payments", "reason": "rollback", "window": "24h"}) == 0.25
    assert r.get_sample_value("aiyield_contested_claims", {"team": "growth", "window": "24h"}) == 6


def test_counters():
    """The processing-time counters, served as `<name>_total` beside the gauges of the same stem."""
    r = registry()
    spend = {"team": "payments", "tool": "claude-code", "model": "claude-sonnet-4"}
    assert r.get_sample_value("aiyield_spend_usd_total", spend) == 2.5
    assert r.get_sample_value("aiyield_spend_usd", {**spend, "window": "1h"}) == 1.5  # the gauge is still there
    assert r.get_sample_value("aiyield_tokens_total", {**spend, "type": "input"}) == 1500
    assert r.get_sample_value("aiyield_tasks_total", {"team": "payments", "tool": "claude-code", "status": "shipped"}) == 2
    assert r.get_sample_value("aiyield_normalized_deployments_total", {"team": "payments"}) == 1.5
    assert r.get_sample_value("aiyield_retracted_normalized_deployments_total", {"team": "payments", "reason": "rollback"}) == 0.5
    assert r.get_sample_value("aiyield_deployments_total", {"environment": "production", "status": "succeeded"}) == 4
    assert r.get_sample_value("aiyield_tool_lines_total", {"team": "payments", "tool": "claude-code", "change": "added"}) == 120
    assert r.get_sample_value("aiyield_tool_commits_total", {"team": "payments", "tool": "claude-code"}) is None


def test_finance_values():
    r = registry()
    assert r.get_sample_value("aiyield_budget_usd", {"team": "payments"}) == 3000
    assert r.get_sample_value("aiyield_budget_usd", {"team": "finance-only"}) == 100
    assert r.get_sample_value("aiyield_budget_usd", {"team": "growth"}) is None  # no budget, no default
    # June 1..17 at 24 USD a day; the rest of today and 13 more days at 24 a day.
    assert r.get_sample_value("aiyield_month_spend_usd", {"team": "payments"}) == 17 * 24
    forecast = r.get_sample_value("aiyield_month_forecast_usd", {"team": "payments"})
    assert abs(forecast - (17 * 24 + 24 * (1 - (10 * 3600 + 1200) / 86400) + 13 * 24)) < 1e-9
    assert r.get_sample_value("aiyield_month_spend_usd", {"team": "finance-only"}) == 0
    assert r.get_sample_value("aiyield_budget_burn_ratio", {"team": "payments"}) == 1.5 / 100  # 1.5 USD in 24h / 100 a day
    assert r.get_sample_value("aiyield_budget_burn_rate", {"team": "payments"}) == 1.5 / 100  # its old name, one release
    assert r.get_sample_value("aiyield_usage_spike_score", {"team": "payments"}) == 1.5
    assert r.get_sample_value("aiyield_usage_spike_score", {"team": "growth"}) == 40  # no history: against 1 USD/h
    assert r.get_sample_value("aiyield_waste_signal", {"team": "growth", "signal": "usage_without_output"}) == 1
    assert r.get_sample_value("aiyield_waste_signal", {"team": "growth", "signal": "unshipped_work"}) == 1
    assert r.get_sample_value("aiyield_waste_signal", {"team": "growth", "signal": "contested_claims"}) == 1
    assert r.get_sample_value("aiyield_waste_signal", {"team": "payments", "signal": "usage_without_output"}) == 0


def test_exposition_text_is_exactly_the_reviewed_one():
    """The whole /metrics text for the fixed snapshot, byte for byte (tests/unit/exporter_exposition.txt)."""
    text = generate_latest(registry()).decode()
    assert "developer=" not in text and "user=" not in text
    assert text == EXPOSITION.read_text(encoding="utf-8")
    # What the exporter serves: its own renderer, cold and then warm.
    renderer = Renderer()
    assert renderer.render(registry().collect()).decode() == text
    assert renderer.render(registry().collect()).decode() == text


def test_read_time_cardinality_guard_folds_the_least_active_names():
    snap = snapshot()
    for i in range(5):
        snap.sums["1h"][Measure.SPEND][(f"made-up-{i}", "t", "m")] = i
        snap.totals[Measure.SPEND][(f"made-up-{i}", "t", "m")] = 10 * i
        snap.teams.add(f"made-up-{i}")
    folded = fold(snap, Caps(team=3))
    r = registry(folded)
    teams = {s.labels["team"] for m in r.collect() if m.name == "aiyield_spend_usd" for s in m.samples}
    assert teams == {"payments", "growth", "made-up-4", "other"}
    assert r.get_sample_value("aiyield_spend_usd", {"team": "other", "tool": "t", "model": "m", "window": "1h"}) == (0 + 1 + 2 + 3) / 1e9
    # The counters fold with the same names as the gauges.
    assert r.get_sample_value("aiyield_spend_usd_total", {"team": "other", "tool": "t", "model": "m"}) == 10 * (0 + 1 + 2 + 3) / 1e9
    assert r.get_sample_value("aiyield_spend_usd_total", {"team": "made-up-4", "tool": "t", "model": "m"}) == 40 / 1e9
    assert fold(snapshot(), Caps()) is not None


def test_a_failed_scrape_is_a_500_and_counted():
    import urllib.error
    import urllib.request

    import pytest

    from aiyield.embedded import free_port
    from aiyield.exporter import serve

    port = free_port()
    server, _thread = serve(f"redis://127.0.0.1:{free_port()}/0", port, host="127.0.0.1")  # nobody listens there
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert info.value.code == 500
    finally:
        server.shutdown()


def test_billing_families_are_absent_until_reconcile_ran_and_1h_never_appears():
    from aiyield.exporter import billing_families
    from aiyield.readout import Billed

    snap = snapshot()
    assert list(billing_families(snap, Billed())) == []
    day = int(NOW // 86400) * 86400
    billed = Billed(days={"anthropic": {day - d * 86400: 48 * SCALE["spend"] for d in range(1, 8)}},
                    synced={"anthropic": NOW - 60})
    registry = CollectorRegistry()

    class Billing(Collector):
        def collect(self):
            return billing_families(snap, billed)

    registry.register(Billing())
    value = registry.get_sample_value
    # The snapshot's daily history: 24 USD of claude-sonnet-4 a day.
    assert value("aiyield_billed_usd", {"provider": "anthropic", "days": "7"}) == 7 * 48
    assert value("aiyield_billed_estimated_usd", {"provider": "anthropic", "days": "7"}) == 7 * 24
    assert value("aiyield_spend_capture_ratio", {"provider": "anthropic", "days": "7"}) == 0.5
    assert value("aiyield_spend_capture_ratio", {"provider": "anthropic", "days": "1"}) == 0.5
    assert value("aiyield_billed_usd", {"provider": "anthropic", "days": "30"}) is None  # 7 days reconciled
    # `days`, never `window`: bills are whole UTC days, not (now - window, now]; and nothing for an hour.
    assert {s.labels.get("days") for m in registry.collect() if m.name == "aiyield_billed_usd" for s in m.samples} == {"1", "7"}
    assert all("window" not in s.labels for m in registry.collect() for s in m.samples)
    assert value("aiyield_billed_through_timestamp_seconds", {"provider": "anthropic"}) == day
    assert value("aiyield_billed_last_sync_timestamp_seconds", {"provider": "anthropic"}) == NOW - 60
    assert value("aiyield_billed_usd", {"provider": "openai", "days": "7"}) is None
