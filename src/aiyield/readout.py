"""Read the windows back out of Redis at a point in time: the one query behind `/metrics` and `aiyield report`.

Reading at scrape time (rather than keeping gauges in a worker's memory) means any number of workers and exporters
can run, and a restarted exporter shows the right values at once. The finance and waste figures are computed here
from the same read (pure functions in `core/finance.py`), so they need no state of their own.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field

import redis

from aiyield import keys
from aiyield.core import finance
from aiyield.core.billing import usd
from aiyield.core.cardinality import Caps, top_names
from aiyield.core.finance import Budgets, TeamFigures
from aiyield.core.measures import Measure
from aiyield.core.windows import HISTORY, SCALE, SEP, WINDOWS, split_series, window_buckets

#: Labels of each measure's series, in order: which positions a team, tool or model occupies.
LABELS: dict[str, tuple[str, ...]] = {
    Measure.SPEND: ("team", "tool", "model"),
    Measure.TOKENS: ("team", "tool", "model", "type"),
    Measure.UNPRICED: ("team", "tool", "model"),
    Measure.TASKS: ("team", "tool", "status"),
    Measure.CREDIT: ("team",),
    Measure.RETRACTED: ("team", "reason"),
    Measure.CONTESTED: ("team",),
    Measure.AI_LINES: ("team", "tool"),
    Measure.AI_LINES_TASKS: ("team", "tool"),
    Measure.OVERFLOW: ("label",),
    Measure.CONTEXT: ("team", "tool", "metric"),
    Measure.DEPLOYMENTS: ("environment", "status"),
}

#: measure -> labels -> integer amount: one bucket's series, or a window's sums. Kept split by measure so that a
#: scrape never splits series names again (`_decode` does it once, when a bucket is read).
Amounts = dict[str, dict[tuple[str, ...], int]]


def _team_totals(amounts: Amounts) -> dict[str, dict[str, int]]:
    """measure -> team (first label) -> sum, of one bucket."""
    out: dict[str, dict[str, int]] = {}
    for measure, rows in amounts.items():
        totals: dict[str, int] = defaultdict(int)
        for labels, amount in rows.items():
            if labels:
                totals[labels[0]] += amount
        out[measure] = dict(totals)
    return out


#: The hourly-bucket window the spike and waste baselines read bucket by bucket; the minute-bucket window that dates
#: teams younger than an hour; the daily history.
HOURLY = "7d"
MINUTES = "1h"
DAILY = "days"


def nd(amount: int) -> float:
    return amount / SCALE[Measure.CREDIT]


@dataclass(frozen=True)
class TeamRow:
    """One team over one window: `aiyield report` rows and the exporter's per-team gauges."""

    team: str
    spend_usd: float
    normalized_deployments: float
    cost_per_normalized_deployment_usd: float | None
    tasks_completed: int
    tasks_shipped: int
    tasks_abandoned: int
    active_developers: int


@dataclass(frozen=True)
class MonthRow:
    """Calendar month to date (UTC) for one team, or one (team, tool, model) when `tool`/`model` are set."""

    team: str
    tool: str | None
    model: str | None
    month: str
    month_to_date_usd: float
    forecast_usd: float
    budget_usd: float | None
    #: forecast / budget (None without a budget)
    forecast_vs_budget: float | None


