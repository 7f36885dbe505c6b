"""The worker's three batch handlers, independent of faust: ingest, join (crediting) and dead-letter counting.

Each handler turns a batch of consumed Kafka records into side outputs (published and acknowledged first) and one
`Store.transact` call (writes + offsets, atomically). The faust topology in `worker.py` only feeds batches in.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Awaitable, Callable, Sequence

import msgspec

from aiyield.core import crediting
from aiyield.core.events import EVENT_TYPES, Event, TaskEvent, envelope, parse_message
from aiyield.core.measures import measure, measure_credit
from aiyield.core.pricing import PriceTable
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.kafka import dead_letters
from aiyield.settings import Settings
from aiyield import keys
from aiyield.store import Consumed, Store, Writes, retry_forever

log = logging.getLogger(__name__)

#: publish(topic, values, keys) -> awaitable completing once Kafka acknowledged every message.
Publish = Callable[[str, Sequence[bytes], Sequence[bytes | None] | None], Awaitable[None]]

INGEST, JOIN, DEAD_LETTERS = "ingest", "join", "dlq"


class Processor:
    def __init__(self, settings: Settings, store: Store, publish: Publish) -> None:
        self.store = store
        self.publish = publish
        self.prices = PriceTable.load(settings.prices)
        self.pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())
        self.policy = settings.policy
        self.dlq_topic = settings.dlq_topic
        self.join_topic = settings.join_topic

    async def ingest(self, records: Sequence[Consumed]) -> int:
        now = time.time()
        parsed = {(r.partition, r.offset): parse_message(r.value, now, self.pseudonymise) for r in records}

        dead: list[bytes] = []
        by_repo: dict[str, list[Event]] = defaultdict(list)
        for record in records:
            good, bad = parsed[(record.partition, record.offset)]
            where = f"{record.topic}:{record.partition}:{record.offset}"
            if bad:
                log.info("%d invalid event(s) at %s, first: %s", len(bad), where, bad[0].error.reason)
                dead += dead_letters(bad, "worker", where)
            for event in good:
                if crediting.is_relevant(event):
                    by_repo[event.repo].append(event)  # type: ignore[union-attr]
        await self._publish_side_outputs(dead, by_repo)

        def task_key(event: Event) -> str | None:
            # A task reported completed twice (a Claude Code session that commits across several replies) is one
            # completed task: its status is counted once per task_id, however many events report it.
            if isinstance(event, TaskEvent) and event.status in ("completed", "abandoned"):
                return keys.seen("task", f"{event.team}\0{event.task_id}\0{event.status}")
            return None

        def read_keys(fresh: list[Consumed]) -> list[str]:
            wanted = []
            for record in fresh:
                for event in parsed[(record.partition, record.offset)][0]:
                    wanted.append(keys.seen("event", event.id))
                    if (key := task_key(event)) is not None:
                        wanted.append(key)
            return wanted

        def compute(fresh: list[Consumed], values: dict[str, bytes | None]) -> Writes:
            writes = Writes()
            batch_seen: set[str] = set()
            for record in fresh:
                for event in parsed[(record.partition, record.offset)][0]:
                    key = keys.seen("event", event.id)
                    if values.get(key) is not None or key in batch_seen:
                        writes.count(event.type, "duplicate")
                        continue
                    batch_seen.add(key)
                    writes.seen.append(key)
                    writes.count(event.type, "accepted")
                    writes.saw(event.type, event.ts)
                    status_key = task_key(event)
                    if status_key is not None:
                        if values.get(status_key) is not None or status_key in batch_seen:
                            continue  # accepted, but this task's status was already counted
                        batch_seen.add(status_key)
                        writes.seen.append(status_key)
                    measure(writes.rollup, event, self.prices, now)
            return writes

        return await self.store.transact(INGEST, records, read_keys, compute)

    async def _publish_side_outputs(self, dead: list[bytes], by_repo: dict[str, list[Event]]) -> None:
        async def publish() -> None:
            if dead:
                await self.publish(self.dlq_topic, dead, None)
            if by_repo:
                repos = list(by_repo)
                # Keyed by repo: every event of a repo lands on one partition, owned by one worker at a time.
                await self.publish(
                    self.join_topic, [envelope(by_repo[r]) for r in repos], [r.encode() for r in repos]
                )

        await retry_forever("publishing dead letters and join records", publish)

    async def join(self, records: Sequence[Consumed]) -> int:
        now = time.time()
        decoded: dict[tuple[int, int], list[Event]] = {}
        for record in records:
            # Join records were validated (future `ts` included) at ingest and may be re-read much later, so the
            # clock is not consulted again (now=inf). A record that no longer parses is a bug, not data: logged.
            good, bad = parse_message(record.value, float("inf"), None)
            for rejected in bad:
                log.error("unreadable join record %s[%d]@%d: %s", record.topic, record.partition, record.offset, rejected.error)
            decoded[(record.partition, record.offset)] = good

        def repo_of(event: Event) -> str:
            return event.repo  # type: ignore[union-attr]

        def read_keys(fresh: list[Consumed]) -> list[str]:
            return [keys.join(repo_of(e)) for r in fresh for e in decoded[(r.partition, r.offset)]]

        def compute(fresh: list[Consumed], values: dict[str, bytes | None]) -> Writes:
            writes = Writes()
            grouped: dict[str, list[Event]] = defaultdict(list)
            for record in fresh:
                for event in decoded[(record.partition, record.offset)]:
                    grouped[repo_of(event)].append(event)
            for repo, events in grouped.items():
                key = keys.join(repo)
                raw = values.get(key)
                state = crediting.decode_state(raw) if raw is not None else None
                new_state, credits = crediting.apply(state, events, self.policy, now)  # type: ignore[arg-type]
                writes.states[key] = crediting.encode_state(new_state) if new_state is not None else None
                for credit in credits:
                    measure_credit(writes.rollup, credit, now)
            return writes

        return await self.store.transact(JOIN, records, read_keys, compute)

    async def dead_letters(self, records: Sequence[Consumed]) -> int:
        """Count invalid events from the dead-letter topic, whoever rejected them (worker, gateway, `send`)."""
        letters: dict[tuple[int, int], tuple[str, dict[str, int]]] = {}
        for record in records:
            letters[(record.partition, record.offset)] = _read_letter(record)

        def read_keys(fresh: list[Consumed]) -> list[str]:
            return [keys.seen("dlq", letters[(r.partition, r.offset)][0]) for r in fresh]

        def compute(fresh: list[Consumed], values: dict[str, bytes | None]) -> Writes:
            writes = Writes()
            batch_seen: set[str] = set()
            for record in fresh:
                letter_id, by_type = letters[(record.partition, record.offset)]
                key = keys.seen("dlq", letter_id)
                if values.get(key) is None and key not in batch_seen:
                    batch_seen.add(key)
                    writes.seen.append(key)
                    for event_type, n in by_type.items():
                        writes.count(event_type, "invalid", n)
            return writes

        return await self.store.transact(DEAD_LETTERS, records, read_keys, compute)



def _read_letter(record: Consumed) -> tuple[str, dict[str, int]]:
    """(dedup id, invalid items by type) of one dead-letter message; an unreadable one counts as one `unknown`."""
    where = f"{record.topic}:{record.partition}:{record.offset}"
    try:
        letter = msgspec.json.decode(record.value)
        items = letter["rejected"]
        by_type: dict[str, int] = defaultdict(int)
        for item in items:
            event_type = item.get("type")
            by_type[event_type if event_type in EVENT_TYPES else "unknown"] += 1
        return str(letter["id"]), dict(by_type)
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return where, {"unknown": 1}
