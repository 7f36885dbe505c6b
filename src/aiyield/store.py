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
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generator, Protocol, Sequence, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from aiyield import keys, redisconn
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
    #: (sorted-set key, prefix, limit): up to `limit` members starting with the prefix, in lexical order (members of
    #: such a set all share one score).
    lex: tuple[tuple[str, str, int], ...] = ()
    #: Hash keys whose every field name is wanted (a task's set of commits).
    hashes: tuple[str, ...] = ()
    #: Dedup markers (`keys.seen`) to look up. The answer may be optimistic: a marker can be reported unseen when
    #: it is not. Therefore a plan puts in `Writes.seen` every marker whose absence it relied on, and the store
    #: applies the writes only if all of those are still absent; otherwise it reruns the plan knowing them.
    seen: tuple[keys.Marker, ...] = ()


@dataclass
class Got:
    values: dict[str, bytes | None] = field(default_factory=dict)
    fields: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    ranges: dict[tuple[str, float, float], list[bytes]] = field(default_factory=dict)
    lex: dict[tuple[str, str, int], list[bytes]] = field(default_factory=dict)
    hashes: dict[str, list[bytes]] = field(default_factory=dict)
    #: The markers of `Read.seen` known to be present.
    seen: set[keys.Marker] = field(default_factory=set)


@dataclass
class Writes:
    """Everything one batch changes, applied atomically with its offsets."""

    rollup: Rollup = field(default_factory=Rollup)
    events_total: dict[tuple[str, str], int] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    #: Dedup markers to add (`keys.seen`); the writes apply only if none of them is present (see `Read.seen`).
    seen: list[keys.Marker] = field(default_factory=list)
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
    #: Processing-time counters (`core.counters`): series -> amount added, and series -> signed net delta of the
    #: peaked ones (the counter is the highest its net has been).
    totals: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)

    def count(self, event_type: str, outcome: str, n: int = 1) -> None:
        self.events_total[(event_type, outcome)] = self.events_total.get((event_type, outcome), 0) + n

    def saw(self, event_type: str, ts: float) -> None:
        if ts > self.last_ts.get(event_type, float("-inf")):
            self.last_ts[event_type] = ts


#: plan(fresh records) -> generator yielding reads, returning the writes. Pure: it may run again after a conflict.
Plan = Callable[[list["Consumed"]], Generator[Read, Got, Writes]]


class Behind(Exception):
    """The store's offsets stop short of the batch: records between them were never applied here. Nothing was written.

    Kafka's committed offsets never lead the store's on one Redis, but a failover to an asynchronous replica can
    lose the master's last batches after Kafka was told they were done; a worker then receives records past what
    the new master holds (or none at all of a partition). `missing`: (topic, partition) -> (the store's next
    offset, 0 when it has none; the batch's first offset).
    """

    def __init__(self, missing: dict[tuple[str, int], tuple[int, int]]) -> None:
        super().__init__(", ".join(f"{t}:{p} from {a} to {b}" for (t, p), (a, b) in sorted(missing.items())))
        self.missing = missing


class Store(Protocol):
    async def transact(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int: ...

    async def advance(self, consumer: str, topic: str, partition: int, start: int, to: int) -> None: ...

    async def close(self) -> None: ...


def _fresh(records: Sequence[Consumed], start: dict[tuple[str, int], int]) -> list[Consumed]:
    return [r for r in records if r.offset >= start.get((r.topic, r.partition), -1)]


def _behind(records: Sequence[Consumed], start: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, int]]:
    """Partitions whose first record in the batch lies past the stored next offset; a partition never stored starts
    at 0 (when retention deleted its oldest records, the first batch steps over them once: `Store.advance`)."""
    first: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        first[tp] = min(r.offset, first.get(tp, r.offset))
    return {tp: (start.get(tp, 0), n) for tp, n in first.items() if n > start.get(tp, 0)}


def _next_offsets(fresh: Sequence[Consumed]) -> dict[tuple[str, int], int]:
    # One pass over the batch for every partition's next offset, rather than one scan per partition.
    last: dict[tuple[str, int], int] = {}
    for r in fresh:
        last[(r.topic, r.partition)] = max(r.offset + 1, last.get((r.topic, r.partition), 0))
    return last


