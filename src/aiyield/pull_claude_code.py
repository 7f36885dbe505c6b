"""`aiyield pull claude-code`: Anthropic's Claude Code Analytics Admin API as aiyield events.

Source, as Anthropic documents it (https://platform.claude.com/docs/en/manage-claude/claude-code-analytics-api and
its reference, Get Claude Code Usage Report): `GET /v1/organizations/usage_report/claude_code` on
`AIYIELD_ANTHROPIC_API_URL`, headers `x-api-key: <admin key>` (`AIYIELD_ANTHROPIC_ADMIN_KEY`, an `sk-ant-admin...`
key, the one `aiyield reconcile` uses) and `anthropic-version: 2023-06-01`. Query: `starting_at` (one UTC day,
`YYYY-MM-DD`), `limit`, `page` (the previous answer's `next_page`). Answer: `{"data": [record], "has_more",
"next_page"}`, one record per user (or API key) and day:

    {"date": "2025-09-01T00:00:00Z", "actor": {"type": "user_actor", "email_address": ...} | {"type": "api_actor",
     "api_key_name": ...}, "organization_id", "customer_type", "terminal_type",
     "core_metrics": {"num_sessions", "lines_of_code": {"added", "removed"}, "commits_by_claude_code",
                      "pull_requests_by_claude_code"},
     "tool_actions": {"edit_tool" | "multi_edit_tool" | "write_tool" | "notebook_edit_tool": {"accepted", "rejected"}},
     "model_breakdown": [{"model", "tokens": {"input", "output", "cache_read", "cache_creation"},
                          "estimated_cost": {"currency": "USD", "amount": <cents>}}]}

Data is daily and arrives within about an hour: a UTC day is read once it ended `SETTLE` ago.

Mapping decisions:

- Team: the actor's email (or API key name) in the organisation file's `members`, else `unassigned`; the developer
  id is the email or `api-key:<name>`, pseudonymised at ingest.
- Never both: Claude Code's OpenTelemetry export already gives spend, lines, commits and pull requests
  (docs/INTERFACE.md §4). `AIYIELD_CLAUDE_CODE_SPEND` says which source owns them:
  - `otel` (default): this connector adds only what OpenTelemetry does not carry: sessions, edit-tool decisions
    (accepted / rejected), daily active users;
  - `analytics`: it also adds lines added / removed, commits, pull requests, and the spend: one `token` event per
    user, day and model, with its tokens (`cache_creation` as cache writes, TTL not reported) and `cost_usd` =
    `estimated_cost.amount` / 100 (Anthropic's estimate, not a bill).
- All figures are `context` events (`aiyield_tool_*`, tool `claude-code`) at the day's last second. A model
  breakdown in another currency than USD is dead-lettered.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from aiyield.core.org import Org
from aiyield.pulling import (
    DAY,
    UNASSIGNED,
    Batch,
    Http,
    PullError,
    context,
    count,
    event_id,
    iso_day,
    nonzero,
    parse_day,
    reject,
    settled_days,
    since,
    usd,
)
from aiyield.reconcile import ANTHROPIC_VERSION
from aiyield.settings import Settings

VENDOR = TOOL = "claude-code"
PATH = "/v1/organizations/usage_report/claude_code"
SETTLE = 2 * 3600
PAGE_LIMIT = 1000
MAX_PAGES = 1000
#: `customer_type`/`terminal_type` aside, the metrics OpenTelemetry also exports, owned by one source only.
_OTEL_OWNED = ("lines_added", "lines_removed", "commits", "pull_requests")


def actor_id(actor: Mapping[str, Any]) -> str | None:
    if actor.get("email_address"):
        return str(actor["email_address"])
    if actor.get("api_key_name"):
        return f"api-key:{actor['api_key_name']}"
    return None


def record_items(records: list[Mapping[str, Any]], org: Org, spend: bool, pseudonymise: Callable[[str], str]) -> list[Any]:
    """One day's records as events; `spend`: this source owns spend, lines, commits and pull requests."""
    out: list[Any] = []
    for r in records:
        who = actor_id(r.get("actor") or {})
        try:
            day = parse_day(str(r["date"]))
        except (KeyError, ValueError):
            out.append(reject("record without a `date` (YYYY-MM-DD or RFC 3339)", r, "context", who, pseudonymise))
            continue
        ts, team = day + DAY - 1, (org.team_of_member(who) if who else None) or UNASSIGNED
        core = r.get("core_metrics") or {}
        lines = core.get("lines_of_code") or {}
        tools = [t for t in (r.get("tool_actions") or {}).values() if isinstance(t, Mapping)]

        def figure(metric: str, value: Any) -> dict[str, Any]:
            return context(event_id(VENDOR, "daily", who, day, metric), ts, team, TOOL, metric, value, who)

        figures = [
            figure("sessions", core.get("num_sessions") or 0),
            figure("tool_accepted", sum(count(t.get("accepted") or 0) for t in tools)),
            figure("tool_rejected", sum(count(t.get("rejected") or 0) for t in tools)),
            figure("active_users", 1),
            figure("lines_added", lines.get("added") or 0),
            figure("lines_removed", lines.get("removed") or 0),
            figure("commits", core.get("commits_by_claude_code") or 0),
            figure("pull_requests", core.get("pull_requests_by_claude_code") or 0),
        ]
        out += nonzero(f for f in figures if spend or f["metric"] not in _OTEL_OWNED)
        if not spend:
            continue
        for m in r.get("model_breakdown") or []:
            cost = m.get("estimated_cost") or {}
            if str(cost.get("currency", "USD")).upper() != "USD":
                out.append(reject(f"estimated_cost in {cost.get('currency')!r}, expected USD", m, "token", who,
                                  pseudonymise))
                continue
            tokens = m.get("tokens") or {}
            item = {
                "type": "token", "id": event_id(VENDOR, "spend", who, day, m.get("model")), "ts": ts, "team": team,
                "tool": TOOL, "model": m.get("model") or "unknown",
                "input_tokens": count(tokens.get("input", 0)), "output_tokens": count(tokens.get("output", 0)),
                "cache_read_tokens": count(tokens.get("cache_read", 0)),
                "cache_write_tokens": count(tokens.get("cache_creation", 0)),
                "cost_usd": usd(cost.get("amount", 0)) / 100,
            }
            if who:
                item["developer"] = who
            out.append(item)
    return out


