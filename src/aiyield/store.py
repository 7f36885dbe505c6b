"""Redis store: rolling-window counters, dedup markers, join state, and the consumed Kafka offsets — together.

Exactly-once effect without Kafka transactions (the embedded broker has none that work): every batch's writes and
the offsets it consumed are committed in ONE Redis transaction, and records below the stored offset are skipped.
Redis is therefore the source of truth for "what has been applied"; Kafka's committed offsets only decide where a
restarted consumer starts reading, and they may lag Redis (re-read, skipped) but never lead it (see `transact`).

The key layout is in `aiyield.keys`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from aiyield import keys
from aiyield.core.windows import SEP, Rollup, expires_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Consumed:
    """One Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class Writes:
    """Everything one batch changes, applied atomically with its offsets."""

    rollup: Rollup = field(default_factory=Rollup)
    events_total: dict[tuple[str, str], int] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    #: key -> new value; None deletes the key
    states: dict[str, bytes | None] = field(default_factory=dict)

    def count(self, event_type: str, outcome: str, n: int = 1) -> None:
        self.events_total[(event_type, outcome)] = self.events_total.get((event_type, outcome), 0) + n

    def saw(self, event_type: str, ts: float) -> None:
        if ts > self.last_ts.get(event_type, float("-inf")):
            self.last_ts[event_type] = ts


#: compute(fresh records, values of the keys it asked to read) -> writes. Pure and synchronous: it may run twice
#: when a concurrent writer forces a retry, so it must not have side effects.
Compute = Callable[[list[Consumed], dict[str, bytes | None]], Writes]
ReadKeys = Callable[[list[Consumed]], Sequence[str]]

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)

# Scripts write a whole batch's markers, counters and HyperLogLogs in a few commands instead of one per key and
# field: redis-py spends ~15 us of Python per pipelined command, which dominated a batch's cost. They run inside
# MULTI like any other command, so atomicity with the offsets is unchanged.
_MARK_SEEN = """
for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'EX', ARGV[1]) end
return #KEYS
"""
# ARGV, per key in KEYS order: expire-at, n, then n (field, amount) pairs.
_INCR_HASHES = """
local a = 1
for _, key in ipairs(KEYS) do
  local expire_at, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('EXPIREAT', key, expire_at)
end
return #KEYS
"""
# ARGV, per key in KEYS order: expire-at, n, then n elements.
_ADD_HLLS = """
local a = 1
for _, key in ipairs(KEYS) do
  local expire_at, n = ARGV[a], tonumber(ARGV[a + 1])
  local first, last = a + 2, a + 1 + n
  for i = first, last, 1000 do  -- unpack() is limited to a few thousand values
    redis.call('PFADD', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
  redis.call('EXPIREAT', key, expire_at)
  a = last + 1
end
return #KEYS
"""


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = aioredis.Redis.from_url(url, socket_timeout=30, health_check_interval=10)
        self._mark_seen = self.redis.register_script(_MARK_SEEN)
        self._incr_hashes = self.redis.register_script(_INCR_HASHES)
        self._add_hlls = self.redis.register_script(_ADD_HLLS)

    async def close(self) -> None:
        await self.redis.aclose()

    async def transact(self, consumer: str, records: Sequence[Consumed], read_keys: ReadKeys, compute: Compute) -> int:
        """Apply one batch exactly once; returns how many of its records were new.

        The commit order, in one place:
          1. The caller has already published the batch's side outputs (dead letters, join records) and had them
             acknowledged. A crash after that replays them; their consumers are idempotent on deterministic ids.
          2. Here: WATCH the batch's offset keys and the keys `compute` reads; skip records below the stored
             offsets (already applied by us before a crash, or by another worker before a rebalance); read;
             compute; then MULTI: the writes AND the new offsets; EXEC. If any watched key changed (a zombie
             worker still holding the partition, or a concurrent dedup of the same id), nothing is written and
             the whole step repeats with fresh reads.
          3. Only after this returns does the stream acknowledge the messages, so Kafka's committed offset can lag
             Redis's but never lead it. Transient Redis failures are retried here, never raised: raising would let
             the stream acknowledge messages whose effects were not written.
        """
        delay = 0.1
        while True:
            try:
                return await self._transact_once(consumer, records, read_keys, compute)
            except WatchError:
                continue
            except _TRANSIENT as exc:
                log.warning("redis unavailable (%s); retrying batch of %d records in %.1fs", exc, len(records), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _transact_once(self, consumer: str, records: Sequence[Consumed], read_keys: ReadKeys, compute: Compute) -> int:
        partitions = sorted({(r.topic, r.partition) for r in records})
        offset_keys = [keys.offset(consumer, t, p) for t, p in partitions]
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*offset_keys)
            stored = dict(zip(partitions, await pipe.mget(offset_keys)))
            start = {tp: int(v) if v is not None else -1 for tp, v in stored.items()}
            fresh = [r for r in records if r.offset >= start[(r.topic, r.partition)]]
            if not fresh:
                await pipe.unwatch()
                return 0
            wanted = list(dict.fromkeys(read_keys(fresh)))
            values: dict[str, bytes | None] = {}
            if wanted:
                await pipe.watch(*wanted)
                values = dict(zip(wanted, await pipe.mget(wanted)))
            writes = compute(fresh, values)
            pipe.multi()
            await self._queue_writes(pipe, writes)
            # One pass over the batch for every partition's last offset, rather than one scan per partition.
            last: dict[tuple[str, int], int] = {}
            for r in fresh:
                last[(r.topic, r.partition)] = max(r.offset, last.get((r.topic, r.partition), -1))
            for tp, key in zip(partitions, offset_keys, strict=True):
                if tp in last:
                    pipe.set(key, last[tp] + 1)
            await pipe.execute()
            return len(fresh)

    async def _queue_writes(self, pipe, writes: Writes) -> None:
        rollup = writes.rollup
        names, args = [], []
        for (window, start), amounts in rollup.counters.items():
            fields = [(name, amount) for name, amount in amounts.items() if amount]
            if fields:
                names.append(keys.window(window, start))
                args += [expires_at(window, start), len(fields)]
                for name, amount in fields:
                    args += [name, amount]
        if names:
            await self._incr_hashes(keys=names, args=args, client=pipe)
        names, args = [], []
        for (window, start, team), developers in rollup.developers.items():
            names.append(keys.developers(window, start, team))
            args += [expires_at(window, start), len(developers), *developers]
        if names:
            await self._add_hlls(keys=names, args=args, client=pipe)
        if writes.seen:
            await self._mark_seen(keys=writes.seen, args=[keys.DEDUP_SECONDS], client=pipe)
        if rollup.teams:
            pipe.sadd(keys.TEAMS, *rollup.teams)
        for (event_type, outcome), n in writes.events_total.items():
            pipe.hincrby(keys.EVENTS_TOTAL, f"{event_type}{SEP}{outcome}", n)
        if writes.last_ts:
            pipe.zadd(keys.LAST_TS, writes.last_ts, gt=True)
        for key, value in writes.states.items():
            if value is None:
                pipe.delete(key)
            else:
                pipe.set(key, value)


async def retry_forever(what: str, fn: Callable[[], Awaitable[None]]) -> None:
    """Run an I/O step that must succeed before the batch may be acknowledged (e.g. publishing side outputs)."""
    delay = 0.1
    while True:
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001 - logged and retried; giving up would lose the batch
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
