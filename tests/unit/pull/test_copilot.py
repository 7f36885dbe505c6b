"""Copilot connector: users-1-day reports through their download links, seats per team, GitHub's 5-seat group."""

from __future__ import annotations

from aiyield.pull_copilot import MIN_GROUP, Copilot, seat_teams, seats_on, user_items
from aiyield.core.events import parse_items
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.pulling import Http, iso_day
from aiyield.settings import Settings
from tests.vendor_apis import GITHUB_TOKEN

from .fixtures import DAY, ORG, copilot_seat, copilot_user

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
TODAY = int(NOW // DAY * DAY)
P = Pseudonymiser(b"k")
SEATS = [copilot_seat("octo-ana", "2026-06-01T00:00:00Z")] + [
    copilot_seat(f"dev{n}", "2026-06-01T00:00:00Z", team="platform") for n in range(5)] + [
    copilot_seat("late", "2027-01-14T12:00:00Z", team="platform"),  # assigned during the 14th
    copilot_seat("gone", "2026-06-01T00:00:00Z", team="platform", cancelled="2027-01-14"),
    copilot_seat("solo", "2026-06-01T00:00:00Z")]


def test_teams_come_from_the_org_file_then_the_assigning_team():
    teams = seat_teams(SEATS, ORG)
    assert (teams["octo-ana"], teams["dev0"], teams["solo"]) == ("payments", "platform", "unassigned")
    assert seats_on(SEATS, teams, TODAY - DAY) == {"payments": 1, "platform": 7, "unassigned": 1}
    assert seats_on(SEATS, teams, TODAY - 2 * DAY) == {"payments": 1, "platform": 6, "unassigned": 1}  # not yet "late"
    assert seats_on(SEATS, teams, TODAY) == {"payments": 1, "platform": 6, "unassigned": 1}  # "gone" cancelled


def test_figures_of_teams_under_five_seats_are_withheld():
    teams = seat_teams(SEATS, ORG)
    group = {"payments": 1, "platform": 7, "unassigned": 1}
    day = TODAY - DAY
    records = [copilot_user(iso_day(day), "dev0", 40, 10, 80, 25, 3), copilot_user(iso_day(day), "octo-ana", 9, 9, 9, 9, 9),
               copilot_user(iso_day(day), "dev1", 0, 0, 0, 0, 0)]
    items, withheld = user_items(records, teams, group, day)
    assert withheld == 1 and MIN_GROUP == 5
    figures = {(i["developer"], i["metric"]): i["value"] for i in items}
    assert figures == {("dev0", "suggestions"): 40, ("dev0", "acceptances"): 10, ("dev0", "lines_suggested"): 80,
                       ("dev0", "lines_accepted"): 25, ("dev0", "requests"): 3, ("dev0", "active_users"): 1,
                       ("dev0", "engaged_users"): 1, ("dev1", "active_users"): 1}
    good, bad = parse_items(items, NOW, P)
    assert bad == [] and {e.team for e in good} == {"platform"} and good[0].developer == P("dev0")


def test_fetch_follows_download_links_and_stops_at_the_first_unprocessed_day(vendor_apis):
    vendor_apis.copilot_seats = SEATS
    d2, d1 = iso_day(TODAY - 2 * DAY), iso_day(TODAY - DAY)
    vendor_apis.copilot_users = {"orgs": {d2: [copilot_user(d2, f"dev{n}", 1, 1, 2, 2, 0) for n in range(4)]}}
    vendor_apis.failures = [(502, ""), (429, "2")]
    slept: list[float] = []
    settings = Settings(github_token=GITHUB_TOKEN, github_org="acme", github_api_url=vendor_apis.url, org=ORG)
    batch = Copilot().fetch(settings, {}, NOW, 2, Http(sleep=slept.append), P)
    assert slept == [1.0, 2.0]  # a 5xx without Retry-After backs off; a 429 waits as told
    assert batch.cursors == {"daily": TODAY - DAY}  # yesterday is not processed yet: the next pull asks again
    assert batch.notes["days not processed by GitHub yet"] == 1
    assert sum(i["value"] for i in batch.items if i.get("metric") == "lines_accepted") == 8  # both report files
    seats = {i["team"]: i["cost_usd"] for i in batch.items if i.get("model") == "seats"}
    assert seats == {"payments": 19 / 31, "platform": 6 * 19 / 31, "unassigned": 19 / 31}
    assert len(vendor_apis.of("/orgs/acme/copilot/billing/seats")) == 2 + 5  # 2 failures, then 9 seats in pages of 2
    assert [r.query["day"] for r in vendor_apis.of("/orgs/acme/copilot/metrics/reports/users-1-day")] == [d2, d1]
    assert all("authorization" not in r.headers for r in vendor_apis.requests if r.path.startswith("/download/"))
    # Once GitHub has processed yesterday, the next pull reads it and only it.
    vendor_apis.copilot_users["orgs"][d1] = [copilot_user(d1, "dev0", 5, 5, 5, 5, 5)]
    again = Copilot().fetch(settings, batch.cursors, NOW + 3600, 2, Http(), P)
    assert again.cursors == {"daily": TODAY} and again.notes["days"] == 1
