"""Claude Code Analytics connector: never both sources of spend, exact values, paging, settled days only."""

from __future__ import annotations

from aiyield.core.events import InvalidEvent, parse_items
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.pull_claude_code import ClaudeCode, record_items
from aiyield.pulling import Http, iso_day
from aiyield.settings import Settings
from tests.vendor_apis import ANTHROPIC_KEY

from .fixtures import DAY, ORG, claude_code_record

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
TODAY = int(NOW // DAY * DAY)
P = Pseudonymiser(b"k")
RECORD = claude_code_record(
    "2027-01-14", "ana@example.com", sessions=4, added=300, removed=40, commits=2, prs=1,
    tools={"edit_tool": (10, 2), "write_tool": (3, 1), "multi_edit_tool": (0, 0)},
    models=[("claude-sonnet-4-5-20250929", 1000, 500, 20000, 3000, 123.45), ("claude-haiku-4-5", 10, 5, 0, 0, 0.5)])


def figures(items) -> dict[str, int]:
    return {i["metric"]: i["value"] for i in items if i["type"] == "context"}


def test_otel_owns_spend_lines_commits_and_pull_requests_by_default():
    items = record_items([RECORD], ORG, spend=False, pseudonymise=P)
    assert figures(items) == {"sessions": 4, "tool_accepted": 13, "tool_rejected": 3, "active_users": 1}
    assert all(i["type"] == "context" and i["team"] == "payments" and i["tool"] == "claude-code" for i in items)
    assert {i["ts"] for i in items} == {TODAY - 1}


def test_analytics_owns_everything_when_configured_with_exact_dollars():
    items = record_items([RECORD], ORG, spend=True, pseudonymise=P)
    assert figures(items) == {"sessions": 4, "tool_accepted": 13, "tool_rejected": 3, "active_users": 1,
                              "lines_added": 300, "lines_removed": 40, "commits": 2, "pull_requests": 1}
    good, bad = parse_items(items, NOW, P)
    assert bad == []
    sonnet, haiku = [e for e in good if e.type == "token"]
    assert (sonnet.model, sonnet.cost_usd, sonnet.input_tokens, sonnet.output_tokens, sonnet.cache_read_tokens,
            sonnet.cache_write_tokens) == ("claude-sonnet-4-5-20250929", 1.2345, 1000, 500, 20000, 3000)
    assert haiku.cost_usd == 0.005
    assert sonnet.developer == P("ana@example.com")


def test_api_keys_are_actors_and_other_currencies_are_dead_lettered():
    record = claude_code_record("2027-01-14", None, 1, 0, 0, 0, 0, {}, [("m", 1, 1, 0, 0, 100)], api_key="ci-bot")
    record["model_breakdown"][0]["estimated_cost"]["currency"] = "EUR"
    items = record_items([record], ORG, spend=True, pseudonymise=P)
    (bad,) = [i for i in items if isinstance(i, InvalidEvent)]
    assert "expected USD" in bad.reason and bad.raw["developer"] == P("api-key:ci-bot")
    assert {i["team"] for i in items if isinstance(i, dict)} == {"unassigned"}


def test_fetch_reads_each_settled_day_with_paging(vendor_apis):
    day = iso_day(TODAY - DAY)
    vendor_apis.claude_code = [claude_code_record(day, f"u{n}@example.com", 1, 0, 0, 0, 0, {}, []) for n in range(5)]
    vendor_apis.claude_code.append(claude_code_record(iso_day(TODAY), "late@example.com", 9, 0, 0, 0, 0, {}, []))
    vendor_apis.failures = [(429, "3")]
    slept: list[float] = []
    settings = Settings(anthropic_admin_key=ANTHROPIC_KEY, anthropic_api_url=vendor_apis.url, org=ORG)
    batch = ClaudeCode().fetch(settings, {}, NOW, 2, Http(sleep=slept.append), P)
    assert slept == [3.0]
    assert figures(batch.items)["sessions"] == 1 and sum(i["value"] for i in batch.items if i["metric"] == "sessions") == 5
    assert batch.cursors == {"daily": TODAY}
    asked = [r.query["starting_at"] for r in vendor_apis.of("/v1/organizations/usage_report/claude_code")]
    # Two days back: the first asked twice (a 429, then the answer), yesterday in 3 pages; today is not settled.
    assert asked == [iso_day(TODAY - 2 * DAY)] * 2 + [day] * 3


def test_a_record_without_a_date_is_dead_lettered():
    record = {k: v for k, v in RECORD.items() if k != "date"}
    (item,) = record_items([record], ORG, spend=False, pseudonymise=P)
    assert isinstance(item, InvalidEvent) and "without a `date`" in item.reason and item.raw["type"] == "context"
    assert "ana@example.com" not in str(item.raw)
