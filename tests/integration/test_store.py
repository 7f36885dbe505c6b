"""One contract, two stores: the same plans give the same reads and effects on `MemoryStore` and on a real Redis;
and the Redis store's compact dedup markers.

The batch rules' unit tests run on the memory store; this test is what lets them stand for the Redis one.
"""

from __future__ import annotations

import itertools
import time

import pytest
import redis

import msgspec

from aiyield import batch, keys
from aiyield.core.events import Event
from aiyield.core.pricing import PriceTable
from aiyield.core.windows import SEP, Rollup, series
from aiyield.store import Consumed, Got, MemoryStore, Read, RedisStore, Writes

# Tests on the same event loop as the store fixture (redis.asyncio clients belong to one loop).
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
# Real time: Redis expires window buckets by the wall clock.
NOW = time.time()
_db = itertools.count(12)


@pytest.fixture(params=["memory", "redis"])
async def store(request, services):
    if request.param == "memory":
        yield MemoryStore()
        return
    _kafka, url = services
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    url = f"{base}/{next(_db)}"
    redis.Redis.from_url(url).flushdb()
    s = RedisStore(url)
    yield s
    await s.close()


def write_plan(tag: str):
    def plan(fresh):
        yield Read(keys=(f"ay:test:v:{tag}",), fields=(("ay:test:h", tag),), sets=("ay:test:s",),
                   ranges=(("ay:test:z", 0.0, 100.0),))
        writes = Writes(rollup=Rollup())
        writes.rollup.add(NOW - 10, NOW, {series("spend", "t", tag): 5})
        writes.values[f"ay:test:v:{tag}"] = (b"value-" + tag.encode(), int(NOW) + 10**9)
        writes.fields[("ay:test:h", tag)] = b"field-" + tag.encode()
        writes.hash_expiry["ay:test:h"] = int(NOW) + 10**9
        writes.names["ay:test:s"] = {tag}
        writes.members["ay:test:z"] = ([(tag.encode(), float(len(tag)))], int(NOW) + 10**9, -1.0)
        writes.seen.append(keys.seen("event", tag))
        writes.count("token", "accepted")
        return writes

    return plan


def read_plan(tags: list[str], out: list[Got]):
    def plan(fresh):
        got = yield Read(
            keys=tuple(f"ay:test:v:{t}" for t in tags),
            fields=tuple(("ay:test:h", t) for t in tags),
            sets=("ay:test:s",),
            ranges=(("ay:test:z", 0.0, 100.0),),
        )
        out.append(got)
        return Writes()
        yield  # pragma: no cover

    return plan


def record(offset: int, partition: int = 0) -> Consumed:
    return Consumed("t", partition, offset, None, b"", NOW)


async def test_transact_contract(store):
    run = lambda records, plan: store.transact("c", records, plan)  # noqa: E731
    assert await run([record(0), record(1)], write_plan("ab")) == 2
    assert await run([record(1)], write_plan("zz")) == 0  # below the stored offset: skipped, plan not run
    assert await run([record(2)], write_plan("c")) == 1
    gots: list[Got] = []
    await run([record(3)], read_plan(["ab", "c", "missing"], gots))
    [got] = gots
    assert got.values["ay:test:v:ab"] == b"value-ab" and got.values["ay:test:v:missing"] is None
    # (Dedup markers have their own contract, optimistic lookups: the tests at the end of this file.)
    assert got.fields[("ay:test:h", "c")] == b"field-c" and got.fields[("ay:test:h", "missing")] is None
    assert got.sets["ay:test:s"] == {"ab", "c"}
    assert got.ranges[("ay:test:z", 0.0, 100.0)] == [b"c", b"ab"]  # by score
    # Deleting a field, and a fresh partition starting at its first offset.
    def delete(fresh):
        yield Read()
        w = Writes()
        w.fields[("ay:test:h", "ab")] = None
        w.hash_expiry["ay:test:h"] = int(NOW) + 10**9
        return w

    assert await run([record(0, partition=1)], delete) == 1
    gots.clear()
    await run([record(4)], read_plan(["ab"], gots))
    assert gots[0].fields[("ay:test:h", "ab")] is None


async def test_counters_saturate_instead_of_failing(store):
    def plan(amount: int):
        def p(fresh):
            yield Read()
            w = Writes()
            w.rollup.add(NOW - 10, NOW, {series("tokens", "t", "x", "m", "input"): amount, series("tokens", "t", "x", "m", "output"): 7})
            return w

        return p

    for offset in range(3):
        await store.transact("c", [record(offset)], plan(2**62))
    if isinstance(store, MemoryStore):
        sums = store.window_sums("1h")
    else:
        client = redis.Redis.from_url(store.url)
        sums = {}
        for key in client.scan_iter(keys.window("1h", 0)[:-1] + "*"):
            for name, value in client.hgetall(key).items():
                sums[name.decode()] = sums.get(name.decode(), 0) + int(value)
    assert sums[series("tokens", "t", "x", "m", "input")] == 2**63 - 1
    assert sums[series("tokens", "t", "x", "m", "output")] == 21  # the rest of each batch applied, exactly


