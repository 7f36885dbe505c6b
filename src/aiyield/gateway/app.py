"""The gateway application: routes, shared state, and the process that serves them."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import redis.asyncio as aioredis
from confluent_kafka import KafkaException
from aiohttp import web

from aiyield.gateway import routes
from aiyield.gateway.otlp import CumulativeState
from aiyield.gateway.server import (
    GATEWAY_KEY,
    METRICS_KEY,
    Gateway,
    GatewayMetrics,
    access_and_errors,
    get_metrics,
    healthz,
    post_events,
    readyz,
)
from aiyield.kafka import Publisher
from aiyield.settings import Settings

log = logging.getLogger("aiyield.gateway")


def create_app(settings: Settings, publisher: Publisher, ready: Callable[[], bool], cumulative: CumulativeState) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[access_and_errors])
    app[GATEWAY_KEY] = Gateway(settings, publisher, ready)
    app[METRICS_KEY] = GatewayMetrics()
    app[routes.CUMULATIVE_KEY] = cumulative
    app.add_routes(
        [
            web.post("/v1/events", post_events),
            web.post("/v1/webhooks/github", routes.post_github),
            web.post("/v1/webhooks/gitlab", routes.post_gitlab),
            web.post("/v1/webhooks/argocd", routes.post_argocd),
            web.post("/v1/metrics", routes.post_otlp_metrics),
            web.post("/v1/logs", routes.post_otlp_logs),
            web.get("/metrics", get_metrics),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
    return app


def run_gateway(settings: Settings) -> None:
    from aiyield.embedded import kafka_ready
    from aiyield.kafka import ensure_topics

    if settings.using_dev_pseudonym_key:
        log.warning("AIYIELD_PSEUDONYM_KEY is not set: using the built-in development key (not for production)")
    for name, configured in (("AIYIELD_GITHUB_SECRET", settings.github_secret), ("AIYIELD_GITLAB_TOKEN", settings.gitlab_token)):
        if not configured:
            log.warning("%s is not set: that webhook accepts unauthenticated deliveries", name)
    try:
        ensure_topics(settings.kafka, settings.topics, settings.partitions)
    except KafkaException as exc:  # the gateway starts anyway; /readyz reports Kafka until it is back
        log.warning("could not check or create topics (%s): Kafka unreachable? /readyz will tell", exc)
    publisher = Publisher(settings.kafka, timeout=settings.publish_timeout_seconds)
    cumulative = routes.RedisCumulativeState(aioredis.Redis.from_url(settings.redis))
    app = create_app(settings, publisher, lambda: kafka_ready(settings.kafka), cumulative)
    app.on_cleanup.append(lambda _app: asyncio.get_running_loop().run_in_executor(None, publisher.close))
    web.run_app(app, port=settings.gateway_port, print=None, access_log=None)
