"""`aiyield report`, run as a user runs it, piped and at 80 columns: every team name and every number whole, in the
window view and the month view (the layouts themselves: tests/unit/test_report_view.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

TEAMS = {"growth-experiments-platform": 1_249_000.25, "payments-and-ledger-reconciliation": 12.5, "web": 0.75}


def test_report_piped_at_80_columns_cuts_nothing(pipeline):
    pipeline.start_worker()
    now = time.time() - 60
    events = []
    for n, (team, cost) in enumerate(TEAMS.items()):
        # 1e6 is the largest cost of one event: the big spender's arrives in two.
        for i, part in enumerate((cost / 2, cost / 2)):
            events.append({"type": "token", "id": f"width-{n}-{i}", "ts": now, "team": team, "tool": "claude-code",
                           "model": "claude-sonnet-4-5-20250929", "input_tokens": 10, "output_tokens": 1,
                           "cost_usd": part})
    pipeline.send(events)
    for team, cost in TEAMS.items():
        pipeline.wait_value("aiyield_spend_usd", cost, team=team, tool="claude-code",
                            model="claude-sonnet-4-5-20250929", window="1h")
    env = {**pipeline.env, "COLUMNS": "80"}

    def report(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "aiyield", "report", *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    window, month = report("--window", "1h"), report("--month")
    for text in (window, month):
        assert "…" not in text
        assert all(len(line) <= 80 for line in text.splitlines()), text
        for team, cost in TEAMS.items():
            assert team in text and f"{cost:,.2f}" in text, (team, text)
    assert "claude-sonnet-4-5-20250929" in month and "claude-code" in month
    # Every number of the JSON rows is in the table, whole.
    rows = json.loads(report("--window", "1h", "--format", "json"))["teams"]
    for row in rows:
        for value in row.values():
            shown = "—" if value is None else f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" \
                if isinstance(value, int) else value
            assert shown in window, (value, window)
    # CSV is unchanged: one header, one line per team.
    csv = report("--window", "1h", "--format", "csv").splitlines()
    assert csv[0].startswith("window,team,spend_usd,normalized_deployments") and len(csv) == 1 + len(TEAMS)
