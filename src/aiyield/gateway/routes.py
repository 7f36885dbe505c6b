"""HTTP routes for the sources: GitHub, GitLab and Argo CD webhooks, OTLP metrics and logs.

Each route checks the sender first (signature, token), then hands the body to its pure adapter and the resulting
event dicts to `Gateway.ingest`, which validates and publishes them like any other events. Adapter errors map to
status codes in one place (`_adapt`): a bad body is 400, an event kind aiyield does not read is 202 with
`ignored` (a 4xx would make GitHub and GitLab flag or disable a healthy hook).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from aiyield import keys
from aiyield.gateway import argocd, github, gitlab, otlp
from aiyield.gateway.common import BadPayload, UnsupportedEvent
from aiyield.gateway.otlp import PayloadTooLarge, UnsupportedContentType
from aiyield.gateway.server import GATEWAY_KEY, METRICS_KEY, Gateway, accepted, error
from aiyield.gateway.signatures import bearer_ok, token_matches, verify_github
from aiyield.settings import Settings

#: Cumulative OTLP series not updated for this long are forgotten (a Claude Code series lives one session).
CUMULATIVE_TTL_SECONDS = 7 * 86400

# Same contract as `otlp.MemoryCumulativeState`, atomically in Redis so several gateway replicas agree.
# KEYS[1] series hash {start, time, value, previous}; ARGV start, time, value, ttl. Returns the delta as a string.
_CUMULATIVE_DELTA = """
local s = redis.call('HMGET', KEYS[1], 'start', 'time', 'value', 'previous')
local start, time, value = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local previous = 0
if s[1] then
  local seen_start, seen_time, seen_value = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  if start < seen_start then return '0' end
  if start == seen_start then
    if time == seen_time then return tostring(seen_value - tonumber(s[4])) end
    if time < seen_time then return '0' end
    if value >= seen_value then previous = seen_value end
  end
end
redis.call('HSET', KEYS[1], 'start', ARGV[1], 'time', ARGV[2], 'value', ARGV[3], 'previous', tostring(previous))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return tostring(value - previous)
"""


class RedisCumulativeState:
    """`otlp.CumulativeState` in Redis: shared by every gateway replica and kept across gateway restarts."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(_CUMULATIVE_DELTA)

    async def delta(self, series_key: str, start: int, time: int, value: float) -> float:
        key = keys.otlp_series(series_key)
        # repr() keeps a float's full precision through Lua's tonumber.
        result = await self._script(keys=[key], args=[start, time, repr(float(value)), CUMULATIVE_TTL_SECONDS])
        return float(result)


def _json(body: bytes) -> Any:
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadPayload(f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadPayload("expected a JSON object")
    return payload


async def _adapt(request: web.Request, source: str, adapt: Callable[[], list[dict]]) -> web.Response:
    gateway: Gateway = request.app[GATEWAY_KEY]
    try:
        items = adapt()
    except UnsupportedEvent as exc:
        request.app[METRICS_KEY].ignored.labels(source).inc()
        return web.json_response({"accepted": 0, "rejected": [], "ignored": exc.kind}, status=202)
    except BadPayload as exc:
        return error(400, str(exc))
    count, rejected = await gateway.ingest(items, source)
    request["accepted"] = count
    return accepted(count, rejected)


async def post_github(request: web.Request) -> web.Response:
    settings: Settings = request.app[GATEWAY_KEY].settings
    body = await request.read()
    if settings.github_secret and not verify_github(settings.github_secret.encode(), body, request.headers.get("X-Hub-Signature-256")):
        return error(401, "bad or missing X-Hub-Signature-256")
    event_name = request.headers.get("X-GitHub-Event", "")
    if event_name == "ping":
        return web.json_response({"pong": True})
    return await _adapt(
        request, "github",
        lambda: github.from_github(
            event_name, _json(body), trailers=settings.ai_trailers, repo_teams=settings.repo_teams,
            delivery_id=request.headers.get("X-GitHub-Delivery", ""),
        ),
    )


async def post_gitlab(request: web.Request) -> web.Response:
    settings: Settings = request.app[GATEWAY_KEY].settings
    if settings.gitlab_token and not token_matches(settings.gitlab_token, request.headers.get("X-Gitlab-Token")):
        return error(401, "bad or missing X-Gitlab-Token")
    body = await request.read()
    return await _adapt(
        request, "gitlab",
        lambda: gitlab.from_gitlab(_json(body), trailers=settings.ai_trailers, repo_teams=settings.repo_teams),
    )


def _bearer_required(request: web.Request) -> web.Response | None:
    """Argo CD and OTLP senders authenticate like event producers: with an ingest token, when tokens are set."""
    tokens = request.app[GATEWAY_KEY].settings.ingest_tokens
    if tokens and not bearer_ok(list(tokens), request.headers.get("Authorization")):
        return error(401, "missing or wrong bearer token")
    return None


async def post_argocd(request: web.Request) -> web.Response:
    if (denied := _bearer_required(request)) is not None:
        return denied
    body = await request.read()
    return await _adapt(request, "argocd", lambda: argocd.from_argocd(_json(body)))


CUMULATIVE_KEY = web.AppKey("cumulative_state", object)


def _otlp_handler(signal: str, response_type: type) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if (denied := _bearer_required(request)) is not None:
            return denied
        gateway: Gateway = request.app[GATEWAY_KEY]
        settings = gateway.settings
        body = await request.read()
        kw = dict(
            content_type=request.headers.get("Content-Type"),
            # aiohttp has already undone Content-Encoding (gzip, deflate) while reading, within client_max_size.
            content_encoding=None,
            team_keys=settings.team_attributes,
        )
        try:
            if signal == "metrics":
                result = await otlp.from_otlp_metrics(body, state=request.app[CUMULATIVE_KEY], **kw)
            else:
                result = otlp.from_otlp_logs(body, token_logs=settings.otlp_log_tokens, **kw)
        except UnsupportedContentType as exc:
            return error(415, str(exc))
        except PayloadTooLarge as exc:
            return error(413, str(exc))
        except BadPayload as exc:
            return error(400, str(exc))
        ignored = sum(result.ignored.values())
        if ignored:
            request.app[METRICS_KEY].ignored.labels(f"otlp_{signal}").inc(ignored)
        count, rejected = await gateway.ingest(result.events, f"otlp_{signal}")
        request["accepted"] = count
        # OTLP/HTTP answers in the request's encoding; rejected items are reported as a partial success.
        response = response_type()
        if rejected:
            response.partial_success.error_message = "; ".join(sorted({r.error.reason for r in rejected}))[:1000]
            if signal == "metrics":
                response.partial_success.rejected_data_points = len(rejected)
            else:
                response.partial_success.rejected_log_records = len(rejected)
        if (request.headers.get("Content-Type") or "").startswith("application/json"):
            from google.protobuf.json_format import MessageToJson

            return web.Response(text=MessageToJson(response), content_type="application/json")
        return web.Response(body=response.SerializeToString(), content_type="application/x-protobuf")

    return handle


post_otlp_metrics = _otlp_handler("metrics", ExportMetricsServiceResponse)
post_otlp_logs = _otlp_handler("logs", ExportLogsServiceResponse)
