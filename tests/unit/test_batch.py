"""The worker's batch rules on the memory store: no services, the same plans the worker runs on Redis."""

from __future__ import annotations

import asyncio
import hashlib

import msgspec

from aiyield import batch, keys
from aiyield.core.crediting import Policy
from aiyield.core.events import Event
from aiyield.core.pricing import PriceTable
from aiyield.core.windows import SCALE, series
from aiyield.store import Consumed, MemoryStore

NOW = 1_767_225_600.0
PRICES = PriceTable.load(None)


def event(**fields) -> Event:
    return msgspec.convert({"ts": NOW - 60, **fields}, Event)  # type: ignore[arg-type]


def token(id: str, **fields) -> Event:
    return event(**{"type": "token", "id": id, "team": "pay", "tool": "cc", "model": "m", "input_tokens": 1,
                    "output_tokens": 1, "cost_usd": 0.25, **fields})


def task(id: str, task_id: str, status: str = "completed", **fields) -> Event:
    return event(type="task", id=id, task_id=task_id, team="pay", tool="cc", status=status, **fields)


def records(*batches: list[Event], topic: str = "events", start: int = 0) -> tuple[list[Consumed], dict]:
    consumed = [Consumed(topic, 0, start + i, None, b"") for i in range(len(batches))]
    return consumed, {(0, start + i): list(events) for i, events in enumerate(batches)}


def ingest(store: MemoryStore, *batches: list[Event], start: int = 0) -> int:
    consumed, decoded = records(*batches, start=start)
    return asyncio.run(store.transact("ingest", consumed, batch.ingest(decoded, PRICES, NOW)))


def test_each_event_id_counts_once_across_and_within_batches():
    store = MemoryStore()
    assert ingest(store, [token("a"), token("a")], [token("b")]) == 2
    assert ingest(store, [token("a"), token("c")], start=2) == 1
    assert store.events_total == {("token", "accepted"): 3, ("token", "duplicate"): 2}
    assert store.window_sums("1h")[series("spend", "pay", "cc", "m")] == 3 * SCALE["spend"] // 4


def test_records_below_the_stored_offset_are_skipped():
    store = MemoryStore()
    ingest(store, [token("a")], [token("b")])
    assert ingest(store, [token("x")], [token("y")]) == 0  # offsets 0 and 1 again: already applied
    assert store.events_total == {("token", "accepted"): 2}


def test_a_task_reported_completed_twice_is_one_completed_task():
    store = MemoryStore()
    ingest(store, [task("r1", "t"), task("r2", "t"), task("r3", "u", status="abandoned")])
    sums = store.window_sums("24h")
    assert sums[series("tasks", "pay", "cc", "completed")] == 1
    assert sums[series("tasks", "pay", "cc", "abandoned")] == 1
    assert store.events_total == {("task", "accepted"): 3}


def test_dead_letters_count_their_items_once_per_message():
    store = MemoryStore()
    letters = {(0, 0): ("req#0", {"token": 3, "unknown": 1}), (0, 1): ("req#0", {"token": 3, "unknown": 1})}
    consumed = [Consumed("dlq", 0, i, None, b"") for i in range(2)]
    asyncio.run(store.transact("dlq", consumed, batch.dead_letters(letters)))
    assert store.events_total == {("token", "invalid"): 3, ("unknown", "invalid"): 1}


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def test_join_credits_once_and_writes_state_under_the_join_keys():
    store = MemoryStore()
    events = [
        task("t1", "t", repo="shop", commits=[sha("a")], ai_lines=5),
        event(type="deployment", id="d1", deploy_id="d1", repo="shop", environment="prod", status="succeeded",
              commits=[sha("a")], ts=NOW - 30),
    ]
    for start in (0, 1):  # the same join records twice (a replay after a crash, at new offsets)
        consumed, decoded = records(events, topic="join", start=start)
        asyncio.run(store.transact("join", consumed, batch.join(decoded, Policy(), NOW)))
    assert store.window_sums("1h")[series("credit", "pay")] == SCALE["credit"] // 2
    assert store.window_sums("1h")[series("tasks", "pay", "cc", "shipped")] == 1
    assert any(name == keys.join_task("pay", "t", 0)[1] for _key, name in store.fields)
    assert any(key.startswith("ay:j:c:") and name == keys.commit_field(sha("a")) for key, name in store.fields)
    assert keys.join_deployment("shop", "d1") in store.values
    assert keys.join_credit("pay", "shop", "d1") in store.values


