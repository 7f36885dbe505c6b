"""State stores: rolling-window counters, dedup markers, join state and the consumed Kafka offsets — together.

Exactly-once effect without Kafka transactions (the embedded broker has none that work): every batch's writes and
the offsets it consumed are committed in ONE transaction, and records below the stored offset are skipped. The
store is therefore the source of truth for "what has been applied"; Kafka's committed offsets only decide where a
restarted consumer starts reading, and they may lag the store (re-read, skipped) but never lead it.

A batch is applied by a *plan*: a generator over the batch's fresh records that yields `Read`s (keys to get,
sorted-set ranges to scan), receives what was read, and returns the batch's `Writes`. Plans are pure (see
`aiyield.batch`): a conflict reruns them from the start. Two stores run plans with the same contract: `RedisStore`
(WATCH every key read, then MULTI/EXEC the writes with the offsets) and `MemoryStore` (unit tests).

The key layout is in `aiyield.keys`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generator, Protocol, Sequence, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from aiyield import keys
from aiyield.core.windows import SEP, Rollup, expires_at

log = logging.getLogger(__name__)

#: Counters saturate here instead of failing: Redis refuses an increment past a signed 64-bit integer, and a failed
#: command inside MULTI would leave the rest of the batch applied. Validated events cannot get near it honestly.
COUNTER_LIMIT = 2**63 - 1


@dataclass(frozen=True)
class Consumed:
    """One Kafka record as the worker received it; `timestamp` is the record's time (its arrival), in seconds."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float = 0.0


@dataclass(frozen=True)
class Read:
    """What a plan step reads: plain keys, hash fields (key, field), and sorted-set members with lo <= score <= hi."""

    keys: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    ranges: tuple[tuple[str, float, float], ...] = ()
    sets: tuple[str, ...] = ()  # every member (small sets only)


@dataclass
class Got:
    values: dict[str, bytes | None] = field(default_factory=dict)
    fields: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    ranges: dict[tuple[str, float, float], list[bytes]] = field(default_factory=dict)


@dataclass
class Writes:
    """Everything one batch changes, applied atomically with its offsets."""

    rollup: Rollup = field(default_factory=Rollup)
    events_total: dict[tuple[str, str], int] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    #: key -> (value, expire at epoch seconds)
    values: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    #: (hash key, field) -> value; None deletes the field
    fields: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    #: hash key -> expire at epoch seconds (only ever extended)
    hash_expiry: dict[str, int] = field(default_factory=dict)
    #: set key -> names to add
    names: dict[str, set[str]] = field(default_factory=dict)
    #: sorted set key -> ([(member, score)] to add, expire at (only ever extended), drop members scored below this)
    members: dict[str, tuple[list[tuple[bytes, float]], int, float]] = field(default_factory=dict)

    def count(self, event_type: str, outcome: str, n: int = 1) -> None:
        self.events_total[(event_type, outcome)] = self.events_total.get((event_type, outcome), 0) + n

    def saw(self, event_type: str, ts: float) -> None:
        if ts > self.last_ts.get(event_type, float("-inf")):
            self.last_ts[event_type] = ts


#: plan(fresh records) -> generator yielding reads, returning the writes. Pure: it may run again after a conflict.
Plan = Callable[[list["Consumed"]], Generator[Read, Got, Writes]]


class Store(Protocol):
    async def transact(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int: ...

    async def close(self) -> None: ...


def _fresh(records: Sequence[Consumed], start: dict[tuple[str, int], int]) -> list[Consumed]:
    return [r for r in records if r.offset >= start.get((r.topic, r.partition), -1)]


def _next_offsets(fresh: Sequence[Consumed]) -> dict[tuple[str, int], int]:
    # One pass over the batch for every partition's next offset, rather than one scan per partition.
    last: dict[tuple[str, int], int] = {}
    for r in fresh:
        last[(r.topic, r.partition)] = max(r.offset + 1, last.get((r.topic, r.partition), 0))
    return last


def _saturate(amount: int) -> int:
    return max(-COUNTER_LIMIT, min(COUNTER_LIMIT, amount))


_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)

