"""OTLP over gRPC (docs/INTERFACE.md §4, default port 4317): opentelemetry-proto's `MetricsService` and
`LogsService` on a grpc.aio server, in the gateway's process and event loop, beside its HTTP server.

Nothing is decided here that `/v1/metrics` and `/v1/logs` do not decide already: each `Export` call is handed, as its
serialized protobuf request, to the same source of the table (`sources.OTLP_METRICS`, `sources.OTLP_LOGS`), so the
same adapter decodes it, the same ingest tokens admit it (the `authorization` metadata, `Bearer ...`), the same
rate limit, validation and scopes apply, its events are on Kafka before the answer, and the answer is the same
`Export*ServiceResponse`: `partial_success` with the rejected count and the reasons.

gRPC status for each of the HTTP gateway's refusals:

- 401 (missing or wrong token) -> UNAUTHENTICATED; 403 (every item outside the token's scope) -> PERMISSION_DENIED;
- 429 (the sender's rate limit) -> RESOURCE_EXHAUSTED, which OTLP exporters retry with backoff;
- 413 (body limit) -> RESOURCE_EXHAUSTED, said by gRPC itself: the message limit is `max_body_bytes`;
- 400 (undecodable request) -> INVALID_ARGUMENT;
- 503 (Kafka did not acknowledge) -> UNAVAILABLE, retried by exporters; an unexpected failure -> INTERNAL.

The request is taken as bytes (no deserializer) and the answer given as bytes: the adapter parses the request once,
as it parses an HTTP body, and `Source.reply` serializes the answer, as it does for HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from aiyield.gateway.auth import Denied
from aiyield.gateway.common import BadPayload
from aiyield.gateway.handlers import Services
from aiyield.gateway.sources import OTLP_LOGS, OTLP_METRICS, Delivery, Source
from aiyield.kafka import PublishError
from aiyield.settings import Settings

log = logging.getLogger("aiyield.gateway")
access_log = logging.getLogger("aiyield.gateway.access")

#: How an HTTP body of OTLP/gRPC's encoding is labelled for the adapters and `Source.reply`.
PROTOBUF = "application/x-protobuf"
#: Seconds in-flight calls get to finish when the gateway stops.
STOP_GRACE_SECONDS = 5.0

#: (service, source): the services of opentelemetry-proto and the source of the table each one feeds.
SERVICES: tuple[tuple[str, Source], ...] = (
    (metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name, OTLP_METRICS),
    (logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name, OTLP_LOGS),
)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _export(
    services: Services, source: Source, request: bytes, context: grpc.aio.ServicerContext, seen: dict[str, object]
) -> bytes:
    """One Export call, as `handlers.receive` takes one HTTP request: authenticate, rate-limit, adapt, ingest.
    `seen` collects the sender and the accepted count, for the access log."""
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    headers = {"Authorization": metadata.get("authorization", ""), "Content-Type": PROTOBUF}
    try:
        principal = services.authenticator.before_body(source.rule, headers)
    except Denied as exc:
        raise _Refused(grpc.StatusCode.UNAUTHENTICATED, exc.message) from None
    seen["sender"] = principal.name
    peer = (context.peer() or "").rsplit(":", 1)[0]
    key = principal.name if principal.name != "anonymous" else f"anonymous@{peer}"
    wait = services.limiter.retry_after(key, time.monotonic())
    if wait is not None:
        raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"too many requests for this sender; retry in {wait}s")
    delivery = Delivery(
        body=request, headers=headers, content_type=PROTOBUF, settings=services.settings,
        cumulative=services.cumulative, now=services.gateway.clock(),
    )
    try:
        adapted = await source.adapt(delivery)
    except BadPayload as exc:
        raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    result = await services.ingest(source, adapted, principal)
    seen["accepted"] = result.accepted
    reply = source.reply(result, delivery)
    if reply.status == 403:
        reasons = "; ".join(sorted({r.error.reason for r in result.rejected}))
        raise _Refused(grpc.StatusCode.PERMISSION_DENIED, f"nothing accepted: {reasons}"[:1000])
    return reply.body


def _method(services: Services, service: str, source: Source) -> Callable[..., Awaitable[bytes]]:
    method = f"/{service}/Export"

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        seen: dict[str, object] = {}
        try:
            return await _export(services, source, request, context, seen)
        except _Refused as exc:
            code = exc.code
            await context.abort(exc.code, exc.message)
        except asyncio.CancelledError:  # the client went away (or its deadline passed)
            code = grpc.StatusCode.CANCELLED
            raise
        except PublishError as exc:
            code = grpc.StatusCode.UNAVAILABLE
            log.error("kafka publish failed for %s: %s", method, exc)
            await context.abort(code, "events could not be written to Kafka; retry later")
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unexpected error on %s", method)
            await context.abort(code, "internal error")
        finally:
            services.metrics.grpc_requests.labels(method, code.name).inc()
            access_log.info(
                "method=grpc path=%s status=%s ms=%.1f sender=%s accepted=%s", method, code.name,
                (time.perf_counter() - started) * 1000, seen.get("sender", "-"),
                seen.get("accepted", "-"),
            )
        raise AssertionError("unreachable: context.abort raises")

    return export


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(settings: Settings, services: Services) -> grpc.aio.Server:
    """A started server on `gateway_host`:`otlp_grpc_port`; raises `OSError` when that port cannot be bound."""
    server = grpc.aio.server(
        options=[
            # The HTTP body limit, for the same reason: bounds the memory one call can take.
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            # gRPC sets SO_REUSEPORT by default: a second gateway on the same port would then share it silently.
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.max_connections or None,
    )
    for service, source in SERVICES:
        handler = grpc.unary_unary_rpc_method_handler(_method(services, service, source))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
    where = address(settings.gateway_host, settings.otlp_grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:  # grpc's word for "cannot bind"
        raise OSError(
            f"OTLP/gRPC cannot listen on {where} ({exc}): is another OTLP receiver (a Collector?) using it? Set "
            "AIYIELD_OTLP_GRPC_PORT (or --otlp-grpc-port) to a free port, or to 0 to turn OTLP/gRPC off"
        ) from None
    await server.start()
    log.info("OTLP/gRPC listening on %s", where)
    return server
