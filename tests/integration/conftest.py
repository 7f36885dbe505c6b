"""A pipeline under test: real worker processes, the real exporter over HTTP, real Kafka and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

import msgspec
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from aiyield import redisconn
from aiyield.embedded import free_port
from aiyield.exporter import serve
from aiyield.kafka import CONSUMER_TIMEOUTS, Publisher, ensure_topics
from aiyield.settings import Settings

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


class Pipeline:
    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = {**os.environ, **env}
        self.settings = Settings.from_env(self.env)
        self.logdir = logdir
        ensure_topics(self.settings.kafka, self.settings.topics, self.settings.partitions)
        self.publisher = Publisher(self.settings.kafka)
        self.redis = redisconn.client(self.settings)
        self.workers: list[subprocess.Popen] = []
        port = free_port()
        self._server, self._thread = serve(self.settings.redis, port, host="127.0.0.1")
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"

    def start_worker(self) -> subprocess.Popen:
        log = open(self.logdir / f"worker-{len(self.workers)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aiyield", "worker", "--log-level", "info"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        return proc

    def start_gateway(self, **env: str) -> str:
        """A real `aiyield gateway` process on a free port; returns its base URL once /healthz answers. Its OTLP/gRPC
        server listens on another free port (`otlp_grpc`), never the shared default."""
        port = free_port()
        env.setdefault("AIYIELD_OTLP_GRPC_PORT", str(free_port()))
        self.otlp_grpc = f"127.0.0.1:{env['AIYIELD_OTLP_GRPC_PORT']}"
        log = open(self.logdir / "gateway.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aiyield", "gateway", "--gateway-port", str(port)],
            env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError((self.logdir / "gateway.log").read_text())
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(healthy, 60, "the gateway to answer /healthz")
        return url

    def send(self, events: list[dict]) -> None:
        self.publisher.publish_events(self.settings.events_topic, events)

    def send_raw(self, values: list[bytes]) -> None:
        self.publisher.publish(self.settings.events_topic, values)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics as {(name, sorted labels): value}."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def events_total(self, type_: str, outcome: str) -> float:
        return self.value("aiyield_events_total", type=type_, outcome=outcome) or 0.0

    def wait_value(self, name: str, expected: float, timeout: float = 60, **labels: str) -> None:
        seen: list[float | None] = [None]

        def reached() -> bool:
            seen[0] = self.value(name, **labels)
            return seen[0] == expected

        try:
            wait_for(reached, timeout, f"{name}{labels} == {expected}")
        except AssertionError as exc:
            raise AssertionError(f"{exc} (last seen: {seen[0]})") from None

    def dead_letters(self, count: int, timeout: float = 30) -> list[dict]:
        """The first `count` rejected items on the dead-letter topic (many may travel in one message)."""
        return self.items(self.settings.dlq_topic, "rejected", count, timeout)

    def published(self, count: int, timeout: float = 30) -> list[dict]:
        """The first `count` events on the events topic, as producers (the gateway) wrote them."""
        return self.items(self.settings.events_topic, "events", count, timeout)

    def items(self, topic: str, field: str, count: int, timeout: float = 30) -> list[dict]:
        """The first `count` items of the lists under `field` in a topic's messages (envelopes, dead letters)."""
        # Assigned, not subscribed: no group to join, every partition read from its beginning.
        consumer = Consumer({"bootstrap.servers": self.settings.kafka, "group.id": f"reader-{uuid.uuid4()}",
                             "enable.auto.commit": False, **CONSUMER_TIMEOUTS})
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(self.settings.partitions)])
        items: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while len(items) < count and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    items += msgspec.json.decode(msg.value())[field]
        finally:
            consumer.close()
        return items

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logdir.glob("worker-*.log")))

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._server.shutdown()
        self.publisher.close()


@pytest.fixture
def pipeline(isolated_env, tmp_path):
    p = Pipeline(isolated_env, tmp_path)
    yield p
    p.close()