def _saturate(amount: int) -> int:
    return max(-COUNTER_LIMIT, min(COUNTER_LIMIT, amount))


#: A demoted master answers writes with READONLY (a failover behind a plain URL, e.g. a managed Redis's DNS name):
#: retried like a lost connection, and a Sentinel-managed client asks the sentinels for the new master.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

# One script applies a whole batch: its dedup markers, counters, HyperLogLogs, sets, join state and offsets. It runs
# inside MULTI (so the WATCHed offsets and read keys still guard it) and is itself atomic, which lets it check the
# batch's new dedup markers first and write nothing at all when one of them appeared meanwhile (a concurrent
# duplicate in another partition): marker sets are never WATCHed, so concurrent batches touching the same sets do
# not conflict. Writing through one script also costs a fraction of a pipelined command per key and field
# (redis-py spends ~15 us of Python per command). Nothing in it can fail half-way: counters saturate (pcall), every
# other write is type-safe on keys only this code writes.
#
# ARGV sections, in order, each led by its count:
#   lookups  n epochs, then per epoch: flag key, set-key prefix
#   markers  home flag key, home prefix, expire-at, the markers ("shard:member", space-separated)
#   counters incarnation key, n hashes, then per hash: key, expire-at, k, k (field, amount) pairs  (HINCRBY, saturating)
#   hlls     n keys, then per key: key, expire-at, k, k elements                     (PFADD)
#   sets     n keys, then per key: key, k, k members                                 (SADD)
#   incr     n (key, field, amount) triples                                          (HINCRBY)
#   maxes    n (key, member, score) triples                                          (ZADD GT)
#   values   n (key, value, expire-at) triples                                       (SET EXAT)
#   fields   n hashes, then per hash: key, expire-at, k, k (field, value) pairs      ('' deletes; expiry only extended)
#   members  n keys, then per key: key, expire-at, below, k, k (score, member) pairs (ZADD, drop below, expiry only extended)
#   totals   totals key, n, n (field, amount) pairs                                  (HINCRBY, saturating)
#   peaks    net key, totals key, n, n (field, amount) pairs: HINCRBY the net, and the total becomes the net when above
#   offsets  n (key, value) pairs                                                    (SET)
# Returns 1, or {0, markers found} when it wrote nothing.
_APPLY = """
local CHUNK = 1000  -- values per unpack(): Lua's stack takes ~8,000, whatever a batch holds
local a = 1
local function num() a = a + 1; return tonumber(ARGV[a - 1]) end
local function str() a = a + 1; return ARGV[a - 1] end
-- A saturating HINCRBY: a counter past a signed 64-bit integer stays at the limit instead of failing the batch.
local function add(key, name, amount)
  local ok = redis.pcall('HINCRBY', key, name, amount)
  if type(ok) == 'table' and ok.err then
    local limit = '9223372036854775807'
    if string.sub(amount, 1, 1) == '-' then limit = '-9223372036854775807' end
    redis.call('HSET', key, name, limit)
  end
end

local prefixes = {}
for _ = 1, num() do
  local flag = str()
  local prefix = str()
  if redis.call('EXISTS', flag) == 1 then prefixes[#prefixes + 1] = prefix end
end
local home_flag = str()
local home = str()
local marker_expiry = str()
local groups, shards = {}, {}
for shard, member in string.gmatch(str(), '(%d+):(%-?%d+)') do
  local group = groups[shard]
  if group == nil then
    group = {}
    groups[shard] = group
    shards[#shards + 1] = shard
  end
  group[#group + 1] = member
end
if #prefixes > 0 then
  local found = {}
  for _, shard in ipairs(shards) do
    local group = groups[shard]
    for _, prefix in ipairs(prefixes) do
      for i = 1, #group, CHUNK do
        local last = math.min(i + CHUNK - 1, #group)
        local hits = redis.call('SMISMEMBER', prefix .. shard, unpack(group, i, last))
        for j = i, last do if hits[j - i + 1] == 1 then found[#found + 1] = shard .. ':' .. group[j] end end
      end
    end
  end
  if #found > 0 then return {0, found} end
end
for _, shard in ipairs(shards) do
  local key = home .. shard
  local group = groups[shard]
  for i = 1, #group, CHUNK do redis.call('SADD', key, unpack(group, i, math.min(i + CHUNK - 1, #group))) end
  redis.call('EXPIREAT', key, marker_expiry)
end
if #shards > 0 then redis.call('SET', home_flag, '1', 'EXAT', marker_expiry) end

local incarnation = str()
local buckets = num()
if buckets > 0 then
  local now = redis.call('TIME')
  redis.call('SET', incarnation, now[1] .. '.' .. now[2], 'NX')
end
for _ = 1, buckets do
  local key = str()
  local expire_at = str()
  local k = num()
  for _ = 1, k do
    local name = str()
    add(key, name, str())
  end
  redis.call('HINCRBY', key, '\0v', 1)  -- keys.WINDOW_VERSION: readers re-read only buckets whose version moved
  redis.call('EXPIREAT', key, expire_at)
end
for _ = 1, num() do
  local key = str()
  local expire_at = str()
  local k = num()
  for i = a, a + k - 1, CHUNK do
    redis.call('PFADD', key, unpack(ARGV, i, math.min(i + CHUNK - 1, a + k - 1)))
  end
  a = a + k
  redis.call('EXPIREAT', key, expire_at)
end
for _ = 1, num() do
  local key = str()
  local k = num()
  for i = a, a + k - 1, CHUNK do
    redis.call('SADD', key, unpack(ARGV, i, math.min(i + CHUNK - 1, a + k - 1)))
  end
  a = a + k
end
for _ = 1, num() do local key = str(); local name = str(); redis.call('HINCRBY', key, name, str()) end
for _ = 1, num() do
  local key = str()
  local member = str()
  local score = str()
  redis.call('ZADD', key, 'GT', score, member)
end
for _ = 1, num() do
  local key = str()
  local value = str()
  local expire_at = str()
  redis.call('SET', key, value, 'EXAT', expire_at)
end
for _ = 1, num() do
  local key = str()
  local expire_at = str()
  local k = num()
  for _ = 1, k do
    local name = str()
    local value = str()
    if value == '' then redis.call('HDEL', key, name) else redis.call('HSET', key, name, value) end
  end
  if redis.call('EXISTS', key) == 1 then
    redis.call('EXPIREAT', key, expire_at, 'NX')
    redis.call('EXPIREAT', key, expire_at, 'GT')
  end
end
for _ = 1, num() do
  local key = str()
  local expire_at = str()
  local below = str()
  local k = num()
  for _ = 1, k do
    local score = str()
    local member = str()
    redis.call('ZADD', key, score, member)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. below)
  -- NX for a new key (no TTL yet), GT for an existing one: a batch of older pushes never shortens it.
  redis.call('EXPIREAT', key, expire_at, 'NX')
  redis.call('EXPIREAT', key, expire_at, 'GT')
end
-- Decimal integer strings compared as strings: Lua numbers are doubles, exact only up to 2^53.
local function above(x, y)
  local nx, ny = string.sub(x, 1, 1) == '-', string.sub(y, 1, 1) == '-'
  if nx ~= ny then return ny end
  if nx then x, y = string.sub(y, 2), string.sub(x, 2) end
  if #x ~= #y then return #x > #y end
  return x > y
end
local totals = str()
for _ = 1, num() do local name = str(); add(totals, name, str()) end
local net_key = str()
totals = str()
for _ = 1, num() do
  local name = str()
  add(net_key, name, str())
  local net = redis.call('HGET', net_key, name)
  if above(net, redis.call('HGET', totals, name) or '0') then redis.call('HSET', totals, name, net) end
end
for _ = 1, num() do local key = str(); redis.call('SET', key, str()) end
return 1
"""
# ARGV, per key in KEYS order: n, then n field names. Returns the values, flat, in order (false when absent): many
# hashes read in one round trip. Fields go to HMGET 1,000 at a time (unpack's limit is ~8,000 values).
_GET_FIELDS = """
local out, a = {}, 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + n, 1000 do
    local last = math.min(i + 999, a + n)
    local values = redis.call('HMGET', key, unpack(ARGV, i, last))
    for j = 1, last - i + 1 do out[#out + 1] = values[j] end
  end
  a = a + n + 1
end
return out
"""


