"""`aiyield pull cursor`: Cursor's Admin API and AI Code Tracking API as aiyield events.

Sources, as Cursor documents them (https://cursor.com/docs/account/teams/admin-api and
https://cursor.com/docs/account/teams/ai-code-tracking-api): base URL `https://api.cursor.com`
(`AIYIELD_CURSOR_API_URL`), HTTP Basic authentication with the admin API key as the user name and no password
(`AIYIELD_CURSOR_API_KEY`). The AI Code Tracking API is Enterprise-only and alpha: a team without it answers 401/403
or 404 there, and the other streams are still read.

- `GET /teams/members` -> `{"teamMembers": [{"name", "email", "role"}]}`: the seats.
- `POST /teams/daily-usage-data` `{"startDate", "endDate"}` (epoch ms, at most 90 days) -> `{"data": [{"date" (ms),
  "email", "isActive", "acceptedLinesAdded", "acceptedLinesDeleted", "totalTabsShown", "totalTabsAccepted",
  "totalApplies", "totalAccepts", "totalRejects", "composerRequests", "chatRequests", "agentRequests",
  "cmdkUsages", ...}], "period"}`: one row per member and day.
- `POST /teams/filtered-usage-events` `{"startDate", "endDate", "page", "pageSize"}` -> `{"usageEvents":
  [{"timestamp" (ms, a string), "userEmail", "model", "kind" ("Usage-based", "Included in Business", ...),
  "maxMode", "requestsCosts", "isTokenBasedCall", "tokenUsage": {"inputTokens", "outputTokens", "cacheWriteTokens",
  "cacheReadTokens", "totalCents"}}], "pagination": {"hasNextPage", ...}}`: one record per model call.
- `GET /analytics/ai-code/commits?startDate&endDate&page&pageSize` -> `{"items": [{"commitHash", "userEmail",
  "repoName", "branchName", "isPrimaryBranch", "totalLinesAdded", "tabLinesAdded", "composerLinesAdded",
  "nonAiLinesAdded", "commitTs", "createdAt", ...}], "totalCount", "page", "pageSize"}`.

Mapping decisions:

- Team: the member's team in the organisation file (`members`), else (commits) the repo's team, else `unassigned`.
  The email is the developer id, pseudonymised at ingest.
- Spend. Usage-based charges are authoritative: a `token` event with `cost_usd` = `totalCents` / 100 and the call's
  tokens. Calls included in the subscription are `token` events with `cost_usd` 0 (the seat pays for them), so
  their tokens are visible and not priced again. The seats themselves: `[seats] cursor` (USD per seat per month) x
  the members of each team, spread evenly over the month's days, one `token` event per team and settled day
  (`model` `seats`). A usage-based record without `totalCents` is dead-lettered: its cost is unknown.
- Tool-reported figures (`context` events, `aiyield_tool_*`), per member and settled UTC day, at the day's last
  second: `lines_accepted` (acceptedLinesAdded), `suggestions` / `acceptances` (Tab completions shown / accepted),
  `requests` (composer + chat + agent + Cmd-K), `active_users` (1 for an active member).
- AI Code Tracking: each commit with AI lines (Tab + Composer lines added) becomes a completed `task`
  (`task_id` `cursor:<sha>`) claiming that full SHA in `repoName` with `ai_lines`, at `commitTs` (else
  `createdAt`): Cursor-written code then ships into normalized deployments like any task's. A commit without AI
  lines is skipped; an abbreviated SHA or a commit without a repository is dead-lettered.
- Ids: `cursor:` + a digest of the record's identity (the SHA; the member and day; the member, time, model and
  kind of a usage record; the team and day of seats).
"""

from __future__ import annotations

import base64
import re
from collections import defaultdict
from datetime import datetime, timezone
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
    days_in_month,
    event_id,
    nonzero,
    reject,
    settled_days,
    since,
    usd,
)
from aiyield.reconcile import Unauthorized
from aiyield.settings import Settings

VENDOR = TOOL = "cursor"
#: Daily usage is aggregated hourly: a UTC day is read once it ended this long ago.
SETTLE = 2 * 3600
PAGE_SIZE = 500
MAX_PAGES = 1000
#: The widest range each endpoint takes per request.
MAX_RANGE = {"daily": 90 * DAY, "usage": 30 * DAY}
_FULL_SHA = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")


def team_of(org: Org, member: str | None) -> str:
    return (org.team_of_member(member) if member else None) or UNASSIGNED


# ----------------------------------------------------------------------------------------------- pure mappings


