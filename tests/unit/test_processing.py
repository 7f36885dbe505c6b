"""The worker's handlers on the memory store, with publishing captured: the error policy and the join hand-off."""

from __future__ import annotations

import asyncio
import time

import msgspec

from aiyield import keys
from aiyield.core.events import envelope
from aiyield.processing import Processor
from aiyield.settings import Settings
from aiyield.store import Consumed, MemoryStore

SETTINGS = Settings(pseudonym_key="test")
DAY = 86400.0


def processor(kafka: list[Consumed] = ()) -> tuple[Processor, MemoryStore, list[tuple[str, list[bytes], list | None]]]:
    """`kafka`: the records Kafka holds, for re-reads (two at a time, as the worker's re-reads come in chunks)."""
    store = MemoryStore()
    published: list[tuple[str, list[bytes], list | None]] = []

    async def publish(topic, values, message_keys):
        published.append((topic, list(values), list(message_keys) if message_keys else None))

    async def reread(topic, partition, start, end):
        return [r for r in kafka if (r.topic, r.partition) == (topic, partition) and start <= r.offset < end][:2]

    return Processor(SETTINGS, store, publish, reread), store, published


def task(id: str, ts: float) -> dict:
    return {"type": "task", "id": id, "ts": ts, "task_id": id, "team": "pay", "tool": "cc", "status": "completed",
            "repo": "shop", "commits": ["ab" * 20]}


def test_an_event_too_late_to_join_still_counts_but_is_not_sent_to_the_join():
    proc, store, published = processor()
    arrival = time.time()
    late = arrival - SETTINGS.policy.late_after - 60
    value = envelope([task("fresh", arrival - 60), task("late", late)])
    asyncio.run(proc.ingest([Consumed(SETTINGS.events_topic, 0, 0, None, value, arrival)]))
    assert store.events_total == {("task", "accepted"): 2}
    [(topic, values, message_keys)] = published
    assert topic == SETTINGS.join_topic and message_keys == [b"shop"]
    assert [e["id"] for e in msgspec.json.decode(values[0])["events"]] == ["fresh"]


def test_a_record_the_join_cannot_process_is_dead_lettered_and_its_offset_committed():
    proc, store, published = processor()
    good = envelope([task("t", time.time() - 60)])
    records = [
        Consumed(SETTINGS.join_topic, 0, 0, b"shop", b'{"events": [{"type": "task", "id": "p", "ts": "never"}]}'),
        Consumed(SETTINGS.join_topic, 0, 1, b"shop", good),
    ]
    assert asyncio.run(proc.join(records)) == 2
    [(topic, [letter], _)] = published
    assert topic == SETTINGS.dlq_topic
    [item] = msgspec.json.decode(letter)["rejected"]
    assert item["type"] == "unknown" and "join could not process this record" in item["reason"]
    assert store.offsets[keys.offset("join", SETTINGS.join_topic, 0)] == 2
    assert any(key.startswith("ay:j:t:") for key, _name in store.fields)  # the good record was applied


def token_records(offsets) -> list[Consumed]:
    now = time.time()
    return [
        Consumed(SETTINGS.events_topic, 0, n, None, envelope([{
            "type": "token", "id": f"e{n}", "ts": now - 60, "team": "pay", "tool": "cc", "model": "m",
            "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5,
        }]), now)
        for n in offsets
    ]


def test_a_store_behind_the_stream_is_brought_level_from_kafka_first():
    """A failover lost the new master's copy of offsets 2 and 3 after Kafka was told they were done: the worker
    receives 4 and 5 next, reads 2 and 3 again, and applies all four."""
    kafka = token_records(range(8))
    proc, store, _published = processor(kafka)
    assert asyncio.run(proc.ingest(kafka[:2])) == 2
    assert asyncio.run(proc.ingest(kafka[7:])) == 1  # the batch's own records; 2 to 6 were applied before it
    assert store.events_total == {("token", "accepted"): 8}
    assert store.offsets[keys.offset("ingest", SETTINGS.events_topic, 0)] == 8


def test_a_store_without_any_offset_of_a_partition_reads_it_from_the_start():
    """The new master lost every batch of a partition (or Redis lost its data): nothing stored means offset 0."""
    kafka = token_records(range(5))
    proc, store, _published = processor(kafka)
    asyncio.run(proc.ingest(kafka[3:]))
    assert store.events_total == {("token", "accepted"): 5}


def test_offsets_kafka_no_longer_holds_are_stepped_over(caplog):
    kafka = token_records([0, 1, 3, 4, 5])  # offset 2 deleted by retention (or a transaction marker)
    proc, store, _published = processor(kafka)
    asyncio.run(proc.ingest(kafka[:2]))
    assert asyncio.run(proc.ingest(kafka[3:])) == 2  # offsets 4 and 5; 3 was applied before them
    assert store.events_total == {("token", "accepted"): 5}
    assert "offsets 2 to 2" in caplog.text
