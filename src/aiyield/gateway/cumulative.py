"""Cumulative OTLP series: how much of a re-exported running total is new.

An OTLP cumulative point carries a running total since its series' `start_time_unix_nano`. Per the OpenTelemetry
data model, a *reset* is announced by a new start time, never by a lower value alone. So, for one series:

- not seen before: the whole value is new (it counts since the start);
- a later start time than the one recorded: a reset (the process restarted): the whole value is new;
- an earlier start time: a late point of a previous run: ignored (`OLDER_START`);
- the same start, the same time as the last point: an exporter retry: the same answer as then, so it yields the
  same event (with the same id, deduplicated downstream);
- the same start, an earlier time: a late point, already included in the newer total: ignored (`OLDER_TIME`);
- the same start, a later time, a value below the last one: not a reset, a broken or hostile sender: ignored
  (`LOWER_VALUE`), so `1000, 999, 1000, 999` counts 1000, not 2999;
- otherwise the growth since the last point is new.

An ignored point changes nothing. Points whose start time lies in the future, or after their own time, are
rejected before they reach the state (`otlp.from_otlp_metrics`), so one bad point cannot freeze a series.

Two backends keep the same contract (`tests/integration/test_gateway_cumulative.py` runs one test over both): in
process memory (tests, a single gateway) and in Redis, atomically in one Lua script, shared by every gateway replica
and kept across restarts. The Redis key is built by `aiyield.keys.otlp_series`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple, Protocol

import redis.asyncio as aioredis

from aiyield import keys

#: Reasons a point is ignored (bounded: they label the gateway's ignored-points counter).
OLDER_START = "start time older than the series'"
OLDER_TIME = "time older than the series' last point"
LOWER_VALUE = "value below the series' last one with the same start time"

#: Series not updated for this long are forgotten (a Claude Code series lives one session).
SERIES_TTL_SECONDS = 7 * 86400


class Delta(NamedTuple):
    #: How much of the point's value is new (0 when ignored or unchanged).
    amount: float
    #: Why the point was ignored, or None.
    ignored: str | None = None


class CumulativeState(Protocol):
    """The last point of each cumulative series; see the module docstring for the contract every backend keeps.

    Several gateway replicas must share one backend, or each counts a series' total once more.
    """

    async def delta(self, series_key: str, start: int, time: int, value: float) -> Delta: ...


class MemoryCumulativeState:
    """`CumulativeState` in process memory, for tests and a single gateway.

    Bounded: beyond `max_series` the least recently updated series is forgotten (if it reports again, its
    total since start is counted again). Claude Code starts a series per session, so without a bound a
    long-running gateway would grow without end.
    """

    def __init__(self, max_series: int = 100_000) -> None:
        self._max_series = max_series
        # series key -> (start, time, value, the value before it)
        self._series: OrderedDict[str, tuple[int, int, float, float]] = OrderedDict()

    async def delta(self, series_key: str, start: int, time: int, value: float) -> Delta:
        seen = self._series.get(series_key)
        previous = 0.0
        if seen is not None:
            seen_start, seen_time, seen_value, seen_previous = seen
            if start < seen_start:
                return Delta(0.0, OLDER_START)
            if start == seen_start:
                if time == seen_time:
                    return Delta(seen_value - seen_previous)
                if time < seen_time:
                    return Delta(0.0, OLDER_TIME)
                if value < seen_value:
                    return Delta(0.0, LOWER_VALUE)
                previous = seen_value
        self._series[series_key] = (start, time, value, previous)
        self._series.move_to_end(series_key)
        if len(self._series) > self._max_series:
            self._series.popitem(last=False)
        return Delta(value - previous)


# The same decisions as `MemoryCumulativeState.delta`, atomically. KEYS[1]: the series hash {start, time, value,
# previous}; ARGV: start, time, value, ttl. Returns {delta as a string, reason code}: 0 counted, 1 older start,
# 2 older time, 3 lower value. Start and time are nanosecond integers beyond a double's 2^53, so they are compared
# as fixed-width decimal strings, never through tonumber.
_DELTA_SCRIPT = """
local s = redis.call('HMGET', KEYS[1], 'start', 'time', 'value', 'previous')
local start, time, value = ARGV[1], ARGV[2], tonumber(ARGV[3])
local previous = 0
if s[1] then
  if start < s[1] then return {'0', 1} end
  if start == s[1] then
    if time == s[2] then return {tostring(tonumber(s[3]) - tonumber(s[4])), 0} end
    if time < s[2] then return {'0', 2} end
    if value < tonumber(s[3]) then return {'0', 3} end
    previous = tonumber(s[3])
  end
end
redis.call('HSET', KEYS[1], 'start', start, 'time', time, 'value', ARGV[3], 'previous', string.format('%.17g', previous))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {string.format('%.17g', value - previous), 0}
"""
_REASONS = {0: None, 1: OLDER_START, 2: OLDER_TIME, 3: LOWER_VALUE}


def _fixed(nanos: int) -> str:
    """A uint64 as 20 digits, so that Lua's string comparison orders it like the number."""
    return f"{nanos:020d}"


class RedisCumulativeState:
    """`CumulativeState` in Redis: shared by every gateway replica and kept across gateway restarts."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int = SERIES_TTL_SECONDS) -> None:
        self._script = client.register_script(_DELTA_SCRIPT)
        self._ttl = ttl_seconds

    async def delta(self, series_key: str, start: int, time: int, value: float) -> Delta:
        # repr() keeps a float's full precision through Lua's tonumber.
        amount, code = await self._script(
            keys=[keys.otlp_series(series_key)], args=[_fixed(start), _fixed(time), repr(float(value)), self._ttl]
        )
        return Delta(float(amount), _REASONS[int(code)])
