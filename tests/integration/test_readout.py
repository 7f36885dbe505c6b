"""The exporter's bucket cache gives exactly what a fresh read gives, as buckets change, appear and age out."""

from __future__ import annotations

import time

import msgspec
import pytest
import redis

from aiyield import batch, keys
from aiyield.core.events import Event
from aiyield.core.pricing import PriceTable
from aiyield.core.windows import WINDOWS, window_buckets
from aiyield.readout import BucketCache, read_snapshot
from aiyield.store import Consumed, RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
PRICES = PriceTable.load(None)


def token(id: str, ts: float, team: str = "pay", cost: float = 0.25) -> Event:
    return msgspec.convert({"type": "token", "id": id, "ts": ts, "team": team, "tool": "cc", "model": "m",
                            "developer": f"dev-{id[-1]}", "input_tokens": 3, "output_tokens": 1, "cost_usd": cost},
                           Event)  # type: ignore[arg-type]


def same(cached, fresh) -> None:
    assert cached.sums == fresh.sums
    assert cached.buckets == fresh.buckets
    assert cached.figures() == fresh.figures()
    assert cached.developers == fresh.developers


def developers_by_hand(client: redis.Redis, now: float) -> dict[str, dict[str, int]]:
    """PFCOUNT over every bucket's key, named in Python: what the readout's server-side script must agree with."""
    teams = sorted(t.decode() for t in client.smembers(keys.TEAMS))
    return {window: {team: client.pfcount(*(keys.developers(window, start, team) for start in window_buckets(window, now)))
                     for team in teams} for window in WINDOWS}


async def test_cached_reads_equal_fresh_reads(isolated_env):
    url = isolated_env["AIYIELD_REDIS"]
    store, client, cache = RedisStore(url), redis.Redis.from_url(url), BucketCache()
    now = time.time()
    offset = 0

    async def write(events: list[Event]) -> None:
        nonlocal offset
        record = Consumed("t", 0, offset, None, b"", now)
        await store.transact("c", [record], batch.ingest({(0, offset): events}, PRICES, now))
        offset += 1

    await write([token(f"a{i}", now - i * 50) for i in range(80)] + [token("old", now - 20 * 86400, team="ops")])
    first = read_snapshot(client, now, cache)
    same(first, read_snapshot(client, now))
    assert first.developers == developers_by_hand(client, now)
    assert first.developers["1h"]["pay"] == 10 and first.developers["30d"] == {"pay": 10, "ops": 1}
    # The newest buckets change, a new team appears, an old bucket is written again by a late event.
    await write([token("b1", now - 5), token("b2", now - 10, team="web"), token("late", now - 3 * 86400, cost=2.0)])
    cached = read_snapshot(client, now, cache)
    same(cached, read_snapshot(client, now))
    assert cached.by_team("30d", "spend")["web"] > 0
    # Later: the oldest minute buckets leave the 1h window, and nothing else changes.
    later = now + 600
    same(read_snapshot(client, later, cache), read_snapshot(client, later))
    await store.close()


async def test_a_store_that_lost_its_data_is_read_again_even_at_the_same_versions(isolated_env):
    """Redis wiped (or rebuilt) under a running exporter: buckets written again come back to versions the cache
    holds, with other amounts; the store's incarnation token tells the cache to let go."""
    url = isolated_env["AIYIELD_REDIS"]
    store, client, cache = RedisStore(url), redis.Redis.from_url(url), BucketCache()
    now = time.time()

    async def write(event: Event) -> None:
        await store.transact("c", [Consumed("t", 0, 0, None, b"", now)], batch.ingest({(0, 0): [event]}, PRICES, now))

    await write(token("x", now - 5, cost=1.0))
    assert read_snapshot(client, now, cache).by_team("1h", "spend") == {"pay": 10**9}
    client.flushdb()
    await write(token("x", now - 5, cost=3.0))  # the same buckets at version 1 again
    cached = read_snapshot(client, now, cache)
    assert cached.by_team("1h", "spend") == {"pay": 3 * 10**9}
    same(cached, read_snapshot(client, now))
    await store.close()