class ClaudeCode:
    vendor = VENDOR

    def missing(self, settings: Settings) -> str | None:
        return None if settings.anthropic_admin_key else "AIYIELD_ANTHROPIC_ADMIN_KEY"

    def credential(self, settings: Settings) -> str:
        return "AIYIELD_ANTHROPIC_ADMIN_KEY"

    def fetch(self, settings: Settings, cursors: Mapping[str, float], now: float, days: int, http: Http,
              pseudonymise: Callable[[str], str]) -> Batch:
        url = settings.anthropic_api_url + PATH
        headers = {"x-api-key": settings.anthropic_admin_key, "anthropic-version": ANTHROPIC_VERSION}
        spend = settings.claude_code_spend == "analytics"
        batch = Batch()
        settled = settled_days(since(cursors.get("daily"), now, days, overlap=0), now, SETTLE)
        for day in settled:
            records: list = []
            page: str | None = None
            for _ in range(MAX_PAGES):
                params = [("starting_at", iso_day(day)), ("limit", str(PAGE_LIMIT))] + ([("page", page)] if page else [])
                answer = http.get(url, params, headers, VENDOR)
                if not isinstance(answer, Mapping) or not isinstance(answer.get("data"), list):
                    raise PullError(f"claude-code: answer without a `data` list: {str(answer)[:200]}")
                records += answer["data"]
                if not answer.get("has_more"):
                    break
                page = answer.get("next_page")
                if not page:
                    raise PullError("claude-code: `has_more` without a `next_page`")
            else:
                raise PullError(f"claude-code: still `has_more` after {MAX_PAGES} pages")
            batch.items += record_items(records, settings.org, spend, pseudonymise)
            batch.notes["user-days"] += len(records)
        if settled:
            batch.cursors["daily"] = settled[-1] + DAY
        batch.notes["days"] = len(settled)
        batch.notes[f"spend from {'analytics' if spend else 'otel'}"] = 1
        return batch
