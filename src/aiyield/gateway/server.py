"""HTTP ingest gateway (CONTRACT section 4): events, git/CI webhooks and OTLP, onto Kafka.

Every accepted event is on Kafka (acknowledged) before the 2xx is sent; a Kafka failure is a 503, never a 2xx.
Items that fail validation are named by index in the answer, dead-lettered with their reason, and counted as
invalid by the worker like any other invalid event. Access logs carry method, path, status, latency and counts:
no secrets, no bodies, no developer ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from aiyield.core.events import InvalidEvent, Rejected, decode, decode_lines, parse_items, unpack
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.gateway.signatures import bearer_ok
from aiyield.kafka import Publisher, PublishError, dead_letters, envelopes
from aiyield.settings import Settings

log = logging.getLogger("aiyield.gateway")
access_log = logging.getLogger("aiyield.gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    """Validation, publishing and the answers; the source adapters (webhooks, OTLP) produce event dicts for it."""

    def __init__(self, settings: Settings, publisher: Publisher, ready: Callable[[], bool]) -> None:
        self.settings = settings
        self.publisher = publisher
        self.ready = ready
        self.pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())

    async def ingest(self, items: list[Any], source: str) -> tuple[int, list[Rejected]]:
        """Validate, publish the good (acknowledged) and dead-letter the bad; returns (accepted, rejected)."""
        good, bad = parse_items(items, time.time(), self.pseudonymise)
        values = envelopes(good)
        if values:
            await self.publisher.publish_async(self.settings.events_topic, values)
        if bad:
            await self.publisher.publish_async(self.settings.dlq_topic, dead_letters(bad, source))
        return len(good), bad


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def accepted(count: int, rejected: list[Rejected]) -> web.Response:
    return web.json_response(
        {"accepted": count, "rejected": [{"index": r.index, "error": r.error.reason} for r in rejected]}, status=202
    )


class GatewayMetrics:
    """The gateway's own metrics, on its GET /metrics: requests by route and status, deliveries it ignored."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "aiyield_gateway_requests", "Requests by route and status.", ["route", "status"], registry=self.registry
        )
        self.ignored = Counter(
            "aiyield_gateway_ignored",
            "Webhook deliveries and OTLP data points or log records that carried nothing aiyield reads.",
            ["source"],
            registry=self.registry,
        )


GATEWAY_KEY = web.AppKey("gateway", Gateway)
METRICS_KEY = web.AppKey("gateway_metrics", GatewayMetrics)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


def parse_body(body: bytes, content_type: str) -> list[Any]:
    """The items of a /v1/events body: a JSON object, a JSON array, `{"events": [...]}`, or NDJSON.

    A body that is not JSON at all is a 400 (raised as InvalidEvent); in NDJSON each line stands alone, so a bad line
    is a rejected item and its neighbours still go through.
    """
    if content_type in NDJSON_TYPES:
        return decode_lines(body)
    payload = decode(body)
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        return unpack(payload)
    raise InvalidEvent(f"expected a JSON object or array, got {type(payload).__name__}")


async def post_events(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    if gateway.settings.ingest_tokens and not bearer_ok(list(gateway.settings.ingest_tokens), request.headers.get("Authorization")):
        return error(401, "missing or wrong bearer token")
    body = await request.read()
    try:
        items = parse_body(body, request.content_type)
    except InvalidEvent as exc:
        return error(400, exc.reason)
    count, rejected = await gateway.ingest(items, "gateway")
    request["accepted"] = count
    return accepted(count, rejected)


async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[METRICS_KEY].registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await asyncio.get_running_loop().run_in_executor(None, request.app[GATEWAY_KEY].ready)
    return web.json_response({"kafka": "reachable" if ok else "unreachable"}, status=200 if ok else 503)


@web.middleware
async def access_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 413:
            return error(413, f"body larger than {request.app[GATEWAY_KEY].settings.max_body_bytes} bytes")
        raise
    except PublishError as exc:
        status = 503
        log.error("kafka publish failed for %s: %s", request.path, exc)
        return error(503, "events could not be written to Kafka; retry later")
    finally:
        resource = request.match_info.route.resource
        request.app[METRICS_KEY].requests.labels(resource.canonical if resource else "unmatched", str(status)).inc()
        access_log.info(
            "method=%s path=%s status=%d ms=%.1f accepted=%s",
            request.method, request.path, status, (time.perf_counter() - started) * 1000, request.get("accepted", "-"),
        )
