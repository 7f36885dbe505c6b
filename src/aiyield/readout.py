"""Read the windows back out of Redis at a point in time: the one query behind `/metrics` and `aiyield report`.

Reading at scrape time (rather than keeping gauges in a worker's memory) means any number of workers and exporters
can run, and a restarted exporter shows the right values at once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import redis

from aiyield.core.windows import SCALE, SEP, WINDOWS, split_series, window_buckets
from aiyield import keys


@dataclass
class Snapshot:
    now: float
    #: window -> series name -> integer amount
    sums: dict[str, dict[str, int]] = field(default_factory=dict)
    #: window -> team -> distinct developers
    developers: dict[str, dict[str, int]] = field(default_factory=dict)
    teams: set[str] = field(default_factory=set)
    events_total: dict[tuple[str, str], int] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)

    def series(self, window: str, measure: str) -> list[tuple[list[str], int]]:
        out = []
        for name, amount in self.sums.get(window, {}).items():
            m, labels = split_series(name)
            if m == measure:
                out.append((labels, amount))
        return sorted(out)

    def by_team(self, window: str, measure: str) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for labels, amount in self.series(window, measure):
            totals[labels[0]] += amount
        return totals

    def team_summary(self, window: str) -> list[dict]:
        """Per team: spend, normalized deployments, cost per normalized deployment (None when there are none)."""
        spend = self.by_team(window, "spend")
        credit = self.by_team(window, "credit")
        tasks = defaultdict(lambda: defaultdict(int))
        for (team, _tool, status), n in self.series(window, "tasks"):
            tasks[team][status] += n
        rows = []
        for team in sorted(self.teams):
            usd = spend.get(team, 0) / SCALE["spend"]
            nd = credit.get(team, 0) / SCALE["credit"]
            rows.append(
                {
                    "team": team,
                    "spend_usd": usd,
                    "normalized_deployments": nd,
                    "cost_per_normalized_deployment_usd": usd / nd if nd > 0 else None,
                    "tasks_completed": tasks[team]["completed"],
                    "tasks_shipped": tasks[team]["shipped"],
                    "tasks_abandoned": tasks[team]["abandoned"],
                    "active_developers": self.developers.get(window, {}).get(team, 0),
                }
            )
        return rows


def read_snapshot(client: redis.Redis, now: float) -> Snapshot:
    snap = Snapshot(now=now)
    pipe = client.pipeline(transaction=False)
    plan = []
    for window in WINDOWS:
        starts = window_buckets(window, now)
        plan.append(window)
        for start in starts:
            pipe.hgetall(keys.window(window, start))
    pipe.smembers(keys.TEAMS)
    pipe.hgetall(keys.EVENTS_TOTAL)
    pipe.zrange(keys.LAST_TS, 0, -1, withscores=True)
    results = pipe.execute()

    i = 0
    for window in plan:
        sums: dict[str, int] = defaultdict(int)
        for _ in window_buckets(window, now):
            for name, amount in results[i].items():
                sums[name.decode()] += int(amount)
            i += 1
        snap.sums[window] = dict(sums)
    snap.teams = {t.decode() for t in results[i]}
    snap.events_total = {tuple(k.decode().split(SEP)): int(v) for k, v in results[i + 1].items()}  # type: ignore[misc]
    snap.last_ts = {member.decode(): score for member, score in results[i + 2]}

    pipe = client.pipeline(transaction=False)
    teams = sorted(snap.teams)
    for window in WINDOWS:
        for team in teams:
            pipe.pfcount(*(keys.developers(window, start, team) for start in window_buckets(window, now)))
    counts = iter(pipe.execute())
    for window in WINDOWS:
        snap.developers[window] = {team: next(counts) for team in teams}
    return snap
