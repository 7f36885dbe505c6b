"""Faults against real processes, each ending with exact totals (issue 10; docs/RELIABILITY.md).

- a worker SIGKILLed at random moments while events keep arriving (test_exactly_once.py kills at chosen moments
  with everything already sent; this adds load and randomness, and reuses its workload and exact checks);
- Redis SIGKILLed mid-stream and restarted on the same port and data (append-only file, fsync always);
- the broker stopped: the gateway answers 503 and /readyz says so, what it acknowledged before is counted, and it
  serves again once a broker is back, without a restart;
- Redis wiped: `aiyield rebuild` restores every metric from Kafka.

Bounded for CI (about two minutes together). A soak: `AIYIELD_FAULT_SCALE=10 AIYIELD_FAULT_KILLS=20 scripts/test
tests/integration/test_faults.py` (sizes times 10, twenty kills); `AIYIELD_FAULT_SEED` replays one run's timings.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aiyield.core.events import InvalidEvent, Rejected
from aiyield.embedded import (
    Child, free_port, kafka_ready, redis_ready, spawn, tansu_binary, valkey_binary, wait_until,
)
from aiyield.kafka import dead_letters, ensure_topics

from .conftest import Pipeline, wait_for
from .test_exactly_once import accepted, assert_exact, credited, workload

pytestmark = pytest.mark.integration

SCALE = int(os.environ.get("AIYIELD_FAULT_SCALE", "1"))
KILLS = int(os.environ.get("AIYIELD_FAULT_KILLS", "4"))
SEED = int(os.environ.get("AIYIELD_FAULT_SEED", str(random.SystemRandom().randrange(2**32))))
N_EVENTS, DUPLICATES, REPOS = 8_000 * SCALE, 400 * SCALE, 40 * SCALE


def valkey(workdir: Path, port: int, run: int) -> Child:
    """A Redis-compatible server whose data survives a SIGKILL: append-only file, fsync on every write."""
    workdir.mkdir(exist_ok=True)
    child = spawn(f"valkey-{run}", [
        valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
        "--appendonly", "yes", "--appendfsync", "always",
    ], workdir)
    wait_until(child, lambda: redis_ready(f"redis://127.0.0.1:{port}/0"), 30)
    return child


def tansu(workdir: Path, port: int, run: int) -> Child:
    """A Kafka-compatible broker of our own (the session's cannot be stopped). In memory, like the embedded one."""
    workdir.mkdir(exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    child = spawn(f"tansu-{run}", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                   "--storage-engine", "memory://tansu/"], workdir,
                  env={**os.environ, "RUST_LOG": "warn"})
    wait_until(child, lambda: kafka_ready(f"127.0.0.1:{port}"), 30)
    return child


def kill(child: Child | subprocess.Popen) -> None:
    proc = child.proc if isinstance(child, Child) else child
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def scrape_status(pipeline) -> int:
    try:
        with urllib.request.urlopen(pipeline.metrics_url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def spend_counted(pipeline) -> float:
    """`aiyield_spend_usd_total`, summed: a processing-time counter (it must never go down)."""
    return sum(v for (name, _labels), v in pipeline.metrics().items() if name == "aiyield_spend_usd_total")


def finished(pipeline) -> bool:
    return accepted(pipeline) >= N_EVENTS and credited(pipeline) >= REPOS


def test_worker_sigkill_at_random_moments_under_load(isolated_env, tmp_path):
    rng = random.Random(SEED)
    print(f"AIYIELD_FAULT_SEED={SEED}")
    pipeline = Pipeline({**isolated_env, "AIYIELD_BATCH_MESSAGES": "3"}, tmp_path)
    try:
        events = workload(int(time.time()), N_EVENTS, DUPLICATES, REPOS)
        chunks = [events[i : i + 50] for i in range(0, len(events), 50)]
        pace = random.Random(SEED + 1)
        killing = threading.Event()
        killing.set()
        sent = []

        def produce() -> None:  # events keep arriving while workers die; the rest at once when the kills are over
            for chunk in chunks:
                pipeline.send(chunk)
                sent.append(len(chunk))
                if killing.is_set():
                    time.sleep(pace.uniform(0.1, 0.5))

        producer = threading.Thread(target=produce)
        producer.start()
        at_kill = []
        for _ in range(KILLS):
            worker = pipeline.start_worker()
            # A worker takes ~5 s to start and join: from just before its first batch to well into processing.
            time.sleep(rng.uniform(3.0, 10.0))
            kill(worker)
            at_kill.append((sum(sent), accepted(pipeline)))
        killing.clear()
        producer.join()
        print(f"(sent, accepted) at each kill: {at_kill}")
        assert at_kill[-1][0] < len(events), "every event was sent before the last kill: not under load"
        pipeline.start_worker()
        wait_for(lambda: finished(pipeline), 240 * SCALE, "the last worker to finish")
        time.sleep(2)  # anything double-applied after the last event would show up here
        assert_exact(pipeline, N_EVENTS, DUPLICATES, REPOS)
    finally:
        pipeline.close()


def test_redis_killed_and_restarted_mid_stream(isolated_env, tmp_path):
    port = free_port()
    server = valkey(tmp_path / "redis", port, 0)
    pipeline = Pipeline({**isolated_env, "AIYIELD_REDIS": f"redis://127.0.0.1:{port}/0", "AIYIELD_BATCH_MESSAGES": "3"},
                        tmp_path)
    try:
        pipeline.send(workload(int(time.time()), N_EVENTS, DUPLICATES, REPOS))
        worker = pipeline.start_worker()
        wait_for(lambda: accepted(pipeline) > 0, 90, "the worker to make progress")
        counted = spend_counted(pipeline)
        kill(server)
        # While Redis is down the exporter answers 500 (never a 200 with missing data) and the worker waits.
        assert scrape_status(pipeline) == 500
        time.sleep(random.Random(SEED).uniform(2, 6))
        assert worker.poll() is None, pipeline.logs()
        server = valkey(tmp_path / "redis", port, 1)  # same port, same append-only file
        # The counters came back with their data: Prometheus sees no reset (contract v3 §3).
        wait_for(lambda: scrape_status(pipeline) == 200, 30, "the exporter to read Redis again")
        assert spend_counted(pipeline) >= counted > 0
        before = accepted(pipeline)
        assert before < N_EVENTS, "Redis came back after the worker had finished: not mid-stream"
        wait_for(lambda: finished(pipeline), 240 * SCALE, "the worker to finish after Redis came back")
        time.sleep(2)
        assert_exact(pipeline, N_EVENTS, DUPLICATES, REPOS)
        assert worker.poll() is None and len(pipeline.workers) == 1  # the same worker rode it out
        assert "redis unavailable" in pipeline.logs()  # it retried, and said so
    finally:
        pipeline.close()
        server.stop()


def post(url: str, body: dict | list) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_broker_down_the_gateway_says_503_and_loses_nothing_it_acknowledged(isolated_env, tmp_path):
    port = free_port()
    broker = tansu(tmp_path / "kafka", port, 0)
    kafka = f"127.0.0.1:{port}"
    pipeline = Pipeline({**isolated_env, "AIYIELD_KAFKA": kafka}, tmp_path)
    try:
        pipeline.start_worker()
        gateway = pipeline.start_gateway(AIYIELD_PUBLISH_TIMEOUT_SECONDS="2", AIYIELD_READY_CACHE_SECONDS="0")
        now = time.time() - 30

        def batch(n: int, size: int = 50) -> list[dict]:
            return [{"type": "token", "id": f"b{n}-{i}", "ts": now, "team": "web", "tool": "cursor", "model": "gpt-5",
                     "input_tokens": 7, "output_tokens": 1, "cost_usd": 0.01} for i in range(size)]

        acknowledged = 0
        for n in range(20):
            assert post(gateway + "/v1/events", batch(n)) == 202
            acknowledged += 50
        pipeline.wait_value("aiyield_events_total", acknowledged, timeout=90, type="token", outcome="accepted")

        broker.stop()
        # Unreachable broker: every write is refused (never a 202 for events that are not on Kafka), readiness
        # says so, liveness does not.
        answers = [post(gateway + "/v1/events", batch(100 + n)) for n in range(3)]
        assert answers == [503, 503, 503]
        assert get(gateway + "/readyz") == 503 and get(gateway + "/healthz") == 200
        # What was acknowledged before is counted, exactly, and still served.
        assert pipeline.events_total("token", "accepted") == acknowledged
        assert pipeline.value("aiyield_tokens", team="web", tool="cursor", model="gpt-5", type="input",
                              window="1h") == acknowledged * 7

        # A broker back on the same address: the same gateway process serves again. (Tansu keeps nothing across a
        # restart, so the topics are created again, as an operator would; see docs/RELIABILITY.md.)
        broker = tansu(tmp_path / "kafka", port, 1)
        ensure_topics(kafka, pipeline.settings.topics, pipeline.settings.partitions)
        wait_for(lambda: get(gateway + "/readyz") == 200, 60, "/readyz to recover")
        wait_for(lambda: post(gateway + "/v1/events", batch(200)) == 202, 60, "the gateway to accept again")
        assert all(p.poll() is None for p in pipeline.workers[1:]), "the gateway exited"
    finally:
        pipeline.close()
        broker.stop()


def aiyield(pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiyield", *args], env=pipeline.env, capture_output=True, text=True,
                          timeout=120)


#: Gauges the exporter derives at scrape time from the stored windows *and the clock* (a forecast made a minute later
#: differs by design); the stored windows they are derived from are compared through every other metric.
CLOCK_DERIVED = ("aiyield_month_forecast_usd", "aiyield_budget_burn_ratio", "aiyield_budget_burn_rate", "aiyield_usage_spike_score",
                 "aiyield_waste_score", "aiyield_waste_signal")


def contract_metrics(pipeline) -> dict:
    return {k: v for k, v in pipeline.metrics().items()
            if k[0].startswith("aiyield_") and not k[0].startswith("aiyield_exporter") and k[0] not in CLOCK_DERIVED}


def test_redis_wiped_rebuild_restores_every_metric_from_kafka(pipeline):
    n, dups, repos = 3_000 * SCALE, 100 * SCALE, 20 * SCALE
    now = int(time.time())
    pipeline.send(workload(now, n, dups, repos))
    pipeline.send([{"type": "token", "id": "bad", "ts": now, "team": "t"}, {"type": "banana", "id": "x", "ts": now}])
    # Dead letters of a gateway or `aiyield send`: they exist only on the DLQ topic.
    rejected = [Rejected(i, InvalidEvent("test", {"type": "push", "id": f"p{i}"})) for i in range(3)]
    pipeline.publisher.publish(pipeline.settings.dlq_topic, dead_letters(rejected, "send"))
    worker = pipeline.start_worker()
    wait_for(lambda: accepted(pipeline) >= n and credited(pipeline) >= repos
             and pipeline.events_total("push", "invalid") == 3, 180, "the first pass")
    time.sleep(2)
    before = contract_metrics(pipeline)
    assert before[("aiyield_events_total", (("outcome", "invalid"), ("type", "token")))] == 1
    assert before[("aiyield_events_total", (("outcome", "duplicate"), ("type", "token")))] == dups

    assert aiyield(pipeline, "rebuild").returncode == 1  # without --yes it only explains
    assert accepted(pipeline) == n

    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    pipeline.redis.flushdb()  # Redis lost everything
    assert accepted(pipeline) == 0 and contract_metrics(pipeline) != before

    done = aiyield(pipeline, "rebuild", "--yes")
    assert done.returncode == 0, done.stderr + done.stdout
    assert pipeline.settings.events_topic in done.stdout
    pipeline.start_worker()
    try:
        wait_for(lambda: contract_metrics(pipeline) == before, 180, "every metric to be rebuilt")
    except AssertionError:
        after = contract_metrics(pipeline)
        raise AssertionError(
            {k: (after.get(k), before.get(k)) for k in after.keys() | before.keys() if after.get(k) != before.get(k)}
        ) from None
    time.sleep(2)
    assert contract_metrics(pipeline) == before  # and nothing more arrives later
