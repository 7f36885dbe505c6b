"""Shared fixtures: real services (embedded by default, AIYIELD_KAFKA / AIYIELD_REDIS when set), started once."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def services():
    """Kafka bootstrap and Redis URL for the whole session."""
    kafka, redis_url = os.environ.get("AIYIELD_KAFKA"), os.environ.get("AIYIELD_REDIS")
    if kafka and redis_url:
        yield kafka, redis_url
        return
    from aiyield.embedded import embedded_services

    with embedded_services(want_kafka=not kafka, want_redis=not redis_url) as svc:
        yield kafka or svc.kafka, redis_url or svc.redis


@pytest.fixture
def isolated_env(services):
    """Environment for one test's pipeline: its own topic namespace and its own Redis database."""
    kafka, redis_url = services
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return {
        "AIYIELD_KAFKA": kafka,
        "AIYIELD_REDIS": f"{base}/{next(_databases)}",
        "AIYIELD_NAMESPACE": f"t{uuid.uuid4().hex[:10]}.",
        "AIYIELD_PARTITIONS": "4",
        "AIYIELD_PSEUDONYM_KEY": "test-key",
    }