# Scripts write a whole batch's markers, counters and HyperLogLogs in a few commands instead of one per key and
# field: redis-py spends ~15 us of Python per pipelined command, which dominated a batch's cost. They run inside
# MULTI like any other command, so atomicity with the offsets is unchanged, and none of them can fail half-way.
_MARK_SEEN = """
for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'EX', ARGV[1]) end
return #KEYS
"""
# ARGV, per key in KEYS order: expire-at, n, then n (field, amount) pairs. An increment that would overflow a 64-bit
# counter saturates it instead of raising (see COUNTER_LIMIT).
_INCR_HASHES = """
local a = 1
for _, key in ipairs(KEYS) do
  local expire_at, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local ok = redis.pcall('HINCRBY', key, ARGV[a], ARGV[a + 1])
    if type(ok) == 'table' and ok.err then
      local limit = '9223372036854775807'
      if string.sub(ARGV[a + 1], 1, 1) == '-' then limit = '-9223372036854775807' end
      redis.call('HSET', key, ARGV[a], limit)
    end
    a = a + 2
  end
  redis.call('EXPIREAT', key, expire_at)
end
return #KEYS
"""
# ARGV, per key in KEYS order: n, then n field names. Returns the values, flat, in order (false when absent): many
# hashes read in one round trip.
_GET_FIELDS = """
local out, a = {}, 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  local values = redis.call('HMGET', key, unpack(ARGV, a + 1, a + n))
  for i = 1, n do out[#out + 1] = values[i] end
  a = a + n + 1
end
return out
"""
# ARGV, per key in KEYS order: expire-at, n, then n (field, value) pairs; an empty value deletes the field.
_SET_FIELDS = """
local a = 1
for _, key in ipairs(KEYS) do
  local expire_at, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    if ARGV[a + 1] == '' then redis.call('HDEL', key, ARGV[a]) else redis.call('HSET', key, ARGV[a], ARGV[a + 1]) end
    a = a + 2
  end
  if redis.call('EXISTS', key) == 1 then
    redis.call('EXPIREAT', key, expire_at, 'NX')
    redis.call('EXPIREAT', key, expire_at, 'GT')
  end
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


class RedisStore:
    def __init__(self, url: str, **options) -> None:
        """`options`: more `from_url` arguments (TLS: `Settings.redis_client_options()`)."""
        self.url = url
        self.redis = aioredis.Redis.from_url(url, socket_timeout=30, health_check_interval=10, **options)
        self._mark_seen = self.redis.register_script(_MARK_SEEN)
        self._incr_hashes = self.redis.register_script(_INCR_HASHES)
        self._add_hlls = self.redis.register_script(_ADD_HLLS)
        self._set_fields = self.redis.register_script(_SET_FIELDS)
        self._get_fields = self.redis.register_script(_GET_FIELDS)

    async def close(self) -> None:
        await self.redis.aclose()

    async def transact(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int:
        """Apply one batch exactly once; returns how many of its records were new.

        The commit order, in one place:
          1. The caller has already published the batch's side outputs (dead letters, join records) and had them
             acknowledged. A crash after that replays them; their consumers are idempotent on deterministic ids.
          2. Here: WATCH the batch's offset keys and every key the plan reads; skip records below the stored
             offsets (already applied by us before a crash, or by another worker before a rebalance); run the plan;
             then MULTI: the writes AND the new offsets; EXEC. If any watched key changed (a zombie worker still
             holding the partition, or a concurrent writer of the same state), nothing is written and the whole
             step repeats with fresh reads.
          3. Only after this returns does the stream acknowledge the messages, so Kafka's committed offset can lag
             the store's but never lead it. Transient Redis failures are retried here, never raised: raising would
             let the stream acknowledge messages whose effects were not written.
        """
        attempt = _Backoff()
        while True:
            try:
                return await self._transact_once(consumer, records, plan)
            except WatchError:
                continue
            except _TRANSIENT as exc:
                await attempt.wait(f"redis unavailable ({exc}); retrying batch of {len(records)} records")

    async def _transact_once(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int:
        partitions = sorted({(r.topic, r.partition) for r in records})
        offset_keys = {tp: keys.offset(consumer, *tp) for tp in partitions}
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*offset_keys.values())
            stored = await pipe.mget(list(offset_keys.values()))
            fresh = _fresh(records, {tp: int(v) for tp, v in zip(partitions, stored) if v is not None})
            if not fresh:
                await pipe.unwatch()
                return 0
            steps = plan(fresh)
            try:
                read = next(steps)
                while True:
                    read = steps.send(await self._read(pipe, read))
            except StopIteration as done:
                writes: Writes = done.value
            pipe.multi()
            await self._queue_writes(pipe, writes)
            for tp, n in _next_offsets(fresh).items():
                pipe.set(offset_keys[tp], n)
            await pipe.execute()
            return len(fresh)

    async def _read(self, pipe, read: Read) -> Got:
        got = Got()
        wanted = list(dict.fromkeys(read.keys))
        ranged = list(dict.fromkeys(read.ranges))
        hashes: dict[str, list[str]] = defaultdict(list)
        for key, name in dict.fromkeys(read.fields):
            hashes[key].append(name)
        sets = list(dict.fromkeys(read.sets))
        watch = wanted + list(hashes) + [key for key, _lo, _hi in ranged] + sets
        if not watch:
            return got
        await pipe.watch(*watch)
        for key in sets:
            got.sets[key] = {m.decode() for m in await pipe.smembers(key)}
        if wanted:
            got.values = dict(zip(wanted, await pipe.mget(wanted)))
        if hashes:
            args: list = []
            for names in hashes.values():
                args += [len(names), *names]
            values = iter(await self._get_fields(keys=list(hashes), args=args, client=pipe))
            for key, names in hashes.items():
                for name in names:
                    got.fields[(key, name)] = next(values) or None
        for rng in ranged:
            got.ranges[rng] = await pipe.zrangebyscore(*rng)
        return got

    async def _queue_writes(self, pipe, writes: Writes) -> None:
        rollup = writes.rollup
        names, args = [], []
        for (window, start), amounts in rollup.counters.items():
            fields = [(name, _saturate(amount)) for name, amount in amounts.items() if amount]
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
        for key, members in writes.names.items():
            if members:
                pipe.sadd(key, *members)
        for (event_type, outcome), n in writes.events_total.items():
            pipe.hincrby(keys.EVENTS_TOTAL, f"{event_type}{SEP}{outcome}", n)
        if writes.last_ts:
            pipe.zadd(keys.LAST_TS, writes.last_ts, gt=True)
        for key, (value, expire_at) in writes.values.items():
            pipe.set(key, value, exat=expire_at)
        if writes.fields:
            by_key: dict[str, list] = defaultdict(list)
            for (key, name), value in writes.fields.items():
                by_key[key] += [name, value if value is not None else b""]
            args = []
            for key, pairs in by_key.items():
                args += [writes.hash_expiry[key], len(pairs) // 2, *pairs]
            await self._set_fields(keys=list(by_key), args=args, client=pipe)
        for key, (members, expire_at, below) in writes.members.items():
            pipe.zadd(key, dict(members))
            pipe.zremrangebyscore(key, "-inf", f"({below!r}")
            # NX for a new key (no TTL yet), GT for an existing one: a batch of older pushes never shortens it.
            pipe.expireat(key, expire_at, nx=True)
            pipe.expireat(key, expire_at, gt=True)


class MemoryStore:
    """The same `transact` contract in memory, for the batch rules' unit tests.

    Keeps what `RedisStore` writes, in plain structures: counters per window bucket, developer sets, seen markers,
    values, sorted sets, offsets. Expiry is not modelled (tests run within one horizon).
    """

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.developers: dict[str, set[str]] = defaultdict(set)
        self.seen: set[str] = set()
        self.teams: set[str] = set()
        self.events_total: dict[tuple[str, str], int] = defaultdict(int)
        self.last_ts: dict[str, float] = {}
        self.values: dict[str, bytes] = {}
        self.fields: dict[tuple[str, str], bytes] = {}
        self.names: dict[str, set[str]] = defaultdict(set)
        self.members: dict[str, dict[bytes, float]] = defaultdict(dict)

    async def close(self) -> None:
        pass

    async def transact(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int:
        start = {(r.topic, r.partition): self.offsets.get(keys.offset(consumer, r.topic, r.partition), -1) for r in records}
        fresh = _fresh(records, start)
        if not fresh:
            return 0
        steps = plan(fresh)
        try:
            read = next(steps)
            while True:
                read = steps.send(self._read(read))
        except StopIteration as done:
            writes: Writes = done.value
        self._write(writes)
        for (topic, partition), n in _next_offsets(fresh).items():
            self.offsets[keys.offset(consumer, topic, partition)] = n
        return len(fresh)

    def _read(self, read: Read) -> Got:
        values = {k: (b"1" if k in self.seen else self.values.get(k)) for k in read.keys}
        fields = {f: self.fields.get(f) for f in read.fields}
        sets = {k: set(self.teams if k == keys.TEAMS else self.names.get(k, ())) for k in read.sets}
        ranges = {
            (k, lo, hi): [m for m, score in sorted(self.members.get(k, {}).items(), key=lambda i: (i[1], i[0])) if lo <= score <= hi]
            for k, lo, hi in read.ranges
        }
        return Got(values, fields, sets, ranges)

    def _write(self, writes: Writes) -> None:
        for (window, start), amounts in writes.rollup.counters.items():
            bucket = self.counters[keys.window(window, start)]
            for name, amount in amounts.items():
                bucket[name] = _saturate(bucket[name] + amount)
        for (window, start, team), developers in writes.rollup.developers.items():
            self.developers[keys.developers(window, start, team)] |= developers
        self.teams |= writes.rollup.teams
        for key, members in writes.names.items():
            (self.teams if key == keys.TEAMS else self.names[key]).update(members)
        self.seen.update(writes.seen)
        for key, n in writes.events_total.items():
            self.events_total[key] += n
        for event_type, ts in writes.last_ts.items():
            self.last_ts[event_type] = max(ts, self.last_ts.get(event_type, ts))
        self.values.update({k: v for k, (v, _expire) in writes.values.items()})
        for f, v in writes.fields.items():
            if v is None:
                self.fields.pop(f, None)
            else:
                self.fields[f] = v
        for key, (members, _expire, below) in writes.members.items():
            self.members[key].update(members)
            self.members[key] = {m: score for m, score in self.members[key].items() if score >= below}

    def window_sums(self, window: str) -> dict[str, int]:
        """Series -> amount over every bucket of one window (tests read results through this)."""
        out: dict[str, int] = defaultdict(int)
        for key, bucket in self.counters.items():
            if keys.window_of(key) == window:
                for name, amount in bucket.items():
                    out[name] += amount
        return {k: v for k, v in out.items() if v}


_T = TypeVar("_T")


class _Backoff:
    """Exponential backoff between retries of one step: 0.1 s doubling to 5 s."""

    def __init__(self) -> None:
        self.delay = 0.1

    async def wait(self, why: str) -> None:
        log.warning("%s in %.1fs", why, self.delay)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 5.0)


async def retry_transient(what: str, fn: Callable[[], Awaitable[_T]], transient: tuple[type[BaseException], ...]) -> _T:
    """Run an I/O step that must succeed before the batch may be acknowledged, retrying only transport errors.

    Anything else is a bug and propagates (the worker then stops before acknowledging).
    """
    attempt = _Backoff()
    while True:
        try:
            return await fn()
        except transient as exc:
            await attempt.wait(f"{what} failed ({exc}); retrying")