def usage_items(records: list[Mapping[str, Any]], org: Org, pseudonymise: Callable[[str], str]) -> list[Any]:
    """`filtered-usage-events` records as token events (usage-based cost authoritative, included calls at $0)."""
    out: list[Any] = []
    for r in records:
        email = r.get("userEmail")
        kind = str(r.get("kind") or r.get("kindLabel") or "")
        tokens = r.get("tokenUsage") or {}
        usage_based = "usage" in kind.lower() and "based" in kind.lower()
        try:
            ts = int(str(r["timestamp"])) / 1000
        except (KeyError, ValueError):
            out.append(reject("usage record without a numeric `timestamp` (epoch ms)", r, "token", email, pseudonymise))
            continue
        if usage_based and tokens.get("totalCents") is None:
            out.append(reject("usage-based record without `tokenUsage.totalCents`: its cost is unknown", r, "token",
                              email, pseudonymise))
            continue
        item = {
            "type": "token", "id": event_id(VENDOR, "usage", email, r["timestamp"], r.get("model"), kind), "ts": ts,
            "team": team_of(org, email), "tool": TOOL, "model": r.get("model") or "unknown",
            "input_tokens": count(tokens.get("inputTokens", 0)), "output_tokens": count(tokens.get("outputTokens", 0)),
            "cache_read_tokens": count(tokens.get("cacheReadTokens", 0)),
            "cache_write_tokens": count(tokens.get("cacheWriteTokens", 0)),
            "cost_usd": usd(tokens["totalCents"]) / 100 if usage_based else 0.0,
        }
        if email:
            item["developer"] = email
        out.append(item)
    return out


def daily_items(rows: list[Mapping[str, Any]], org: Org, days: set[int]) -> list[Any]:
    """`daily-usage-data` rows of settled days as tool-reported figures per member and day."""
    out: list[Any] = []
    for row in rows:
        email = row.get("email")
        day = int(int(row.get("date", 0)) // 1000 // DAY * DAY)
        if day not in days:
            continue
        ts, team = day + DAY - 1, team_of(org, email)

        def figure(metric: str, value: Any) -> dict[str, Any]:
            return context(event_id(VENDOR, "daily", email, day, metric), ts, team, TOOL, metric, value, email)

        requests = sum(count(row.get(k) or 0) for k in ("composerRequests", "chatRequests", "agentRequests", "cmdkUsages"))
        out += nonzero([
            figure("lines_accepted", row.get("acceptedLinesAdded") or 0),
            figure("suggestions", row.get("totalTabsShown") or 0),
            figure("acceptances", row.get("totalTabsAccepted") or 0),
            figure("requests", requests),
            figure("active_users", 1 if row.get("isActive") else 0),
        ])
    return out


def seat_items(members: list[Mapping[str, Any]], org: Org, price: float, days: list[int]) -> list[Any]:
    """The seats' monthly price spread over each settled day, per team: spend without tokens."""
    seats: dict[str, int] = defaultdict(int)
    for m in members:
        seats[team_of(org, m.get("email"))] += 1
    return [
        {"type": "token", "id": event_id(VENDOR, "seats", team, day), "ts": day + DAY - 1, "team": team, "tool": TOOL,
         "model": "seats", "input_tokens": 0, "output_tokens": 0, "cost_usd": n * price / days_in_month(day)}
        for day in days for team, n in sorted(seats.items())
    ]


def commit_items(commits: list[Mapping[str, Any]], org: Org, pseudonymise: Callable[[str], str]) -> tuple[list[Any], int]:
    """AI Code Tracking commits as completed tasks claiming their SHA; also the number skipped for having no AI lines."""
    out: list[Any] = []
    skipped = 0
    for c in commits:
        email, sha, repo = c.get("userEmail"), c.get("commitHash"), c.get("repoName")
        ai_lines = count(c.get("tabLinesAdded") or 0) + count(c.get("composerLinesAdded") or 0)
        if not isinstance(ai_lines, int):
            out.append(reject("tabLinesAdded / composerLinesAdded are not counts", c, "task", email, pseudonymise))
            continue
        if ai_lines == 0:
            skipped += 1
            continue
        if not isinstance(sha, str) or not _FULL_SHA.match(sha):
            out.append(reject(f"commitHash {sha!r} is not a full SHA (40 or 64 hex characters): it cannot be claimed",
                              c, "task", email, pseudonymise))
            continue
        if not repo:
            out.append(reject("commit without repoName: it cannot be joined to a deployment", c, "task", email,
                              pseudonymise))
            continue
        team = (org.team_of_member(email) if email else None) or org.team_of_repo(repo) or UNASSIGNED
        item = {
            "type": "task", "id": event_id(VENDOR, "commit", sha.lower()), "ts": c.get("commitTs") or c.get("createdAt"),
            "task_id": f"cursor:{sha.lower()}", "team": team, "tool": TOOL, "status": "completed", "repo": repo,
            "commits": [sha.lower()], "ai_lines": ai_lines,
        }
        if email:
            item["developer"] = email
        out.append(item)
    return out, skipped


# ----------------------------------------------------------------------------------------------- the connector


def _ms(ts: float) -> int:
    return int(ts * 1000)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(answer: Any, name: str) -> list:
    if not isinstance(answer, Mapping) or not isinstance(answer.get(name), list):
        raise PullError(f"cursor: answer without a `{name}` list: {str(answer)[:200]}")
    return answer[name]


class Cursor:
    vendor = VENDOR

    def missing(self, settings: Settings) -> str | None:
        return None if settings.cursor_api_key else "AIYIELD_CURSOR_API_KEY"

    def credential(self, settings: Settings) -> str:
        return "AIYIELD_CURSOR_API_KEY"

    def fetch(self, settings: Settings, cursors: Mapping[str, float], now: float, days: int, http: Http,
              pseudonymise: Callable[[str], str]) -> Batch:
        base = settings.cursor_api_url
        auth = {"Authorization": "Basic " + base64.b64encode(f"{settings.cursor_api_key}:".encode()).decode()}
        org = settings.org
        batch = Batch()

        def post(path: str, body: dict) -> Any:
            return http.request("POST", base + path, [], auth, VENDOR, body=body)

        members = _list(http.get(base + "/teams/members", [], auth, VENDOR), "teamMembers")

        # Settled days: daily figures and seats.
        settled = settled_days(since(cursors.get("daily"), now, days, overlap=0), now, SETTLE)
        if settled:
            rows: list = []
            for chunk in range(settled[0], settled[-1] + DAY, MAX_RANGE["daily"]):
                end = min(chunk + MAX_RANGE["daily"], settled[-1] + DAY)
                rows += _list(post("/teams/daily-usage-data", {"startDate": _ms(chunk), "endDate": _ms(end) - 1}), "data")
            batch.items += daily_items(rows, org, set(settled))
            if settings.org.seats.get(TOOL):
                batch.items += seat_items(members, org, settings.org.seats[TOOL], settled)
            else:
                batch.notes["seats not priced ([seats] cursor unset)"] += 1
            batch.cursors["daily"] = settled[-1] + DAY
            batch.notes["days"] = len(settled)

        # Per-record streams: usage events, then AI commits.
        start = since(cursors.get("usage"), now, days)
        records: list = []
        for chunk in range(int(start), int(now), MAX_RANGE["usage"]):
            end = min(chunk + MAX_RANGE["usage"], now)
            for page in range(1, MAX_PAGES + 1):
                answer = post("/teams/filtered-usage-events",
                              {"startDate": _ms(chunk), "endDate": _ms(end), "page": page, "pageSize": PAGE_SIZE})
                records += _list(answer, "usageEvents")
                if not (answer.get("pagination") or {}).get("hasNextPage"):
                    break
            else:
                raise PullError(f"cursor: usage events still paging after {MAX_PAGES} pages")
        batch.items += usage_items(records, org, pseudonymise)
        batch.cursors["usage"] = now
        batch.notes["usage records"] = len(records)

        start = since(cursors.get("commits"), now, days)
        commits: list = []
        try:
            for page in range(1, MAX_PAGES + 1):
                answer = http.get(base + "/analytics/ai-code/commits",
                                  [("startDate", _iso(start)), ("endDate", _iso(now)), ("page", str(page)),
                                   ("pageSize", str(PAGE_SIZE))], auth, VENDOR)
                items = _list(answer, "items")
                commits += items
                if not items or page * int(answer.get("pageSize") or PAGE_SIZE) >= int(answer.get("totalCount") or 0):
                    break
        except Unauthorized:
            # Enterprise-only: an admin key without AI Code Tracking still pulls spend and usage.
            batch.notes["AI Code Tracking API not available to this key"] += 1
        else:
            tasks, skipped = commit_items(commits, org, pseudonymise)
            batch.items += tasks
            batch.cursors["commits"] = now
            batch.notes["commits"] = len(commits)
            if skipped:
                batch.notes["commits without AI lines"] = skipped
        return batch
