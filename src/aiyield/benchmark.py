"""`aiyield bench`: the pipeline's performance, measured in one run on one embedded broker and Redis.

Figures (docs/PERFORMANCE.md explains each and keeps the results):
  floor       events/s of a framework-free consumer (confluent-kafka, no faust) that runs the worker's own ingest
              handler (`processing.Processor.ingest`: decode, validate, price, aggregate, the pure plan
              `batch.ingest` through `RedisStore.transact`, dedup markers, counters and offsets in one transaction):
              it differs from the worker only by the framework.
  minimal     events/s of a second floor: a consumer written for speed that does the same work per token event and
              nothing else (msgspec decode straight into events, pseudonymise, price, aggregate into the same
              buckets, dedup markers, counters and offsets in one transaction per batch with the store's own script)
              but no validation, no plan, no WATCH, no marker lookups. `ratio_minimal` = worker / minimal.
  worker      events/s of one `aiyield worker` process draining the same data, produced -> counters complete;
              `ratio` = worker / floor.
  freshness   p50/p99 seconds from producing an event to its effect on the exporter's `/metrics`, at a steady rate
              of half the measured worker rate.
  scrape      exporter response time with ~10,000 series.
  gateway     events/s accepted by `POST /v1/events`, 100-event batches, 10 concurrent clients.
  scale-out   events/s with 2 workers sharing the partitions (1 worker: `worker`).
  memory      Redis bytes per accepted event (all state, and the dedup markers alone), worker peak RSS.

Each phase writes to its own topics (namespace) and Redis database, so phases never see each other's data. Rates
are timed from the first effect seen in Redis to the last (the consumer group's join is not counted), polled every
20 ms by this process, for the floor and the worker alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import msgspec
import redis

from aiyield import keys, redisconn
from aiyield.core.events import TokenEvent, envelope
from aiyield.core.windows import SEP

MODELS = ("claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro", "amazon.nova-pro")
TOKEN_ACCEPTED = f"token{SEP}accepted"
POLL_SECONDS = 0.02

Progress = Callable[[str], None]


@dataclass
class Options:
    events: int = 300_000
    per_message: int = 100
    batch_messages: int = 100
    partitions: int = 8
    freshness_seconds: float = 10.0
    scrape_series: int = 10_000
    gateway_seconds: float = 8.0
    gateway_clients: int = 10
    #: Phases to run (all by default): floor, minimal, worker, freshness, scrape, gateway, scale.
    phases: tuple[str, ...] = ("floor", "minimal", "worker", "freshness", "scrape", "gateway", "scale")


@dataclass
class Bench:
    kafka: str
    redis: str
    options: Options
    progress: Progress
    workdir: Path
    results: dict[str, Any] = field(default_factory=dict)
    _db: int = 0

    def redis_url(self) -> str:
        """A fresh Redis database for one phase."""
        self._db += 1
        return self.redis.rsplit("/", 1)[0] + f"/{self._db}"

    def env(self, namespace: str, redis_url: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "AIYIELD_KAFKA": self.kafka,
            "AIYIELD_REDIS": redis_url,
            "AIYIELD_NAMESPACE": namespace,
            "AIYIELD_PARTITIONS": str(self.options.partitions),
            "AIYIELD_BATCH_MESSAGES": str(self.options.batch_messages),
            "AIYIELD_PSEUDONYM_KEY": "bench",
            **extra,
        }


def token_events(n: int, prefix: str, now: float, teams: int = 20) -> list[dict[str, Any]]:
    """Token events of 20 teams, 4 models, 500 developers, timestamps spread over the last minute."""
    return [
        {"type": "token", "id": f"{prefix}{i}", "ts": now - (i % 60), "team": f"team-{i % teams}", "tool": "claude-code",
         "model": MODELS[i % 4], "developer": f"dev-{i % 500}", "input_tokens": 1000 + i % 100, "output_tokens": 200,
         "cache_read_tokens": 50}
        for i in range(n)
    ]


def _preload(bench: Bench, namespace: str, prefix: str) -> int:
    """Create the namespace's topics and put the benchmark's events on its events topic; returns events."""
    from aiyield.kafka import Publisher, ensure_topics
    from aiyield.settings import Settings

    settings = Settings.from_env(bench.env(namespace, bench.redis))
    ensure_topics(bench.kafka, settings.topics, bench.options.partitions)
    events = token_events(bench.options.events, prefix, time.time())
    per = bench.options.per_message
    values = [envelope(events[i : i + per]) for i in range(0, len(events), per)]
    publisher = Publisher(bench.kafka)
    try:
        publisher.publish(settings.events_topic, values)
    finally:
        publisher.close()
    return len(events)


def _state_bytes(client: redis.Redis) -> int:
    """Redis memory without client buffers (a large pipeline's buffers are not state)."""
    memory = client.info("memory")
    return memory["used_memory"] - memory.get("mem_clients_normal", 0)


def _accepted(client: redis.Redis) -> int:
    return int(client.hget(keys.EVENTS_TOTAL, TOKEN_ACCEPTED) or 0)


def _rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    except (OSError, IndexError):
        return 0


@dataclass
class Drain:
    events_per_s: float
    seconds: float
    peak_rss_mb: float


def _drain(client: redis.Redis, procs: list[subprocess.Popen], total: int, progress: Progress, label: str,
           timeout: float = 240.0, baseline: int = 0) -> Drain:
    """Poll the accepted counter until `total`; the rate counts from the first effect seen (beyond `baseline`) to
    the last."""
    first: tuple[float, int] | None = None
    started = time.perf_counter()
    peak = 0
    deadline = time.monotonic() + timeout
    shown = 0.0
    while True:
        done = _accepted(client)
        now = time.perf_counter()
        if done > baseline and first is None:
            first = (now, done)
        peak = max(peak, sum(_rss_kib(p.pid) for p in procs) // max(1, len(procs)))
        if done >= total:
            break
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{label}: process exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: {done:,} of {total:,} events after {timeout:.0f}s")
        if now - shown > 2:
            progress(f"  {label}: {done:,}/{total:,}")
            shown = now
        time.sleep(POLL_SECONDS)
    assert first is not None
    if total - first[1] < (total - baseline) / 2:
        # Too few events to time from the first effect (a tiny run): time from the start, start-up included.
        first = (started, baseline)
    seconds = time.perf_counter() - first[0]
    return Drain((total - first[1]) / seconds, seconds, peak / 1024)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _worker_argv() -> list[str]:
    return [sys.executable, "-m", "aiyield", "worker"]


# --- floor ---------------------------------------------------------------------------------------------------------


def floor_consumer(kafka: str, redis_url: str, namespace: str) -> None:
    """The floor's consumer process: confluent-kafka, partitions assigned (no group), the worker's ingest handler.

    Runs until terminated. Batches as the worker does: up to `batch_messages` messages, waiting at most
    `batch_seconds` for them.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from aiyield.kafka import Publisher, read_range
    from aiyield.processing import Processor
    from aiyield.settings import Settings
    from aiyield.store import Consumed, RedisStore

    settings = Settings.from_env({**os.environ, "AIYIELD_KAFKA": kafka, "AIYIELD_REDIS": redis_url, "AIYIELD_NAMESPACE": namespace})
    consumer = Consumer({
        "bootstrap.servers": kafka, "group.id": namespace + "floor", "enable.auto.commit": False,
        "fetch.max.bytes": 8 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
    })
    consumer.assign([TopicPartition(settings.events_topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    publisher = Publisher(kafka)

    async def run() -> None:
        store = RedisStore(redis_url)
        processor = Processor(
            settings, store, publisher.publish_async, lambda *where: asyncio.to_thread(read_range, kafka, *where)
        )
        while True:
            messages = consumer.consume(settings.batch_messages, timeout=settings.batch_seconds)
            records = [
                Consumed(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1] / 1000)
                for m in messages if m.error() is None
            ]
            if records:
                await processor.ingest(records)

    asyncio.run(run())


def _floor(bench: Bench) -> None:
    drain = _consumer_phase(bench, "floor", "f", "floor_consumer", "framework-free consumer")
    bench.results["floor_events_per_s"] = round(drain.events_per_s)
    bench.results["floor_peak_rss_mb"] = round(drain.peak_rss_mb)


def _consumer_phase(bench: Bench, name: str, tag: str, entry: str, what: str):
    """Preload a phase's events, drain them with one of this module's consumers in a process of its own."""
    total = _preload(bench, f"{name}.", tag)
    url = bench.redis_url()
    client = redisconn.client(url)
    bench.progress(f"{name}: {total:,} events preloaded; the {what} draining")
    argv = [sys.executable, "-c", f"import sys; from aiyield.benchmark import {entry}; {entry}(*sys.argv[1:])",
            bench.kafka, url, f"{name}."]
    proc = _spawn(argv, bench.env(f"{name}.", url), bench.workdir / f"{name}.log")
    try:
        drain = _drain(client, [proc], total, bench.progress, name)
    finally:
        _stop([proc])
    bench.progress(f"{name}: {drain.events_per_s:,.0f} events/s")
    return drain


# --- minimal: the second floor ---------------------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    events: list[TokenEvent]


def minimal_consumer(kafka: str, redis_url: str, namespace: str) -> None:
    """The second floor's consumer process (runs until terminated): see `minimal` in this module's docstring."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from aiyield.core.measures import measure
    from aiyield.core.pricing import PriceTable
    from aiyield.core.pseudonym import Pseudonymiser
    from aiyield.settings import Settings
    from aiyield.store import _APPLY, Writes, apply_args

    settings = Settings.from_env({**os.environ, "AIYIELD_KAFKA": kafka, "AIYIELD_REDIS": redis_url, "AIYIELD_NAMESPACE": namespace})
    consumer = Consumer({
        "bootstrap.servers": kafka, "group.id": namespace + "minimal", "enable.auto.commit": False,
        "fetch.max.bytes": 8 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
    })
    consumer.assign([TopicPartition(settings.events_topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    client = redisconn.client(redis_url)
    apply = client.register_script(_APPLY)
    decode = msgspec.json.Decoder(_Envelope).decode
    prices = PriceTable.load(None)
    pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())
    replace = msgspec.structs.replace
    while True:
        messages = [m for m in consumer.consume(settings.batch_messages, timeout=settings.batch_seconds) if m.error() is None]
        if not messages:
            continue
        now = time.time()
        writes = Writes()
        offsets: dict[str, int] = {}
        for message in messages:
            for event in decode(message.value()).events:
                if event.developer is not None:
                    event = replace(event, developer=pseudonymise(event.developer))
                writes.seen.append(keys.seen("event", event.id))
                measure(writes.rollup, event, prices, now)
                writes.saw("token", event.ts)
            offsets[keys.offset("ingest", message.topic(), message.partition())] = message.offset() + 1
        writes.count("token", "accepted", len(writes.seen))
        pipe = client.pipeline(transaction=True)
        apply(keys=[], args=apply_args(writes, offsets, now), client=pipe)
        pipe.execute()


def _minimal(bench: Bench) -> None:
    drain = _consumer_phase(bench, "minimal", "m", "minimal_consumer", "minimal consumer")
    bench.results["minimal_events_per_s"] = round(drain.events_per_s)


# --- worker, memory, freshness ---------------------------------------------------------------------------------------


def _dedup_bytes(client: redis.Redis) -> tuple[int, int]:
    """(bytes, keys) of the dedup markers, by MEMORY USAGE of each key."""
    total = count = 0
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=keys.SEEN_PATTERN, count=1000):
        pipe.memory_usage(key, samples=0)
        count += 1
    for n in pipe.execute():
        total += int(n or 0)
    return total, count


def _worker(bench: Bench) -> None:
    total = _preload(bench, "worker.", "w")
    url = bench.redis_url()
    bench.results["_worker_redis"] = url
    client = redisconn.client(url)
    before = _state_bytes(client)
    bench.progress(f"worker: {total:,} events preloaded; one `aiyield worker` draining")
    proc = _spawn(_worker_argv(), bench.env("worker.", url), bench.workdir / "worker.log")
    bench.results["_worker_proc"] = proc
    drain = _drain(client, [proc], total, bench.progress, "worker")
    after = _state_bytes(client)
    dedup, dedup_keys = _dedup_bytes(client)
    bench.results["worker_events_per_s"] = round(drain.events_per_s)
    bench.results["worker_peak_rss_mb"] = round(drain.peak_rss_mb)
    if "floor_events_per_s" in bench.results:
        bench.results["ratio"] = round(drain.events_per_s / bench.results["floor_events_per_s"], 2)
    if "minimal_events_per_s" in bench.results:
        bench.results["ratio_minimal"] = round(drain.events_per_s / bench.results["minimal_events_per_s"], 2)
    bench.results["redis_bytes_per_event"] = round((after - before) / total, 1)
    bench.results["dedup_bytes_per_event"] = round(dedup / total, 1)
    bench.results["dedup_keys"] = dedup_keys
    bench.progress(
        f"worker: {drain.events_per_s:,.0f} events/s (ratio {bench.results.get('ratio', '-')}), "
        f"{bench.results['redis_bytes_per_event']} Redis bytes/event ({bench.results['dedup_bytes_per_event']} dedup)"
    )


def _metric_value(text: str, line_prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def _freshness(bench: Bench) -> None:
    """Produce at half the worker's rate in 50 ms ticks; scrape `/metrics` every 50 ms; an event's freshness is the
    end of the first scrape that counts it minus the start of its publication (an upper bound: up to one scrape
    interval and one scrape late)."""
    import urllib.request

    from aiyield.embedded import free_port
    from aiyield.exporter import serve
    from aiyield.kafka import Publisher
    from aiyield.settings import Settings

    if "_worker_proc" not in bench.results:
        _worker(bench)
    url = bench.results["_worker_redis"]
    rate = bench.results["worker_events_per_s"] / 2
    port = free_port()
    server, thread = serve(url, port, host="127.0.0.1")
    metrics = f"http://127.0.0.1:{port}/metrics"
    prefix = f'aiyield_events_total{{outcome="accepted",type="token"}} '
    base = _metric_value(urllib.request.urlopen(metrics).read().decode(), prefix.rstrip()) or 0.0
    settings = Settings.from_env(bench.env("worker.", url))
    publisher = Publisher(bench.kafka, **{"linger.ms": 0})
    sent: list[tuple[float, float]] = []  # (cumulative events after this tick, publication start)
    stop = threading.Event()

    def produce() -> None:
        tick, n, i = 0.05, 0, 0
        start = time.perf_counter()
        per_tick = max(1, round(rate * tick))
        while time.perf_counter() - start < bench.options.freshness_seconds:
            events = token_events(per_tick, f"fr{i}-", time.time())
            t = time.perf_counter()
            publisher.publish(settings.events_topic, [envelope(events[j : j + 100]) for j in range(0, len(events), 100)])
            n += per_tick
            sent.append((base + n, t))
            i += 1
            time.sleep(max(0.0, start + i * tick - time.perf_counter()))
        stop.set()

    bench.progress(f"freshness: producing {rate:,.0f} events/s for {bench.options.freshness_seconds:.0f}s, scraping /metrics")
    producer = threading.Thread(target=produce)
    producer.start()
    latencies: list[float] = []
    pending = 0
    deadline = None
    while True:
        # Every 50 ms, as a (much faster) Prometheus would: scraping flat out would take a core from the worker.
        time.sleep(0.05)
        body = urllib.request.urlopen(metrics).read().decode()
        seen_at = time.perf_counter()
        count = _metric_value(body, prefix.rstrip()) or 0.0
        while pending < len(sent) and sent[pending][0] <= count:
            latencies.append(seen_at - sent[pending][1])
            pending += 1
        if stop.is_set():
            deadline = deadline or time.perf_counter() + 30
            if pending == len(sent) or time.perf_counter() > deadline:
                break
    producer.join()
    publisher.close()
    server.shutdown()  # type: ignore[attr-defined]
    latencies.sort()
    bench.results["freshness_rate_events_per_s"] = round(rate)
    bench.results["freshness_p50_s"] = round(statistics.median(latencies), 3)
    bench.results["freshness_p99_s"] = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3)
    bench.results["freshness_missing_ticks"] = len(sent) - pending
    bench.progress(f"freshness: p50 {bench.results['freshness_p50_s']}s, p99 {bench.results['freshness_p99_s']}s")


# --- scrape ----------------------------------------------------------------------------------------------------------


def _scrape(bench: Bench) -> None:
    """Exporter response time with ~`scrape_series` series: 50 teams x 3 tools x N models of token spend and tokens
    of all 4 types, every minute of the last hour and every hour of the last 30 days populated (the steady state of a
    busy organisation). Each timed scrape follows a write of 100 new events, and asks for gzip, as Prometheus does;
    the first scrape (the exporter's cold cache) is not timed."""
    import gzip
    import urllib.request

    from aiyield import batch
    from aiyield.core.pricing import PriceTable
    from aiyield.embedded import free_port
    from aiyield.store import Consumed, RedisStore

    url = bench.redis_url()
    redisconn.client(url).flushdb()
    # Per (team, tool, model): spend and tokens of 4 types in 4 windows = 20 samples; ~1,000 more are per team.
    combos = max(1, (bench.options.scrape_series - 1000) // 20)
    teams, tools = 50, 3
    models = max(1, combos // (teams * tools))
    now = time.time()
    times = [now - m * 60 for m in range(60)] + [now - h * 3600 for h in range(1, 30 * 24)]
    events = []
    for t_i, ts in enumerate(times):
        for team in range(teams):
            for tool in range(tools):
                for model in range(models):
                    events.append({
                        "type": "token", "id": f"s{t_i}-{team}-{tool}-{model}", "ts": ts, "team": f"team-{team}",
                        "developer": f"dev-{team}-{(t_i + tool * models + model) % 12}",
                        "tool": f"tool-{tool}", "model": MODELS[model % 4] + ("" if model < 4 else f"-{model}"),
                        "input_tokens": 1000, "output_tokens": 100, "cache_read_tokens": 10, "cache_write_tokens": 1,
                    })
    bench.progress(f"scrape: loading {len(events):,} events ({teams * tools * models} label sets over 30 days)")
    from aiyield.core.events import parse_message

    store = RedisStore(url)
    prices = PriceTable.load(None)
    offset = 0

    async def write(chunk: list[dict[str, Any]], at: float) -> None:
        nonlocal offset
        good, _bad = parse_message(envelope(chunk), at, None)
        record = Consumed("scrape", 0, offset, None, b"")
        await store.transact("scrape", [record], batch.ingest({(0, offset): good}, prices, at))
        offset += 1

    loop = asyncio.new_event_loop()
    client = redisconn.client(url)
    before = _state_bytes(client)
    for i in range(0, len(events), 5000):
        loop.run_until_complete(write(events[i : i + 5000], now))
    stored = teams * tools * models * 5  # spend + 4 token types per label set, each in every live bucket
    counters = _state_bytes(client) - before - _dedup_bytes(client)[0]  # the loading's own dedup markers aside
    bench.results["redis_bytes_per_active_series"] = round(counters / stored)
    port = free_port()
    # The exporter in a process of its own, as deployed (in this process, its garbage collections would walk the
    # bench's own heap).
    exporter = _spawn([sys.executable, "-m", "aiyield", "exporter", "--metrics-port", str(port)],
                      bench.env("scrape-", url), bench.workdir / "exporter.log")
    metrics = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
    deadline = time.monotonic() + 60
    while True:
        try:
            body = gzip.decompress(urllib.request.urlopen(metrics).read()).decode()
            break
        except OSError:
            if time.monotonic() > deadline or exporter.poll() is not None:
                _stop([exporter])
                raise RuntimeError(f"the exporter did not answer: see {bench.workdir / 'exporter.log'}") from None
            time.sleep(0.1)
    series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    times_ms = []
    for n in range(10):
        # A live organisation: 100 new events of every kind of label set land between two scrapes, so the newest
        # bucket of every window has changed each time (not timed).
        at = time.time()
        live = [{**events[(n * 100 + k) * 37 % len(events)], "id": f"live-{n}-{k}", "ts": at} for k in range(100)]
        loop.run_until_complete(write(live, at))
        t = time.perf_counter()
        urllib.request.urlopen(metrics).read()
        times_ms.append((time.perf_counter() - t) * 1000)
    _stop([exporter])
    loop.run_until_complete(store.close())
    loop.close()
    bench.results["scrape_series"] = series
    bench.results["scrape_ms_median"] = round(statistics.median(times_ms), 1)
    bench.results["scrape_ms_max"] = round(max(times_ms), 1)
    bench.progress(f"scrape: {series:,} series, median {bench.results['scrape_ms_median']} ms")


# --- gateway ---------------------------------------------------------------------------------------------------------


def _gateway(bench: Bench) -> None:
    import aiohttp

    from aiyield.embedded import free_port

    port = free_port()
    url = bench.redis_url()
    env = bench.env("gateway.", url, AIYIELD_GATEWAY_PORT=str(port), AIYIELD_INGEST_TOKENS="bench-token",
                    AIYIELD_RATE_LIMIT_PER_SECOND="0", AIYIELD_OTLP_GRPC_PORT="0")
    proc = _spawn([sys.executable, "-m", "aiyield", "gateway", "--log-level", "warning"], env, bench.workdir / "gateway.log")
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}

    async def run() -> tuple[int, float]:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {proc.returncode}")
                await asyncio.sleep(0.1)
            bodies = [json.dumps({"events": token_events(100, f"g{c}-{k}-", time.time())}).encode()
                      for c in range(bench.options.gateway_clients) for k in range(20)]
            accepted = 0
            stop_at = 0.0

            async def client(c: int) -> None:
                nonlocal accepted
                k = 0
                while time.perf_counter() < stop_at:
                    async with session.post(f"{base}/v1/events", data=bodies[(c * 20 + k) % len(bodies)], headers=headers) as r:
                        if r.status != 202:
                            raise RuntimeError(f"gateway answered {r.status}: {await r.text()}")
                        accepted += (await r.json())["accepted"]
                    k += 1

            # Warm-up (connections, the producer's first metadata), then the measured run.
            stop_at = time.perf_counter() + 1.0
            await asyncio.gather(*(client(c) for c in range(bench.options.gateway_clients)))
            accepted = 0
            start = time.perf_counter()
            stop_at = start + bench.options.gateway_seconds
            await asyncio.gather(*(client(c) for c in range(bench.options.gateway_clients)))
            return accepted, time.perf_counter() - start

    bench.progress(f"gateway: {bench.options.gateway_clients} clients posting 100-event batches for {bench.options.gateway_seconds:.0f}s")
    try:
        accepted, seconds = asyncio.run(run())
    finally:
        _stop([proc])
    bench.results["gateway_events_per_s"] = round(accepted / seconds)
    bench.progress(f"gateway: {bench.results['gateway_events_per_s']:,} events/s")


# --- scale-out -------------------------------------------------------------------------------------------------------


def _scale(bench: Bench) -> None:
    """Two workers on the same partitions. They start first and settle their group (a warm-up event on every
    partition applied), so the measured drain has no rebalance in it, as the single worker's has none."""
    from aiyield.kafka import Publisher, ensure_topics
    from aiyield.settings import Settings

    url = bench.redis_url()
    client = redisconn.client(url)
    settings = Settings.from_env(bench.env("scale.", url))
    ensure_topics(bench.kafka, settings.topics, bench.options.partitions)
    bench.progress("scale-out: starting two workers and waiting for their group to settle")
    procs = [_spawn(_worker_argv(), bench.env("scale.", url), bench.workdir / f"scale{i}.log") for i in range(2)]
    try:
        time.sleep(8)  # both join (~3 s each on the embedded broker) and rebalance once
        publisher = Publisher(bench.kafka)
        warm = bench.options.partitions
        for p in range(warm):
            publisher._producer.produce(settings.events_topic, envelope(token_events(1, f"warm{p}-", time.time())), partition=p)
        publisher.close()
        _drain(client, procs, warm, lambda _m: None, "warm-up", timeout=120)
        total = _preload(bench, "scale.", "x")
        bench.progress(f"scale-out: {total:,} events produced; two workers draining")
        drain = _drain(client, procs, warm + total, bench.progress, "2 workers", baseline=warm)
    finally:
        _stop(procs)
    bench.results["scale_2_workers_events_per_s"] = round(drain.events_per_s)
    if "worker_events_per_s" in bench.results:
        bench.results["scale_1_worker_events_per_s"] = bench.results["worker_events_per_s"]
        bench.results["scale_speedup"] = round(drain.events_per_s / bench.results["worker_events_per_s"], 2)
    bench.progress(f"scale-out: 2 workers {drain.events_per_s:,.0f} events/s")


PHASES: dict[str, Callable[[Bench], None]] = {
    "floor": _floor, "minimal": _minimal, "worker": _worker, "freshness": _freshness, "scrape": _scrape, "gateway": _gateway, "scale": _scale,
}


def machine() -> dict[str, Any]:
    import platform

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "load_1m": round(os.getloadavg()[0], 2)}


def run(options: Options, progress: Progress) -> dict[str, Any]:
    """Run the chosen phases on freshly started embedded services; returns every figure."""
    from aiyield.embedded import embedded_services

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aiyield-bench-") as tmp, embedded_services(Path(tmp)) as svc:
        bench = Bench(svc.kafka, svc.redis, options, progress, Path(tmp))
        bench.results.update({"machine": machine(), "events": options.events, "per_message": options.per_message,
                              "batch_messages": options.batch_messages, "partitions": options.partitions})
        try:
            for name in options.phases:
                PHASES[name](bench)
        finally:
            proc = bench.results.pop("_worker_proc", None)
            if proc is not None:
                _stop([proc])
            bench.results.pop("_worker_redis", None)
        bench.results["machine"]["load_1m_end"] = round(os.getloadavg()[0], 2)
        bench.results["seconds"] = round(time.perf_counter() - started, 1)
        return bench.results
