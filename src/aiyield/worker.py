"""faust topology: three agents feeding batches to `processing.Processor`.

  aiyield.events --ingest--> Redis counters          (+ aiyield.dlq for invalid items, + aiyield.join keyed by repo)
  aiyield.join   --join----> Redis join state + credits (repartitioned by repo: one owner per repo's state)
  aiyield.dlq    --dlq-----> Redis invalid counters

Join state lives in Redis, not in faust tables: the embedded broker under-reports a partition's end offset, so
faust's changelog recovery stops early and drops the last updates, and it has no working transactions. State in
Redis, written in the same transaction as the consumed offsets, is exact after any crash or rebalance, on Tansu and
on Apache Kafka alike, and it lets any number of workers share one store.

Workers scale out by partitions: start more `aiyield worker` processes with the same settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from typing import Awaitable, Callable, Sequence

import faust

from aiyield.kafka import read_range
from aiyield.processing import Processor
from aiyield.settings import Settings
from aiyield.store import Consumed, RedisStore

log = logging.getLogger(__name__)

#: Exit status when a batch cannot be applied (the infrastructure failing for good): the process must die before faust acknowledges the batch.
EXIT_BUG = 70


#: faust asks the broker to hold an empty fetch for up to 1.5 s (hard-coded in its aiokafka driver). Tansu answers
#: an empty fetch only when that wait is over, even when records arrive meanwhile, which put ~1 s of latency on
#: every quiet partition. A short wait costs an empty fetch round trip per partition now and then.
FETCH_MAX_WAIT_MS = 100


def _bound_fetch_wait(ms: int) -> None:
    """Cap faust's fetch wait (its driver passes `fetch_max_wait_ms=1500` to aiokafka with no setting for it)."""
    from faust.transport.drivers import aiokafka as driver

    base = driver.aiokafka.AIOKafkaConsumer
    if getattr(base, "_aiyield_fetch_wait", None) == ms:
        return

    class Consumer(getattr(base, "_aiyield_base", base)):  # type: ignore[misc,valid-type]
        _aiyield_fetch_wait = ms
        _aiyield_base = getattr(base, "_aiyield_base", base)

        def __init__(self, *args, **kwargs) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", ms), ms)
            super().__init__(*args, **kwargs)

    driver.aiokafka = _Module(driver.aiokafka, AIOKafkaConsumer=Consumer)


class _Module:
    """A module seen through a few replaced attributes (so the library's own module object is left untouched)."""

    def __init__(self, module, **replaced) -> None:
        self.__dict__.update(replaced)
        self._module = module

    def __getattr__(self, name: str):
        return getattr(self._module, name)


def create_app(settings: Settings, datadir: str | None = None) -> faust.App:
    _bound_fetch_wait(FETCH_MAX_WAIT_MS)
    app = faust.App(
        settings.namespace + "aiyield-worker",
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=datadir or tempfile.mkdtemp(prefix="aiyield-worker-"),
        web_enabled=False,
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        # Group joins take ~3 s on Tansu with these, ~25 s with the defaults; fine on Apache Kafka too.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_max_fetch_size=8 * 1024 * 1024,
        producer_acks=-1,
        broker_credentials=settings.faust_broker_credentials(),
        broker_commit_interval=1.0,
    )
    store = RedisStore(settings.redis, **settings.redis_client_options())

    async def publish(topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None) -> None:
        futures = [
            await app.producer.send(topic, keys[i] if keys else None, value, partition=None, timestamp=None, headers=None)
            for i, value in enumerate(values)
        ]
        for future in futures:
            await future

    async def reread(topic: str, partition: int, start: int, end: int) -> list[Consumed]:
        return await asyncio.to_thread(read_range, settings.kafka_client_config(), topic, partition, start, end)

    processor = Processor(settings, store, publish, reread)

    def batch_agent(topic_name: str, handler: Callable[[Sequence[Consumed]], Awaitable[int]]) -> None:
        topic = app.topic(topic_name, partitions=settings.partitions)

        async def agent(stream) -> None:
            async for events in stream.take_events(settings.batch_messages, within=settings.batch_seconds):
                records = [
                    Consumed(
                        e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value,
                        e.message.timestamp,
                    )
                    for e in events
                ]
                try:
                    await handler(records)
                except Exception:  # noqa: BLE001
                    # The handler dead-letters records it cannot process, so what reaches here is the
                    # infrastructure failing for good. take_events acknowledges the batch when this body returns,
                    # even by an exception: the process must end before that, or the batch would be skipped.
                    log.exception("failure while handling %d records of %s; exiting without acknowledging", len(records), topic_name)
                    logging.shutdown()
                    os._exit(EXIT_BUG)

        agent.__name__ = f"{handler.__name__}_agent"
        app.agent(topic, name=f"aiyield.{handler.__name__}")(agent)

    batch_agent(settings.events_topic, processor.ingest)
    batch_agent(settings.join_topic, processor.join)
    batch_agent(settings.dlq_topic, processor.dead_letters)

    return app


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run one worker until SIGINT/SIGTERM."""
    from aiyield.kafka import ensure_topics

    if settings.using_dev_pseudonym_key:
        log.warning("AIYIELD_PSEUDONYM_KEY is not set: using the built-in development key (not for production)")
    ensure_topics(settings.kafka_client_config(), settings.topics, settings.partitions)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
