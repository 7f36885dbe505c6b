from __future__ import annotations

from aiyield.core.crediting import Delta
from aiyield.core.events import validate
from aiyield.core.measures import measure, measure_delta
from aiyield.core.pricing import Price, PriceTable
from aiyield.core.windows import SCALE, Rollup, bucket_start, series

NOW = 1_800_000_000.0
PRICES = PriceTable({"m": Price(2.0, 10.0, 0.5, 2.5)})
TOKEN = {"type": "token", "id": "a", "ts": NOW, "team": "t", "tool": "x", "model": "m", "input_tokens": 1_000_000,
         "output_tokens": 100_000, "cache_read_tokens": 10, "cache_write_tokens": 0, "developer": "px:" + "0" * 32}


def hour(r: Rollup) -> dict:
    return r.counters[("1h", bucket_start(NOW, 60))]


def test_token_event_adds_tokens_spend_team_and_developer():
    r = Rollup()
    measure(r, validate(TOKEN, NOW), PRICES, NOW)
    h = hour(r)
    assert h[series("tokens", "t", "x", "m", "input")] == 1_000_000
    assert h[series("tokens", "t", "x", "m", "output")] == 100_000
    assert h[series("tokens", "t", "x", "m", "cache_read")] == 10
    assert series("tokens", "t", "x", "m", "cache_write") not in h  # zero amounts are not written
    assert h[series("spend", "t", "x", "m")] == round((2.0 + 1.0 + 0.000005) * SCALE["spend"])
    assert r.teams == {"t"} and r.developers[("1h", bucket_start(NOW, 60), "t")] == {TOKEN["developer"]}


def test_reported_cost_is_authoritative_and_unknown_models_are_counted_unpriced():
    r = Rollup()
    measure(r, validate({**TOKEN, "cost_usd": 0.25}, NOW), PRICES, NOW)
    measure(r, validate({**TOKEN, "id": "b", "model": "mystery"}, NOW), PRICES, NOW)
    h = hour(r)
    assert h[series("spend", "t", "x", "m")] == SCALE["spend"] // 4
    assert series("spend", "t", "x", "mystery") not in h
    assert h[series("unpriced", "t", "x", "mystery")] == 1


def test_tasks_count_completed_and_abandoned_only():
    r = Rollup()
    base = {"type": "task", "ts": NOW, "task_id": "T", "team": "t", "tool": "x"}
    for i, status in enumerate(["started", "completed", "abandoned"]):
        measure(r, validate({**base, "id": str(i), "status": status}, NOW), PRICES, NOW)
    assert hour(r) == {series("tasks", "t", "x", "completed"): 1, series("tasks", "t", "x", "abandoned"): 1}


def test_push_and_deployment_add_no_input_metrics():
    r = Rollup()
    measure(r, validate({"type": "push", "id": "p", "ts": NOW, "repo": "r", "branch": "b", "commits": []}, NOW), PRICES, NOW)
    assert not r


def test_credit_and_retraction_land_at_the_deployment_time():
    r = Rollup()
    dep_ts = NOW - 7200
    measure_delta(r, Delta("credit", "t", dep_ts, 300_000, tool="x", shipped=1), NOW)
    measure_delta(r, Delta("credit", "t", dep_ts, -300_000, tool="x", shipped=-1), NOW)
    day = r.counters[("24h", bucket_start(dep_ts, 1200))]
    assert day[series("credit", "t")] == 0 and day[series("tasks", "t", "x", "shipped")] == 0
    assert ("1h", bucket_start(dep_ts, 60)) not in r.counters  # two hours old: outside the 1h window


def test_retractions_and_contested_claims_land_at_their_own_time():
    r = Rollup()
    measure_delta(r, Delta("retracted", "t", NOW - 30, 500_000, reason="revert"), NOW)
    measure_delta(r, Delta("contested", "t", NOW - 7200, 1), NOW)
    assert r.counters[("1h", bucket_start(NOW - 30, 60))] == {series("retracted", "t", "revert"): 500_000}
    assert r.counters[("24h", bucket_start(NOW - 7200, 1200))] == {series("contested", "t"): 1}
    assert r.teams == {"t"}


def test_one_hour_cache_writes_are_priced_at_their_rate():
    r = Rollup()  # m: input $2, 5-minute writes $2.50, 1-hour writes 2x input = $4 per million
    event = {**TOKEN, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 1_000_000,
             "cache_write_1h_tokens": 250_000}
    measure(r, validate(event, NOW), PRICES, NOW)
    h = hour(r)
    assert h[series("tokens", "t", "x", "m", "cache_write")] == 1_000_000  # one token type: the TTL only prices
    assert h[series("spend", "t", "x", "m")] == round((0.75 * 2.5 + 0.25 * 4.0) * SCALE["spend"])
