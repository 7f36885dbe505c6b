"""Finance and waste: budgets, month-to-date spend, month-end forecast, burn rate, spike score and waste signals.

Pure functions of a team's figures (read from the rolling windows), the budgets and `now`: the exporter and
`aiyield report --month` compute them at read time, so every exporter replica agrees and a restart shows the right
values at once. No state of their own, nothing to replay. Definitions and thresholds are in docs/FINANCE.md; the
constants below are the single place they are decided.

Inputs come in two resolutions: hourly buckets (the 7d window's one-hour buckets) and daily buckets (the `days`
history window, UTC midnight to midnight, 42 days).
"""

from __future__ import annotations

import calendar
import math
import statistics
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

HOUR = 3600
DAY = 86400

# ---------------------------------------------------------------------------------------------------------- budgets


class BudgetError(ValueError):
    """A malformed budgets file, with the file name and the offending entry."""


@dataclass(frozen=True)
class Budgets:
    """Monthly budgets in USD: `[teams.NAME] monthly_usd = N`, and an optional `[default] monthly_usd = N`."""

    teams: Mapping[str, float] = field(default_factory=dict)
    default: float | None = None

    def for_team(self, team: str) -> float | None:
        return self.teams.get(team, self.default)

    @classmethod
    def parse(cls, text: str, source: str = "budgets") -> "Budgets":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BudgetError(f"{source}: not valid TOML: {exc}") from None
        unknown = set(doc) - {"teams", "default"}
        if unknown:
            raise BudgetError(f"{source}: unknown table(s) {sorted(unknown)}; expected [teams.NAME] and [default]")

        def amount(where: str, table: object) -> float:
            if not isinstance(table, dict):
                raise BudgetError(f"{source}: [{where}] must be a table with monthly_usd")
            extra = set(table) - {"monthly_usd"}
            if extra:
                raise BudgetError(f"{source}: [{where}] has unknown key(s) {sorted(extra)}; only monthly_usd")
            value = table.get("monthly_usd")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BudgetError(f"{source}: [{where}] monthly_usd must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise BudgetError(f"{source}: [{where}] monthly_usd must be finite and >= 0, got {value!r}")
            return float(value)

        teams_table = doc.get("teams", {})
        if not isinstance(teams_table, dict):
            raise BudgetError(f"{source}: `teams` must be a table of [teams.NAME] tables")
        teams = {}
        for name, table in teams_table.items():
            if not 1 <= len(name) <= 256 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
                raise BudgetError(f"{source}: team name {name!r} must be 1-256 characters without control characters")
            teams[name] = amount(f"teams.{name}", table)
        default = amount("default", doc["default"]) if "default" in doc else None
        return cls(teams, default)

    @classmethod
    def load(cls, path: str | Path) -> "Budgets":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BudgetError(f"cannot read budgets file {path}: {exc.strerror or exc}") from None
        return cls.parse(text, str(path))


# ---------------------------------------------------------------------------------------------------------- calendar


def day_start(ts: float) -> int:
    return int(ts // DAY) * DAY


def month_bounds(now: float) -> tuple[int, int]:
    """[start, end) of the calendar month (UTC) holding `now`, as epoch seconds."""
    t = datetime.fromtimestamp(now, timezone.utc)
    start = datetime(t.year, t.month, 1, tzinfo=timezone.utc)
    days = calendar.monthrange(t.year, t.month)[1]
    return int(start.timestamp()), int(start.timestamp()) + days * DAY


def month_label(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m")


def weekday(day: int) -> int:
    return datetime.fromtimestamp(day, timezone.utc).weekday()


# ---------------------------------------------------------------------------------------------------------- forecast

#: Days of run rate behind the level of the forecast, and of history behind its weekday factors.
LEVEL_DAYS = 7
SEASON_DAYS = 28
#: Fewer complete days of history than this: no weekday factors (all 1).
SEASON_MIN_DAYS = 14


@dataclass(frozen=True)
class Forecast:
    month_to_date: float
    forecast: float
    #: Expected spend of an average day, the forecast's level (USD/day).
    daily_rate: float


def forecast_month(daily: Mapping[int, float], now: float) -> Forecast:
    """Month-to-date spend and month-end forecast from one team's daily spend (day start -> USD), UTC.

    forecast = month to date + the rest of today + every remaining day of the month, each day expected to cost
    `level * factor[weekday]`:
      - level: mean daily spend over the last 7 complete days (fewer when the team is younger: the days since its
        first spend); with no complete day yet, today's run rate (spend so far / hours elapsed, at least one hour).
      - factor[w]: mean spend on weekday w over the last 28 complete days / mean over those days, when at least
        14 complete days exist (otherwise 1); a weekday never seen keeps 1.
      - the rest of today: today's expected spend times the fraction of today still ahead.
    History reaches back before the 1st (the `days` window holds 42 days), so on the 1st of a month the forecast
    is the previous weeks' run rate over the whole month rather than an extrapolation of a few hours.
    Every term is >= 0, so the forecast is never below month-to-date spend.
    """
    month_start, month_end = month_bounds(now)
    today = day_start(now)
    mtd = sum(v for d, v in daily.items() if month_start <= d <= today)
    spent_days = [d for d, v in daily.items() if v > 0 and d < today]
    first = min(spent_days) if spent_days else today
    complete = [d for d in range(max(first, today - SEASON_DAYS * DAY), today, DAY)]
    if complete:
        recent = complete[-LEVEL_DAYS:]
        level = sum(daily.get(d, 0.0) for d in recent) / len(recent)
    else:
        elapsed = max(now - today, HOUR)
        level = daily.get(today, 0.0) * DAY / elapsed
    factor = {w: 1.0 for w in range(7)}
    if len(complete) >= SEASON_MIN_DAYS:
        mean = sum(daily.get(d, 0.0) for d in complete) / len(complete)
        if mean > 0:
            by_day: dict[int, list[float]] = {}
            for d in complete:
                by_day.setdefault(weekday(d), []).append(daily.get(d, 0.0))
            for w, values in by_day.items():
                factor[w] = (sum(values) / len(values)) / mean
    rest_of_today = level * factor[weekday(today)] * (1 - (now - today) / DAY)
    future = sum(level * factor[weekday(d)] for d in range(today + DAY, month_end, DAY))
    return Forecast(mtd, mtd + rest_of_today + future, level)


def burn_rate(spend_24h: float, budget: float | None, now: float) -> float | None:
    """Last-24h spend as a multiple of the daily spend that would use exactly the monthly budget (1 = on pace)."""
    if budget is None or budget <= 0:
        return None
    start, end = month_bounds(now)
    return spend_24h / (budget / ((end - start) / DAY))


# ---------------------------------------------------------------------------------------------------------- spike

#: A baseline below this (USD/hour) is raised to it: a team that spent cents is not "20x" for spending a dollar.
BASELINE_FLOOR_USD_PER_HOUR = 1.0
#: Same-hour samples needed to use their median; fewer and the mean over the team's history hours is used.
SAME_HOUR_MIN_SAMPLES = 3
SPIKE_DAYS = 6


@dataclass(frozen=True)
class TeamFigures:
    """One team's figures as the signals need them; hourly maps are hour start -> amount (7d window buckets)."""

    spend_1h: float = 0.0
    spend_24h: float = 0.0
    credit_1h: float = 0.0
    hourly_spend: Mapping[int, float] = field(default_factory=dict)
    hourly_credit: Mapping[int, float] = field(default_factory=dict)
    #: Tasks over the last 24h.
    completed_24h: float = 0.0
    shipped_24h: float = 0.0
    abandoned_24h: float = 0.0
    contested_24h: float = 0.0
    ai_lines_24h: float = 0.0
    ai_lines_tasks_24h: float = 0.0
    #: The same over the 7d window (the six days before the last 24h are its baseline).
    completed_7d: float = 0.0
    ai_lines_7d: float = 0.0
    ai_lines_tasks_7d: float = 0.0
    #: Hour start of the team's first activity in the 7d window (None: none).
    first_hour: int | None = None
    #: Start of the team's first active minute when that is within the last hour (a team younger than an hour).
    first_minute: int | None = None

    def age(self, now: float) -> float:
        """Seconds since the team's first activity seen in the windows (0 when none)."""
        first = self.first_minute if self.first_minute is not None else self.first_hour
        return 0.0 if first is None else max(0.0, now - first)


def _history_hours(fig: TeamFigures, now: float, before: float) -> list[int]:
    """Hour buckets of the team's history that end before `before`, from its first active hour."""
    if fig.first_hour is None:
        return []
    end = int(before // HOUR) * HOUR
    start = max(fig.first_hour, int(now // HOUR) * HOUR - 7 * DAY + HOUR)
    return list(range(start, end, HOUR))


@dataclass(frozen=True)
class Baseline:
    spend_per_hour: float
    credit_per_hour: float
    #: Samples behind the spend baseline (0: no history, the floor applies).
    samples: int


def baseline(fig: TeamFigures, now: float) -> Baseline:
    """The team's usual hourly spend and output, from hours before the last one.

    Spend: the median of the team's spend in the same clock hour (the hour holding `now - 30 min`) on each of the
    previous six days since it first appeared: robust to daily rhythm, and to weekends (two low days out of six
    cannot move a median of six). With fewer than three such days, the mean over every history hour instead.
    Output: the mean hourly normalized deployments over every history hour (deployments are lumpy; a median
    would be 0 for most teams).
    """
    hours = _history_hours(fig, now, now - HOUR)
    credit = sum(fig.hourly_credit.get(h, 0.0) for h in hours) / len(hours) if hours else 0.0
    same = [int((now - 1800 - d * DAY) // HOUR) * HOUR for d in range(1, SPIKE_DAYS + 1)]
    same = [h for h in same if fig.first_hour is not None and h >= fig.first_hour]
    if len(same) >= SAME_HOUR_MIN_SAMPLES:
        return Baseline(statistics.median(fig.hourly_spend.get(h, 0.0) for h in same), credit, len(same))
    if hours:
        return Baseline(sum(fig.hourly_spend.get(h, 0.0) for h in hours) / len(hours), credit, len(hours))
    return Baseline(0.0, 0.0, 0)


def spike_score(fig: TeamFigures, now: float) -> float:
    """Last hour's spend / the team's usual spend for that hour (floored at 1 USD/hour). 1 = usual; not waste."""
    return fig.spend_1h / max(baseline(fig, now).spend_per_hour, BASELINE_FLOOR_USD_PER_HOUR)


# ---------------------------------------------------------------------------------------------------------- waste


class Signal:
    """Names of the waste signals (the `signal` label of aiyield_waste_signal / aiyield_waste_score)."""

    USAGE_WITHOUT_OUTPUT = "usage_without_output"
    UNSHIPPED_WORK = "unshipped_work"
    CONTESTED_CLAIMS = "contested_claims"
    SPLITTING = "splitting"
    ALL = (USAGE_WITHOUT_OUTPUT, UNSHIPPED_WORK, CONTESTED_CLAIMS, SPLITTING)


#: usage_without_output: flagged when spend is this many times what the team's output growth explains ...
UNEXPLAINED_SPEND_RATIO = 3.0
#: ... a team that has never shipped (no output baseline, no output yet) is judged once it has been active this
#: long (AIYIELD_WASTE_GRACE_SECONDS): a team's first deployment takes a while after its first token ...
#: ... and the last hour cost at least this much (USD).
UNEXPLAINED_MIN_USD = 5.0
#: unshipped_work: share of the last 24h's ended tasks (completed + abandoned) that did not ship ...
UNSHIPPED_SHARE = 0.8
#: ... with at least this many ended tasks and this much spend over 24h.
UNSHIPPED_MIN_TASKS = 20
UNSHIPPED_MIN_USD = 10.0
#: contested_claims: share of the last 24h's completed tasks refused for claiming owned commits, and a minimum count.
CONTESTED_SHARE = 0.2
CONTESTED_MIN = 5
#: splitting: completed tasks per day at least this multiple of the baseline while AI lines per task fell to at most
#: this fraction of the baseline, with at least this many completed tasks over 24h.
SPLIT_COUNT_RATIO = 2.0
SPLIT_LINES_RATIO = 0.5
SPLIT_MIN_TASKS = 10


@dataclass(frozen=True)
class WasteReading:
    signal: str
    score: float
    flagged: bool


DEFAULT_GRACE_SECONDS = 900.0


def usage_without_output(fig: TeamFigures, now: float, grace: float = DEFAULT_GRACE_SECONDS) -> WasteReading:
    """Spend above the team's baseline that its output does not explain.

    spend_ratio = last hour's spend / baseline hourly spend (the spike score); output_ratio = last hour's normalized
    deployments / baseline hourly normalized deployments (when the team has no output baseline, its first output
    counts as following the spend: output_ratio = spend_ratio; no output: 0).
    score = spend_ratio / max(1, output_ratio): 1 when output rises with spend, 20 for 20x spend and no output.
    Flagged when score >= 3 and the last hour cost at least 5 USD; a team with no output at all (no baseline, none in
    the last hour) only once it has been active for `grace` seconds (score reported, not flagged, before that).
    """
    base = baseline(fig, now)
    spend_ratio = fig.spend_1h / max(base.spend_per_hour, BASELINE_FLOOR_USD_PER_HOUR)
    if base.credit_per_hour > 0:
        output_ratio = fig.credit_1h / base.credit_per_hour
    else:
        output_ratio = spend_ratio if fig.credit_1h > 0 else 0.0
    score = spend_ratio / max(1.0, output_ratio)
    flagged = score >= UNEXPLAINED_SPEND_RATIO and fig.spend_1h >= UNEXPLAINED_MIN_USD
    if base.credit_per_hour == 0 and fig.credit_1h == 0 and fig.age(now) < grace:
        flagged = False
    return WasteReading(Signal.USAGE_WITHOUT_OUTPUT, score, flagged)


def unshipped_work(fig: TeamFigures) -> WasteReading:
    """Share of the last 24h's ended tasks that did not ship: 1 - shipped / (completed + abandoned), in [0, 1].

    Spend follows tasks, so this is also the share of AI spend going into work that never reached production.
    Flagged when >= 0.8 with at least 20 ended tasks and 10 USD spent over 24h.
    """
    ended = fig.completed_24h + fig.abandoned_24h
    share = min(1.0, max(0.0, 1 - fig.shipped_24h / ended)) if ended > 0 else 0.0
    flagged = share >= UNSHIPPED_SHARE and ended >= UNSHIPPED_MIN_TASKS and fig.spend_24h >= UNSHIPPED_MIN_USD
    return WasteReading(Signal.UNSHIPPED_WORK, share, flagged)


def contested_claims(fig: TeamFigures) -> WasteReading:
    """Refused claims over the last 24h / tasks completed over the last 24h. Flagged at >= 0.2 with >= 5 refused."""
    share = fig.contested_24h / fig.completed_24h if fig.completed_24h > 0 else (1.0 if fig.contested_24h else 0.0)
    flagged = share >= CONTESTED_SHARE and fig.contested_24h >= CONTESTED_MIN
    return WasteReading(Signal.CONTESTED_CLAIMS, share, flagged)


def splitting(fig: TeamFigures, now: float) -> WasteReading:
    """Task count up while AI lines per task collapse: work cut into many small tasks to earn more credit.

    count_ratio = completed tasks in the last 24h / the team's daily average over its history before that (up to
    six days, from its first active hour; at least one day of it needed); lines_ratio = AI lines per completed task
    (tasks that report ai_lines) in the last 24h / the same before. score = count_ratio / lines_ratio (0 when either
    is unknown). Flagged when count_ratio >= 2, lines_ratio <= 0.5 and at least 10 tasks completed in 24h.
    """
    days = len(_history_hours(fig, now, now - DAY)) / 24
    before_tasks = fig.completed_7d - fig.completed_24h
    before_lines = fig.ai_lines_7d - fig.ai_lines_24h
    before_lines_tasks = fig.ai_lines_tasks_7d - fig.ai_lines_tasks_24h
    if days < 1 or before_tasks <= 0 or before_lines_tasks <= 0 or before_lines <= 0 or fig.ai_lines_tasks_24h <= 0:
        return WasteReading(Signal.SPLITTING, 0.0, False)
    count_ratio = fig.completed_24h / (before_tasks / days)
    lines_ratio = (fig.ai_lines_24h / fig.ai_lines_tasks_24h) / (before_lines / before_lines_tasks)
    score = count_ratio / lines_ratio if lines_ratio > 0 else count_ratio * 100
    flagged = count_ratio >= SPLIT_COUNT_RATIO and lines_ratio <= SPLIT_LINES_RATIO and fig.completed_24h >= SPLIT_MIN_TASKS
    return WasteReading(Signal.SPLITTING, score, flagged)


def waste(fig: TeamFigures, now: float, grace: float = DEFAULT_GRACE_SECONDS) -> list[WasteReading]:
    """Every waste signal of one team, in `Signal.ALL` order."""
    return [usage_without_output(fig, now, grace), unshipped_work(fig), contested_claims(fig), splitting(fig, now)]
