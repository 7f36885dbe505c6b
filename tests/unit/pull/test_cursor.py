"""Cursor connector: pure mappings with exact values, and one fetch against the local API (tests/vendor_apis.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aiyield.core.events import InvalidEvent, parse_items
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.pull_cursor import Cursor, commit_items, daily_items, seat_items, usage_items
from aiyield.pulling import Http, Unauthorized, days_in_month
from aiyield.settings import Settings
from tests.vendor_apis import CURSOR_KEY

from .fixtures import DAY, ORG, SHA_A, SHA_B, cursor_commit, cursor_daily, cursor_usage

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
TODAY = int(NOW // DAY * DAY)
P = Pseudonymiser(b"k")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_usage_based_cost_is_authoritative_and_included_calls_cost_nothing():
    items = usage_items([
        cursor_usage(NOW - 60, "ana@example.com", "Usage-based", 250, inputTokens=1000, outputTokens=200,
                     cacheReadTokens=300, cacheWriteTokens=400),
        cursor_usage(NOW - 50, "cy@example.com", "Included in Business", 12.5, inputTokens=10),
        cursor_usage(NOW - 40, "zed@example.com", "Usage-based", None),
    ], ORG, P)
    good, bad = parse_items(items[:2], NOW)
    assert bad == []
    a, c = good
    assert (a.team, a.tool, a.model, a.cost_usd) == ("payments", "cursor", "claude-4.5-sonnet", 2.5)
    assert (a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_tokens) == (1000, 200, 300, 400)
    assert (c.team, c.cost_usd, c.input_tokens) == ("growth", 0.0, 10)
    assert isinstance(items[2], InvalidEvent) and "totalCents" in items[2].reason
    assert "zed@example.com" not in str(items[2].raw)  # no email in a dead letter
    # Ids come from the record, not from the pull: the same record gives the same id.
    again = usage_items([cursor_usage(NOW - 60, "ana@example.com", "Usage-based", 250)], ORG, P)
    assert again[0]["id"] == items[0]["id"]


def test_daily_rows_become_figures_of_settled_days_only():
    y = TODAY - DAY
    items = daily_items([
        cursor_daily(y, "ana@example.com", acceptedLinesAdded=120, totalTabsShown=50, totalTabsAccepted=20,
                     composerRequests=3, chatRequests=2, agentRequests=1),
        cursor_daily(TODAY, "bo@example.com", acceptedLinesAdded=999),  # today: partial, not settled
    ], ORG, {y})
    assert {(i["metric"], i["value"]) for i in items} == {
        ("lines_accepted", 120), ("suggestions", 50), ("acceptances", 20), ("requests", 6), ("active_users", 1)}
    assert {(i["team"], i["tool"], i["ts"]) for i in items} == {("payments", "cursor", TODAY - 1)}


def test_seats_are_spread_over_the_months_days_per_team():
    members = [{"name": "A", "email": "ana@example.com", "role": "member"},
               {"name": "B", "email": "bo@example.com", "role": "owner"},
               {"name": "Z", "email": "zed@example.com", "role": "member"}]
    items = seat_items(members, ORG, 40.0, [TODAY - DAY])
    assert days_in_month(TODAY - DAY) == 31  # January 2027
    assert {(i["team"], i["model"], round(i["cost_usd"], 9)) for i in items} == {
        ("payments", "seats", round(80 / 31, 9)), ("unassigned", "seats", round(40 / 31, 9))}


def test_ai_commits_become_tasks_claiming_their_full_sha():
    items, skipped = commit_items([
        cursor_commit(SHA_A.upper(), "ana@example.com", "shop/payments", 4, 8, iso(NOW - 3600)),
        cursor_commit(SHA_B, "zed@example.com", "growth/web", 5, 0, iso(NOW - 3600)),  # unmapped: the repo's team
        cursor_commit("c" * 40, "ana@example.com", "shop/payments", 0, 0, iso(NOW)),  # no AI lines: skipped
        cursor_commit("abc1234", "ana@example.com", "shop/payments", 1, 0, iso(NOW)),
        cursor_commit("d" * 40, "ana@example.com", None, 1, 0, iso(NOW)),
    ], ORG, P)
    assert skipped == 1
    good, bad = parse_items(items[:2], NOW)
    assert bad == []
    a, b = good
    assert (a.task_id, a.team, a.tool, a.status, a.repo, a.commits, a.ai_lines) == (
        f"cursor:{SHA_A}", "payments", "cursor", "completed", "shop/payments", [SHA_A], 12)
    assert (b.team, b.ai_lines) == ("growth", 5)
    assert "not a full SHA" in items[2].reason and "without repoName" in items[3].reason


def test_fetch_pages_retries_and_reads_only_settled_days(vendor_apis):
    y = TODAY - DAY
    vendor_apis.cursor_members = [{"name": "A", "email": "ana@example.com", "role": "member", "addedLater": 1}]
    vendor_apis.cursor_daily = [cursor_daily(y, "ana@example.com", acceptedLinesAdded=7),
                                cursor_daily(TODAY, "ana@example.com", acceptedLinesAdded=999)]
    vendor_apis.cursor_usage = [cursor_usage(NOW - 3600 * h, "ana@example.com", "Usage-based", 100) for h in (1, 2, 3, 4, 5)]
    vendor_apis.cursor_commits = [cursor_commit(c * 40, "ana@example.com", "shop/pay", 1, 1, iso(NOW - 7200))
                                  for c in "abc"]
    vendor_apis.failures = [(429, "7"), (503, "0")]
    slept: list[float] = []
    settings = Settings(cursor_api_key=CURSOR_KEY, cursor_api_url=vendor_apis.url, org=ORG)
    batch = Cursor().fetch(settings, {}, NOW, 2, Http(sleep=slept.append), P)
    assert slept == [7.0, 0.0]  # Retry-After honoured
    assert sum(1 for i in batch.items if i["type"] == "token" and i["model"] != "seats") == 5  # 3 pages
    assert sum(1 for i in batch.items if i["type"] == "task") == 3  # 2 pages
    assert [i["value"] for i in batch.items if i.get("metric") == "lines_accepted"] == [7]
    assert batch.cursors == {"daily": TODAY, "usage": NOW, "commits": NOW}
    assert len(vendor_apis.of("/teams/filtered-usage-events")) == 3
    # The next pull starts at the cursor: no settled day is left, records are re-read one day back.
    again = Cursor().fetch(settings, batch.cursors, NOW + 60, 2, Http(), P)
    assert not any(i.get("metric") or i.get("model") == "seats" for i in again.items)
    assert vendor_apis.of("/teams/filtered-usage-events")[-1].body["startDate"] == int((NOW - DAY) * 1000)


def test_a_refused_key_is_unauthorized(vendor_apis):
    settings = Settings(cursor_api_key="key_wrong", cursor_api_url=vendor_apis.url, org=ORG)
    with pytest.raises(Unauthorized):
        Cursor().fetch(settings, {}, NOW, 1, Http(), P)
