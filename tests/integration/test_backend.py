"""The suite against Apache Kafka: where Docker is reachable the session's services are Apache Kafka (KRaft) and
Redis in containers (tests/services.py), and every integration test runs on them; this test says which it was, and
is skipped with the reason where Docker is not."""

from __future__ import annotations

import time

import pytest

from tests.conftest import services_decision

pytestmark = pytest.mark.integration


def test_apache_kafka_in_a_container_carries_events_to_metrics(pipeline):
    decision = services_decision()
    if decision.kind != "containers":
        pytest.skip(decision.reason)
    pipeline.start_worker()
    pipeline.send([{"type": "token", "id": "k1", "ts": time.time() - 5, "team": "t", "tool": "x", "model": "m",
                    "input_tokens": 3, "output_tokens": 1, "cost_usd": 0.5}])
    pipeline.wait_value("aiyield_spend_usd", 0.5, team="t", tool="x", model="m", window="1h")