async def test_processing_time_counters_add_and_peak(store):
    """Plain counters add; a peaked counter is the highest its net sum has been, exactly, also past 2^53 (the apply
    script compares them as decimal strings: Lua's numbers are doubles)."""
    def plan(totals: dict[str, int], peaks: dict[str, int]):
        def p(fresh):
            yield Read()
            return Writes(totals=dict(totals), peaks=dict(peaks))

        return p

    big = 2**60
    steps = [
        ({"a": 5}, {"p": 3}),
        ({}, {"p": -2}),  # net 1: the counter stays at 3
        ({"a": 1}, {"p": 1}),  # net 2: still 3 (the deficit is filled first)
        ({}, {"p": 4}),  # net 6: the counter follows
        ({"a": big}, {"q": big + 1, "r": -5}),
        ({}, {"q": -1, "r": 3}),  # q's net falls below its peak; r's net never rose above 0
        ({}, {"q": 2}),  # big + 2: one more than the peak, invisible to a double comparison
    ]
    for offset, (totals, peaks) in enumerate(steps):
        await store.transact("c", [record(offset)], plan(totals, peaks))
    if isinstance(store, MemoryStore):
        counted = {k: v for k, v in store.totals.items() if v}
    else:
        client = redis.Redis.from_url(store.url)
        counted = {k.decode(): int(v) for k, v in client.hgetall(keys.TOTALS).items() if int(v)}
    assert counted == {"a": big + 6, "p": 6, "q": big + 2}


# Dedup markers on a real Redis.

PRICES = PriceTable.load(None)


def token(id: str, ts: float) -> Event:
    return msgspec.convert({"type": "token", "id": id, "ts": ts, "team": "pay", "tool": "cc", "model": "m",
                            "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.25}, Event)  # type: ignore[arg-type]


async def apply(store: RedisStore, consumer: str, offset: int, events: list[Event], now: float) -> int:
    record = Consumed("events", 0, offset, None, b"")
    return await store.transact(consumer, [record], batch.ingest({(0, offset): events}, PRICES, now))


def totals(client: redis.Redis) -> dict[str, int]:
    return {k.decode().replace(SEP, ":"): int(v) for k, v in client.hgetall(keys.EVENTS_TOTAL).items()}


@pytest.fixture
def redis_url(isolated_env):
    return isolated_env["AIYIELD_REDIS"]


async def test_a_duplicate_applied_elsewhere_meanwhile_reruns_the_plan_and_counts_once(redis_url):
    # Two consumers (as two workers on different partitions): the second batch's marker lookup is optimistic, the
    # apply script finds "a" present, writes nothing, and the plan reruns knowing it.
    now = time.time()
    first, second = RedisStore(redis_url), RedisStore(redis_url)
    assert await apply(first, "c1", 0, [token("a", now), token("b", now)], now) == 1
    assert await apply(second, "c2", 0, [token("a", now), token("c", now), token("c", now)], now) == 1
    client = redis.Redis.from_url(redis_url)
    assert totals(client) == {"token:accepted": 3, "token:duplicate": 2}
    # Replayed records (below the stored offset) have no effect at all.
    assert await apply(second, "c2", 0, [token("d", now)], now) == 0
    assert totals(client) == {"token:accepted": 3, "token:duplicate": 2}


async def test_markers_are_compact_sets_that_outlive_the_horizon(redis_url):
    now = time.time()
    store = RedisStore(redis_url)
    await apply(store, "c", 0, [token(f"e{i}", now) for i in range(2000)], now)
    client = redis.Redis.from_url(redis_url)
    sets = [k for k in client.scan_iter(match=keys.seen_prefix(keys.seen_epoch(now)) + "*")]
    assert sum(client.scard(k) for k in sets) == 2000
    assert {client.object("encoding", k) for k in sets} == {b"intset"}
    assert min(client.expiretime(k) for k in sets) >= now + keys.DEDUP_SECONDS
    assert client.expiretime(keys.seen_flag(keys.seen_epoch(now))) >= now + keys.DEDUP_SECONDS


async def test_a_marker_is_found_in_every_epoch_of_the_horizon(redis_url):
    # Written at the very end of an epoch and looked up a horizon later: still a duplicate.
    epoch_end = (keys.seen_epoch(time.time()) + 1) * keys.DEDUP_EPOCH - 1
    later = epoch_end + keys.DEDUP_SECONDS - 1
    store = RedisStore(redis_url, clock=lambda: epoch_end)
    await apply(store, "c", 0, [token("old", epoch_end)], epoch_end)
    assert keys.seen_epoch(later) - keys.seen_epoch(epoch_end) == 2
    store = RedisStore(redis_url, clock=lambda: later)
    await apply(store, "c", 1, [token("old", later), token("new", later)], later)
    assert totals(redis.Redis.from_url(redis_url)) == {"token:accepted": 2, "token:duplicate": 1}
