"""Every HTTP handler of the gateway: the sources' one handler (`receive`), health, readiness and its own metrics,
and the middleware that logs each request and turns failures into honest statuses.

Every accepted event is on Kafka (acknowledged) before the 2xx is sent; a Kafka failure is a 503, never a 2xx.
Access logs carry method, path, status, latency, sender name and counts: no secrets, no bodies, no developer ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Counter_
from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily

from aiyield.gateway.auth import Authenticator, Denied, Principal
from aiyield.gateway.common import BadPayload, UnsupportedEvent
from aiyield.gateway.cumulative import CumulativeState
from aiyield.gateway.ingest import Gateway, IngestResult
from aiyield.gateway.limits import RateLimiter
from aiyield.gateway.otlp import PayloadTooLarge, UnsupportedContentType
from aiyield.gateway.sources import Adapted, Delivery, Source
from aiyield.kafka import PublishError, Readiness

log = logging.getLogger("aiyield.gateway")
access_log = logging.getLogger("aiyield.gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayMetrics:
    """The gateway's own metrics, on its GET /metrics."""

    def __init__(self, readiness: Readiness) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ReadinessChecks(readiness))
        self.requests = Counter(
            "aiyield_gateway_requests", "Requests by route and status.", ["route", "status"], registry=self.registry
        )
        self.ignored = Counter(
            "aiyield_gateway_ignored",
            "Webhook deliveries and OTLP data points or log records that carried nothing aiyield reads.",
            ["source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "aiyield_gateway_rejected_items", "Items rejected (and dead-lettered), by source.", ["source"],
            registry=self.registry,
        )
        self.unknown_types = Counter(
            "aiyield_unknown_token_types",
            "Token counts the gateway did not price because their token type is not mapped (e.g. a new "
            "gen_ai.token.type), by source and type; the first UNKNOWN_TYPE_LABELS types by name, then `other`.",
            ["source", "type"],
            registry=self.registry,
        )
        self._type_labels: set[str] = set()
        self.grpc_requests = Counter(
            "aiyield_gateway_grpc_requests", "OTLP/gRPC calls by method and status code.", ["method", "code"],
            registry=self.registry,
        )
        self.disconnects = Counter(
            "aiyield_gateway_client_disconnects", "Requests whose client went away before the answer.", ["route"],
            registry=self.registry,
        )

    def count_unknown_types(self, source: str, types: Counter_[str]) -> None:
        """Count unmapped token types under a bounded label: the type names come from senders."""
        for name, n in types.items():
            label = name[:64]
            if label not in self._type_labels and len(self._type_labels) >= UNKNOWN_TYPE_LABELS:
                label = "other"
            self._type_labels.add(label)
            self.unknown_types.labels(source, label).inc(n)


#: Distinct `type` label values of `aiyield_unknown_token_types_total` a gateway process keeps before `other`.
UNKNOWN_TYPE_LABELS = 32


class _ReadinessChecks:
    """How many times /readyz really asked Kafka (cached answers excluded)."""

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    def collect(self):
        family = CounterMetricFamily("aiyield_gateway_readiness_checks", "Kafka checks made for /readyz.")
        family.add_metric([], self._readiness.checks)
        yield family


class Services:
    """What the handlers share, built once per application."""

    def __init__(
        self, gateway: Gateway, authenticator: Authenticator, limiter: RateLimiter, cumulative: CumulativeState,
        readiness: Readiness,
    ) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.authenticator = authenticator
        self.limiter = limiter
        self.cumulative = cumulative
        self.readiness = readiness
        self.metrics = GatewayMetrics(readiness)

    async def ingest(self, source: Source, adapted: Adapted, principal: Principal) -> IngestResult:
        """What every transport (HTTP, OTLP/gRPC) does with an adapted body: count what was ignored and the token
        types it could not price, validate and publish (raises `PublishError` when Kafka does not acknowledge), count
        what was rejected."""
        if ignored := sum(adapted.ignored.values()):
            self.metrics.ignored.labels(source.name).inc(ignored)
        if adapted.unknown_types:
            self.metrics.count_unknown_types(source.name, adapted.unknown_types)
        result = await self.gateway.ingest(adapted.items, source.name, principal)
        if result.rejected_count:
            self.metrics.rejected.labels(source.name).inc(result.rejected_count)
        return result


SERVICES_KEY = web.AppKey("services", Services)
SOURCE_KEY = "aiyield_source"


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def read_body(request: web.Request, services: Services) -> bytes:
    """The whole body, within the body limit (413) and the body timeout (408)."""
    limit = services.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        async with asyncio.timeout(services.settings.body_timeout_seconds):
            return await request.read()
    except TimeoutError:
        raise _BodyTimeout() from None


class _BodyTimeout(Exception):
    pass


def source_handler(source: Source) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await receive(request, source)

    return handle


async def receive(request: web.Request, source: Source) -> web.StreamResponse:
    """One write request: authenticate (headers only), rate-limit, read the body, adapt, ingest, answer."""
    services = request.app[SERVICES_KEY]
    request[SOURCE_KEY] = source.name
    try:
        principal = services.authenticator.before_body(source.rule, request.headers)
    except Denied as exc:
        return error(exc.status, exc.message)
    request["principal"] = principal.name
    key = principal.name if principal.name != "anonymous" else f"anonymous@{request.remote}"
    wait = services.limiter.retry_after(key, time.monotonic())
    if wait is not None:
        return error(429, "too many requests for this sender; retry later", {"Retry-After": str(wait)})
    body = await read_body(request, services)
    try:
        services.authenticator.after_body(source.rule, request.headers, body)
    except Denied as exc:
        return error(exc.status, exc.message)
    delivery = Delivery(
        body=body, headers=request.headers, content_type=request.content_type, settings=services.settings,
        cumulative=services.cumulative, now=services.gateway.clock(),
    )
    try:
        adapted = await source.adapt(delivery)
    except UnsupportedEvent as exc:
        services.metrics.ignored.labels(source.name).inc()
        return web.json_response({"accepted": 0, "rejected": [], "rejected_count": 0, "ignored": exc.kind}, status=202)
    except UnsupportedContentType as exc:
        return error(415, str(exc))
    except PayloadTooLarge as exc:
        return error(413, str(exc))
    except BadPayload as exc:
        return error(400, str(exc))
    if adapted.reply is not None:
        return web.json_response(adapted.reply)
    result = await services.ingest(source, adapted, principal)
    request["accepted"] = result.accepted
    reply = source.reply(result, delivery)
    return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)