@dataclass
class Snapshot:
    now: float
    #: window -> measure -> labels -> integer amount
    sums: dict[str, Amounts] = field(default_factory=dict)
    #: window -> team -> distinct developers
    developers: dict[str, dict[str, int]] = field(default_factory=dict)
    teams: set[str] = field(default_factory=set)
    events_total: dict[tuple[str, str], int] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    #: The processing-time counters (`core.counters`): measure -> labels -> integer amount, never decreasing.
    totals: Amounts = field(default_factory=dict)
    #: window -> bucket start -> amounts, for the windows read bucket by bucket (HOURLY, MINUTES and DAILY)
    buckets: dict[str, dict[int, Amounts]] = field(default_factory=dict)
    #: window -> bucket start -> measure -> team -> amount: per-bucket totals by team, when the reader kept them
    #: (`BucketCache`); derived from `buckets` otherwise.
    bucket_teams: dict[str, dict[int, dict[str, dict[str, int]]]] = field(default_factory=dict)
    _sorted: dict[tuple[str, str], list[tuple[tuple[str, ...], int]]] = field(default_factory=dict, repr=False)

    def series(self, window: str, measure: str) -> list[tuple[tuple[str, ...], int]]:
        """(labels, amount) of one measure's series over a window, sorted by labels (a stable /metrics order)."""
        key = (window, measure)
        if key not in self._sorted:
            self._sorted[key] = sorted(self.sums.get(window, {}).get(measure, {}).items())
        return self._sorted[key]

    def _teams_by_bucket(self, window: str) -> dict[int, dict[str, dict[str, int]]]:
        if window not in self.bucket_teams:
            self.bucket_teams[window] = {start: _team_totals(a) for start, a in self.buckets.get(window, {}).items()}
        return self.bucket_teams[window]

    def by_team(self, window: str, measure: str) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for labels, amount in self.sums.get(window, {}).get(measure, {}).items():
            totals[labels[0]] += amount
        return totals

    def team_summary(self, window: str) -> list[TeamRow]:
        """Per team: spend, normalized deployments, cost per normalized deployment (None when there are none)."""
        spend = self.by_team(window, Measure.SPEND)
        credit = self.by_team(window, Measure.CREDIT)
        tasks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for (team, _tool, status), n in self.series(window, Measure.TASKS):
            tasks[team][status] += n
        rows = []
        for team in sorted(self.teams):
            dollars = usd(spend.get(team, 0))
            deployments = nd(credit.get(team, 0))
            rows.append(
                TeamRow(
                    team=team,
                    spend_usd=dollars,
                    normalized_deployments=deployments,
                    cost_per_normalized_deployment_usd=dollars / deployments if deployments > 0 else None,
                    tasks_completed=tasks[team]["completed"],
                    tasks_shipped=tasks[team]["shipped"],
                    tasks_abandoned=tasks[team]["abandoned"],
                    active_developers=self.developers.get(window, {}).get(team, 0),
                )
            )
        return rows

    # ------------------------------------------------------------------------------------------ finance and waste

    def _bucket_by_team(self, window: str, measure: str, scale: float = 1.0) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for start, totals in self._teams_by_bucket(window).items():
            for team, amount in totals.get(measure, {}).items():
                out[team][start] += amount / scale
        return out

    def over_time(self, window: str, measure: str) -> dict[str, dict[int, float]]:
        """team -> bucket start -> amount in the measure's unit (USD, normalized deployments), for the windows read
        bucket by bucket (HOURLY, MINUTES, DAILY; DAILY holds spend only)."""
        return self._bucket_by_team(window, measure, SCALE.get(measure, 1))

    def daily_spend(self) -> dict[str, dict[int, float]]:
        """team -> UTC day start -> USD (42 days)."""
        return self._bucket_by_team(DAILY, Measure.SPEND, SCALE[Measure.SPEND])

    def figures(self) -> dict[str, TeamFigures]:
        """Every known team's inputs to the spike score and the waste signals."""
        hourly_spend = self._bucket_by_team(HOURLY, Measure.SPEND, SCALE[Measure.SPEND])
        hourly_credit = self._bucket_by_team(HOURLY, Measure.CREDIT, SCALE[Measure.CREDIT])
        def first_active(window: str) -> dict[str, int]:
            first: dict[str, int] = {}
            for start, totals in self._teams_by_bucket(window).items():
                for measure, teams in totals.items():
                    if measure == Measure.OVERFLOW:
                        continue
                    for team in teams:
                        if team not in first or start < first[team]:
                            first[team] = start
            return first

        first = first_active(HOURLY)
        first_minute = first_active(MINUTES)
        # Teams first seen in this or the previous clock hour are dated by their first active minute of the last hour:
        # never older than they are (an hour bucket starts before its first event), at worst younger (more grace).
        young_since = int(self.now // 3600) * 3600 - 3600

        def total(window: str, measure: str, scale: float = 1.0) -> dict[str, float]:
            return {t: v / scale for t, v in self.by_team(window, measure).items()}

        def status(window: str, wanted: str) -> dict[str, float]:
            out: dict[str, float] = defaultdict(float)
            for (team, _tool, s), n in self.series(window, Measure.TASKS):
                if s == wanted:
                    out[team] += n
            return out

        spend_1h, spend_24h = total("1h", Measure.SPEND, SCALE[Measure.SPEND]), total("24h", Measure.SPEND, SCALE[Measure.SPEND])
        credit_1h = total("1h", Measure.CREDIT, SCALE[Measure.CREDIT])
        completed_24h, shipped_24h, abandoned_24h = (status("24h", s) for s in ("completed", "shipped", "abandoned"))
        completed_7d = status("7d", "completed")
        contested_24h = total("24h", Measure.CONTESTED)
        lines_24h, lines_7d = total("24h", Measure.AI_LINES), total("7d", Measure.AI_LINES)
        lt_24h, lt_7d = total("24h", Measure.AI_LINES_TASKS), total("7d", Measure.AI_LINES_TASKS)
        return {
            team: TeamFigures(
                spend_1h=spend_1h.get(team, 0.0),
                spend_24h=spend_24h.get(team, 0.0),
                credit_1h=credit_1h.get(team, 0.0),
                hourly_spend=dict(hourly_spend.get(team, {})),
                hourly_credit=dict(hourly_credit.get(team, {})),
                completed_24h=completed_24h.get(team, 0.0),
                shipped_24h=shipped_24h.get(team, 0.0),
                abandoned_24h=abandoned_24h.get(team, 0.0),
                contested_24h=contested_24h.get(team, 0.0),
                ai_lines_24h=lines_24h.get(team, 0.0),
                ai_lines_tasks_24h=lt_24h.get(team, 0.0),
                completed_7d=completed_7d.get(team, 0.0),
                ai_lines_7d=lines_7d.get(team, 0.0),
                ai_lines_tasks_7d=lt_7d.get(team, 0.0),
                first_hour=first.get(team),
                first_minute=first_minute.get(team) if first.get(team, young_since) >= young_since else None,
            )
            for team in sorted(self.teams)
        }

    def month(self, budgets: Budgets, by: tuple[str, ...] = ()) -> list[MonthRow]:
        """The finance view: month to date, forecast and budget per team (and per tool and model with `by`).

        Budgets are per team; a (team, tool, model) row carries no budget. Teams with a budget but no spend yet
        are listed with zeros, so finance sees every budget.
        """
        start, _end = finance.month_bounds(self.now)
        label = finance.month_label(start)
        rows = []
        if by:
            daily: dict[tuple[str, ...], dict[int, float]] = defaultdict(lambda: defaultdict(float))
            for day, amounts in self.buckets.get(DAILY, {}).items():
                for labels, amount in amounts.get(Measure.SPEND, {}).items():
                    daily[labels[:3]][day] += usd(amount)
            for (team, tool, model), days in sorted(daily.items()):
                f = finance.forecast_month(days, self.now)
                rows.append(MonthRow(team, tool, model, label, f.month_to_date, f.forecast, None, None))
            return rows
        daily_team = self.daily_spend()
        for team in sorted(self.teams | set(budgets.teams)):
            f = finance.forecast_month(daily_team.get(team, {}), self.now)
            budget = budgets.for_team(team)
            ratio = f.forecast / budget if budget else None
            rows.append(MonthRow(team, None, None, label, f.month_to_date, f.forecast, budget, ratio))
        return rows


def fold(snap: Snapshot, caps: Caps) -> Snapshot:
    """Read-time cardinality guard: beyond `caps`, the least active teams/tools/models are shown as `other`.

    Activity is 30d spend plus tasks; the ingest-time guard (`core/cardinality.admit`) keeps Redis bounded, this one
    keeps Prometheus bounded whatever is already stored. Developers of folded teams are summed (an upper bound).
    """
    weights: dict[str, dict[str, float]] = {label: defaultdict(float) for label in ("team", "tool", "model")}
    for team in snap.teams:
        weights["team"][team] += 0
    for window_sums in snap.sums.values():
        for m, rows in window_sums.items():
            for i, label in enumerate(LABELS.get(m, ())):
                if label in weights:
                    w = weights[label]
                    for labels, amount in rows.items():
                        if i < len(labels):
                            w[labels[i]] += amount if m == Measure.SPEND else 0
    renames = {label: top_names(w, caps.of(label)) for label, w in weights.items()}
    if all(all(k == v for k, v in r.items()) for r in renames.values()):
        return snap

    def refold(amounts: Amounts) -> Amounts:
        out: Amounts = {}
        for m, rows in amounts.items():
            positions = [(i, renames[label]) for i, label in enumerate(LABELS.get(m, ())) if label in renames]
            target = out.setdefault(m, {})
            for labels, amount in rows.items():
                shown = list(labels)
                for i, names in positions:
                    if i < len(shown):
                        shown[i] = names.get(shown[i], shown[i])
                key = tuple(shown)
                target[key] = target.get(key, 0) + amount
        return out

    developers = {}
    for window, by_team in snap.developers.items():
        merged: dict[str, int] = defaultdict(int)
        for team, n in by_team.items():
            merged[renames["team"].get(team, team)] += n
        developers[window] = dict(merged)
    return Snapshot(
        now=snap.now,
        sums={w: refold(s) for w, s in snap.sums.items()},
        developers=developers,
        teams={renames["team"].get(t, t) for t in snap.teams},
        events_total=snap.events_total,
        last_ts=snap.last_ts,
        # The same renames as the gauges: a counter folds into `other` only when the caps were lowered below the
        # names already stored (the ingest-time guard admits a name for good), and then `other` may reset once.
        totals=refold(snap.totals),
        buckets={w: {start: refold(s) for start, s in b.items()} for w, b in snap.buckets.items()},
    )


class BucketCache:
    """Window buckets as last read, so a scrape re-reads only buckets whose version moved (`keys.WINDOW_VERSION`).

    A busy organisation's windows hold hundreds of buckets of thousands of series each, and all but the newest of
    them rarely change: reading and summing them all on every scrape took seconds. The cache keeps each bucket's
    amounts (split by measure and labels once, when read) and per-team totals by version, and each window's running
    sums, updated by the buckets that changed, appeared or left the window. A bucket without a version (written
    before versions existed) is read every time.
    """

    def __init__(self) -> None:
        self.forget(None)

    def forget(self, incarnation: bytes | None) -> None:
        """Drop everything kept: it was read from a store whose data is gone (`keys.INCARNATION` changed)."""
        #: `keys.INCARNATION` when these buckets were read: another one means they are all out of date.
        self.incarnation = incarnation
        self.buckets: dict[str, tuple[int | None, Amounts]] = {}
        self.teams: dict[str, dict[str, dict[str, int]]] = {}
        self.sums: dict[str, Amounts] = {}
        self.members: dict[str, set[str]] = {}  # window -> bucket keys in its sums

    def refresh(self, key: str, version: int | None, amounts: Amounts) -> Amounts | None:
        """Store a bucket just read; returns the amounts it replaces (None if it was not cached)."""
        old = self.buckets.get(key)
        self.buckets[key] = (version, amounts)
        self.teams.pop(key, None)
        return old[1] if old is not None else None

    def fresh(self, key: str, version: int | None) -> bool:
        cached = self.buckets.get(key)
        if cached is None:
            return False
        if version is None:
            # Nothing there last time and still no version: still nothing, since every write bumps the version. Most
            # buckets of a window are empty (a quiet team, the hours before the first event), so this is common.
            return cached[0] is None and not cached[1]
        return cached[0] == version

    def team_totals(self, key: str) -> dict[str, dict[str, int]]:
        if key not in self.teams:
            self.teams[key] = _team_totals(self.buckets[key][1])
        return self.teams[key]

    def window_sums(self, window: str, current: list[str], replaced: dict[str, Amounts]) -> Amounts:
        """The window's sums over `current` bucket keys, updated from the last call's (a copy: the caller's)."""
        sums = self.sums.setdefault(window, {})
        members = self.members.setdefault(window, set())
        wanted = set(current)
        for key in list(members):
            if key not in wanted or key in replaced:  # left the window, or changed: take its old amounts out
                _add(sums, replaced.get(key, self.buckets.get(key, (None, {}))[1]), -1)
                members.discard(key)
        for key in current:
            if key not in members:
                _add(sums, self.buckets[key][1], 1)
                members.add(key)
        for key in [k for k in self.buckets if keys.window_of(k) == window and k not in wanted]:
            del self.buckets[key]
            self.teams.pop(key, None)
        return {m: dict(rows) for m, rows in sums.items() if rows}


def _add(sums: Amounts, amounts: Amounts, sign: int) -> None:
    """Add (or take out) one bucket's amounts; series that come to zero are dropped, as a fresh read never has them."""
    for measure, rows in amounts.items():
        target = sums.setdefault(measure, {})
        for labels, amount in rows.items():
            total = target.get(labels, 0) + sign * amount
            if total:
                target[labels] = total
            else:
                target.pop(labels, None)


@functools.lru_cache(maxsize=1 << 16)
def _parse(name: bytes) -> tuple[str, tuple[str, ...]]:
    """A stored series name as (measure, labels): the same few thousand names come back in every changed bucket."""
    measure, labels = split_series(name.decode())
    return measure, tuple(labels)


def _decode(raw: dict[bytes, bytes]) -> Amounts:
    """One bucket's HGETALL (series name -> amount, and the version field) as amounts."""
    version = keys.WINDOW_VERSION.encode()
    out: Amounts = {}
    for name, amount in raw.items():
        if name != version:
            measure, labels = _parse(name)
            rows = out.setdefault(measure, {})
            rows[labels] = rows.get(labels, 0) + int(amount)
    return out


def read_snapshot(client: redis.Redis, now: float, cache: BucketCache | None = None) -> Snapshot:
    """Everything the exporter and the report show, as of `now`. With a `cache` kept across calls (the exporter's),
    only the buckets written since the last call are read again."""
    cache = cache if cache is not None else BucketCache()
    snap = Snapshot(now=now)
    plan = [*WINDOWS, *HISTORY]
    starts = {window: window_buckets(window, now) for window in plan}
    bucket_keys = {window: [keys.window(window, start) for start in starts[window]] for window in plan}
    everything = [key for window in plan for key in bucket_keys[window]]
    pipe = client.pipeline(transaction=False)
    for key in everything:
        pipe.hget(key, keys.WINDOW_VERSION)
    pipe.smembers(keys.TEAMS)
    pipe.hgetall(keys.EVENTS_TOTAL)
    pipe.zrange(keys.LAST_TS, 0, -1, withscores=True)
    pipe.get(keys.INCARNATION)
    pipe.hgetall(keys.TOTALS)
    results = pipe.execute()
    versions = {key: (int(v) if v is not None else None) for key, v in zip(everything, results)}
    i = len(everything)
    if results[i + 3] != cache.incarnation:  # Redis lost its data or was rebuilt since: read everything again
        cache.forget(results[i + 3])

    stale = [key for key in everything if not cache.fresh(key, versions[key])]
    pipe = client.pipeline(transaction=False)
    for key in stale:
        pipe.hgetall(key)
    replaced: dict[str, Amounts] = {}
    for key, raw in zip(stale, pipe.execute() if stale else []):
        old = cache.refresh(key, versions[key], _decode(raw))
        if old is not None:
            replaced[key] = old

    for window in plan:
        current = bucket_keys[window]
        sums = cache.window_sums(window, current, replaced)
        if window in WINDOWS:
            snap.sums[window] = sums
        if window in (HOURLY, MINUTES, DAILY):
            snap.buckets[window] = {}
            snap.bucket_teams[window] = {}
            for start, key in zip(starts[window], current):
                if cache.buckets[key][1]:
                    snap.buckets[window][start] = cache.buckets[key][1]
                    snap.bucket_teams[window][start] = cache.team_totals(key)
    snap.teams = {t.decode() for t in results[i]}
    snap.events_total = {tuple(k.decode().split(SEP)): int(v) for k, v in results[i + 1].items()}  # type: ignore[misc]
    snap.last_ts = {member.decode(): score for member, score in results[i + 2]}
    snap.totals = _decode(results[i + 4])

    teams = sorted(snap.teams)
    script = client.register_script(_DEVELOPERS)
    pipe = client.pipeline(transaction=False)
    for window, (_length, width) in WINDOWS.items():
        newest, count = starts[window][0], len(starts[window])
        script(args=[keys.developers_prefix(window), newest, width, count, *teams], client=pipe)
    for window, counts in zip(WINDOWS, pipe.execute()):
        snap.developers[window] = dict(zip(teams, counts))
    return snap


#: Distinct developers per team over one window: PFCOUNT of the team's HyperLogLogs of every bucket in the window.
#: Server-side because the key names are many (50 teams x 168 hourly buckets is 8,400 names for the 7d window alone),
#: and building and sending them from Python was a third of a scrape. The names are `keys.developers`'.
#: ARGV: key prefix, newest bucket start, bucket width, bucket count, then the teams.
_DEVELOPERS = """
local prefix, newest, width, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for t = 5, #ARGV do
  local names = {}
  for i = 0, count - 1 do
    names[i + 1] = prefix .. string.format("%d", newest - i * width) .. ":" .. ARGV[t]
  end
  out[#out + 1] = redis.call("PFCOUNT", unpack(names))
end
return out
"""


@dataclass
class Billed:
    """What `aiyield reconcile` stored: provider -> UTC day start -> billed amount (fixed point), and sync times."""

    days: dict[str, dict[int, int]] = field(default_factory=dict)
    synced: dict[str, float] = field(default_factory=dict)


def read_billed(client: redis.Redis) -> Billed:
    from aiyield.core.pricing import PROVIDERS

    pipe = client.pipeline(transaction=False)
    for provider in PROVIDERS:
        pipe.hgetall(keys.billed_days(provider))
    pipe.hgetall(keys.BILLED_SYNCED)
    *days, synced = pipe.execute()
    return Billed(
        days={p: {int(d): int(v) for d, v in rows.items()} for p, rows in zip(PROVIDERS, days) if rows},
        synced={k.decode(): float(v) for k, v in synced.items()},
    )
