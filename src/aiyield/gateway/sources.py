"""The table of sources: for each write endpoint, its path, who may send to it, and the adapter that reads it.

Like Four Keys' registry of authorised sources, this table is the one place that says what the gateway accepts;
`app.create_app` registers exactly these paths and `handlers.receive` applies, in order: the source's
authentication rule (before the body is read), the sender's rate limit, the body limits, the adapter, and
`Gateway.ingest`. An adapter turns a body into event dicts (or says it carries nothing aiyield reads); it never
validates: the validator does, identically for every source.

Adapter errors map to statuses in `handlers`: `BadPayload` 400, `UnsupportedContentType` 415, `PayloadTooLarge`
413; `UnsupportedEvent` is a 202 with `ignored` (a 4xx would make GitHub and GitLab flag or disable a healthy hook).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import msgspec
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from aiyield.core.events import InvalidEvent, decode, decode_lines, unpack
from aiyield.gateway import argocd, github, gitlab, litellm, otlp
from aiyield.gateway.auth import Rule
from aiyield.gateway.common import BadPayload
from aiyield.gateway.cumulative import CumulativeState
from aiyield.gateway.ingest import IngestResult
from aiyield.settings import Settings

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


@dataclass(frozen=True)
class Delivery:
    """One authenticated request, as an adapter sees it."""

    body: bytes
    headers: Mapping[str, str]
    content_type: str
    settings: Settings
    cumulative: CumulativeState
    now: float


@dataclass
class Adapted:
    items: list[Any]
    #: What the body held that aiyield does not read, by name (counted, not answered).
    ignored: Counter[str] = field(default_factory=Counter)
    #: Token counts of a type the source's mapping does not know, by type: counted, never priced as input.
    unknown_types: Counter[str] = field(default_factory=Counter)
    #: An answer that replaces ingesting (GitHub's `ping`).
    reply: dict[str, Any] | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str


def json_reply(result: IngestResult, delivery: Delivery) -> Reply:
    return Reply(403 if result.forbidden else 202, msgspec.json.encode(result.answer()), "application/json")


@dataclass(frozen=True)
class Source:
    #: Label of metrics and dead letters.
    name: str
    path: str
    rule: Rule
    adapt: Callable[[Delivery], Awaitable[Adapted]]
    reply: Callable[[IngestResult, Delivery], Reply] = json_reply


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body: one JSON object. Too deep a nesting is a bad body like any other (msgspec recurses)."""
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadPayload(f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadPayload("expected a JSON object")
    return payload


def event_items(body: bytes, content_type: str) -> list[Any]:
    """The items of a /v1/events body: a JSON object, a JSON array, `{"events": [...]}`, or NDJSON.

    A body that is not JSON at all is a 400; in NDJSON each line stands alone, so a bad line is a rejected item and
    its neighbours still go through.
    """
    try:
        if content_type in NDJSON_TYPES:
            return decode_lines(body)
        payload = decode(body)
    except InvalidEvent as exc:
        raise BadPayload(exc.reason) from None
    except RecursionError:
        raise BadPayload("malformed JSON: nested too deeply") from None
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        try:
            return unpack(payload)
        except InvalidEvent as exc:
            raise BadPayload(exc.reason) from None
    raise BadPayload(f"expected a JSON object or array, got {type(payload).__name__}")


async def _events(d: Delivery) -> Adapted:
    return Adapted(event_items(d.body, d.content_type))


async def _github(d: Delivery) -> Adapted:
    event_name = d.headers.get("X-GitHub-Event", "")
    if event_name == "ping":
        return Adapted([], reply={"pong": True})
    return Adapted(
        github.from_github(
            event_name, json_object(d.body), trailers=d.settings.ai_trailers, org=d.settings.org,
            delivery_id=d.headers.get("X-GitHub-Delivery", ""),
        )
    )


async def _gitlab(d: Delivery) -> Adapted:
    return Adapted(gitlab.from_gitlab(json_object(d.body), trailers=d.settings.ai_trailers, org=d.settings.org))


async def _argocd(d: Delivery) -> Adapted:
    return Adapted(argocd.from_argocd(json_object(d.body)))


async def _litellm(d: Delivery) -> Adapted:
    result = litellm.from_litellm(d.body)
    return Adapted(result.events, result.ignored)


# aiohttp has already undone Content-Encoding (gzip, deflate) while reading, within the body limit.
async def _otlp_metrics(d: Delivery) -> Adapted:
    result = await otlp.from_otlp_metrics(
        d.body, content_type=d.headers.get("Content-Type"), state=d.cumulative, now=d.now,
        team_keys=d.settings.team_attributes,
    )
    return Adapted(result.events, result.ignored, result.unknown_types)


async def _otlp_logs(d: Delivery) -> Adapted:
    result = otlp.from_otlp_logs(
        d.body, content_type=d.headers.get("Content-Type"), team_keys=d.settings.team_attributes,
        token_logs=d.settings.otlp_log_tokens,
    )
    return Adapted(result.events, result.ignored)


def _otlp_reply(response_type: type, rejected_field: str) -> Callable[[IngestResult, Delivery], Reply]:
    """OTLP/HTTP answers in the request's encoding; rejected items are reported as a partial success."""

    def reply(result: IngestResult, d: Delivery) -> Reply:
        response = response_type()
        if result.rejected_count:
            reasons = sorted({r.error.reason for r in result.rejected})
            response.partial_success.error_message = "; ".join(reasons)[:1000]
            setattr(response.partial_success, rejected_field, result.rejected_count)
        status = 403 if result.forbidden else 200
        if (d.headers.get("Content-Type") or "").startswith("application/json"):
            return Reply(status, MessageToJson(response).encode(), "application/json")
        return Reply(status, response.SerializeToString(), "application/x-protobuf")

    return reply


#: The OTLP sources, also served over gRPC by `otlp_grpc` (the same adapter, rule and answer).
OTLP_METRICS = Source("otlp_metrics", "/v1/metrics", Rule.INGEST_TOKEN, _otlp_metrics,
                      _otlp_reply(ExportMetricsServiceResponse, "rejected_data_points"))
OTLP_LOGS = Source("otlp_logs", "/v1/logs", Rule.INGEST_TOKEN, _otlp_logs,
                   _otlp_reply(ExportLogsServiceResponse, "rejected_log_records"))

SOURCES: tuple[Source, ...] = (
    Source("gateway", "/v1/events", Rule.INGEST_TOKEN, _events),
    Source("github", "/v1/webhooks/github", Rule.GITHUB_SIGNATURE, _github),
    Source("gitlab", "/v1/webhooks/gitlab", Rule.GITLAB_TOKEN, _gitlab),
    Source("argocd", "/v1/webhooks/argocd", Rule.INGEST_TOKEN, _argocd),
    Source("litellm", "/v1/webhooks/litellm", Rule.INGEST_TOKEN, _litellm),
    OTLP_METRICS,
    OTLP_LOGS,
)
