"""Kafka adapter for producers outside the worker (`send`, the simulator, the gateway) and topic set-up.

Producers batch events into envelopes (`{"events": [...]}`, ~100 per message) because the worker's cost is per
Kafka message, not per event. A publish returns only after the broker acknowledged every message (acks=all):
the gateway answers 202 only for events that are on Kafka.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from aiyield.core.events import Rejected, encode, envelope
from aiyield.store import Consumed

#: Events per Kafka message.
ENVELOPE_SIZE = 100

# Tansu (the embedded broker) and Apache Kafka both accept these; 6 s / 1 s makes group joins take ~3 s on Tansu
# instead of ~25 s with the defaults.
CONSUMER_TIMEOUTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


class PublishError(RuntimeError):
    pass


#: Where a client connects: bootstrap servers, or a whole client configuration with transport security
#: (`Settings.kafka_client_config()`).
KafkaConfig = str | Mapping[str, Any]


def client_config(kafka: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """librdkafka configuration from bootstrap servers or a full configuration, with `extra` options on top."""
    base = {"bootstrap.servers": kafka} if isinstance(kafka, str) else dict(kafka)
    return {**base, **extra}


def ensure_topics(kafka: KafkaConfig, topics: Sequence[str], partitions: int) -> None:
    """Create the topics that do not exist yet (idempotent; safe from several processes)."""
    admin = AdminClient(client_config(kafka))
    existing = admin.list_topics(timeout=10).topics
    wanted = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
    if not wanted:
        return
    for future in admin.create_topics(wanted, operation_timeout=10).values():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def read_range(
    kafka: KafkaConfig, topic: str, partition: int, start: int, end: int, limit: int = 1000, timeout: float = 30.0,
) -> list[Consumed]:
    """The records of one partition at offsets [start, end) that Kafka still holds, at most `limit` of them, read
    without joining a group (nothing is committed). From the oldest retained record when `start` is gone. Transport
    failures raise OSError (retried by the worker)."""
    consumer = Consumer(client_config(
        kafka, **{"group.id": "aiyield-reread", "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"},
    ))
    found: list[Consumed] = []
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    return found
                if error is not None:
                    raise ConnectionError(f"reading {topic}:{partition}: {error}")
                if message.offset() >= end or len(found) == limit:
                    return found
                found.append(Consumed(topic, partition, message.offset(), message.key(), message.value(),
                                      message.timestamp()[1] / 1000.0))
        raise TimeoutError(f"reading {topic}:{partition} from {start} to {end} took over {timeout:.0f}s")
    finally:
        consumer.close()


def envelopes(events: Sequence[Any], size: int = ENVELOPE_SIZE) -> list[bytes]:
    """Message values carrying `size` events each (validated events or their dicts)."""
    return [envelope(list(events[i : i + size])) for i in range(0, len(events), size)]


#: Rejected items per dead-letter message: a body of a million bad items becomes a thousand messages, not a million.
DEAD_LETTERS_PER_MESSAGE = 1000
#: A rejection reason is cut at this many characters; a raw item larger than `MAX_RAW_BYTES` (encoded) is replaced
#: by its first bytes as a string. Dead letters are for diagnosis, not for amplifying a hostile body.
MAX_REASON_CHARS = 500
MAX_RAW_BYTES = 4096


def dead_letters(rejected: Sequence[Rejected], source: str, batch_id: str | None = None) -> list[bytes]:
    """Dead-letter messages for the rejected items of one request or record, many items per message.

    Each item keeps its index, its type (a bounded label), its reason and its raw form (developer already
    pseudonymised). `batch_id` is deterministic for records the worker rejects (topic/partition/offset), so a replay
    after a crash re-publishes the same message ids and the invalid counter, deduplicated on them, stays exact.
    """
    batch_id = batch_id or f"{source}:{uuid.uuid4()}"
    messages = []
    for n, start in enumerate(range(0, len(rejected), DEAD_LETTERS_PER_MESSAGE)):
        items = [_dead_item(r) for r in rejected[start : start + DEAD_LETTERS_PER_MESSAGE]]
        messages.append(encode({"id": f"{batch_id}#{n}", "source": source, "rejected": items}))
    return messages


def _dead_item(rejected: Rejected) -> dict[str, Any]:
    raw = rejected.error.raw
    encoded = encode(raw) if raw is not None else b"null"
    if len(encoded) > MAX_RAW_BYTES:
        raw = encoded[:MAX_RAW_BYTES].decode(errors="replace")
    return {
        "index": rejected.index,
        "type": rejected.error.type,
        "reason": rejected.error.reason[:MAX_REASON_CHARS],
        "raw": raw,
    }


class Readiness:
    """Whether Kafka answers, asked through one admin client and remembered for `ttl` seconds.

    A flood of `/readyz` probes therefore costs one metadata request every `ttl` seconds, never a client each
    (each librdkafka client holds threads and connections; a flood of them slowed ingest 25x).
    """

    def __init__(self, kafka: KafkaConfig, ttl: float = 5.0, timeout: float = 2.0) -> None:
        self._kafka = kafka
        self._ttl = ttl
        self._timeout = timeout
        self._admin: AdminClient | None = None
        self._checked_at = -float("inf")
        self._ok = False
        self._lock = asyncio.Lock()
        #: Checks made (each one metadata request), for the gateway's own metrics.
        self.checks = 0

    def check(self) -> bool:
        """Ask Kafka now (blocking, up to `timeout` seconds)."""
        self.checks += 1
        try:
            if self._admin is None:
                self._admin = AdminClient(client_config(self._kafka, log_level=0))
            self._admin.list_topics(timeout=self._timeout)
            return True
        except KafkaException:
            return False

    async def ready(self) -> bool:
        """The remembered answer while fresh, else one check (concurrent callers wait for it and share it)."""
        if time.monotonic() - self._checked_at < self._ttl:
            return self._ok
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._ttl:
                self._ok = await asyncio.get_running_loop().run_in_executor(None, self.check)
                self._checked_at = time.monotonic()
            return self._ok


class Publisher:
    """A confluent-kafka producer with blocking and asyncio-friendly acknowledged publishing."""

    def __init__(self, kafka: KafkaConfig, timeout: float = 30.0, **config: Any) -> None:
        self._producer = Producer(
            {
                **client_config(kafka),
                "acks": "all",
                "linger.ms": 5,
                # librdkafka retries until this delivery timeout (default 5 minutes): a caller waiting on the
                # answer (an HTTP client of the gateway) should hear "unavailable" long before that.
                "message.timeout.ms": int(timeout * 1000),
                "compression.type": "none",
                "message.max.bytes": 16 * 1024 * 1024,
                **config,
            }
        )
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def _produce(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None, on_delivery) -> None:
        """Queue every message; `on_delivery(i)` gives the callback for message i."""
        for i, value in enumerate(values):
            key = keys[i] if keys else None
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery(i))
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    self._producer.poll(0.05)

    def publish(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None, timeout: float = 30) -> None:
        """Produce and wait for every acknowledgement; raise `PublishError` if any message failed."""
        errors: list[str] = []
        pending = threading.Semaphore(0)

        def done(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))
            pending.release()

        self._produce(topic, values, keys, lambda _i: done)
        for _ in values:
            if not pending.acquire(timeout=timeout):
                raise PublishError(f"timed out after {timeout}s waiting for Kafka to acknowledge {topic}")
        if errors:
            raise PublishError(f"Kafka rejected {len(errors)} message(s) on {topic}: {errors[0]}")

    async def publish_async(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None) -> None:
        """Like `publish`, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in values]

        def on_delivery(i: int):
            return lambda err, _msg: loop.call_soon_threadsafe(_settle, futures[i], err)

        await loop.run_in_executor(None, self._produce, topic, values, keys, on_delivery)
        await asyncio.gather(*futures)

    def publish_events(self, topic: str, events: Sequence[Any]) -> int:
        """Envelope and publish validated events (or their dicts) to the events topic; returns messages sent."""
        values = envelopes(events)
        self.publish(topic, values)
        return len(values)

    def close(self) -> None:
        self._producer.flush(10)
        self._closed.set()
        self._poller.join(1)
        # Destroy the client now, while the broker is still up: destroyed later (at exit, after an embedded broker
        # stopped) it logs connection errors that are no error at all.
        del self._producer


def _settle(fut: asyncio.Future, err) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(PublishError(str(err)))
