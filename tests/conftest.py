"""Shared fixtures: real services started once (configured, Apache Kafka and Redis in containers, or embedded: see
tests/services.py)."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

_databases = itertools.count(1)


_decision = None


def services_decision():
    """Configured services, Apache Kafka and Redis in containers (Docker reachable), or the embedded ones; decided
    once per session (tests/services.py)."""
    global _decision
    if _decision is None:
        from tests.services import choose

        _decision = choose(os.environ)
    return _decision


def pytest_report_header(config):
    decision = services_decision()
    return f"aiyield services: {decision.kind} ({decision.reason})"


@pytest.fixture(scope="session")
def services():
    """Kafka bootstrap and Redis URL for the whole session."""
    from tests.services import session_services

    with session_services(services_decision(), os.environ) as found:
        yield found


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


@pytest.fixture
def billing_apis():
    """A local Anthropic cost report and OpenAI costs API (tests/billing_apis.py); fill `.anthropic` / `.openai`."""
    from tests.billing_apis import BillingApis, Running

    apis = BillingApis()
    running = Running(apis)
    yield apis
    running.close()


@pytest.fixture
def vendor_apis():
    """A local Cursor, Claude Code Analytics and Copilot metrics API (tests/vendor_apis.py); fill its record lists."""
    from tests.vendor_apis import Running, VendorApis

    apis = VendorApis()
    running = Running(apis)
    yield apis
    running.close()