def test_names_beyond_the_caps_are_folded_into_other_and_counted():
    from aiyield.core.cardinality import Caps

    store = MemoryStore()
    caps = Caps(team=2, tool=5, model=5)
    flood = [token(f"f{i}", team=f"made-up-{i}") for i in range(5)]
    consumed, decoded = records([token("a"), *flood])
    asyncio.run(store.transact("ingest", consumed, batch.ingest(decoded, PRICES, NOW, caps)))
    sums = store.window_sums("1h")
    assert store.teams == {"pay", "made-up-0", "other"}
    assert sums[series("spend", "other", "cc", "m")] == 4 * SCALE["spend"] // 4
    assert sums[series("overflow", "team")] == 4
    # A name once admitted stays; a new one still folds.
    consumed, decoded = records([token("b", team="made-up-0"), token("c", team="made-up-9")], start=1)
    asyncio.run(store.transact("ingest", consumed, batch.ingest(decoded, PRICES, NOW, caps)))
    assert store.window_sums("1h")[series("spend", "made-up-0", "cc", "m")] == 2 * SCALE["spend"] // 4
    assert store.window_sums("1h")[series("overflow", "team")] == 5


def test_processing_time_counters_count_accepted_events_once():
    store = MemoryStore()
    deploy = event(type="deployment", id="d1", deploy_id="d1", repo="r", environment="Production", status="succeeded",
                   head="a" * 40)
    old = token("old", ts=NOW - 90 * 86400)  # older than every window: the counters still count it
    ingest(store, [token("a"), token("a"), old, deploy, task("t1", "task-1")])
    ingest(store, [deploy, event(type="deployment", id="d2", deploy_id="d2", repo="r", environment="qa",
                                 status="failed")], start=1)
    assert store.totals[series("spend", "pay", "cc", "m")] == 2 * SCALE["spend"] // 4
    assert store.totals[series("tokens", "pay", "cc", "m", "input")] == 2
    assert store.totals[series("tasks", "pay", "cc", "completed")] == 1
    assert store.totals[series("deployments", "production", "succeeded")] == 1  # its duplicate counts nothing
    assert store.totals[series("deployments", "other", "failed")] == 1


def test_join_counters_never_decrease_when_credit_moves_or_is_rolled_back():
    """Credit given counts once whether it moves between deployments or is taken back; the retraction counts."""
    store = MemoryStore()

    def join(offset: int, *events: Event) -> None:
        consumed, decoded = records(list(events), topic="join", start=offset)
        asyncio.run(store.transact("join", consumed, batch.join(decoded, Policy(), NOW)))

    def deploy(deploy_id: str, ago: float, status: str = "succeeded") -> Event:
        return event(type="deployment", id=f"{deploy_id}-{status}", deploy_id=deploy_id, repo="shop",
                     environment="prod", status=status, commits=[sha("a")], ts=NOW - ago)

    given, shipped = series("credit", "pay"), series("tasks", "pay", "cc", "shipped")
    join(0, task("t1", "t", repo="shop", commits=[sha("a")], ts=NOW - 600), deploy("d2", 60))
    assert (store.totals[given], store.totals[shipped]) == (SCALE["credit"], 1)
    # An earlier deployment of the same commit arrives late: the credit moves to it (-1 at d2, +1 at d1).
    join(1, deploy("d1", 300))
    assert store.window_sums("1h")[given] == SCALE["credit"]
    assert (store.totals[given], store.totals[shipped]) == (SCALE["credit"], 1)
    # d1 is rolled back: its credit is retracted, and d2 ships the task again.
    join(2, deploy("d1", 30, status="rolled_back"))
    assert store.window_sums("1h")[series("retracted", "pay", "rollback")] == SCALE["credit"]
    assert store.totals[series("retracted", "pay", "rollback")] == SCALE["credit"]
    assert store.totals[given] == 2 * SCALE["credit"]  # given twice (d1, then d2), retracted once: 1 survives
    assert store.totals[shipped] == 1  # one task, shipped, rolled back and shipped again
