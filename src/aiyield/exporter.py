"""Prometheus exporter: a custom collector that reads Redis on every scrape (CONTRACT section 3).

Own registry (no process/platform collectors mixed into the contract's namespace). A failed scrape (Redis down) is
logged, counted in `aiyield_exporter_scrape_errors_total`, and answered with HTTP 500: never a 200 with stale or
empty data that would look like "no spend".
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

import redis
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiyield.core.windows import SCALE, WINDOWS
from aiyield.readout import Snapshot, read_snapshot

log = logging.getLogger(__name__)


class AiyieldCollector(Collector):
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time, errors: Counter | None = None) -> None:
        self.client = client
        self.clock = clock
        self.errors = errors

    def collect(self) -> Iterable[Metric]:
        try:
            snap = read_snapshot(self.client, self.clock())
        except redis.RedisError:
            log.exception("scrape failed: cannot read Redis")
            if self.errors is not None:
                self.errors.inc()
            raise
        yield from metric_families(snap)


def metric_families(snap: Snapshot) -> Iterable[Metric]:
    spend = GaugeMetricFamily(
        "aiyield_spend_usd", "AI spend in USD over the window, by event time.", labels=["team", "tool", "model", "window"]
    )
    tokens = GaugeMetricFamily(
        "aiyield_tokens", "Tokens over the window.", labels=["team", "tool", "model", "type", "window"]
    )
    unpriced = GaugeMetricFamily(
        "aiyield_unpriced_token_events",
        "Token events over the window whose model is not in the price table and that carried no cost_usd.",
        labels=["team", "tool", "model", "window"],
    )
    tasks = GaugeMetricFamily("aiyield_tasks", "AI tasks over the window by status.", labels=["team", "tool", "status", "window"])
    nd = GaugeMetricFamily(
        "aiyield_normalized_deployments",
        "Normalized deployments (AI tasks shipped to production and surviving) over the window.",
        labels=["team", "window"],
    )
    cpnd = GaugeMetricFamily(
        "aiyield_cost_per_normalized_deployment_usd",
        "Team spend / team normalized deployments over the window; absent when there are none.",
        labels=["team", "window"],
    )
    devs = GaugeMetricFamily(
        "aiyield_active_developers",
        "Distinct pseudonymised developers with any event over the window (HyperLogLog estimate).",
        labels=["team", "window"],
    )
    retracted = GaugeMetricFamily(
        "aiyield_retracted_normalized_deployments",
        "Normalized deployments credited and then retracted by a rollback or a revert, at the retraction's time.",
        labels=["team", "reason", "window"],
    )
    contested = GaugeMetricFamily(
        "aiyield_contested_claims",
        "Tasks refused because every commit they claimed belonged to an earlier task.",
        labels=["team", "window"],
    )
    for window in WINDOWS:
        for (team, reason), amount in snap.series(window, "retracted"):
            retracted.add_metric([team, reason, window], amount / SCALE["credit"])
        for (team,), amount in snap.series(window, "contested"):
            contested.add_metric([team, window], amount)
        for (team, tool, model), amount in snap.series(window, "spend"):
            spend.add_metric([team, tool, model, window], amount / SCALE["spend"])
        for (team, tool, model, kind), amount in snap.series(window, "tokens"):
            tokens.add_metric([team, tool, model, kind, window], amount)
        for (team, tool, model), amount in snap.series(window, "unpriced"):
            unpriced.add_metric([team, tool, model, window], amount)
        for (team, tool, status), amount in snap.series(window, "tasks"):
            tasks.add_metric([team, tool, status, window], amount)
        for row in snap.team_summary(window):
            # Every known team gets a value, zero included: "spend but no output" must be visible and alertable.
            nd.add_metric([row["team"], window], row["normalized_deployments"])
            if row["cost_per_normalized_deployment_usd"] is not None:
                cpnd.add_metric([row["team"], window], row["cost_per_normalized_deployment_usd"])
            devs.add_metric([row["team"], window], row["active_developers"])
    yield from (spend, tokens, unpriced, tasks, nd, cpnd, devs, retracted, contested)

    events = CounterMetricFamily("aiyield_events", "Events by type and outcome.", labels=["type", "outcome"])
    for (event_type, outcome), n in sorted(snap.events_total.items()):
        events.add_metric([event_type, outcome], n)
    yield events

    last = GaugeMetricFamily(
        "aiyield_last_event_timestamp_seconds", "Newest event time processed, by type.", labels=["type"]
    )
    for event_type, ts in sorted(snap.last_ts.items()):
        last.add_metric([event_type], ts)
    yield last


def build_registry(redis_url: str, clock: Callable[[], float] = time.time, **options) -> CollectorRegistry:
    """`options`: more `Redis.from_url` arguments (TLS: `Settings.redis_client_options()`)."""
    registry = CollectorRegistry(auto_describe=False)
    errors = Counter(
        "aiyield_exporter_scrape_errors", "Scrapes that failed because Redis could not be read.", registry=registry
    )
    client = redis.Redis.from_url(redis_url, socket_timeout=10, **options)
    registry.register(AiyieldCollector(client, clock, errors))
    return registry


def serve(redis_url: str, port: int, host: str = "0.0.0.0", **options) -> tuple[object, threading.Thread]:
    """Serve /metrics on a background thread; returns (server, thread) so callers can shut it down."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=build_registry(redis_url, **options))
