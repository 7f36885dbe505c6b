"""Which of a batch's amounts are plain counters and which are peaked (core/counters.py)."""

from __future__ import annotations

from aiyield.core import counters
from aiyield.core.crediting import Delta, Policy
from aiyield.core.measures import Measure, measure_delta
from aiyield.core.windows import Rollup, series

NOW = 1_767_225_600.0


def rollup(*deltas: Delta) -> Rollup:
    r = Rollup()
    for delta in deltas:
        measure_delta(r, delta, NOW)
    return r


def test_input_measures_are_plain_and_old_events_count_when_processed():
    r = Rollup()
    r.add(NOW - 400 * 86400, NOW, {series(Measure.SPEND, "pay", "cc", "m"): 7})  # older than every window
    r.add(NOW - 10, NOW, {series(Measure.SPEND, "pay", "cc", "m"): 3, series(Measure.AI_LINES, "pay", "cc"): 40})
    plain, net = counters.split(r)
    assert plain == {series(Measure.SPEND, "pay", "cc", "m"): 10}  # AI lines have no counter
    assert net == {}


def test_a_moved_credit_cancels_and_a_rollback_keeps_credit_given():
    moved = rollup(Delta("credit", "pay", NOW - 50, -500_000, tool="cc", shipped=-1),
                   Delta("credit", "pay", NOW - 90, 500_000, tool="cc", shipped=1))
    assert counters.split(moved) == ({}, {})
    rolled_back = rollup(Delta("credit", "pay", NOW - 50, -500_000, tool="cc", shipped=-1),
                         Delta("retracted", "pay", NOW - 10, 500_000, reason="rollback"))
    plain, net = counters.split(rolled_back)
    assert plain == {}
    # Given is unchanged (credit -x, retracted +x); the retraction counts; the shipped task is taken back.
    assert net == {series(Measure.RETRACTED, "pay", "rollback"): 500_000,
                   series(Measure.TASKS, "pay", "cc", "shipped"): -1}


def test_a_new_credit_is_given_and_shipped():
    plain, net = counters.split(rollup(Delta("credit", "pay", NOW - 50, 1_000_000, tool="cc", shipped=1),
                                       Delta("contested", "ops", NOW - 5, 1)))
    assert net == {series(Measure.CREDIT, "pay"): 1_000_000, series(Measure.TASKS, "pay", "cc", "shipped"): 1,
                   series(Measure.CONTESTED, "ops"): 1}


def test_deployments_by_production_or_other():
    import msgspec

    from aiyield.core.events import Event

    def deployment(env: str, status: str) -> Event:
        return msgspec.convert({"type": "deployment", "id": env + status, "ts": NOW, "deploy_id": "d", "repo": "r",
                                "environment": env, "status": status, "head": "a" * 40}, Event)  # type: ignore[arg-type]

    production = Policy().is_production
    assert counters.deployment(deployment("PROD", "succeeded"), production) == series(Measure.DEPLOYMENTS, "production", "succeeded")
    assert counters.deployment(deployment("staging", "failed"), production) == series(Measure.DEPLOYMENTS, "other", "failed")
