"""Budgets, forecast, burn rate, spike score and waste signals on hand-built series with known answers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aiyield.core import finance
from aiyield.core.finance import DAY, HOUR, BudgetError, Budgets, TeamFigures


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# ------------------------------------------------------------------------------------------------------- budgets


def test_budgets_parse_teams_and_default():
    b = Budgets.parse('[teams.payments]\nmonthly_usd = 5000\n[teams."growth lab"]\nmonthly_usd = 1e3\n[default]\nmonthly_usd = 100')
    assert b.for_team("payments") == 5000.0 and b.for_team("growth lab") == 1000.0 and b.for_team("x") == 100.0
    assert Budgets.parse("[teams.a]\nmonthly_usd = 1").for_team("b") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("[teams.a]\nmonthly_usd = -1", "finite and >= 0"),
        ("[teams.a]\nmonthly_usd = 'lots'", "must be a number"),
        ("[teams.a]\nmonthly_usd = true", "must be a number"),
        ("[teams.a]\nmonthly = 1", "unknown key"),
        ("[team.a]\nmonthly_usd = 1", "unknown table"),
        ("[teams.a\nmonthly_usd = 1", "not valid TOML"),
        ("teams = 3", "must be a table"),
        ("[default]\nmonthly_usd = nan", "finite"),
    ],
)
def test_budgets_reject_mistakes_with_a_clear_message(text, message):
    with pytest.raises(BudgetError, match=message):
        Budgets.parse(text, "budgets.toml")


def test_budgets_load_names_the_file(tmp_path):
    with pytest.raises(BudgetError, match="cannot read budgets file"):
        Budgets.load(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------------------------------- forecast


def test_month_bounds_and_first_of_month():
    start, end = finance.month_bounds(ts(2026, 2, 14, 12))
    assert start == ts(2026, 2, 1) and end == ts(2026, 3, 1)
    assert finance.month_bounds(ts(2026, 3, 1))[0] == ts(2026, 3, 1)


def test_forecast_flat_history_is_the_daily_rate_times_the_month():
    now = ts(2026, 4, 11, 0)  # midnight: today has not started, 20 days ahead (April has 30)
    daily = {int(ts(2026, 4, 11)) - d * DAY: 10.0 for d in range(1, 30)}
    f = finance.forecast_month(daily, now)
    assert f.month_to_date == pytest.approx(100.0)  # April 1..10
    assert f.daily_rate == pytest.approx(10.0)
    assert f.forecast == pytest.approx(300.0)


def test_forecast_weekday_seasonality():
    # Weekdays cost 10, weekends 0, for four weeks: the level is 50/7 a day, weekday factor 1.4, weekend 0.
    today = int(ts(2026, 6, 15))  # a Monday
    daily = {}
    for d in range(1, 29):
        day = today - d * DAY
        daily[day] = 0.0 if finance.weekday(day) >= 5 else 10.0
    f = finance.forecast_month(daily, float(today))
    # June 15..30: 12 weekdays, 4 weekend days; month to date June 1..14 = 10 weekdays.
    assert f.month_to_date == pytest.approx(100.0)
    assert f.forecast == pytest.approx(100.0 + 12 * 10.0)


def test_forecast_on_the_first_of_the_month_uses_last_month():
    now = ts(2026, 5, 1, 6)  # 6h into May 1st
    today = int(ts(2026, 5, 1))
    daily = {today - d * DAY: 24.0 for d in range(1, 8)} | {today: 6.0}
    f = finance.forecast_month(daily, now)
    assert f.month_to_date == 6.0
    assert f.forecast == pytest.approx(6.0 + 24.0 * 0.75 + 24.0 * 30)


def test_forecast_without_history_extrapolates_today_and_is_never_below_mtd():
    now = ts(2026, 5, 10, 12)
    today = int(ts(2026, 5, 10))
    f = finance.forecast_month({today: 12.0}, now)
    assert f.daily_rate == pytest.approx(24.0)
    assert f.forecast == pytest.approx(12.0 + 12.0 + 24.0 * 21)
    assert finance.forecast_month({}, now).forecast == 0.0
    # Just after midnight: one hour minimum, not a division by seconds.
    early = finance.forecast_month({today: 1.0}, today + 60)
    assert early.daily_rate == pytest.approx(24.0)
    assert early.forecast >= early.month_to_date


def test_burn_rate():
    now = ts(2026, 4, 10)  # April: 30 days; a 3000 USD budget is 100 a day
    assert finance.burn_rate(100.0, 3000.0, now) == pytest.approx(1.0)
    assert finance.burn_rate(250.0, 3000.0, now) == pytest.approx(2.5)
    assert finance.burn_rate(250.0, None, now) is None and finance.burn_rate(1.0, 0.0, now) is None


# ------------------------------------------------------------------------------------------------------- spike

NOW = float(int(ts(2026, 6, 17, 10)) + 1200)  # Wednesday 10:20 UTC


def history(per_hour: float, days: int = 7, credit: float = 0.0, **extra) -> dict:
    hours = [int(NOW // HOUR) * HOUR - h * HOUR for h in range(1, days * 24)]
    return dict(
        hourly_spend={h: per_hour for h in hours},
        hourly_credit={h: credit for h in hours} if credit else {},
        first_hour=min(hours),
        **extra,
    )


def test_spike_score_against_the_same_hour_median():
    fig = TeamFigures(spend_1h=40.0, **history(10.0))
    assert finance.spike_score(fig, NOW) == pytest.approx(4.0)


def test_spike_score_ignores_two_quiet_weekend_days():
    h = history(10.0)
    for d in (1, 2):  # the same hour on two of the six previous days was idle (a weekend)
        h["hourly_spend"][int((NOW - 1800 - d * DAY) // HOUR) * HOUR] = 0.0
    assert finance.spike_score(TeamFigures(spend_1h=10.0, **h), NOW) == pytest.approx(1.0)


def test_spike_score_with_little_history_uses_the_mean_and_the_floor():
    young = TeamFigures(spend_1h=30.0, **history(10.0, days=1))  # under a day: no same-hour samples
    assert finance.spike_score(young, NOW) == pytest.approx(3.0)
    new = TeamFigures(spend_1h=30.0)  # no history at all: against the 1 USD/hour floor
    assert finance.spike_score(new, NOW) == pytest.approx(30.0)
    cheap = TeamFigures(spend_1h=0.5, **history(0.01))
    assert finance.spike_score(cheap, NOW) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------------- waste


def test_usage_without_output_flags_spend_that_output_does_not_follow():
    burner = TeamFigures(spend_1h=200.0, credit_1h=0.0, **history(10.0, credit=1.0))
    grower = TeamFigures(spend_1h=40.0, credit_1h=4.0, **history(10.0, credit=1.0))
    steady = TeamFigures(spend_1h=10.0, credit_1h=1.0, **history(10.0, credit=1.0))
    r = finance.usage_without_output(burner, NOW)
    assert r.flagged and r.score == pytest.approx(20.0)
    assert finance.usage_without_output(grower, NOW) == finance.WasteReading("usage_without_output", 1.0, False)
    assert not finance.usage_without_output(steady, NOW).flagged
    # 3.5x spend with only 1x output: 3.5 unexplained.
    assert finance.usage_without_output(TeamFigures(spend_1h=35.0, credit_1h=1.0, **history(10.0, credit=1.0)), NOW).flagged
    # Cheap: 4 USD is below the 5 USD minimum whatever the ratio.
    assert not finance.usage_without_output(TeamFigures(spend_1h=4.0, **history(0.1)), NOW).flagged


def test_usage_without_output_for_a_team_without_output_baseline():
    new_shipper = TeamFigures(spend_1h=50.0, credit_1h=2.0, first_minute=int(NOW) - 60)
    assert finance.usage_without_output(new_shipper, NOW).score == pytest.approx(1.0)
    # Never shipped: judged once active for the grace period (15 minutes by default), scored before that.
    young = TeamFigures(spend_1h=50.0, first_minute=int(NOW) - 600)
    assert finance.usage_without_output(young, NOW).score == 50.0 and not finance.usage_without_output(young, NOW).flagged
    assert finance.usage_without_output(young, NOW, grace=300).flagged
    older = TeamFigures(spend_1h=50.0, first_minute=int(NOW) - 1000)
    assert finance.usage_without_output(older, NOW).flagged
    # A team with an output baseline is judged at once (the grace is for teams that never shipped).
    assert finance.usage_without_output(TeamFigures(spend_1h=200.0, **history(10.0, credit=1.0)), NOW, grace=1e9).flagged


def test_unshipped_work():
    wasted = TeamFigures(spend_24h=100.0, completed_24h=2, abandoned_24h=28, shipped_24h=1)
    r = finance.unshipped_work(wasted)
    assert r.flagged and r.score == pytest.approx(29 / 30)
    honest = TeamFigures(spend_24h=100.0, completed_24h=85, abandoned_24h=15, shipped_24h=80)
    assert finance.unshipped_work(honest).score == pytest.approx(0.2) and not finance.unshipped_work(honest).flagged
    few = TeamFigures(spend_24h=100.0, abandoned_24h=5)
    assert finance.unshipped_work(few).score == 1.0 and not finance.unshipped_work(few).flagged
    # Shipped can exceed ended (tasks completed before the window): share clamps at 0.
    assert finance.unshipped_work(TeamFigures(completed_24h=2, shipped_24h=5)).score == 0.0


def test_contested_claims():
    assert finance.contested_claims(TeamFigures(completed_24h=20, contested_24h=6)).flagged
    assert not finance.contested_claims(TeamFigures(completed_24h=100, contested_24h=6)).flagged  # 6%
    assert not finance.contested_claims(TeamFigures(completed_24h=4, contested_24h=2)).flagged  # too few
    assert finance.contested_claims(TeamFigures(contested_24h=5)).score == 1.0


def test_splitting():
    # Before: 10 tasks a day of 100 lines. Now: 40 tasks of 10 lines.
    base = history(10.0)
    split = TeamFigures(completed_24h=40, ai_lines_24h=400, ai_lines_tasks_24h=40,
                        completed_7d=40 + 60, ai_lines_7d=400 + 6000, ai_lines_tasks_7d=40 + 60, **base)
    r = finance.splitting(split, NOW)
    assert r.flagged
    days = (7 * 24 - 1 - 24) / 24  # history hours before the last 24h
    assert r.score == pytest.approx((40 / (60 / days)) / 0.1)
    # More tasks of the same size: growth, not splitting.
    grow = TeamFigures(completed_24h=40, ai_lines_24h=4000, ai_lines_tasks_24h=40,
                       completed_7d=100, ai_lines_7d=10000, ai_lines_tasks_7d=100, **base)
    assert not finance.splitting(grow, NOW).flagged
    # No history before the last 24h: not judged.
    assert finance.splitting(TeamFigures(completed_24h=40, ai_lines_24h=40, ai_lines_tasks_24h=40,
                                         completed_7d=40, ai_lines_7d=40, ai_lines_tasks_7d=40), NOW).score == 0.0


def test_waste_lists_every_signal_in_order():
    assert [r.signal for r in finance.waste(TeamFigures(), NOW)] == list(finance.Signal.ALL)
    assert not any(r.flagged for r in finance.waste(TeamFigures(), NOW))
