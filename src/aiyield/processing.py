"""The worker's three batch handlers, independent of faust: ingest, join (crediting) and dead-letter counting.

Each handler decodes a batch of consumed Kafka records, publishes its side outputs (acknowledged first), then
applies the batch's pure plan (`aiyield.batch`) with `Store.transact` (writes + offsets, atomically). The faust
topology in `worker.py` only feeds batches in.

A store that is behind the stream (a Redis failover lost the last batches of an asynchronous replica after Kafka had
been told they were done, or Redis lost its data: `store.Behind`) is brought level first (`_in_order`): the missing
records are read again from Kafka and applied before the batch, so the worker resumes from the offsets the store
holds, without a restart.

Error policy, in one place (`_guarded`): a record the handler cannot process — whatever the reason, a bug included —
never stops its partition. The batch is retried record by record; each record that still fails is dead-lettered
with the error as its reason and its offset committed with no other effect, and the stream moves on. Transport
failures (Kafka, Redis) are not errors of a record: they are retried until they pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Awaitable, Callable, Sequence

import msgspec

from aiyield import batch
from aiyield.core import crediting
from aiyield.core.events import EVENT_TYPES, Event, InvalidEvent, Rejected, envelope, parse_message
from aiyield.core.pricing import PriceTable
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.kafka import dead_letters
from aiyield.settings import Settings
from aiyield.store import Behind, Consumed, Store, Writes, retry_transient

log = logging.getLogger(__name__)

#: publish(topic, values, keys) -> awaitable completing once Kafka acknowledged every message.
Publish = Callable[[str, Sequence[bytes], Sequence[bytes | None] | None], Awaitable[None]]
#: reread(topic, partition, start, end) -> the first records Kafka still holds at offsets [start, end), in order:
#: all of them, or a bounded chunk.
Reread = Callable[[str, int, int, int], Awaitable[list[Consumed]]]

INGEST, JOIN, DEAD_LETTERS = "ingest", "join", "dlq"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors of the infrastructure, not of a record: retried (publishing) or fatal to the process (the store's,
    once its own retries of connection errors give up), never a reason to dead-letter a record."""
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    return (KafkaError, RedisError, OSError, asyncio.TimeoutError)


class Processor:
    def __init__(self, settings: Settings, store: Store, publish: Publish, reread: Reread) -> None:
        self.store = store
        self.publish = publish
        self.reread = reread
        self.prices = PriceTable.load(settings.prices)
        self.pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())
        self.policy = settings.policy
        self.dlq_topic = settings.dlq_topic
        self.join_topic = settings.join_topic
        self.transient = _transport_errors()
        #: Raised through `_guarded` untouched: not a record's fault.
        self.not_of_a_record = (*self.transient, Behind)
        self.caps = settings.caps

    async def ingest(self, records: Sequence[Consumed]) -> int:
        return await self._in_order(INGEST, records, self._ingest)

    async def join(self, records: Sequence[Consumed]) -> int:
        return await self._in_order(JOIN, records, self._join)

    async def dead_letters(self, records: Sequence[Consumed]) -> int:
        """Count invalid events from the dead-letter topic, whoever rejected them (worker, gateway, `send`)."""
        return await self._in_order(DEAD_LETTERS, records, self._dead_letters)

    async def _in_order(
        self, consumer: str, records: Sequence[Consumed], handle: Callable[[Sequence[Consumed]], Awaitable[int]]
    ) -> int:
        """Apply the batch; while the store is behind it, first read the missing records again and apply them.

        `reread` returns a bounded chunk, so a store far behind (a Redis that lost everything) catches up chunk by
        chunk. Offsets Kafka no longer holds (retention), or that hold no record (transaction markers), are stepped
        over with `Store.advance`, logged. Each round moves the stored offset forward, so this ends.
        """
        while True:
            try:
                return await self._guarded(consumer, records, handle)
            except Behind as behind:
                missing = behind.missing
            for (topic, partition), (start, end) in sorted(missing.items()):
                log.warning("%s: the store is behind %s:%d (next offset %d, batch starts at %d: a Redis failover, or "
                            "a store that lost its data); re-reading from Kafka", consumer, topic, partition, start, end)
                found = await retry_transient(
                    f"re-reading {topic}:{partition} from {start}",
                    lambda: self.reread(topic, partition, start, end), self.transient,  # noqa: B023 - awaited at once
                )
                first = found[0].offset if found else end
                if first > start:
                    log.warning("%s: offsets %d to %d of %s:%d are not in Kafka (deleted by retention, or no records); "
                                "stepping over them", consumer, start, first - 1, topic, partition)
                    await self.store.advance(consumer, topic, partition, start, first)
                if found:
                    await self._guarded(consumer, found, handle)

    async def _ingest(self, records: Sequence[Consumed]) -> int:
        now = time.time()
        decoded: dict[tuple[int, int], list[Event]] = {}
        dead: list[bytes] = []
        joins: dict[str, list[Event]] = defaultdict(list)
        for record in records:
            # The record's own time is its arrival: "too far in the future" and "too late to join" are judged
            # against it, so a replay (a restart, `aiyield rebuild`) decides exactly as the first pass did.
            arrival = record.timestamp or now
            good, bad = parse_message(record.value, arrival, self.pseudonymise)
            decoded[(record.partition, record.offset)] = good
            where = f"{record.topic}:{record.partition}:{record.offset}"
            if bad:
                log.info("%d invalid event(s) at %s, first: %s", len(bad), where, bad[0].error.reason)
                dead += dead_letters(bad, "worker", where)
            for event in good:
                if crediting.is_relevant(event) and not self.policy.too_late(event.ts, arrival):
                    joins[crediting.partition_key(event)].append(event)  # type: ignore[arg-type]
        await self._publish_side_outputs(dead, joins)
        plan = batch.ingest(decoded, self.prices, now, self.caps, self.policy.is_production)
        return await self.store.transact(INGEST, records, plan)

    async def _publish_side_outputs(self, dead: list[bytes], joins: dict[str, list[Event]]) -> None:
        # Built before retrying: only the transport is retried, a bug in building them is not.
        partitions = list(joins)
        values = [envelope(joins[k]) for k in partitions]
        keys = [k.encode() for k in partitions]

        async def publish() -> None:
            if dead:
                await self.publish(self.dlq_topic, dead, None)
            if values:
                # Keyed by repo: every event of a repo lands on one partition, owned by one worker at a time.
                await self.publish(self.join_topic, values, keys)

        await retry_transient("publishing dead letters and join records", publish, self.transient)

    async def _join(self, records: Sequence[Consumed]) -> int:
        decoded: dict[tuple[int, int], list[Event]] = {}
        for record in records:
            # Join records were validated (future `ts` included) at ingest and may be re-read much later, so the
            # clock is not consulted again (now=inf).
            good, bad = parse_message(record.value, float("inf"), None)
            if bad:
                raise InvalidEvent(f"unreadable join record: {bad[0].error.reason}")
            decoded[(record.partition, record.offset)] = good
        return await self.store.transact(JOIN, records, batch.join(decoded, self.policy, time.time(), self.caps))

    async def _dead_letters(self, records: Sequence[Consumed]) -> int:
        letters = {(r.partition, r.offset): _read_letter(r) for r in records}
        return await self.store.transact(DEAD_LETTERS, records, batch.dead_letters(letters))

    async def _guarded(
        self, consumer: str, records: Sequence[Consumed], handle: Callable[[Sequence[Consumed]], Awaitable[int]]
    ) -> int:
        """Run a handler on the batch; if it fails, on each record alone, dead-lettering the ones that fail."""
        try:
            return await handle(records)
        except self.not_of_a_record:
            raise
        except Exception:  # noqa: BLE001 - narrowed below to the records at fault
            if len(records) > 1:
                log.warning("%s batch of %d records failed; retrying record by record", consumer, len(records))
        applied = 0
        for record in records:
            try:
                applied += await handle([record])
            except self.not_of_a_record:
                raise
            except Exception as exc:  # noqa: BLE001 - the record is dead-lettered with the error, and counted
                applied += await self._reject_record(consumer, record, exc)
        return applied

    async def _reject_record(self, consumer: str, record: Consumed, exc: Exception) -> int:
        where = f"{record.topic}:{record.partition}:{record.offset}"
        log.error("%s could not process %s; dead-lettered: %r", consumer, where, exc, exc_info=exc)
        if consumer != DEAD_LETTERS:  # a dead letter that cannot be counted is not sent round again
            preview = record.value[:4096].decode(errors="replace")
            error = InvalidEvent(f"{consumer} could not process this record: {exc!r}"[:500], {"record": preview})
            letters = dead_letters([Rejected(-1, error)], consumer, where)
            await retry_transient("dead-lettering a record", lambda: self.publish(self.dlq_topic, letters, None), self.transient)
        return await self.store.transact(consumer, [record], _skip)


def _skip(fresh: list[Consumed]):
    """A plan that only commits the records' offsets."""
    return Writes()
    yield  # pragma: no cover - makes this a generator


def _read_letter(record: Consumed) -> tuple[str, dict[str, int]]:
    """(dedup id, invalid items by type) of one dead-letter message; an unreadable one counts as one `unknown`."""
    where = f"{record.topic}:{record.partition}:{record.offset}"
    try:
        letter = msgspec.json.decode(record.value)
        by_type: dict[str, int] = defaultdict(int)
        for item in letter["rejected"]:
            event_type = item.get("type")
            by_type[event_type if event_type in EVENT_TYPES else "unknown"] += 1
        return str(letter["id"]), dict(by_type)
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return where, {"unknown": 1}