class _Conflict(Exception):
    """Some of the batch's new dedup markers were present at apply time: nothing was written."""

    def __init__(self, markers: set[keys.Marker]) -> None:
        super().__init__(f"{len(markers)} dedup marker(s) appeared meanwhile")
        self.markers = markers


def apply_args(writes: Writes, offsets: dict[str, int], now: float) -> list:
    """The `_APPLY` script's arguments for one batch's writes and offsets (see its layout above)."""
    args: list = []
    lookups = keys.seen_epochs(now)
    args.append(len(lookups))
    for epoch in lookups:
        args += [keys.seen_flag(epoch), keys.seen_prefix(epoch)]
    home = keys.seen_epoch(now)
    args += [keys.seen_flag(home), keys.seen_prefix(home), keys.seen_expiry(home), " ".join(writes.seen)]

    rollup = writes.rollup
    section: list = []
    n = 0
    for (window, start), amounts in rollup.counters.items():
        fields = [(name, _saturate(amount)) for name, amount in amounts.items() if amount]
        if fields:
            n += 1
            section += [keys.window(window, start), expires_at(window, start), len(fields)]
            for name, amount in fields:
                section += [name, amount]
    args += [keys.INCARNATION, n, *section]
    developers = rollup.developers
    args.append(len(developers))
    for (window, start, team), members in developers.items():
        args += [keys.developers(window, start, team), expires_at(window, start), len(members), *members]
    names = {key: members for key, members in writes.names.items() if members}
    if rollup.teams:
        names[keys.TEAMS] = names.get(keys.TEAMS, set()) | rollup.teams
    args.append(len(names))
    for key, members in names.items():
        args += [key, len(members), *members]
    args.append(len(writes.events_total))
    for (event_type, outcome), count in writes.events_total.items():
        args += [keys.EVENTS_TOTAL, f"{event_type}{SEP}{outcome}", count]
    args.append(len(writes.last_ts))
    for event_type, ts in writes.last_ts.items():
        args += [keys.LAST_TS, event_type, repr(float(ts))]
    args.append(len(writes.values))
    for key, (value, expire_at) in writes.values.items():
        args += [key, value, expire_at]
    by_key: dict[str, list] = defaultdict(list)
    for (key, name), value in writes.fields.items():
        by_key[key] += [name, value if value is not None else b""]
    args.append(len(by_key))
    for key, pairs in by_key.items():
        args += [key, writes.hash_expiry[key], len(pairs) // 2, *pairs]
    args.append(len(writes.members))
    for key, (members, expire_at, below) in writes.members.items():
        args += [key, expire_at, repr(float(below)), len(members)]
        for member, score in members:
            args += [repr(float(score)), member]
    args += [keys.TOTALS, len(writes.totals)]
    for name, amount in writes.totals.items():
        args += [name, _saturate(amount)]
    args += [keys.TOTALS_NET, keys.TOTALS, len(writes.peaks)]
    for name, amount in writes.peaks.items():
        args += [name, _saturate(amount)]
    args.append(len(offsets))
    for key, value in offsets.items():
        args += [key, value]
    return args


class RedisStore:
    def __init__(self, url: str, clock: Callable[[], float] = time.time, **options) -> None:
        """`options`: more `redisconn.client` arguments (TLS: `Settings.redis_client_options()`)."""
        self.url = url
        self.clock = clock
        self.redis = redisconn.client(url, asyncio=True, health_check_interval=10, **options)
        self._apply = self.redis.register_script(_APPLY)
        self._get_fields = self.redis.register_script(_GET_FIELDS)
        self._configured = False

    async def close(self) -> None:
        await self.redis.aclose()

    async def _configure(self) -> None:
        """Let marker sets stay intsets up to `keys.DEDUP_SET_ENTRIES` (best effort: a managed Redis may refuse, and
        then sets beyond its limit take more memory, never give wrong answers)."""
        self._configured = True
        try:
            current = int((await self.redis.config_get("set-max-intset-entries")).get("set-max-intset-entries", 0))
            if current < keys.DEDUP_SET_ENTRIES:
                await self.redis.config_set("set-max-intset-entries", keys.DEDUP_SET_ENTRIES)
                log.info("set-max-intset-entries raised from %d to %d for the dedup markers", current, keys.DEDUP_SET_ENTRIES)
        except RedisError as exc:
            log.warning(
                "could not raise set-max-intset-entries to %d (%s): set it in the Redis configuration, or dedup "
                "markers take ~5x the memory at high volume", keys.DEDUP_SET_ENTRIES, exc,
            )

    async def transact(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int:
        """Apply one batch exactly once; returns how many of its records were new.

        The commit order, in one place:
          1. The caller has already published the batch's side outputs (dead letters, join records) and had them
             acknowledged. A crash after that replays them; their consumers are idempotent on deterministic ids.
          2. Here: WATCH the batch's offset keys and every key the plan reads; skip records below the stored
             offsets (already applied by us before a crash, or by another worker before a rebalance); run the plan;
             then MULTI: one script that checks the batch's new dedup markers are still absent and writes
             everything AND the new offsets; EXEC. If any watched key changed (a zombie worker still holding the
             partition, or a concurrent writer of the same state), or a new marker appeared (a concurrent duplicate),
             nothing is written and the whole step repeats with fresh reads.
          3. Only after this returns does the stream acknowledge the messages, so Kafka's committed offset can lag
             the store's but never lead it. Transient Redis failures are retried here, never raised: raising would
             let the stream acknowledge messages whose effects were not written.
        """
        if not self._configured:
            await self._configure()
        attempt = _Backoff()
        known: set[keys.Marker] = set()  # markers found present by an earlier attempt
        while True:
            try:
                return await self._transact_once(consumer, records, plan, known)
            except WatchError:
                continue
            except _Conflict as conflict:
                known |= conflict.markers
            except _TRANSIENT as exc:
                await attempt.wait(f"redis unavailable ({exc}); retrying batch of {len(records)} records")

    async def _transact_once(self, consumer: str, records: Sequence[Consumed], plan: Plan, known: set[keys.Marker]) -> int:
        partitions = sorted({(r.topic, r.partition) for r in records})
        offset_keys = {tp: keys.offset(consumer, *tp) for tp in partitions}
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*offset_keys.values())
            stored = await pipe.mget(list(offset_keys.values()))
            start = {tp: int(v) for tp, v in zip(partitions, stored) if v is not None}
            behind = _behind(records, start)
            if behind:
                await pipe.unwatch()
                raise Behind(behind)
            fresh = _fresh(records, start)
            if not fresh:
                await pipe.unwatch()
                return 0
            steps = plan(fresh)
            try:
                read = next(steps)
                while True:
                    read = steps.send(await self._read(pipe, read, known))
            except StopIteration as done:
                writes: Writes = done.value
            offsets = {offset_keys[tp]: n for tp, n in _next_offsets(fresh).items()}
            args = apply_args(writes, offsets, self.clock())
            pipe.multi()
            await self._apply(keys=[], args=args, client=pipe)
            (result,) = await pipe.execute()
            if result != 1:
                raise _Conflict({m.decode() for m in result[1]})
            return len(fresh)

    async def advance(self, consumer: str, topic: str, partition: int, start: int, to: int) -> None:
        """Move a partition's stored offset from `start` to `to`, over offsets Kafka no longer holds (or that hold no
        records); nothing else changes. A no-op when the stored offset is no longer `start`."""
        key = keys.offset(consumer, topic, partition)

        async def once() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                if int(await pipe.get(key) or 0) != start:
                    await pipe.unwatch()
                    return
                pipe.multi()
                pipe.set(key, to)
                await pipe.execute()

        attempt = _Backoff()
        while True:
            try:
                return await once()
            except WatchError:
                continue
            except _TRANSIENT as exc:
                await attempt.wait(f"redis unavailable ({exc}); retrying an offset move")

    async def _read(self, pipe, read: Read, known: set[keys.Marker]) -> Got:
        # Markers are answered from what earlier attempts found (optimistic, see `Read.seen`): the apply script
        # checks them, so a batch without duplicates costs no marker lookup before it.
        got = Got(seen=known.intersection(read.seen) if known else set())
        wanted = list(dict.fromkeys(read.keys))
        ranged = list(dict.fromkeys(read.ranges))
        hashes: dict[str, list[str]] = defaultdict(list)
        for key, name in dict.fromkeys(read.fields):
            hashes[key].append(name)
        sets = list(dict.fromkeys(read.sets))
        lex = list(dict.fromkeys(read.lex))
        whole = list(dict.fromkeys(read.hashes))
        watch = list(dict.fromkeys(wanted + list(hashes) + [key for key, _lo, _hi in ranged] + sets + [k for k, _p, _n in lex] + whole))
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
        for key, prefix, limit in lex:
            # Members are lower-case hex: every one starting with the prefix sorts below prefix + "g".
            got.lex[(key, prefix, limit)] = await pipe.zrangebylex(key, f"[{prefix}", f"({prefix}g", start=0, num=limit)
        for key in whole:
            got.hashes[key] = await pipe.hkeys(key)
        return got


class MemoryStore:
    """The same `transact` contract in memory, for the batch rules' unit tests.

    Keeps what `RedisStore` writes, in plain structures: counters per window bucket, developer sets, seen markers,
    values, sorted sets, offsets. Expiry is not modelled (tests run within one horizon).
    """

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.developers: dict[str, set[str]] = defaultdict(set)
        self.seen: set[keys.Marker] = set()
        self.teams: set[str] = set()
        self.events_total: dict[tuple[str, str], int] = defaultdict(int)
        self.last_ts: dict[str, float] = {}
        self.values: dict[str, bytes] = {}
        self.fields: dict[tuple[str, str], bytes] = {}
        self.names: dict[str, set[str]] = defaultdict(set)
        self.members: dict[str, dict[bytes, float]] = defaultdict(dict)
        self.totals: dict[str, int] = defaultdict(int)
        self.nets: dict[str, int] = defaultdict(int)

    async def close(self) -> None:
        pass

    async def transact(self, consumer: str, records: Sequence[Consumed], plan: Plan) -> int:
        stored = {(r.topic, r.partition): self.offsets.get(keys.offset(consumer, r.topic, r.partition)) for r in records}
        start = {tp: n for tp, n in stored.items() if n is not None}
        behind = _behind(records, start)
        if behind:
            raise Behind(behind)
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

    async def advance(self, consumer: str, topic: str, partition: int, start: int, to: int) -> None:
        key = keys.offset(consumer, topic, partition)
        if self.offsets.get(key, 0) == start:
            self.offsets[key] = to

    def _read(self, read: Read) -> Got:
        values = {k: self.values.get(k) for k in read.keys}
        fields = {f: self.fields.get(f) for f in read.fields}
        sets = {k: set(self.teams if k == keys.TEAMS else self.names.get(k, ())) for k in read.sets}
        ranges = {
            (k, lo, hi): [m for m, score in sorted(self.members.get(k, {}).items(), key=lambda i: (i[1], i[0])) if lo <= score <= hi]
            for k, lo, hi in read.ranges
        }
        lex = {
            (k, prefix, limit): sorted(m for m in self.members.get(k, {}) if m.decode().startswith(prefix))[:limit]
            for k, prefix, limit in read.lex
        }
        hashes = {k: [f for (key, f) in self.fields if key == k] for k in read.hashes}
        return Got(values, fields, sets, ranges, lex, hashes, seen=self.seen.intersection(read.seen))

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
        for name, amount in writes.totals.items():
            self.totals[name] = _saturate(self.totals[name] + amount)
        for name, amount in writes.peaks.items():
            self.nets[name] = _saturate(self.nets[name] + amount)
            self.totals[name] = max(self.totals[name], self.nets[name])

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
