"""`aiyield pull copilot`: GitHub Copilot's usage metrics reports and seat assignments as aiyield events.

Sources, as GitHub documents them (REST API "Copilot usage metrics", https://docs.github.com/rest/copilot/copilot-usage-metrics,
and "Copilot user management", https://docs.github.com/rest/copilot/copilot-user-management), on
`AIYIELD_GITHUB_API_URL` (default `https://api.github.com`) with `Authorization: Bearer <AIYIELD_GITHUB_TOKEN>` and
`X-GitHub-Api-Version: 2022-11-28`. These reports replaced the legacy `/copilot/metrics` endpoints (closed in 2026).

- `GET /orgs/{org}/copilot/metrics/reports/users-1-day?day=YYYY-MM-DD` (or `/enterprises/{enterprise}/...` when
  `AIYIELD_GITHUB_ENTERPRISE` is set) -> `{"download_links": [...], "report_day"}`: signed links (fetched without
  the token) to the day's report, newline-delimited JSON, one record per user: `{"user_id", "user_login", "day",
  "user_initiated_interaction_count", "code_generation_activity_count", "code_acceptance_activity_count",
  "loc_suggested_to_add_sum", "loc_added_sum", "totals_by_ide": [...], "totals_by_feature": [...],
  "totals_by_language_model": [...], ...}`. Reports exist from the day GitHub has processed the day (usually the
  next day, sometimes later): a day not yet processed answers 404.
- `GET /orgs/{org}/copilot/billing/seats?per_page=&page=` -> `{"total_seats", "seats": [{"assignee": {"login"},
  "assigning_team": {"slug"} | null, "created_at", "pending_cancellation_date", ...}]}`: the seats and the GitHub
  team that assigned each one.

Mapping decisions:

- Team of a user: the organisation file's `members` (the login), else the GitHub team that assigned the seat
  (`assigning_team.slug`), else `unassigned`. Developer ids are logins, pseudonymised at ingest.
- Tool-reported figures per user and day (`context` events, tool `copilot`, at the day's last second):
  `suggestions` (code_generation_activity_count), `acceptances` (code_acceptance_activity_count), `lines_suggested`
  (loc_suggested_to_add_sum), `lines_accepted` (loc_added_sum), `requests` (user_initiated_interaction_count),
  `active_users` (1: the user is in the day's report) and `engaged_users` (1 when the user accepted a suggestion or
  started an interaction). The report's breakdowns by IDE, feature, language and model are summed: aiyield's labels
  stay team, tool and type.
- Privacy: GitHub shows team-level metrics only for teams of at least `MIN_GROUP` (5) Copilot seats. aiyield
  respects it: the figures of a team with fewer seats are not published (counted as suppressed in the command's
  output), never summed into a smaller group. Its seat spend is still counted.
- Spend: `[seats] copilot` (USD per seat per month) x the seats each team held on the day (assigned by the day's
  end, not cancelled before it), spread evenly over the month's days: one `token` event per team and day (`model`
  `seats`), for each day whose report was read.
- Days: from the cursor (a first pull: `--days` back) through yesterday, stopping at the first day GitHub has not
  processed yet; the next pull starts there. Ids: `copilot:` + a digest of (login, day, figure) and (team, day).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
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
    day_start,
    days_in_month,
    event_id,
    iso_day,
    nonzero,
    since,
)
from aiyield.reconcile import NotFound
from aiyield.settings import Settings

VENDOR = TOOL = "copilot"
API_VERSION = "2022-11-28"
#: GitHub's smallest group for team-level Copilot metrics.
MIN_GROUP = 5
PER_PAGE = 100
MAX_PAGES = 1000


def _ts(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def seat_teams(seats: list[Mapping[str, Any]], org: Org) -> dict[str, str]:
    """login -> team: the organisation file first, else the GitHub team that assigned the seat."""
    out = {}
    for seat in seats:
        login = (seat.get("assignee") or {}).get("login")
        if login:
            assigning = (seat.get("assigning_team") or {}).get("slug")
            out[login] = org.team_of_member(login) or assigning or UNASSIGNED
    return out


def seats_on(seats: list[Mapping[str, Any]], teams: Mapping[str, str], day: int) -> dict[str, int]:
    """Seats each team held on a UTC day: assigned by its end, not cancelled before it."""
    held: dict[str, int] = defaultdict(int)
    for seat in seats:
        login = (seat.get("assignee") or {}).get("login")
        created = _ts(seat.get("created_at"))
        cancelled = _ts(seat.get("pending_cancellation_date")) if seat.get("pending_cancellation_date") else None
        if login and (created is None or created < day + DAY) and (cancelled is None or cancelled >= day):
            held[teams.get(login, UNASSIGNED)] += 1
    return dict(held)


def seat_items(held: Mapping[str, int], price: float, day: int) -> list[dict[str, Any]]:
    return [
        {"type": "token", "id": event_id(VENDOR, "seats", team, day), "ts": day + DAY - 1, "team": team, "tool": TOOL,
         "model": "seats", "input_tokens": 0, "output_tokens": 0, "cost_usd": n * price / days_in_month(day)}
        for team, n in sorted(held.items())
    ]


def _total(record: Mapping[str, Any], key: str) -> Any:
    """A user's day total: the top-level field, else the sum over the per-IDE breakdown."""
    if key in record:
        return count(record.get(key) or 0)
    return sum(count(i.get(key) or 0) for i in record.get("totals_by_ide") or [] if isinstance(i, Mapping))


