"""Which Kafka and Redis the test session runs against, and why (issue 10).

In order: the ones configured (`AIYIELD_KAFKA` and `AIYIELD_REDIS`); else real Apache Kafka (KRaft) and Redis in
containers (testcontainers) when a Docker engine is reachable, unless `AIYIELD_TEST_CONTAINERS=0`; else the embedded
broker (Tansu) and server (Valkey). The decision and its reason are printed in pytest's header.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

#: Apache Kafka in KRaft mode (no ZooKeeper), and Redis with enough databases for one per test.
KAFKA_IMAGE = os.environ.get("AIYIELD_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.1")
REDIS_IMAGE = os.environ.get("AIYIELD_TEST_REDIS_IMAGE", "redis:7.4")


@dataclass(frozen=True)
class Decision:
    kind: str  # "configured", "containers" or "embedded"
    reason: str


def docker_unreachable() -> str | None:
    """None when a Docker engine answers a ping, else why not (a short sentence)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no Docker here"; the reason is reported
        return f"{type(exc).__name__}: {exc}"[:300]


def choose(env: Mapping[str, str], probe: Callable[[], str | None] = docker_unreachable) -> Decision:
    if env.get("AIYIELD_KAFKA") and env.get("AIYIELD_REDIS"):
        return Decision("configured", "AIYIELD_KAFKA and AIYIELD_REDIS are set")
    if env.get("AIYIELD_TEST_CONTAINERS", "").strip().lower() in ("0", "false", "no", "off"):
        return Decision("embedded", "testcontainers disabled by AIYIELD_TEST_CONTAINERS")
    why_not = probe()
    if why_not is None:
        return Decision("containers", f"Docker reachable: Apache Kafka ({KAFKA_IMAGE}, KRaft) and {REDIS_IMAGE}")
    return Decision("embedded", f"Apache Kafka (testcontainers) skipped: no Docker engine reachable ({why_not})")


@contextlib.contextmanager
def containers() -> Iterator[tuple[str, str]]:
    """Apache Kafka (KRaft) and Redis in containers; yields (bootstrap servers, Redis URL)."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka, \
            RedisContainer(REDIS_IMAGE).with_command("redis-server --databases 1024") as redis_:
        host, port = redis_.get_container_host_ip(), redis_.get_exposed_port(6379)
        yield kafka.get_bootstrap_server(), f"redis://{host}:{port}/0"


@contextlib.contextmanager
def session_services(decision: Decision, env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    kafka, redis_url = env.get("AIYIELD_KAFKA"), env.get("AIYIELD_REDIS")
    if decision.kind == "configured":
        yield kafka, redis_url  # type: ignore[misc]
    elif decision.kind == "containers":
        with containers() as found:
            yield found
    else:
        from aiyield.embedded import embedded_services

        with embedded_services(want_kafka=not kafka, want_redis=not redis_url) as svc:
            yield kafka or svc.kafka, redis_url or svc.redis
