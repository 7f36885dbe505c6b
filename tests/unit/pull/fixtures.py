"""Vendor records built from the published schemas (see aiyield/pull_*.py docstrings), each with a field no schema
has (`addedLater`), and the organisation file the tests map them with."""

from __future__ import annotations

from aiyield.core.org import Org

DAY = 86400
ORG = Org.parse("""
[teams.payments]
repos = ["shop/pay*"]
members = ["ana@example.com", "bo@example.com", "octo-ana"]

[teams.growth]
repos = ["growth/*"]
members = ["cy@example.com"]

[seats]
cursor = 40.0
copilot = 19.0
""")

SHA_A = "a" * 40
SHA_B = "b" * 40


def cursor_daily(day: int, email: str, **fields) -> dict:
    row = {"date": day * 1000, "email": email, "isActive": True, "totalLinesAdded": 500, "totalLinesDeleted": 20,
           "acceptedLinesAdded": 0, "acceptedLinesDeleted": 0, "totalApplies": 0, "totalAccepts": 0,
           "totalRejects": 0, "totalTabsShown": 0, "totalTabsAccepted": 0, "composerRequests": 0,
           "chatRequests": 0, "agentRequests": 0, "cmdkUsages": 0, "subscriptionIncludedReqs": 0, "apiKeyReqs": 0,
           "usageBasedReqs": 0, "bugbotUsages": 0, "mostUsedModel": "claude-4.5-sonnet",
           "applyMostUsedExtension": ".py", "tabMostUsedExtension": ".py", "clientVersion": "1.7.0",
           "addedLater": {"x": 1}}
    row.update(fields)
    return row


def cursor_usage(ts: float, email: str, kind: str, cents: float | None, **tokens) -> dict:
    usage = {"inputTokens": 0, "outputTokens": 0, "cacheWriteTokens": 0, "cacheReadTokens": 0, **tokens}
    if cents is not None:
        usage["totalCents"] = cents
    return {"timestamp": str(int(ts * 1000)), "userEmail": email, "model": "claude-4.5-sonnet", "kind": kind,
            "maxMode": False, "requestsCosts": 1, "isTokenBasedCall": True, "tokenUsage": usage,
            "isFreeBugbot": False, "addedLater": True}


def cursor_commit(sha: str, email: str, repo: str | None, tab: int, composer: int, created: str, **fields) -> dict:
    commit = {"commitHash": sha, "userId": "user_abc", "userEmail": email, "repoName": repo, "branchName": "main",
              "isPrimaryBranch": True, "totalLinesAdded": tab + composer + 3, "totalLinesDeleted": 1,
              "tabLinesAdded": tab, "tabLinesDeleted": 0, "composerLinesAdded": composer, "composerLinesDeleted": 0,
              "nonAiLinesAdded": 3, "nonAiLinesDeleted": 1, "message": "change", "commitTs": created,
              "createdAt": created, "addedLater": "x"}
    commit.update(fields)
    return commit


def claude_code_record(day: str, email: str | None, sessions: int, added: int, removed: int, commits: int, prs: int,
                       tools: dict[str, tuple[int, int]], models: list[tuple[str, int, int, int, int, float]],
                       api_key: str | None = None) -> dict:
    """One user-day of the Claude Code Analytics API; `models`: (model, input, output, cache read, cache creation,
    estimated cost in cents)."""
    actor = {"type": "api_actor", "api_key_name": api_key} if api_key else {"type": "user_actor", "email_address": email}
    return {
        "date": f"{day}T00:00:00Z", "actor": actor, "organization_id": "12345678-1234-5678-1234-567812345678",
        "customer_type": "api", "terminal_type": "vscode",
        "core_metrics": {"num_sessions": sessions, "lines_of_code": {"added": added, "removed": removed},
                         "commits_by_claude_code": commits, "pull_requests_by_claude_code": prs},
        "tool_actions": {name: {"accepted": a, "rejected": r} for name, (a, r) in tools.items()},
        "model_breakdown": [{"model": m, "tokens": {"input": i, "output": o, "cache_read": cr, "cache_creation": cc},
                             "estimated_cost": {"currency": "USD", "amount": cents}}
                            for m, i, o, cr, cc, cents in models],
        "addedLater": {"subscription_type": "enterprise"},
    }


def copilot_user(day: str, login: str, generated: int, accepted: int, suggested_lines: int, added_lines: int,
                 interactions: int) -> dict:
    """One user's day in a users-1-day report (GitHub's CopilotUserDailyMetrics shape)."""
    return {
        "user_id": abs(hash(login)) % 10**8, "user_login": login, "day": day, "enterprise_id": "1",
        "organization_id": "2", "user_initiated_interaction_count": interactions,
        "code_generation_activity_count": generated, "code_acceptance_activity_count": accepted,
        "loc_suggested_to_add_sum": suggested_lines, "loc_suggested_to_delete_sum": 0, "loc_added_sum": added_lines,
        "loc_deleted_sum": 0, "used_agent": False, "used_chat": interactions > 0,
        "totals_by_ide": [{"ide": "vscode", "code_generation_activity_count": generated,
                           "code_acceptance_activity_count": accepted, "loc_added_sum": added_lines}],
        "totals_by_language_model": [{"language": "python", "model": "gpt-4.1", "code_generation_activity_count": generated}],
        "addedLater": [1, 2],
    }


def copilot_seat(login: str, created: str, team: str | None = None, cancelled: str | None = None) -> dict:
    return {"assignee": {"login": login, "id": 1, "type": "User"}, "created_at": created,
            "updated_at": created, "pending_cancellation_date": cancelled, "last_activity_at": created,
            "last_activity_editor": "vscode/1.90", "plan_type": "business",
            "assigning_team": {"slug": team, "name": team} if team else None}
