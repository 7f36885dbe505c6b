"""One contract, two backends: the cumulative OTLP state in memory and in Redis (a real embedded Valkey).

The Redis backend's decisions are a Lua script: this is the test that holds it to the same contract as the Python
backend, case by case and on random report sequences.
"""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiyield.gateway.cumulative import (
    LOWER_VALUE,
    OLDER_START,
    OLDER_TIME,
    Delta,
    MemoryCumulativeState,
    RedisCumulativeState,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

#: Nanosecond times like real ones: beyond 2^53, where a double would lose the last digits.
T0 = 1_780_000_000_123_456_789


@pytest.fixture(params=["memory", "redis"])
async def new_state(request, services):
    """A factory of empty states of one backend (the Redis ones in a database of their own, series per call)."""
    if request.param == "memory":
        yield MemoryCumulativeState
        return
    _kafka, redis_url = services
    client = aioredis.Redis.from_url(redis_url)

    class Prefixed(RedisCumulativeState):
        def __init__(self) -> None:
            super().__init__(client)
            self._run = uuid.uuid4().hex

        async def delta(self, series_key, start, time, value):
            return await super().delta(self._run + series_key, start, time, value)

    yield Prefixed
    await client.aclose()


async def test_contract(new_state) -> None:
    state = new_state()
    assert await state.delta("s", T0, T0 + 10, 100) == Delta(100)  # new series: all since start is new
    assert await state.delta("s", T0, T0 + 20, 130) == Delta(30)
    assert await state.delta("s", T0, T0 + 20, 130) == Delta(30)  # retry: the same answer
    assert await state.delta("s", T0, T0 + 15, 110) == Delta(0, OLDER_TIME)  # late point: already included
    assert await state.delta("s", T0, T0 + 30, 20) == Delta(0, LOWER_VALUE)  # lower, same start: not a reset
    assert await state.delta("s", T0, T0 + 40, 135) == Delta(5)  # ...and it changed nothing
    assert await state.delta("s", T0 + 50, T0 + 60, 7) == Delta(7)  # new start time: a reset
    assert await state.delta("s", T0, T0 + 45, 500) == Delta(0, OLDER_START)  # late point of the previous run
    assert await state.delta("s", T0 + 50, T0 + 70, 9) == Delta(2)  # ...which did not disturb the current run
    assert await state.delta("s", T0 + 50, T0 + 71, 9.25) == Delta(0.25)  # fractional (dollars)
    assert await state.delta("other", T0 + 1, T0 + 2, 1) == Delta(1)  # series are independent


async def test_lower_values_with_the_same_start_are_never_counted(new_state) -> None:
    """Finding 5: 1000, 999, 1000, 999 is 1000 tokens, not 2999."""
    state = new_state()
    answers = [await state.delta("s", T0, T0 + i + 1, v) for i, v in enumerate((1000, 999, 1000, 999))]
    assert answers == [Delta(1000), Delta(0, LOWER_VALUE), Delta(0), Delta(0, LOWER_VALUE)]


async def test_start_times_one_nanosecond_apart_are_told_apart(new_state) -> None:
    state = new_state()
    assert await state.delta("s", T0 + 1, T0 + 10, 5) == Delta(5)
    assert await state.delta("s", T0, T0 + 11, 50) == Delta(0, OLDER_START)
    assert await state.delta("s", T0 + 1, T0 + 10, 5) == Delta(5)


# Runs of a process (each with its own start time) reporting a growing total, each report possibly retried.
runs = st.lists(
    st.lists(st.tuples(st.integers(0, 1000), st.booleans()), min_size=1, max_size=6), min_size=1, max_size=4
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reported=runs)
async def test_deltas_sum_to_the_real_usage(new_state, reported) -> None:
    state, counted, real, time = new_state(), 0.0, 0, T0
    for run, increments in enumerate(reported):
        total = 0
        for increment, retried in increments:
            total += increment
            time += 1
            answers = [await state.delta("series", T0 + run, time, total) for _ in range(1 + retried)]
            # A retry gets the same answer, hence the same event id, which the pipeline deduplicates.
            assert len(set(answers)) == 1 and answers[0].ignored is None
            counted += answers[0].amount
        real += total
    assert counted == real
