"""Known events in, exact values out of /metrics, on real Kafka and Redis."""

from __future__ import annotations

import time

import msgspec
import pytest
from confluent_kafka import Consumer

from aiyield.core.events import decode

pytestmark = pytest.mark.integration


def token(i: int, ts: float, **kw) -> dict:
    event = {
        "type": "token", "id": f"tok-{i}", "ts": ts, "team": "payments", "tool": "claude-code",
        "model": "claude-sonnet-4", "developer": f"dev-{i % 3}@acme.example",
        "input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 5000, "cache_write_tokens": 100,
    }
    event.update(kw)
    return event


def test_known_events_exact_metrics(pipeline):
    now = int(time.time())
    events = [token(i, now - 100 - i) for i in range(10)]
    # cost_usd is authoritative: these are not priced from the table.
    events += [token(100 + i, now - 50, tool="cursor", model="gpt-5", cost_usd=1.5, developer="dev-9") for i in range(2)]
    task = {"type": "task", "team": "payments", "tool": "claude-code", "ts": now - 30}
    events += [
        {**task, "id": "task-1", "task_id": "T1", "status": "completed"},
        {**task, "id": "task-2", "task_id": "T2", "status": "abandoned"},
        {**task, "id": "task-3", "task_id": "T3", "status": "started"},
        # The same task reported completed again (a new event): still one completed task.
        {**task, "id": "task-4", "task_id": "T1", "status": "completed"},
    ]
    events.append(token(0, now - 100))  # duplicate id: counted, not applied
    events += [
        token(200, now, input_tokens=-5),                           # invalid: negative count
        token(201, now + 3600, developer="raw-secret@acme.example"),  # invalid: an hour in the future
        {"type": "banana", "id": "x", "ts": now},                  # invalid: unknown type
    ]
    pipeline.send(events)
    pipeline.send_raw([b"{not json"])
    pipeline.start_worker()

    pipeline.wait_value("aiyield_events_total", 12, type="token", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 2, type="unknown", outcome="invalid")
    pipeline.wait_value("aiyield_events_total", 2, type="token", outcome="invalid")
    m = pipeline.metrics()

    def v(name, **labels):
        return m.get((name, tuple(sorted(labels.items()))))

    assert v("aiyield_events_total", type="token", outcome="duplicate") == 1
    assert v("aiyield_events_total", type="task", outcome="accepted") == 4
    # (1000*3 + 200*15 + 5000*0.30 + 100*3.75) / 1e6 USD per event, ten events.
    for window in ("1h", "24h", "7d", "30d"):
        assert v("aiyield_spend_usd", team="payments", tool="claude-code", model="claude-sonnet-4", window=window) == pytest.approx(0.07875, abs=1e-12)
        assert v("aiyield_spend_usd", team="payments", tool="cursor", model="gpt-5", window=window) == 3.0
        assert v("aiyield_active_developers", team="payments", window=window) == 4
    labels = dict(team="payments", tool="claude-code", model="claude-sonnet-4", window="1h")
    assert v("aiyield_tokens", type="input", **labels) == 10_000
    assert v("aiyield_tokens", type="output", **labels) == 2_000
    assert v("aiyield_tokens", type="cache_read", **labels) == 50_000
    assert v("aiyield_tokens", type="cache_write", **labels) == 1_000
    assert v("aiyield_tasks", team="payments", tool="claude-code", status="completed", window="24h") == 1
    assert v("aiyield_tasks", team="payments", tool="claude-code", status="abandoned", window="24h") == 1
    assert v("aiyield_normalized_deployments", team="payments", window="24h") == 0
    assert v("aiyield_cost_per_normalized_deployment_usd", team="payments", window="24h") is None
    assert v("aiyield_last_event_timestamp_seconds", type="token") == now - 50
    assert v("aiyield_last_event_timestamp_seconds", type="task") == now - 30
    # No per-person label, ever.
    assert not any(dict(labels).keys() & {"developer", "user", "email"} for _name, labels in m)

    # Invalid events are kept with their reason on the dead-letter topic, without raw developer ids.
    items = pipeline.dead_letters(4)
    reasons = sorted(item["reason"] for item in items)
    assert len(reasons) == 4
    assert any("future" in r for r in reasons) and any("banana" in r for r in reasons)
    assert any("malformed JSON" in r for r in reasons) and any(">= 0" in r for r in reasons)
    assert b"raw-secret@acme.example" not in msgspec.json.encode(items)
    # Nor in Redis.
    assert not any(b"acme.example" in key for key in pipeline.redis.keys("*"))


def test_bad_record_does_not_stop_the_stream(pipeline):
    now = int(time.time())
    pipeline.start_worker()
    pipeline.send_raw([b"\xff\xfe garbage", b'{"events": 7}', b"[]"])
    pipeline.send([token(1, now)])
    pipeline.wait_value("aiyield_events_total", 1, type="token", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 3, type="unknown", outcome="invalid")
    assert all(p.poll() is None for p in pipeline.workers), pipeline.logs()


def test_a_join_record_that_cannot_be_processed_is_dead_lettered_and_crediting_goes_on(pipeline):
    """Defence in depth: even a record that passed ingest (here written straight onto the internal join topic) and
    that the join cannot read is dead-lettered with its reason; the partition keeps crediting what follows."""
    now = time.time()
    pipeline.start_worker()
    poison = b'{"events": [{"type": "task", "id": "p", "ts": "never"}]}'
    pipeline.publisher.publish(pipeline.settings.join_topic, [poison], [b"acme/shop"])
    commit = "ab" * 20
    pipeline.send([
        {"type": "task", "id": "t", "ts": now - 60, "task_id": "t", "team": "payments", "tool": "claude-code",
         "status": "completed", "repo": "acme/shop", "commits": [commit]},
        {"type": "deployment", "id": "d", "ts": now - 30, "deploy_id": "d", "repo": "acme/shop",
         "environment": "production", "status": "succeeded", "commits": [commit]},
    ])
    pipeline.wait_value("aiyield_normalized_deployments", 1.0, team="payments", window="1h")
    pipeline.wait_value("aiyield_events_total", 1, type="unknown", outcome="invalid")
    items = pipeline.dead_letters(1)
    assert len(items) == 1 and "join could not process this record" in items[0]["reason"]
    assert all(p.poll() is None for p in pipeline.workers), pipeline.logs()
