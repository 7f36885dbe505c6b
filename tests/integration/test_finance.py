"""Budgets, month-to-date spend, forecast and waste signals through the real pipeline (Kafka, worker, Redis, exporter).

Seven days of hourly history for three teams (10 USD and one shipped task an hour each), then one hour in which
`burner` spends twenty times its usual and ships nothing, `grower` spends four times more and ships four times more,
and `steady` carries on. Only `burner` is flagged.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiyield.core import finance
from aiyield.core.finance import Budgets
from aiyield.embedded import free_port
from aiyield.exporter import serve

from .conftest import wait_for

pytestmark = pytest.mark.integration

H = 3600
HISTORY_HOURS = 7 * 24 - 2
TEAMS = ("burner", "grower", "steady")
#: Spend and shipped tasks in the last hour, as multiples of the usual hour.
LAST_HOUR = {"burner": (20, 0), "grower": (4, 4), "steady": (1, 1)}
BUDGETS = "[teams.burner]\nmonthly_usd = 5000\n\n[default]\nmonthly_usd = 1000\n"


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def history(now: float) -> tuple[list[dict], dict[str, float], dict[str, int]]:
    """Events, month-to-date spend per team, and normalized deployments per team over 7d."""
    events: list[dict] = []
    month_start, _ = finance.month_bounds(now)
    mtd = {t: 0.0 for t in TEAMS}
    shipped = {t: 0 for t in TEAMS}

    def hour(team: str, ts: float, spend_units: int, ships: int, tag: str) -> None:
        for i in range(spend_units):
            events.append({"type": "token", "id": f"{team}-{tag}-tok-{i}", "ts": ts, "team": team, "tool": "claude-code",
                           "model": "claude-sonnet-4", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 10.0})
            if ts >= month_start:
                mtd[team] += 10.0
        for i in range(ships):
            commit = sha(f"{team}-{tag}-{i}")
            events.append({"type": "task", "id": f"{team}-{tag}-task-{i}", "ts": ts, "task_id": f"{team}-{tag}-{i}",
                           "team": team, "tool": "claude-code", "status": "completed", "repo": f"acme/{team}",
                           "commits": [commit]})
            events.append({"type": "deployment", "id": f"{team}-{tag}-dep-{i}", "ts": ts + 60,
                           "deploy_id": f"{team}-{tag}-{i}", "repo": f"acme/{team}", "environment": "production",
                           "status": "succeeded", "commits": [commit]})
            shipped[team] += 1

    # Each hour's tasks and their deployment (60 s later, where the credit counts) in the same clock hour: with the
    # task in the last minute of an hour, the credit moved to the next one and the baselines were off by an hour's
    # worth (the test failed when run at minute 14).
    last = now - 900
    if last % H > H - 120:
        last -= 120
    for team in TEAMS:
        for k in range(1, HISTORY_HOURS + 1):
            hour(team, last - k * H, 1, 1, f"h{k}")
        spend, ships = LAST_HOUR[team]
        hour(team, last, spend, ships, "last")
    return events, mtd, shipped


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_only_the_team_whose_output_does_not_follow_its_spend_is_flagged(pipeline, tmp_path):
    budgets_file = tmp_path / "budgets.toml"
    budgets_file.write_text(BUDGETS)
    now = time.time()
    events, mtd, shipped = history(now)
    pipeline.start_worker()
    port = free_port()
    server, _ = serve(pipeline.settings.redis, port, host="127.0.0.1", budgets=Budgets.load(budgets_file))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        pipeline.send(events)

        def settled():
            m = scrape(url)
            return all(m.get(("aiyield_normalized_deployments", (("team", t), ("window", "7d")))) == shipped[t]
                       for t in TEAMS) and m
        m = wait_for(settled, 120, "every credit to land")

        def v(name: str, **labels: str) -> float | None:
            return m.get((name, tuple(sorted(labels.items()))))

        flagged = {t for t in TEAMS if v("aiyield_waste_signal", team=t, signal="usage_without_output") == 1}
        assert flagged == {"burner"}
        assert v("aiyield_waste_score", team="burner", signal="usage_without_output") == pytest.approx(20.0)
        assert v("aiyield_waste_score", team="grower", signal="usage_without_output") == pytest.approx(1.0)
        for team in TEAMS:
            for signal in finance.Signal.ALL:
                if (team, signal) != ("burner", "usage_without_output"):
                    assert v("aiyield_waste_signal", team=team, signal=signal) == 0, (team, signal)
        # A spike is reported for both, and is not waste by itself.
        assert v("aiyield_usage_spike_score", team="burner") == pytest.approx(20.0)
        assert v("aiyield_usage_spike_score", team="grower") == pytest.approx(4.0)
        assert v("aiyield_usage_spike_score", team="steady") == pytest.approx(1.0)

        assert v("aiyield_budget_usd", team="burner") == 5000
        assert v("aiyield_budget_usd", team="grower") == 1000  # [default]
        for team in TEAMS:
            month_spend = v("aiyield_month_spend_usd", team=team)
            assert month_spend == pytest.approx(mtd[team], abs=1e-6), team
            assert v("aiyield_month_forecast_usd", team=team) >= month_spend
        # 24h: 23 usual hours + the last one; burn rate = that / (5000 / days in month).
        _, end = finance.month_bounds(now)
        days = (end - finance.month_bounds(now)[0]) / 86400
        spend_24h = v("aiyield_spend_usd", team="burner", tool="claude-code", model="claude-sonnet-4", window="24h")
        assert v("aiyield_budget_burn_ratio", team="burner") == pytest.approx(spend_24h / (5000 / days))

        # The finance report reads the same figures.
        env = {**pipeline.env, "AIYIELD_BUDGETS": str(budgets_file)}
        report = subprocess.run([sys.executable, "-m", "aiyield", "report", "--month", "--format", "json"],
                                env=env, capture_output=True, timeout=60)
        assert report.returncode == 0, report.stderr.decode()
        rows = json.loads(report.stdout)["rows"]
        by_team = {r["team"]: r for r in rows if r["tool"] is None}
        assert by_team["burner"]["budget_usd"] == 5000 and by_team["steady"]["budget_usd"] == 1000
        assert by_team["grower"]["month_to_date_usd"] == pytest.approx(mtd["grower"], abs=1e-6)
        detail = [r for r in rows if r["tool"] == "claude-code" and r["model"] == "claude-sonnet-4"]
        assert {r["team"] for r in detail} == set(TEAMS)
        csv = subprocess.run([sys.executable, "-m", "aiyield", "report", "--month", "--format", "csv"],
                             env=env, capture_output=True, timeout=60)
        assert csv.stdout.decode().splitlines()[0] == (
            "month,team,tool,model,month_to_date_usd,forecast_usd,budget_usd,forecast_vs_budget")
        table = subprocess.run([sys.executable, "-m", "aiyield", "report", "--month"],
                               env={**env, "COLUMNS": "200"}, capture_output=True, timeout=60)
        assert table.returncode == 0 and b"forecast usd" in table.stdout and b"burner" in table.stdout, table.stdout
        bad = tmp_path / "bad.toml"
        bad.write_text("[teams.x]\nmonthly_usd = -5\n")
        refused = subprocess.run([sys.executable, "-m", "aiyield", "report", "--month"],
                                 env={**env, "AIYIELD_BUDGETS": str(bad)}, capture_output=True, timeout=60)
        assert refused.returncode == 2 and b"AIYIELD_BUDGETS" in refused.stderr
    finally:
        server.shutdown()
