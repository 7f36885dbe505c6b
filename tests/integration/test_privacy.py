"""Privacy scan (contract §1; issue 10): after a run fed with raw developer ids through the gateway and
`aiyield send`, valid and invalid, no raw id is anywhere: not in any Redis key or value, not in any
message of any topic (events, join, dead letters), not in the worker's or the gateway's logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from aiyield.kafka import CONSUMER_TIMEOUTS

from .conftest import wait_for
from .test_gateway import INGEST_TOKEN, bearer, post

pytestmark = pytest.mark.integration

RAW = ["raw-dev@acme.example", "Raw.Dev.Two@ACME.example"]
NEEDLES = [r.encode() for r in RAW] + [b"acme.example", b"ACME.example"]


def topic_messages(pipeline, topic: str, quiet: float = 3.0) -> list[bytes]:
    """Every message of a topic (keys and values), read from the beginning until it stays quiet."""
    consumer = Consumer({"bootstrap.servers": pipeline.settings.kafka, "group.id": f"scan-{uuid.uuid4()}",
                         "enable.auto.commit": False, **CONSUMER_TIMEOUTS})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(pipeline.settings.partitions)])
    found: list[bytes] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < quiet:
            msg = consumer.poll(0.3)
            if msg is not None and not msg.error():
                found.append((msg.key() or b"") + b"\0" + (msg.value() or b""))
                last = time.monotonic()
    finally:
        consumer.close()
    return found


def redis_dump(client) -> list[bytes]:
    """Every key and every value in the test's database, whatever its type."""
    out = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out += [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
    return out


def leaks(blobs: list[bytes]) -> list[bytes]:
    return [b[:200] for b in blobs if any(n in b for n in NEEDLES)]


def test_no_raw_developer_id_anywhere_after_a_run(pipeline, tmp_path):
    pipeline.start_worker()
    gateway = pipeline.start_gateway(AIYIELD_INGEST_TOKENS=INGEST_TOKEN)
    now = time.time() - 30
    base = {"type": "token", "ts": now, "team": "web", "tool": "cursor", "model": "gpt-5", "input_tokens": 5,
            "output_tokens": 1}
    body = [
        {**base, "id": "p1", "developer": RAW[0]},
        {**base, "id": "p2", "developer": RAW[1]},
        {**base, "id": "p3", "developer": RAW[0], "input_tokens": -1},          # invalid: dead-lettered
        {**base, "id": "p4", "developer": RAW[1], "team": "bad\u0000team"},     # invalid
        {"type": "task", "id": "p5", "ts": now, "task_id": "T1", "team": "web", "tool": "cursor",
         "status": "completed", "developer": RAW[0]},
    ]
    status, answer = post(gateway + "/v1/events", body, bearer())
    assert status == 202 and answer["accepted"] == 3, answer
    # `aiyield send`, one valid and one invalid line.
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text("\n".join(json.dumps(e) for e in [
        {**base, "id": "s1", "developer": RAW[1]}, {**base, "id": "s2", "developer": RAW[0], "output_tokens": 1.5},
    ]))
    sent = subprocess.run([sys.executable, "-m", "aiyield", "send", str(ndjson)], env=pipeline.env,
                          capture_output=True, text=True, timeout=120)
    assert sent.returncode == 1 and not leaks([sent.stdout.encode(), sent.stderr.encode()])

    # Invalid: two at the gateway, one at `send`; accepted: two at the gateway, one at `send`.
    pipeline.wait_value("aiyield_events_total", 3, timeout=120, type="token", outcome="invalid")
    pipeline.wait_value("aiyield_events_total", 3, timeout=120, type="token", outcome="accepted")
    # The ids were seen, pseudonymised: two developers.
    pipeline.wait_value("aiyield_active_developers", 2, team="web", window="1h")

    scanned = {topic: topic_messages(pipeline, topic) for topic in pipeline.settings.topics}
    assert all(scanned.values()), {t: len(m) for t, m in scanned.items()}  # each topic was really read
    for topic, messages in scanned.items():
        assert not leaks(messages), (topic, leaks(messages))
    dump = redis_dump(pipeline.redis)
    assert len(dump) > 20 and not leaks(dump), leaks(dump)
    logs = [p.read_bytes() for p in pipeline.logdir.glob("*.log")]
    assert {p.name for p in pipeline.logdir.glob("*.log")} >= {"worker-0.log", "gateway.log"}
    assert not leaks(logs), leaks(logs)
    import urllib.request

    with urllib.request.urlopen(pipeline.metrics_url, timeout=10) as response:
        assert not leaks([response.read()])