def user_items(records: list[Mapping[str, Any]], teams: Mapping[str, str], group: Mapping[str, int], day: int) -> tuple[list[Any], int]:
    """One day's user records as figures; also how many users' figures were withheld (team under MIN_GROUP seats)."""
    out: list[Any] = []
    withheld = 0
    for r in records:
        login = r.get("user_login")
        team = teams.get(login) or UNASSIGNED
        if group.get(team, 0) < MIN_GROUP:
            withheld += 1
            continue
        ts = day + DAY - 1

        def figure(metric: str, value: Any) -> dict[str, Any]:
            return context(event_id(VENDOR, "daily", login, day, metric), ts, team, TOOL, metric, value, login)

        accepted = _total(r, "code_acceptance_activity_count")
        interactions = _total(r, "user_initiated_interaction_count")
        out += nonzero([
            figure("suggestions", _total(r, "code_generation_activity_count")),
            figure("acceptances", accepted),
            figure("lines_suggested", _total(r, "loc_suggested_to_add_sum")),
            figure("lines_accepted", _total(r, "loc_added_sum")),
            figure("requests", interactions),
            figure("active_users", 1),
            figure("engaged_users", 1 if (accepted or interactions) else 0),
        ])
    return out, withheld


def ndjson(body: bytes) -> list[Any]:
    """A report file: newline-delimited JSON records (a single JSON document is one record)."""
    try:
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    except json.JSONDecodeError:
        raise PullError("copilot: a report file is not newline-delimited JSON") from None


class Copilot:
    vendor = VENDOR

    def missing(self, settings: Settings) -> str | None:
        names = [n for n, v in (("AIYIELD_GITHUB_TOKEN", settings.github_token), ("AIYIELD_GITHUB_ORG", settings.github_org)) if not v]
        return " and ".join(names) or None

    def credential(self, settings: Settings) -> str:
        return "AIYIELD_GITHUB_TOKEN"

    def fetch(self, settings: Settings, cursors: Mapping[str, float], now: float, days: int, http: Http,
              pseudonymise: Callable[[str], str]) -> Batch:
        api = settings.github_api_url
        headers = {"Authorization": f"Bearer {settings.github_token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": API_VERSION}
        scope = f"/enterprises/{settings.github_enterprise}" if settings.github_enterprise else f"/orgs/{settings.github_org}"
        batch = Batch()

        seats: list = []
        for page in range(1, MAX_PAGES + 1):
            answer = http.get(f"{api}/orgs/{settings.github_org}/copilot/billing/seats",
                              [("per_page", str(PER_PAGE)), ("page", str(page))], headers, VENDOR)
            if not isinstance(answer, Mapping) or not isinstance(answer.get("seats"), list):
                raise PullError(f"copilot: seats answer without a `seats` list: {str(answer)[:200]}")
            seats += answer["seats"]
            if not answer["seats"] or len(seats) >= int(answer.get("total_seats") or 0):
                break
        teams = seat_teams(seats, settings.org)
        group: dict[str, int] = defaultdict(int)
        for team in teams.values():
            group[team] += 1
        price = settings.org.seats.get(TOOL)

        day = day_start(since(cursors.get("daily"), now, days, overlap=0))
        yesterday = day_start(now) - DAY
        while day <= yesterday:
            try:
                report = http.get(f"{api}{scope}/copilot/metrics/reports/users-1-day", [("day", iso_day(day))],
                                  headers, VENDOR)
            except NotFound:
                batch.notes["days not processed by GitHub yet"] = (yesterday - day) // DAY + 1
                break
            links = report.get("download_links") if isinstance(report, Mapping) else None
            if not isinstance(links, list):
                raise PullError(f"copilot: report answer without `download_links`: {str(report)[:200]}")
            records = [r for link in links for r in ndjson(http.request("GET", link, [], {}, VENDOR, decode=False))]
            items, withheld = user_items([r for r in records if isinstance(r, Mapping)], teams, group, day)
            batch.items += items
            if withheld:
                batch.notes[f"users withheld (teams under {MIN_GROUP} seats)"] += withheld
            if price:
                batch.items += seat_items(seats_on(seats, teams, day), price, day)
            batch.notes["days"] += 1
            batch.notes["user-days"] += len(records)
            day += DAY
            batch.cursors["daily"] = day
        if not price:
            batch.notes["seats not priced ([seats] copilot unset)"] = 1
        return batch
