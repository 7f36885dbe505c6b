"""The gateway application: the routes of the source table, shared services, and the process that serves them.

Start-up refuses (`ExposureError`, exit status 2) a gateway that would listen beyond loopback while some source
has no credential, unless `AIYIELD_ALLOW_ANONYMOUS=true`: with no ingest token or webhook secret, anyone who can
reach the port could write.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys

from aiohttp import web
from confluent_kafka import KafkaException

from aiyield import redisconn
from aiyield.gateway import handlers, otlp_grpc
from aiyield.gateway.auth import Authenticator, missing_credentials
from aiyield.gateway.cumulative import CumulativeState, RedisCumulativeState
from aiyield.gateway.handlers import SERVICES_KEY, Services
from aiyield.gateway.ingest import Gateway
from aiyield.gateway.limits import ConnectionGuard, RateLimiter
from aiyield.gateway.sources import SOURCES
from aiyield.kafka import Publisher, Readiness, ensure_topics
from aiyield.settings import Settings, SettingsError

log = logging.getLogger("aiyield.gateway")

GUARD_KEY = web.AppKey("connection_guard", ConnectionGuard)
LINGER_SECONDS = 2.0


def create_app(
    settings: Settings, publisher: Publisher, cumulative: CumulativeState, readiness: Readiness,
    authenticator: Authenticator | None = None,
) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_connection_timing, handlers.access_and_errors])
    app[SERVICES_KEY] = Services(
        Gateway(settings, publisher),
        authenticator or Authenticator(settings),
        RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        cumulative,
        readiness,
    )
    app.add_routes([web.post(source.path, handlers.source_handler(source)) for source in SOURCES])
    app.add_routes(
        [web.get("/metrics", handlers.get_metrics), web.get("/healthz", handlers.healthz), web.get("/readyz", handlers.readyz)]
    )
    return app


@web.middleware
async def _connection_timing(request: web.Request, handler: handlers.Handler) -> web.StreamResponse:
    """Headers are in once a handler runs; after the answer, the next request's headers are awaited again."""
    guard = request.app.get(GUARD_KEY)
    if guard is None:
        return await handler(request)
    guard.headers_received(request.protocol)
    try:
        return await handler(request)
    finally:
        guard.await_headers(request.protocol)


def beyond_loopback(host: str) -> bool:
    """Whether listening on `host` accepts connections from other machines (unknown names count as beyond)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond loopback with an open source, unless anonymous writes are explicitly allowed."""
    missing = missing_credentials(settings)
    if not missing:
        return
    if beyond_loopback(settings.gateway_host) and not settings.allow_anonymous:
        raise SettingsError(
            f"the gateway would listen on {settings.gateway_host}, beyond loopback, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set, so anyone who can reach it could write. Set "
            f"{'it' if len(missing) == 1 else 'them'} (e.g. `openssl rand -hex 32`), listen on 127.0.0.1 "
            "(AIYIELD_GATEWAY_HOST), or set AIYIELD_ALLOW_ANONYMOUS=true to accept anonymous writes."
        )
    for name in missing:
        log.warning("%s is not set: its endpoints accept unauthenticated writes", name)


def run_gateway(settings: Settings) -> None:
    try:
        authenticator = Authenticator(settings)
        check_exposure(settings)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.using_dev_pseudonym_key:
        log.warning("AIYIELD_PSEUDONYM_KEY is not set: using the built-in development key (not for production)")
    try:
        ensure_topics(settings.kafka_client_config(), settings.topics, settings.partitions)
    except KafkaException as exc:  # the gateway starts anyway; /readyz reports Kafka until it is back
        log.warning("could not check or create topics (%s): Kafka unreachable? /readyz will tell", exc)
    try:
        asyncio.run(_serve(settings, authenticator))
    except OSError as exc:  # a port that cannot be bound (in use, or not ours)
        print(f"gateway cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _serve(settings: Settings, authenticator: Authenticator) -> None:
    loop = asyncio.get_running_loop()
    publisher = Publisher(settings.kafka_client_config(), timeout=settings.publish_timeout_seconds)
    # Short timeout: an OTLP request waits on it (cumulative series state).
    redis_client = redisconn.client(settings, asyncio=True, timeout=5)
    readiness = Readiness(settings.kafka_client_config(), ttl=settings.ready_cache_seconds)
    app = create_app(settings, publisher, RedisCumulativeState(redis_client), readiness, authenticator)
    # An answer given before the body was read (401, 429, 413) leaves the body unread: it is discarded, never kept,
    # for at most LINGER_SECONDS (so the client can read the answer), then the connection is closed.
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=settings.header_timeout_seconds, lingering_time=LINGER_SECONDS
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    guard = ConnectionGuard(server, settings.max_connections, settings.header_timeout_seconds)
    app[GUARD_KEY] = guard
    # gRPC first: once /healthz answers, both transports are listening.
    grpc_server = await otlp_grpc.start(settings, app[SERVICES_KEY]) if settings.otlp_grpc_port else None
    listener = await loop.create_server(guard, settings.gateway_host, settings.gateway_port, reuse_address=True)
    log.info("gateway listening on http://%s:%d", settings.gateway_host, settings.gateway_port)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        listener.close()
        if grpc_server is not None:
            await grpc_server.stop(otlp_grpc.STOP_GRACE_SECONDS)
        await runner.cleanup()
        await redis_client.aclose()
        await loop.run_in_executor(None, publisher.close)