async def get_metrics(request: web.Request) -> web.Response:
    registry = request.app[SERVICES_KEY].metrics.registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await request.app[SERVICES_KEY].readiness.ready()
    return web.json_response({"kafka": "reachable" if ok else "unreachable"}, status=200 if ok else 503)


def _disconnected(request: web.Request, exc: BaseException) -> bool:
    """Whether a failure is the client going away (a reset, a truncated body), not a fault of ours."""
    transport = request.transport
    return isinstance(exc, (ConnectionResetError, asyncio.CancelledError)) or transport is None or transport.is_closing()


@web.middleware
async def access_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One access-log line per request; failures answered with their honest status, the unexpected as 500."""
    started = time.perf_counter()
    status: int | str = 500
    services = request.app[SERVICES_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 413:
            return error(413, f"body larger than {services.settings.max_body_bytes} bytes")
        raise
    except PublishError as exc:
        status = 503
        log.error("kafka publish failed for %s: %s", request.path, exc)
        return error(503, "events could not be written to Kafka; retry later")
    except _BodyTimeout:
        status = 408
        log.warning("body of %s not received within %ss: connection closed", request.path,
                    services.settings.body_timeout_seconds)
        return error(408, "request body not received in time", {"Connection": "close"})
    except (Exception, asyncio.CancelledError) as exc:
        if _disconnected(request, exc):
            status = "disconnected"
            services.metrics.disconnects.labels(route).inc()
            log.info("client disconnected during %s %s (%s)", request.method, request.path, type(exc).__name__)
            # Nobody is left to read it; answering (rather than raising) keeps aiohttp from logging a traceback.
            return web.Response(status=400, headers={"Connection": "close"})
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error(500, "internal error")
    finally:
        services.metrics.requests.labels(route, str(status)).inc()
        access_log.info(
            "method=%s path=%s status=%s ms=%.1f sender=%s accepted=%s",
            request.method, request.path, status, (time.perf_counter() - started) * 1000,
            request.get("principal", "-"), request.get("accepted", "-"),
        )
