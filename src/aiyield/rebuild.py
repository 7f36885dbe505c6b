"""`aiyield rebuild`: restore Redis from Kafka after Redis lost its data (or to recompute it from scratch).

The events topic is the source of truth: every count, window, dedup marker and join state in Redis is a function of
the events on `aiyield.events` (plus the dead letters on `aiyield.dlq` for the invalid counter). Rebuilding is
therefore, with every worker stopped:

  1. delete the workers' consumer group, so that restarted workers read every topic from its oldest retained record
     (`auto.offset.reset=earliest`). A broker refuses to delete a group that still has members (GROUP_NOT_EMPTY):
     while a worker runs, nothing is changed;
  2. delete aiyield's state from Redis: counters, windows, dedup markers, join state AND the consumed offsets stored
     with them (`aiyield.keys`), which would otherwise make the workers skip what they applied before. The gateway's
     cumulative OTLP state (`otlp2:` keys) and the billed spend (`bill:` keys) are kept: they are not derived from
     Kafka;
  3. the workers, started again, re-apply everything in order, rebuilding the dedup markers as they go. The join
     topic is read again from its start as well as re-published by the re-ingest: the join is idempotent (a repeated
     event credits nothing twice), and dead letters are counted once per message id.

What this restores exactly, and what it cannot, is in docs/RELIABILITY.md ("Redis wiped").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiyield import keys
from aiyield.settings import Settings

#: State kept by a rebuild (not derived from Kafka): the gateway's OTLP series and the billed spend.
KEPT_PREFIXES = (keys.otlp_series("").rsplit(":", 1)[0] + ":", keys.BILLED_PREFIX)


class RebuildError(RuntimeError):
    pass


@dataclass
class RebuildReport:
    deleted_keys: int
    #: Whether a consumer group was deleted (False: there was none).
    deleted_group: bool


def worker_group(settings: Settings) -> str:
    """The consumer group of the faust workers (faust uses the app id; see `worker.create_app`)."""
    return settings.namespace + "aiyield-worker"


def rebuild(settings: Settings, redis_client: Any, force: bool = False) -> RebuildReport:
    """Delete the workers' consumer group, then aiyield's Redis state; refuses while the group has members.

    The group goes first because deleting it is also the safety check: a broker refuses while a worker is a
    member, and then nothing is deleted. Running it again is harmless.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config())
    group = worker_group(settings)
    if not force:
        described = admin.describe_consumer_groups([group])[group].result(30)
        if described.members:
            raise RebuildError(_busy(group, f"{len(described.members)} worker(s) are"))
    try:
        admin.delete_consumer_groups([group])[group].result(30)
        deleted_group = True
    except KafkaException as exc:
        error = exc.args[0]
        if error.name() != "GROUP_ID_NOT_FOUND":
            raise RebuildError(_busy(group, f"the broker refused to delete the group ({error.str()}): workers are")) from None
        deleted_group = False  # never committed anything: workers start from the oldest records anyway
    return RebuildReport(_delete_state(redis_client), deleted_group)


def _busy(group: str, who: str) -> str:
    return (f"{who} still in the consumer group {group!r}: stop every `aiyield worker` first (a running worker "
            "would keep writing while the state is cleared). Nothing was changed.")


def _delete_state(client: Any) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=keys.PREFIX + "*", count=1000):
        if key.decode(errors="replace").startswith(KEPT_PREFIXES):
            continue
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted
