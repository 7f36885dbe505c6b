"""OTLP/HTTP metrics and logs (`/v1/metrics`, `/v1/logs`) as aiyield token events.

Bodies are protobuf or JSON (`Content-Type`), optionally gzip (`Content-Encoding`). OTLP JSON writes trace and
span ids in hex where protobuf's JSON mapping expects base64; aiyield reads no ids, and the usual 32/16-character
hex ids are valid base64 too, so they parse harmlessly.

Metrics (docs/INTERFACE.md §4), one token event per data point and measure:

- `claude_code.token.usage` (attribute `type`: input, output, cacheRead, cacheCreation) -> token counts;
- `claude_code.cost.usage` -> `cost_usd`, as a token event with 0 tokens;
- `gen_ai.client.token.usage` (histogram, `gen_ai.token.type` input/output, and `completion`, the name of
  output before semantic conventions 1.28) -> token counts from its `sum`.

Token types are mapped explicitly (`TOKEN_TYPES`): a type not in the map (a newer convention's, a vendor's own) is
never priced as input. Its points produce no event and are counted by type in `OtlpResult.unknown_types`, which
the gateway exports as `aiyield_unknown_token_types_total{source,type}`.

- the current GenAI conventions' counters `gen_ai.client.inference.usage.input_tokens`, `.output_tokens`,
  `.cache_read.input_tokens`, `.cache_write.input_tokens` and `.reasoning.output_tokens`: the counters of one call
  site (resource and point attributes, `gen_ai.token.modality` aside) at one collection time become one token event.
  Input and output are totals that include their subsets, so `input_tokens` is input minus cache read and write
  (each counted as its own type) and reasoning, a subset of output billed as output, adds nothing. Model:
  `gen_ai.request.model` (else `gen_ai.response.model`); `gen_ai.provider.name` stays part of the series identity
  (two providers serving one model name are two series) but is no label: aiyield's labels are team, tool, model.
  **The counters win**: a resource that sends them in a request has its `gen_ai.client.token.usage` points of that
  request ignored (counted as superseded), so a tool emitting both conventions is counted once. (The SDK exports
  every instrument of a MeterProvider in one request per collection, so both arrive together.)
- Claude Code's `claude_code.lines_of_code.count` (`type` added/removed), `claude_code.commit.count` and
  `claude_code.pull_request.count` -> `context` events (`metric` lines_added, lines_removed, commits,
  pull_requests): what the tool produced, per team and tool, beside what it cost. No spend, no per-person label.

Claude Code reports its own spend, so its token counts carry `cost_usd: 0.0` (counted, never priced) and its spend
arrives only through `claude_code.cost.usage`: each dollar is counted exactly once, whatever order the two metrics
arrive in, with no state joining them. GenAI token counts carry no `cost_usd` and are priced by the worker.

Temporality: delta points count as they are. Cumulative points count the growth since the previous point of the
same series (resource attributes, metric name, point attributes), kept in a `cumulative.CumulativeState`; see its
contract (a reset is a new start time, never a lower value alone). A cumulative point whose start time is in the
future or after its own time is ignored before it reaches the state, so it cannot freeze its series. A value that
is not a finite number >= 0 (NaN, infinities, negatives) is ignored too, whatever the temporality. Event ids derive
from the series and the point's times, so an exporter retry repeats the same ids.

Logs, one token event per API call:

- Claude Code `claude_code.api_request`: `input_tokens`, `output_tokens`, `cache_read_tokens`,
  `cache_creation_tokens`, `cost_usd` (authoritative). Id: `session.id` + `event.sequence`.
- Codex `codex.sse_event` with `event.kind` = `response.completed`: `input_token_count` (OpenAI counts cached input
  inside it, so cached tokens are subtracted), `cached_token_count`, `output_token_count` (includes reasoning, which
  is billed as output). No cost: priced by the worker. Id: `conversation.id` + `event.timestamp`. (The Codex sample
  holds only `codex.user_prompt` and `codex.tool_result`; the attribute names are from Codex's
  `SessionTelemetry::sse_event_completed`.)

Claude Code can export the same API calls both as metrics and as `api_request` logs. Sending both to aiyield
counts every token and dollar twice: export one of the two, or pass `token_logs=False` (`AIYIELD_OTLP_LOG_TOKENS`)
to read logs for nothing but the record count.

Team: the first of `team_keys` on the data point or log record, then on the resource, else `unassigned`. Tool:
resource `service.name`. Model: `model` or `gen_ai.request.model`. Developer: `user.account_uuid`, `user.id` or
`user.email`, raw: the validator pseudonymises it, and nothing here logs it.

Everything else (other metrics, other log records, unknown `type` values, gauges) is ignored and counted by name in
`OtlpResult.ignored`. Those names come from the sender, so they are unbounded: aggregate before using them as labels.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, DataPointFlags, Metric

from aiyield.gateway.common import UNASSIGNED, BadPayload, parse_time, stable_id
from aiyield.gateway.cumulative import CumulativeState

DEFAULT_TEAM_KEYS: tuple[str, ...] = ("team", "team.id", "team.name")
_DEVELOPER_KEYS = ("user.account_uuid", "user.id", "user.email")
_MODEL_KEYS = ("model", "gen_ai.request.model", "gen_ai.response.model")
#: Tool or model of a source that does not name it: an event still counts, under a visible placeholder.
UNKNOWN = "unknown"

#: Largest body accepted after gzip decompression: a few kilobytes of gzip can inflate to gigabytes.
MAX_DECODED_BYTES = 32 * 1024 * 1024

_PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
_JSON_TYPES = ("application/json",)
_SCALARS = ("string_value", "int_value", "double_value", "bool_value")
#: A start time this far ahead of the gateway's clock is a sender's bug (or worse), not a reset (nanoseconds).
MAX_FUTURE_START_NANOS = 300 * 10**9


class UnsupportedContentType(BadPayload):
    """Neither protobuf nor JSON: OTLP/HTTP asks for `415 Unsupported Media Type`."""


class PayloadTooLarge(BadPayload):
    """The decompressed body exceeds the limit: answer `413`."""


@dataclass
class OtlpResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Data points or log records that produced no event, by metric or event name.
    ignored: Counter[str] = field(default_factory=Counter)
    #: Token-usage points whose token type is not mapped, by type (as sent: unbounded, bound before labelling).
    unknown_types: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Measure:
    """What one metric measures: `selector` names the point attribute whose value picks the event field."""

    selector: str | None
    fields: Mapping[str | None, str]
    #: The source reports this metric's spend itself (in another metric): never price these counts.
    costed_by_source: bool = False

    def event_fields(self, field_name: str, amount: float) -> dict[str, Any]:
        if field_name == "cost_usd":
            return {"cost_usd": amount}
        counts: dict[str, Any] = {field_name: round(amount)}
        if self.costed_by_source:
            counts["cost_usd"] = 0.0
        return counts


#: Each source's token types and the event field they count in; nothing else is read as tokens.
TOKEN_TYPES: dict[str, Mapping[str | None, str]] = {
    # Claude Code's `type` attribute (its monitoring docs). No TTL is reported: cache creation counts as 5-minute writes.
    "claude_code.token.usage": {
        "input": "input_tokens",
        "output": "output_tokens",
        "cacheRead": "cache_read_tokens",
        "cacheCreation": "cache_write_tokens",
    },
    # OTel GenAI `gen_ai.token.type`: `input`, `output`; `completion` was output's name before semconv 1.28.
    "gen_ai.client.token.usage": {"input": "input_tokens", "output": "output_tokens", "completion": "output_tokens"},
}

_METRICS: dict[str, _Measure] = {
    "claude_code.token.usage": _Measure("type", TOKEN_TYPES["claude_code.token.usage"], costed_by_source=True),
    "claude_code.cost.usage": _Measure(None, {None: "cost_usd"}),
    "gen_ai.client.token.usage": _Measure("gen_ai.token.type", TOKEN_TYPES["gen_ai.client.token.usage"]),
}
_LEGACY_GENAI = "gen_ai.client.token.usage"
_MODALITY = "gen_ai.token.modality"

#: The current GenAI semantic conventions' token counters. Input and output are totals; cache read and write are
#: subsets of input, reasoning a subset of output ("do not add those subset counters again").
_INFERENCE: dict[str, _Measure] = {
    f"gen_ai.client.inference.usage.{suffix}": _Measure(None, {None: kind})
    for suffix, kind in (
        ("input_tokens", "input"),
        ("output_tokens", "output"),
        ("cache_read.input_tokens", "cache_read"),
        ("cache_write.input_tokens", "cache_write"),
        ("reasoning.output_tokens", "reasoning"),
    )
}

#: Claude Code's output counters: context metrics per team and tool (events of type `context`, no spend).
_CONTEXT: dict[str, _Measure] = {
    "claude_code.lines_of_code.count": _Measure("type", {"added": "lines_added", "removed": "lines_removed"}),
    "claude_code.commit.count": _Measure(None, {None: "commits"}),
    "claude_code.pull_request.count": _Measure(None, {None: "pull_requests"}),
}


async def from_otlp_metrics(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None = None,
    state: CumulativeState,
    now: float,
    team_keys: Sequence[str] = DEFAULT_TEAM_KEYS,
    max_bytes: int = MAX_DECODED_BYTES,
) -> OtlpResult:
    """Token events from one `/v1/metrics` request body. Raises `BadPayload` (or a subclass) for a bad body.

    `now` (epoch seconds) bounds cumulative start times: a start in the future is ignored, never stored.
    """
    request = _decode(body, ExportMetricsServiceRequest(), content_type, content_encoding, max_bytes)
    result = OtlpResult()
    # Resources that report the current GenAI counters: their older `gen_ai.client.token.usage` is not read.
    current = {_series_key("", kvs, []) for kvs, _r, metric in _metrics(request) if metric.name in _INFERENCE}
    usage: dict[tuple, _Usage] = {}
    for resource_kvs, resource, metric in _metrics(request):
        shape = metric.WhichOneof("data")
        points = getattr(metric, shape).data_points if shape else []
        measure = _METRICS.get(metric.name) or _CONTEXT.get(metric.name) or _INFERENCE.get(metric.name)
        if measure is None:
            result.ignored[metric.name] += len(points)
            continue
        if metric.name == _LEGACY_GENAI and _series_key("", resource_kvs, []) in current:
            result.ignored[f"{metric.name} (superseded by gen_ai.client.inference.usage.*)"] += len(points)
            continue
        if shape not in ("sum", "histogram", "exponential_histogram"):
            result.ignored[f"{metric.name} ({shape})"] += len(points)
            continue
        temporality = getattr(metric, shape).aggregation_temporality
        for point in points:
            # A staleness marker carries no value; read as 0 it would look like a counter reset.
            if point.flags & DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK:
                continue
            attrs = _attrs(point.attributes)
            field_name = measure.fields.get(attrs.get(measure.selector) if measure.selector else None)
            if field_name is None:
                result.ignored[f"{metric.name} ({measure.selector}={attrs.get(measure.selector)})"] += 1
                if metric.name in TOKEN_TYPES:
                    result.unknown_types[str(attrs.get(measure.selector))] += 1
                continue
            if shape != "sum" and not point.HasField("sum"):
                result.ignored[f"{metric.name} (histogram without sum)"] += 1
                continue
            series = _series_key(metric.name, resource_kvs, point.attributes)
            value = _point_value(point) if shape == "sum" else point.sum
            if not (math.isfinite(value) and value >= 0):
                result.ignored[f"{metric.name} (value not a finite number >= 0)"] += 1
                continue
            if temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA:
                amount = value
            elif temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE:
                start, time = point.start_time_unix_nano, point.time_unix_nano
                if start > time or start > now * 1e9 + MAX_FUTURE_START_NANOS:
                    result.ignored[f"{metric.name} (start time in the future or after the point's time)"] += 1
                    continue
                amount, ignored = await state.delta(series, start, time, value)
                if ignored is not None:
                    result.ignored[f"{metric.name} ({ignored})"] += 1
                    continue
            else:
                result.ignored[f"{metric.name} (temporality unspecified)"] += 1
                continue
            if amount == 0:
                continue
            if metric.name in _INFERENCE:
                # Combined per call site and collection below: cache counts are subsets of the input count.
                rest = {k: v for k, v in attrs.items() if k != _MODALITY}
                group = (_series_key("", resource_kvs, []), tuple(sorted(rest.items(), key=str)), point.time_unix_nano)
                usage.setdefault(group, _Usage(point.time_unix_nano, rest, resource)).add(field_name, amount)
                continue
            if metric.name in _CONTEXT:
                result.events.append(_context_event(
                    stable_id("otlp", series, point.start_time_unix_nano, point.time_unix_nano),
                    point.time_unix_nano / 1e9, attrs, resource, team_keys, field_name, amount,
                ))
                continue
            result.events.append(
                _token_event(
                    stable_id("otlp", series, point.start_time_unix_nano, point.time_unix_nano),
                    point.time_unix_nano / 1e9,
                    attrs,
                    resource,
                    team_keys,
                    measure.event_fields(field_name, amount),
                )
            )
    for group, counts in usage.items():
        if (fields := counts.event_fields()) is not None:
            result.events.append(_token_event(
                stable_id("otlp-genai", *group), counts.time / 1e9, counts.attrs, counts.resource, team_keys, fields,
            ))
    return result


@dataclass
class _Usage:
    """The GenAI inference counters of one call site (resource and attributes but modality) at one collection."""

    time: int
    attrs: Mapping[str, Any]
    resource: Mapping[str, Any]
    amounts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, amount: float) -> None:
        self.amounts[kind] += amount

    def event_fields(self) -> dict[str, Any] | None:
        """Token counts: input without its cache subsets (each counted as its own type), output as reported
        (reasoning is a subset of it, billed as output, and has no type of its own). None when all are zero."""
        read, write = round(self.amounts["cache_read"]), round(self.amounts["cache_write"])
        fields = {
            "input_tokens": max(0, round(self.amounts["input"]) - read - write),
            "output_tokens": round(self.amounts["output"]),
            "cache_read_tokens": read,
            "cache_write_tokens": write,
        }
        return fields if any(fields.values()) else None


def from_otlp_logs(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None = None,
    team_keys: Sequence[str] = DEFAULT_TEAM_KEYS,
    token_logs: bool = True,
    max_bytes: int = MAX_DECODED_BYTES,
) -> OtlpResult:
    """Token events from one `/v1/logs` request body. Raises `BadPayload` (or a subclass) for a bad body.

    `token_logs=False` turns API-call records into ignored ones, for a tool that also exports token metrics.
    """
    request = _decode(body, ExportLogsServiceRequest(), content_type, content_encoding, max_bytes)
    result = OtlpResult()
    for resource_logs in request.resource_logs:
        resource = _attrs(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = _attrs(record.attributes)
                name = _event_name(record, attrs)
                reader = _LOG_EVENTS.get(name) if token_logs else None
                measures = reader.read(attrs) if reader else None
                if reader is None or measures is None:
                    result.ignored[name] += 1
                    continue
                result.events.append(
                    _token_event(
                        _log_id(name, reader.id_keys, record, attrs, resource),
                        _log_time(record, attrs),
                        attrs,
                        resource,
                        team_keys,
                        measures,
                    )
                )
    return result


@dataclass(frozen=True)
class _LogEvent:
    #: The record's token counts (and cost), or None when this record of the event carries none.
    read: Callable[[Mapping[str, Any]], dict[str, Any] | None]
    #: Attributes that identify one API call across retries.
    id_keys: tuple[str, str]


def _claude_api_request(attrs: Mapping[str, Any]) -> dict[str, Any]:
    measures = {
        "input_tokens": _number(attrs.get("input_tokens", 0)),
        "output_tokens": _number(attrs.get("output_tokens", 0)),
        "cache_read_tokens": _number(attrs.get("cache_read_tokens", 0)),
        "cache_write_tokens": _number(attrs.get("cache_creation_tokens", 0)),
    }
    if "cost_usd" in attrs:
        measures["cost_usd"] = _number(attrs["cost_usd"])
    return measures


def _codex_response_completed(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    # Codex logs every SSE event under one name; only a completed response carries usage (and a failed completion
    # is logged with the same kind but an error message instead of counts).
    if attrs.get("event.kind") != "response.completed" or "input_token_count" not in attrs:
        return None
    input_tokens = _number(attrs["input_token_count"])
    cached = _number(attrs.get("cached_token_count", 0))
    if isinstance(input_tokens, int) and isinstance(cached, int):
        input_tokens = max(0, input_tokens - cached)
    return {
        "input_tokens": input_tokens,
        "output_tokens": _number(attrs.get("output_token_count", 0)),
        "cache_read_tokens": cached,
    }


_LOG_EVENTS: dict[str, _LogEvent] = {
    "claude_code.api_request": _LogEvent(_claude_api_request, ("session.id", "event.sequence")),
    "codex.sse_event": _LogEvent(_codex_response_completed, ("conversation.id", "event.timestamp")),
}


def _decode(
    body: bytes, message: Message, content_type: str | None, content_encoding: str | None, max_bytes: int
) -> Any:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, max_bytes)
    elif encoding != "identity":
        raise BadPayload(f"unsupported Content-Encoding {content_encoding!r}: OTLP/HTTP uses gzip or none")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"OTLP body of {len(body)} bytes exceeds {max_bytes}")
    media_type = (content_type or "").partition(";")[0].strip().lower()
    try:
        if media_type in _PROTOBUF_TYPES:
            message.ParseFromString(body)
        elif media_type in _JSON_TYPES:
            # JSON senders may be newer than our proto definitions: skip fields we do not know.
            json_format.Parse(body, message, ignore_unknown_fields=True)
        else:
            raise UnsupportedContentType(
                f"unsupported Content-Type {content_type!r}: OTLP/HTTP uses application/x-protobuf or application/json"
            )
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise BadPayload(f"malformed OTLP {media_type} body: {exc}") from None
    return message


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadPayload(f"malformed gzip body: {exc}") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"OTLP body inflates beyond {max_bytes} bytes")
    if not inflater.eof:
        raise BadPayload("truncated gzip body")
    return out


def _metrics(
    request: ExportMetricsServiceRequest,
) -> Iterator[tuple[Sequence[KeyValue], dict[str, Any], Metric]]:
    """Every metric of a request, with its resource's attributes (as sent, and as a dict)."""
    for resource_metrics in request.resource_metrics:
        resource_kvs = resource_metrics.resource.attributes
        resource = _attrs(resource_kvs)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                yield resource_kvs, resource, metric


def _attrs(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """Scalar attributes as Python values; arrays, maps and bytes (which no mapping here reads) as None."""
    out: dict[str, Any] = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind in _SCALARS else None
    return out


def _first(keys: Iterable[str], *scopes: Mapping[str, Any]) -> str | None:
    """The first present value of `keys`, searching each scope (point or record, then resource) in turn."""
    for scope in scopes:
        for key in keys:
            value = scope.get(key)
            if value not in (None, ""):
                return str(value)
    return None


def _number(value: Any) -> Any:
    """A count or amount that may arrive as a string (Claude Code and Codex send some numbers as text).

    Integral values become int (token counts must be), others float. Anything unreadable is passed on unchanged:
    the validator then rejects the event with its reason onto the dead-letter topic, where it is seen.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _token_event(
    event_id: str,
    ts: float,
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    team_keys: Sequence[str],
    measures: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "type": "token",
        "id": event_id,
        "ts": ts,
        **_origin(attrs, resource, team_keys),
        "model": _first(_MODEL_KEYS, attrs, resource) or UNKNOWN,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        **measures,
    }


def _origin(attrs: Mapping[str, Any], resource: Mapping[str, Any], team_keys: Sequence[str]) -> dict[str, Any]:
    """Team, tool and (when the source names one) developer of a data point or log record."""
    origin: dict[str, Any] = {
        "team": _first(team_keys, attrs, resource) or UNASSIGNED,
        "tool": _first(("service.name",), resource) or UNKNOWN,
    }
    developer = _first(_DEVELOPER_KEYS, attrs, resource)
    if developer is not None:
        origin["developer"] = developer
    return origin


def _context_event(
    event_id: str, ts: float, attrs: Mapping[str, Any], resource: Mapping[str, Any], team_keys: Sequence[str],
    metric: str, amount: float,
) -> dict[str, Any]:
    return {
        "type": "context",
        "id": event_id,
        "ts": ts,
        **_origin(attrs, resource, team_keys),
        "metric": metric,
        "value": round(amount),
    }


def _series_key(name: str, resource_kvs: Iterable[KeyValue], point_kvs: Iterable[KeyValue]) -> str:
    """Series identity as a fixed-size key: protobuf and JSON bodies of the same series yield the same key."""

    def canonical(kvs: Iterable[KeyValue]) -> list[tuple[str, bytes]]:
        return sorted((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in kvs)

    return stable_id("series", name, canonical(resource_kvs), canonical(point_kvs))


def _point_value(point: Any) -> float:
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


def _event_name(record: LogRecord, attrs: Mapping[str, Any]) -> str:
    """The record's event name. Tools put it in different places: Claude Code in the body (its `event.name`
    attribute lacks the prefix), Codex in the `event.name` attribute, newer SDKs in the `event_name` field."""
    candidates = (record.event_name, attrs.get("event.name"), record.body.string_value)
    known = next((c for c in candidates if c in _LOG_EVENTS), None)
    return known or str(record.body.string_value or attrs.get("event.name") or record.event_name or "(unnamed)")


def _log_id(
    name: str, id_keys: Sequence[str], record: LogRecord, attrs: Mapping[str, Any], resource: Mapping[str, Any]
) -> str:
    tool = resource.get("service.name")
    if all(attrs.get(key) not in (None, "") for key in id_keys):
        return stable_id("otlp-log", tool, name, *(attrs[key] for key in id_keys))
    # Older versions may lack the identifying attributes; a retry resends the record byte for byte.
    return stable_id("otlp-log", tool, name, record.SerializeToString(deterministic=True).hex())


def _log_time(record: LogRecord, attrs: Mapping[str, Any]) -> float:
    """Event time: the record's own time, else the tool's `event.timestamp` (Codex leaves the record time 0),
    else when the SDK observed it."""
    if record.time_unix_nano:
        return record.time_unix_nano / 1e9
    if attrs.get("event.timestamp"):
        return parse_time(attrs["event.timestamp"], "event.timestamp")
    return record.observed_time_unix_nano / 1e9
