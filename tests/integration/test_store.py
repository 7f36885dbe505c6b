"""`RedisStore` runs the batch plans as `MemoryStore` does, with compact dedup markers on a real Redis."""

from __future__ import annotations

import time

import msgspec
import pytest
import redis

from aiyield import batch, keys
from aiyield.core.events import Event
from aiyield.core.pricing import PriceTable
from aiyield.core.windows import SEP
from aiyield.store import Consumed, RedisStore

pytestmark = pytest.mark.integration

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
