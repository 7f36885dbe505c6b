"""`aiyield pull` end to end: each connector as a user runs it (the CLI in a subprocess) against a local vendor API
(tests/vendor_apis.py), into the real pipeline (Kafka, worker, Redis, exporter), with exact metric values; a
second pull of the same days changes nothing."""

from __future__ import annotations

import calendar
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aiyield import keys
from aiyield.pulling import iso_day
from tests.unit.pull.fixtures import (
    DAY, SHA_A, SHA_B, claude_code_record, copilot_seat, copilot_user, cursor_commit, cursor_daily, cursor_usage,
)
from tests.vendor_apis import ANTHROPIC_KEY, CURSOR_KEY, GITHUB_TOKEN

from .conftest import wait_for

pytestmark = pytest.mark.integration

ORG_FILE = """
[teams.payments]
repos = ["shop/pay*"]
members = ["ana@example.com", "bo@example.com", "octo-ana", "octo-bo"]

[teams.growth]
repos = ["growth/*"]
members = ["cy@example.com", "octo-cy"]

[seats]
cursor = 40.0
copilot = 19.0
"""


def pull(env: dict[str, str], vendor: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiyield", "pull", vendor, *args], env=env, capture_output=True,
                          text=True, timeout=180)


def vendor_env(pipeline, tmp_path: Path, **extra: str) -> dict[str, str]:
    org = tmp_path / "org.toml"
    org.write_text(ORG_FILE)
    return {**pipeline.env, "AIYIELD_ORG": str(org), "COLUMNS": "250", **extra}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def settled(now: float, days: int, settle: float) -> list[int]:
    """The days a pull at `now` reads (the rule of aiyield.pulling.settled_days, restated)."""
    first = int((now - days * DAY) // DAY * DAY)
    return list(range(first, int(now - settle) - DAY + 1, DAY))


def month_days(day: int) -> int:
    d = datetime.fromtimestamp(day, timezone.utc)
    return calendar.monthrange(d.year, d.month)[1]


def seven_days(pipeline, name: str, **labels: str) -> float | None:
    return pipeline.value(name, window="7d", **labels)


def test_cursor_spend_figures_and_ai_commits_into_normalized_deployments(pipeline, vendor_apis, tmp_path):
    pipeline.start_worker()
    now = time.time()
    today = int(now // DAY * DAY)
    y, y2 = today - DAY, today - 2 * DAY
    vendor_apis.cursor_members = [{"name": n, "email": f"{n}@example.com", "role": "member"} for n in ("ana", "bo", "cy")]
    vendor_apis.cursor_daily = [
        cursor_daily(y, "ana@example.com", acceptedLinesAdded=120, totalTabsShown=50, totalTabsAccepted=20,
                     composerRequests=3, chatRequests=2, agentRequests=1),
        cursor_daily(y2, "bo@example.com", acceptedLinesAdded=30, totalTabsShown=10, totalTabsAccepted=5, chatRequests=1),
        cursor_daily(today, "cy@example.com", acceptedLinesAdded=999, totalTabsShown=999),  # partial day: not read
    ]
    vendor_apis.cursor_usage = [
        cursor_usage(now - 3 * 3600, "ana@example.com", "Usage-based", 250, inputTokens=1000, outputTokens=200,
                     cacheReadTokens=300, cacheWriteTokens=400),
        cursor_usage(now - 2 * 3600, "bo@example.com", "Included in Business", 10, inputTokens=500, outputTokens=100),
        cursor_usage(now - 2 * 3600, "cy@example.com", "Usage-based", 125.5, inputTokens=10),
        cursor_usage(now - 3600, "cy@example.com", "Usage-based", None),  # cost unknown: dead-lettered
    ]
    vendor_apis.cursor_commits = [
        cursor_commit(SHA_A, "ana@example.com", "shop/payments", 4, 8, iso(now - 5 * 3600)),
        cursor_commit(SHA_B, "zed@example.com", "growth/web", 5, 0, iso(now - 5 * 3600)),
        cursor_commit("c" * 40, "ana@example.com", "shop/payments", 0, 0, iso(now - 5 * 3600)),
        cursor_commit("abc1234", "ana@example.com", "shop/payments", 2, 0, iso(now - 5 * 3600)),  # dead-lettered
    ]
    vendor_apis.failures = [(429, "1")]
    env = vendor_env(pipeline, tmp_path, AIYIELD_CURSOR_API_KEY=CURSOR_KEY, AIYIELD_CURSOR_API_URL=vendor_apis.url)

    first = pull(env, "cursor", "--days", "3")
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Traceback" not in first.stderr
    assert "dead-lettered: usage-based record without `tokenUsage.totalCents`" in first.stdout
    assert vendor_apis.requests[0].path == "/teams/members" and vendor_apis.requests[1].path == "/teams/members"
    # The code ships: production deployments of both repos, sent like CI would.
    pipeline.send([
        {"type": "deployment", "id": "d1", "ts": now - 3600, "deploy_id": "d1", "repo": "shop/payments",
         "environment": "production", "status": "succeeded", "commits": [SHA_A]},
        {"type": "deployment", "id": "d2", "ts": now - 3600, "deploy_id": "d2", "repo": "growth/web",
         "environment": "production", "status": "succeeded", "commits": [SHA_B]},
    ])

    days = settled(now, 3, 2 * 3600)
    seat = {"payments": sum(80 / month_days(d) for d in days), "growth": sum(40 / month_days(d) for d in days)}
    v = lambda name, **labels: seven_days(pipeline, name, **labels)  # noqa: E731
    pipeline.wait_value("aiyield_normalized_deployments", 1.0, team="payments", window="7d")  # 12 AI lines: capped at 1
    pipeline.wait_value("aiyield_normalized_deployments", 0.5, team="growth", window="7d")  # 5 AI lines
    pipeline.wait_value("aiyield_spend_usd", 2.5, team="payments", tool="cursor", model="claude-4.5-sonnet", window="7d")
    assert v("aiyield_spend_usd", team="growth", tool="cursor", model="claude-4.5-sonnet") == pytest.approx(1.255, abs=1e-9)
    assert v("aiyield_tokens", team="payments", tool="cursor", model="claude-4.5-sonnet", type="input") == 1500
    assert v("aiyield_spend_usd", team="payments", tool="cursor", model="seats") == pytest.approx(seat["payments"], abs=1e-6)
    assert v("aiyield_spend_usd", team="growth", tool="cursor", model="seats") == pytest.approx(seat["growth"], abs=1e-6)
    expected_figures = {
        ("aiyield_tool_lines", "change", "accepted"): 150, ("aiyield_tool_suggestions", "stage", "shown"): 60,
        ("aiyield_tool_suggestions", "stage", "accepted"): 25,
        ("aiyield_tool_active_user_days", "engagement", "active"): 2,
    }
    if y2 not in days:  # a pull just after midnight reads one settled day fewer (y2 always is)
        raise AssertionError("the day before yesterday is always settled")
    for (name, label, kind), value in expected_figures.items():
        assert v(name, team="payments", tool="cursor", **{label: kind}) == value, name
    assert v("aiyield_tool_requests", team="payments", tool="cursor") == 7
    assert v("aiyield_tasks", team="payments", tool="cursor", status="shipped") == 1
    assert pipeline.events_total("token", "invalid") == 1 and pipeline.events_total("task", "invalid") == 1
    accepted = {t: pipeline.events_total(t, "accepted") for t in ("token", "task", "context")}

    # The same days again: nothing counts twice (records re-read are duplicates; settled days are not re-read).
    second = pull(env, "cursor", "--days", "3")
    assert second.returncode == 0, second.stderr
    # 3 usage records and 2 AI commits re-read (one day behind the cursor); no settled day left to read.
    wait_for(lambda: pipeline.events_total("token", "duplicate") == 3 and pipeline.events_total("task", "duplicate") == 2,
             60, "the second pull's records to arrive as duplicates")
    assert {t: pipeline.events_total(t, "accepted") for t in accepted} == accepted
    assert v("aiyield_spend_usd", team="payments", tool="cursor", model="claude-4.5-sonnet") == 2.5
    assert v("aiyield_normalized_deployments", team="payments") == 1.0
    assert pipeline.events_total("token", "invalid") == 1


def test_a_refused_credential_is_one_line_naming_the_variable(pipeline, vendor_apis, tmp_path):
    env = vendor_env(pipeline, tmp_path, AIYIELD_CURSOR_API_KEY="key_revoked", AIYIELD_CURSOR_API_URL=vendor_apis.url)
    result = pull(env, "cursor")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "AIYIELD_CURSOR_API_KEY" in lines[0] and "401" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    missing = pull({k: v for k, v in env.items() if k != "AIYIELD_CURSOR_API_KEY"}, "cursor")
    assert missing.returncode == 2 and "AIYIELD_CURSOR_API_KEY is not set" in missing.stderr


@pytest.mark.parametrize("spend", ["otel", "analytics"])
def test_claude_code_analytics_figures_and_spend_only_when_it_owns_spend(pipeline, vendor_apis, tmp_path, spend):
    pipeline.start_worker()
    now = time.time()
    today = int(now // DAY * DAY)
    y = iso_day(today - 2 * DAY)  # always settled, whatever the hour
    vendor_apis.claude_code = [
        claude_code_record(y, "ana@example.com", 4, 300, 40, 2, 1, {"edit_tool": (10, 2), "write_tool": (3, 1)},
                           [("claude-sonnet-4-5-20250929", 1000, 500, 20000, 3000, 123.45)]),
        claude_code_record(y, "bo@example.com", 1, 10, 0, 0, 0, {"edit_tool": (1, 0)},
                           [("claude-haiku-4-5", 10, 5, 0, 0, 0.55)]),
        claude_code_record(y, "cy@example.com", 2, 5, 5, 1, 0, {}, []),
        claude_code_record(iso_day(today), "ana@example.com", 99, 999, 0, 0, 0, {}, []),  # today: not settled
    ]
    env = vendor_env(pipeline, tmp_path, AIYIELD_ANTHROPIC_ADMIN_KEY=ANTHROPIC_KEY,
                     AIYIELD_ANTHROPIC_API_URL=vendor_apis.url, AIYIELD_CLAUDE_CODE_SPEND=spend)
    result = pull(env, "claude-code", "--days", "3")
    assert result.returncode == 0, result.stderr + result.stdout

    v = lambda name, **labels: seven_days(pipeline, name, tool="claude-code", **labels)  # noqa: E731
    pipeline.wait_value("aiyield_tool_sessions", 5, team="payments", tool="claude-code", window="7d")
    pipeline.wait_value("aiyield_tool_sessions", 2, team="growth", tool="claude-code", window="7d")
    assert v("aiyield_tool_edit_decisions", team="payments", decision="accepted") == 14
    assert v("aiyield_tool_edit_decisions", team="payments", decision="rejected") == 3
    assert v("aiyield_tool_active_user_days", team="payments", engagement="active") == 2
    if spend == "analytics":
        pipeline.wait_value("aiyield_spend_usd", 1.2345, team="payments", tool="claude-code",
                            model="claude-sonnet-4-5-20250929", window="7d")
        assert v("aiyield_spend_usd", team="payments", model="claude-haiku-4-5") == pytest.approx(0.0055, abs=1e-9)
        assert v("aiyield_tokens", team="payments", model="claude-sonnet-4-5-20250929", type="cache_write") == 3000
        assert v("aiyield_tool_lines", team="payments", change="added") == 310
        assert v("aiyield_tool_commits", team="growth") == 1
        assert v("aiyield_tool_pull_requests", team="payments") == 1
    else:  # OpenTelemetry owns spend, lines, commits and pull requests: none of them from this source
        assert v("aiyield_spend_usd", team="payments", model="claude-sonnet-4-5-20250929") is None
        assert v("aiyield_tool_lines", team="payments", change="added") is None
        assert v("aiyield_tool_commits", team="growth") is None
    accepted = {t: pipeline.events_total(t, "accepted") for t in ("token", "context")}

    # A second pull: the settled days were read, nothing new and nothing counted twice.
    again = pull(env, "claude-code", "--days", "3")
    assert again.returncode == 0, again.stderr
    time.sleep(2)
    assert {t: pipeline.events_total(t, "accepted") for t in accepted} == accepted
    assert v("aiyield_tool_sessions", team="payments") == 5
    # Even a pull that reads the same days again (its cursor lost) adds nothing: the ids are the records'.
    pipeline.redis.delete(keys.pull_cursor("claude-code"))
    third = pull(env, "claude-code", "--days", "3")
    assert third.returncode == 0, third.stderr
    wait_for(lambda: pipeline.events_total("context", "duplicate") >= accepted["context"], 60, "duplicates")
    assert {t: pipeline.events_total(t, "accepted") for t in accepted} == accepted
    assert v("aiyield_tool_sessions", team="payments") == 5


def test_claude_code_refused_key(pipeline, vendor_apis, tmp_path):
    env = vendor_env(pipeline, tmp_path, AIYIELD_ANTHROPIC_ADMIN_KEY="sk-ant-admin01-revoked",
                     AIYIELD_ANTHROPIC_API_URL=vendor_apis.url)
    result = pull(env, "claude-code")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "AIYIELD_ANTHROPIC_ADMIN_KEY" in lines[0], result.stderr


def test_copilot_figures_per_team_and_seat_spend(pipeline, vendor_apis, tmp_path):
    pipeline.start_worker()
    now = time.time()
    today = int(now // DAY * DAY)
    d3, d2 = today - 3 * DAY, today - 2 * DAY
    # payments: 5 seats from the org file (logins); platform: 5 seats assigned by a GitHub team; growth: 1 seat.
    vendor_apis.copilot_seats = (
        [copilot_seat(f"octo-{n}", "2025-01-01T00:00:00Z") for n in ("ana", "bo")]
        + [copilot_seat(f"pay{n}", "2025-01-01T00:00:00Z", team="payments") for n in range(3)]
        + [copilot_seat(f"plat{n}", "2025-01-01T00:00:00Z", team="platform") for n in range(5)]
        + [copilot_seat("octo-cy", "2025-01-01T00:00:00Z")])
    vendor_apis.copilot_users = {"orgs": {
        iso_day(d3): [copilot_user(iso_day(d3), "octo-ana", 40, 10, 80, 25, 3),
                      copilot_user(iso_day(d3), "plat0", 7, 2, 9, 4, 0),
                      copilot_user(iso_day(d3), "octo-cy", 100, 100, 100, 100, 100)],  # growth: 1 seat, withheld
        iso_day(d2): [copilot_user(iso_day(d2), "pay1", 20, 5, 30, 12, 0),
                      copilot_user(iso_day(d2), "octo-bo", 0, 0, 0, 0, 0)],
        # yesterday: not processed by GitHub yet (404)
    }}
    vendor_apis.failures = [(429, "1")]
    env = vendor_env(pipeline, tmp_path, AIYIELD_GITHUB_TOKEN=GITHUB_TOKEN, AIYIELD_GITHUB_ORG="acme",
                     AIYIELD_GITHUB_API_URL=vendor_apis.url)
    result = pull(env, "copilot", "--days", "3")
    assert result.returncode == 0, result.stderr + result.stdout

    v = lambda name, **labels: seven_days(pipeline, name, tool="copilot", **labels)  # noqa: E731
    pipeline.wait_value("aiyield_tool_lines", 37, team="payments", tool="copilot", change="accepted", window="7d")
    assert v("aiyield_tool_lines", team="payments", change="suggested") == 110
    assert v("aiyield_tool_suggestions", team="payments", stage="shown") == 60
    assert v("aiyield_tool_suggestions", team="payments", stage="accepted") == 15
    assert v("aiyield_tool_requests", team="payments") == 3
    assert v("aiyield_tool_active_user_days", team="payments", engagement="active") == 3
    assert v("aiyield_tool_active_user_days", team="payments", engagement="engaged") == 2
    assert v("aiyield_tool_lines", team="platform", change="accepted") == 4
    assert v("aiyield_tool_lines", team="growth", change="accepted") is None  # under GitHub's 5-seat group
    seat = lambda n: sum(n * 19.0 / month_days(d) for d in (d3, d2))  # noqa: E731
    assert v("aiyield_spend_usd", team="payments", model="seats") == pytest.approx(seat(5), abs=1e-6)
    assert v("aiyield_spend_usd", team="platform", model="seats") == pytest.approx(seat(5), abs=1e-6)
    assert v("aiyield_spend_usd", team="growth", model="seats") == pytest.approx(seat(1), abs=1e-6)
    accepted = {t: pipeline.events_total(t, "accepted") for t in ("token", "context")}

    # GitHub processes yesterday; the next pull reads it, and only it.
    y = iso_day(today - DAY)
    vendor_apis.copilot_users["orgs"][y] = [copilot_user(y, "plat1", 1, 1, 1, 1, 0)]
    again = pull(env, "copilot", "--days", "3")
    assert again.returncode == 0, again.stderr
    pipeline.wait_value("aiyield_tool_lines", 5, team="platform", tool="copilot", change="accepted", window="7d")
    assert v("aiyield_tool_lines", team="payments", change="accepted") == 37
    assert pipeline.events_total("context", "duplicate") == 0  # the days already read were not asked again
    assert pipeline.events_total("token", "accepted") == accepted["token"] + 3  # one more day of seats per team


def test_copilot_refused_token(pipeline, vendor_apis, tmp_path):
    env = vendor_env(pipeline, tmp_path, AIYIELD_GITHUB_TOKEN="ghp_revoked", AIYIELD_GITHUB_ORG="acme",
                     AIYIELD_GITHUB_API_URL=vendor_apis.url)
    result = pull(env, "copilot")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "AIYIELD_GITHUB_TOKEN" in lines[0], result.stderr
