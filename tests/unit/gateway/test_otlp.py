"""OTLP adapter: metric bodies made by the real OpenTelemetry SDK, logs from real Claude Code and Codex exports."""

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from aiyield.core.events import InvalidEvent, validate
from aiyield.gateway.common import BadPayload, stable_id
from aiyield.gateway.cumulative import MemoryCumulativeState
from aiyield.gateway.otlp import (
    OtlpResult,
    PayloadTooLarge,
    UnsupportedContentType,
    from_otlp_logs,
    from_otlp_metrics,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "otlp"
CLAUDE_LOGS = (FIXTURES / "beagle_claude-code-2.1.193_logs.otlp.json").read_bytes()
CODEX_LOGS = (FIXTURES / "beagle_codex-0.144_logs.otlp.json").read_bytes()
PROTOBUF, JSON = "application/x-protobuf", "application/json"
NOW = 2_000_000_000.0
CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA

CLAUDE_RESOURCE = {"service.name": "claude-code", "service.version": "2.1.193", "team.name": "payments"}
#: Point attributes as Claude Code sets them (its docs' standard attributes plus the metric's own).
CLAUDE_POINT = {
    "session.id": "d82062e5-a22f-4f85-9914-a47cf3073a72",  # the session of the real Claude Code log export
    "user.account_uuid": "0b7e1b7a-0c07-4a4b-9c38-9c0f8b2b9f11",
    "organization.id": "8d4f7c33-5bd6-4f8e-a0d4-3b5f2e3b8c10",
    "terminal.type": "vscode",
    "model": "claude-sonnet-4-5",
}


class ForbiddenState:
    """Delta points must never consult the cumulative state."""

    async def delta(self, series_key: str, start: int, time: int, value: float) -> float:
        raise AssertionError("delta temporality used the cumulative state")


class Sdk:
    """A MeterProvider with an in-memory reader: `body()` is what its OTLP/HTTP exporter would send."""

    def __init__(self, temporality: AggregationTemporality, resource: dict[str, Any] = CLAUDE_RESOURCE) -> None:
        self.reader = InMemoryMetricReader(preferred_temporality={Counter: temporality, Histogram: temporality})
        provider = MeterProvider(resource=Resource.create(resource), metric_readers=[self.reader])
        self.meter = provider.get_meter("com.anthropic.claude_code", "2.1.193")

    def request(self):
        return encode_metrics(self.reader.get_metrics_data())

    def body(self, content_type: str = PROTOBUF) -> bytes:
        request = self.request()
        return request.SerializeToString() if content_type == PROTOBUF else json_format.MessageToJson(request).encode()


def claude_meters(sdk: Sdk):
    tokens = sdk.meter.create_counter("claude_code.token.usage", unit="tokens")
    cost = sdk.meter.create_counter("claude_code.cost.usage", unit="USD")
    return tokens, cost


async def metrics(body: bytes, state=None, content_type: str = PROTOBUF, **kw: Any) -> OtlpResult:
    result = await from_otlp_metrics(
        body, content_type=content_type, state=state or MemoryCumulativeState(), now=NOW, **kw
    )
    for event in result.events:
        validate(event, NOW)
    return result


def logs(body: bytes, content_type: str = JSON, **kw: Any) -> OtlpResult:
    result = from_otlp_logs(body, content_type=content_type, **kw)
    for event in result.events:
        validate(event, NOW)
    return result


def without_id_ts(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in ("id", "ts")} for e in events]


def claude(**fields: Any) -> dict[str, Any]:
    """A token event of the Claude Code series above."""
    base = {
        "type": "token",
        "team": "payments",
        "tool": "claude-code",
        "model": "claude-sonnet-4-5",
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "developer": CLAUDE_POINT["user.account_uuid"],
    }
    return base | fields


# -- metrics ---------------------------------------------------------------------------------------------------


async def test_cumulative_claude_code_metrics_count_growth_and_spend_once() -> None:
    sdk, state = Sdk(CUMULATIVE), MemoryCumulativeState()
    tokens, cost = claude_meters(sdk)
    tokens.add(1200, CLAUDE_POINT | {"type": "input"})
    tokens.add(300, CLAUDE_POINT | {"type": "cacheRead"})
    cost.add(0.5, CLAUDE_POINT)
    first = await metrics(sdk.body(), state)
    assert without_id_ts(first.events) == [
        # Claude Code prices its own calls: the counts are never priced again, the spend comes from cost.usage.
        claude(input_tokens=1200, cost_usd=0.0),
        claude(cache_read_tokens=300, cost_usd=0.0),
        claude(cost_usd=0.5),
    ]
    assert first.ignored == {}

    tokens.add(50, CLAUDE_POINT | {"type": "input"})
    tokens.add(7, CLAUDE_POINT | {"type": "output"})
    cost.add(0.25, CLAUDE_POINT)
    second = await metrics(sdk.body(), state)
    # The exporter re-sends 1250 input tokens: only the 50 new ones count; the unchanged cacheRead series is silent.
    assert without_id_ts(second.events) == [
        claude(input_tokens=50, cost_usd=0.0),
        claude(output_tokens=7, cost_usd=0.0),
        claude(cost_usd=0.25),
    ]
    assert not {e["id"] for e in first.events} & {e["id"] for e in second.events}


async def test_cumulative_retry_repeats_the_same_events_and_a_late_older_body_adds_nothing() -> None:
    sdk, state = Sdk(CUMULATIVE), MemoryCumulativeState()
    tokens, _ = claude_meters(sdk)
    tokens.add(100, CLAUDE_POINT | {"type": "input"})
    older = sdk.body()
    tokens.add(40, CLAUDE_POINT | {"type": "input"})
    newer = sdk.body()
    assert [e["input_tokens"] for e in (await metrics(older, state)).events] == [100]
    counted = await metrics(newer, state)
    assert [e["input_tokens"] for e in counted.events] == [40]
    # Retried after a failed answer: the same events with the same ids, which the pipeline deduplicates.
    assert (await metrics(newer, state)).events == counted.events
    assert (await metrics(older, state)).events == []


async def test_a_restarted_process_starts_its_series_over() -> None:
    state = MemoryCumulativeState()
    for run, used in enumerate((100, 30)):
        sdk = Sdk(CUMULATIVE)  # a new process: same resource and attributes, new start time
        tokens, _ = claude_meters(sdk)
        tokens.add(used, CLAUDE_POINT | {"type": "output"})
        events = (await metrics(sdk.body(), state)).events
        assert [e["output_tokens"] for e in events] == [used], f"run {run}"


async def test_delta_points_count_as_they_are() -> None:
    sdk = Sdk(DELTA)
    tokens, cost = claude_meters(sdk)
    tokens.add(1200, CLAUDE_POINT | {"type": "cacheCreation"})
    cost.add(0.5, CLAUDE_POINT)
    first = await metrics(sdk.body(), ForbiddenState())
    tokens.add(50, CLAUDE_POINT | {"type": "cacheCreation"})
    second = await metrics(sdk.body(), ForbiddenState())
    assert without_id_ts(first.events) == [claude(cache_write_tokens=1200, cost_usd=0.0), claude(cost_usd=0.5)]
    assert without_id_ts(second.events) == [claude(cache_write_tokens=50, cost_usd=0.0)]


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA])
async def test_json_and_protobuf_bodies_give_the_same_events(temporality: AggregationTemporality) -> None:
    sdk = Sdk(temporality)
    tokens, cost = claude_meters(sdk)
    tokens.add(1200, CLAUDE_POINT | {"type": "input"})
    cost.add(0.5, CLAUDE_POINT)
    request = sdk.request()
    as_json = json_format.MessageToJson(request).encode()
    assert b'"asInt": "1200"' in as_json  # 64-bit integers arrive as strings in OTLP JSON
    from_protobuf = await metrics(request.SerializeToString())
    from_json = await metrics(as_json, content_type="application/json; charset=utf-8")
    assert from_json.events == from_protobuf.events  # same series keys, so the same ids either way


async def test_gzip_body() -> None:
    sdk = Sdk(DELTA)
    tokens, _ = claude_meters(sdk)
    tokens.add(1200, CLAUDE_POINT | {"type": "input"})
    body = sdk.body()
    plain = await metrics(body)
    assert (await metrics(gzip.compress(body), content_encoding="gzip")).events == plain.events


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA])
async def test_genai_token_histogram_sums(temporality: AggregationTemporality) -> None:
    sdk, state = Sdk(temporality, {"service.name": "checkout-agent"}), MemoryCumulativeState()
    usage = sdk.meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    call = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai"}
    usage.record(120, call | {"gen_ai.token.type": "input"})
    usage.record(80, call | {"gen_ai.token.type": "input"})
    usage.record(30, call | {"gen_ai.token.type": "output"})
    first = await metrics(sdk.body(), state)
    usage.record(10, call | {"gen_ai.token.type": "input"})
    second = await metrics(sdk.body(), state)
    genai = {"type": "token", "team": "unassigned", "tool": "checkout-agent", "model": "gpt-4o"}
    zero = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0}
    # No cost_usd: the worker prices these from its table.
    assert without_id_ts(first.events) == [genai | zero | {"input_tokens": 200}, genai | zero | {"output_tokens": 30}]
    assert without_id_ts(second.events) == [genai | zero | {"input_tokens": 10}]


@pytest.mark.parametrize(
    "resource, point, team_keys, team",
    [
        ({"team.name": "payments"}, {"team": "checkout"}, None, "checkout"),  # the point wins
        ({"team.name": "payments", "team.id": "t-7"}, {}, None, "t-7"),  # key order, then scope order
        ({}, {}, None, "unassigned"),
        ({"squad": "growth", "team": "payments"}, {}, ("squad",), "growth"),  # configured keys
    ],
)
async def test_team_resolution(resource: dict, point: dict, team_keys: tuple | None, team: str) -> None:
    sdk = Sdk(DELTA, {"service.name": "claude-code"} | resource)
    tokens, _ = claude_meters(sdk)
    tokens.add(5, {"type": "input", "model": "claude-haiku-4-5"} | point)
    kw = {"team_keys": team_keys} if team_keys else {}
    (event,) = (await metrics(sdk.body(), **kw)).events
    assert event["team"] == team
    assert "developer" not in event


async def test_developer_falls_back_to_user_email_and_model_to_unknown() -> None:
    sdk = Sdk(DELTA, {"team": "payments"})
    cost = sdk.meter.create_counter("claude_code.cost.usage")
    cost.add(0.01, {"user.email": "dev@example.com"})
    (event,) = (await metrics(sdk.body())).events
    assert (event["developer"], event["model"]) == ("dev@example.com", "unknown")
    assert event["tool"] == "unknown_service:python"  # what the SDK names a service that did not name itself


async def test_other_metrics_and_values_are_ignored_and_counted() -> None:
    sdk = Sdk(DELTA)
    tokens, _ = claude_meters(sdk)
    tokens.add(5, CLAUDE_POINT | {"type": "reasoning"})
    sessions = sdk.meter.create_counter("claude_code.session.count")
    sessions.add(1, CLAUDE_POINT)
    sessions.add(1, CLAUDE_POINT | {"session.id": "another"})
    sdk.meter.create_counter("claude_code.lines_of_code.count").add(12, CLAUDE_POINT | {"type": "moved"})
    sdk.meter.create_gauge("gen_ai.client.token.usage").set(3, {"gen_ai.token.type": "input"})
    result = await metrics(sdk.body())
    assert result.events == []
    assert result.ignored == {
        "claude_code.token.usage (type=reasoning)": 1,
        "claude_code.session.count": 2,
        "claude_code.lines_of_code.count (type=moved)": 1,
        "gen_ai.client.token.usage (gauge)": 1,
    }


async def test_unchanged_cumulative_totals_produce_no_events() -> None:
    sdk, state = Sdk(CUMULATIVE), MemoryCumulativeState()
    tokens, _ = claude_meters(sdk)
    tokens.add(5, CLAUDE_POINT | {"type": "input"})
    await metrics(sdk.body(), state)
    assert (await metrics(sdk.body(), state)).events == []


# -- logs ------------------------------------------------------------------------------------------------------


CLAUDE_SESSION = "d82062e5-a22f-4f85-9914-a47cf3073a72"
CODEX_CONVERSATION, CODEX_PROMPT_AT = "019f59f3-5434-7820-92cb-c5776b8665da", "2026-07-13T05:29:06.971Z"
CLAUDE_API_REQUESTS = [
    {
        "type": "token",
        "id": stable_id("otlp-log", "claude-code", "claude_code.api_request", CLAUDE_SESSION, 15),
        "ts": 1783909645.621,
        "team": "unassigned",
        "tool": "claude-code",
        "model": "claude-fable-5",
        "input_tokens": 4058,
        "output_tokens": 181,
        "cache_read_tokens": 14155,
        "cache_write_tokens": 3707,
        "cost_usd": 0.137925,
    },
    {
        "type": "token",
        "id": stable_id("otlp-log", "claude-code", "claude_code.api_request", CLAUDE_SESSION, 17),
        "ts": 1783909650.513,
        "team": "unassigned",
        "tool": "claude-code",
        "model": "claude-opus-4-8",
        "input_tokens": 2,
        "output_tokens": 38,
        "cache_read_tokens": 22087,
        "cache_write_tokens": 0,
        "cost_usd": 0.0120035,
    },
]
CLAUDE_IGNORED = {
    "claude_code.hook_execution_start": 4,
    "claude_code.plugin_loaded": 2,
    "claude_code.hook_registered": 6,
    "claude_code.mcp_server_connection": 6,
    "claude_code.hook_execution_complete": 4,
    "claude_code.user_prompt": 1,
    "claude_code.tool_decision": 1,
    "claude_code.tool_result": 1,
    "claude_code.api_refusal": 1,
    "claude_code.assistant_response": 1,
}


def test_claude_code_api_requests() -> None:
    result = logs(CLAUDE_LOGS)
    assert result.events == CLAUDE_API_REQUESTS
    assert result.ignored == CLAUDE_IGNORED


def test_claude_code_logs_as_protobuf_and_gzip() -> None:
    request = json_format.Parse(CLAUDE_LOGS, ExportLogsServiceRequest())
    assert logs(request.SerializeToString(), PROTOBUF).events == CLAUDE_API_REQUESTS
    assert logs(gzip.compress(CLAUDE_LOGS), content_encoding="gzip").events == CLAUDE_API_REQUESTS


def test_token_logs_off_counts_api_requests_as_ignored() -> None:
    result = logs(CLAUDE_LOGS, token_logs=False)
    assert result.events == []
    assert result.ignored == CLAUDE_IGNORED | {"claude_code.api_request": 2}


def edited(body: bytes, edit) -> bytes:
    request = json.loads(body)
    edit(request["resourceLogs"][0]["scopeLogs"][0]["logRecords"])
    return json.dumps(request).encode()


def test_a_resource_without_service_name_is_an_unknown_tool() -> None:
    request = json.loads(CLAUDE_LOGS)
    request["resourceLogs"][0]["resource"]["attributes"] = []
    events = logs(json.dumps(request).encode()).events
    assert [e["tool"] for e in events] == ["unknown", "unknown"]


def test_numbers_sent_as_strings() -> None:
    def stringify(records: list[dict]) -> None:
        for record in records:
            for attribute in record["attributes"]:
                value = attribute["value"]
                if "intValue" in value or "doubleValue" in value:
                    attribute["value"] = {"stringValue": str(value.popitem()[1])}

    assert logs(edited(CLAUDE_LOGS, stringify)).events == CLAUDE_API_REQUESTS


def test_an_unreadable_count_reaches_the_validator_which_rejects_it() -> None:
    def garble(records: list[dict]) -> None:
        for record in records:
            for attribute in record["attributes"]:
                if attribute["key"] == "output_tokens":
                    attribute["value"] = {"stringValue": "lots"}

    result = from_otlp_logs(edited(CLAUDE_LOGS, garble), content_type=JSON)
    assert result.events[0]["output_tokens"] == "lots"
    with pytest.raises(InvalidEvent, match="output_tokens"):
        validate(result.events[0], NOW)


def test_codex_export_holds_no_token_usage() -> None:
    result = logs(CODEX_LOGS)
    assert result.events == []
    assert result.ignored == {"codex.user_prompt": 1, "codex.tool_result": 1}


def codex_completed(records: list[dict]) -> None:
    """The real Codex envelope, turned into the `codex.sse_event` that Codex's `sse_event_completed` logs."""
    prompt = records[0]
    kept = [a for a in prompt["attributes"] if a["key"] not in ("prompt", "prompt_length", "event.name")]
    prompt["attributes"] = [
        {"key": "event.name", "value": {"stringValue": "codex.sse_event"}},
        {"key": "event.kind", "value": {"stringValue": "response.completed"}},
        {"key": "input_token_count", "value": {"stringValue": "23"}},  # Display-formatted: strings
        {"key": "output_token_count", "value": {"stringValue": "7"}},
        {"key": "cached_token_count", "value": {"intValue": "5"}},
        {"key": "reasoning_token_count", "value": {"intValue": "3"}},
        {"key": "tool_token_count", "value": {"stringValue": "30"}},
        *kept,
    ]
    records[1] = copy.deepcopy(prompt)  # a second completion, still streaming: no usage yet
    records[1]["attributes"][1]["value"]["stringValue"] = "response.output_text.delta"


def test_codex_completed_response() -> None:
    result = logs(edited(CODEX_LOGS, codex_completed))
    assert result.events == [
        {
            "type": "token",
            "id": stable_id("otlp-log", "codex_exec", "codex.sse_event", CODEX_CONVERSATION, CODEX_PROMPT_AT),
            "ts": 1783920546.971,  # event.timestamp: Codex leaves the record's own time at 0
            "team": "unassigned",
            "tool": "codex_exec",
            "model": "gpt-5.6-sol",
            "input_tokens": 18,  # OpenAI's input count includes the 5 cached tokens
            "output_tokens": 7,
            "cache_read_tokens": 5,
            "cache_write_tokens": 0,
        }
    ]
    assert result.ignored == {"codex.sse_event": 1}


def test_log_records_without_their_identifying_attributes_still_get_stable_ids() -> None:
    def anonymise(records: list[dict]) -> None:
        for record in records:
            record["attributes"] = [a for a in record["attributes"] if a["key"] != "event.sequence"]

    body = edited(CLAUDE_LOGS, anonymise)
    first, again = logs(body).events, logs(body).events
    assert [e["id"] for e in first] == [e["id"] for e in again]
    assert len({e["id"] for e in first}) == 2


# -- malformed bodies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type, content_encoding, error, message",
    [
        (b"\xff\xff\xff", PROTOBUF, None, BadPayload, "malformed OTLP application/x-protobuf"),
        (CLAUDE_LOGS, PROTOBUF, None, BadPayload, "malformed"),  # JSON sent as protobuf
        (b"{", JSON, None, BadPayload, "malformed OTLP application/json"),
        (b'{"resourceLogs": 5}', JSON, None, BadPayload, "malformed"),
        (b"\xff\xfe", JSON, None, BadPayload, "malformed"),
        (CLAUDE_LOGS, "text/plain", None, UnsupportedContentType, "text/plain"),
        (CLAUDE_LOGS, None, None, UnsupportedContentType, "None"),
        (CLAUDE_LOGS, JSON, "br", BadPayload, "Content-Encoding 'br'"),
        (CLAUDE_LOGS, JSON, "gzip", BadPayload, "malformed gzip"),  # says gzip, is not
        (gzip.compress(CLAUDE_LOGS)[:-20], JSON, "gzip", BadPayload, "truncated gzip"),
    ],
)
def test_malformed_bodies(body: bytes, content_type, content_encoding, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        from_otlp_logs(body, content_type=content_type, content_encoding=content_encoding)


async def test_gzip_bomb_is_too_large() -> None:
    bomb = gzip.compress(b"\0" * (2 * 1024 * 1024))
    assert len(bomb) < 4096
    with pytest.raises(PayloadTooLarge):
        await from_otlp_metrics(
            bomb, content_type=PROTOBUF, content_encoding="gzip", state=MemoryCumulativeState(), now=NOW, max_bytes=1024 * 1024
        )
    assert issubclass(PayloadTooLarge, BadPayload) and issubclass(BadPayload, ValueError)


# -- GenAI inference counters and Claude Code context metrics ---------------------------------------------------

GENAI_RESOURCE = {"service.name": "support-bot", "team": "support"}
GENAI_POINT = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat"}


def inference_counters(sdk: Sdk) -> dict[str, Any]:
    names = ("input_tokens", "output_tokens", "cache_read.input_tokens", "cache_write.input_tokens",
             "reasoning.output_tokens")
    return {n: sdk.meter.create_counter(f"gen_ai.client.inference.usage.{n}", unit="{token}") for n in names}


def genai(**fields: Any) -> dict[str, Any]:
    return {"type": "token", "team": "support", "tool": "support-bot", "model": "gpt-4o", "input_tokens": 0,
            "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0} | fields


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
async def test_inference_counters_become_one_event_with_cache_taken_out_of_input(temporality) -> None:
    sdk, state = Sdk(temporality, GENAI_RESOURCE), MemoryCumulativeState()
    c = inference_counters(sdk)
    c["input_tokens"].add(900, GENAI_POINT | {"gen_ai.token.modality": "text"})
    c["input_tokens"].add(100, GENAI_POINT | {"gen_ai.token.modality": "image"})
    c["cache_read.input_tokens"].add(600, GENAI_POINT)
    c["cache_write.input_tokens"].add(50, GENAI_POINT)
    c["output_tokens"].add(400, GENAI_POINT | {"gen_ai.token.modality": "text"})
    c["reasoning.output_tokens"].add(250, GENAI_POINT)
    first = await metrics(sdk.body(), state)
    assert without_id_ts(first.events) == [genai(input_tokens=350, output_tokens=400, cache_read_tokens=600,
                                                 cache_write_tokens=50)]
    c["input_tokens"].add(10, GENAI_POINT | {"gen_ai.token.modality": "text"})
    c["output_tokens"].add(5, GENAI_POINT | {"gen_ai.token.modality": "text"})
    second = await metrics(sdk.body(), state)
    assert without_id_ts(second.events) == [genai(input_tokens=10, output_tokens=5)]
    assert second.events[0]["id"] != first.events[0]["id"]


async def test_a_tool_sending_both_conventions_is_counted_once_by_the_counters() -> None:
    sdk = Sdk(DELTA, GENAI_RESOURCE)
    c = inference_counters(sdk)
    legacy = sdk.meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    c["input_tokens"].add(1000, GENAI_POINT)
    c["output_tokens"].add(200, GENAI_POINT)
    legacy.record(1000, GENAI_POINT | {"gen_ai.token.type": "input"})
    legacy.record(200, GENAI_POINT | {"gen_ai.token.type": "output"})
    result = await metrics(sdk.body())
    assert without_id_ts(result.events) == [genai(input_tokens=1000, output_tokens=200)]
    assert result.ignored == {"gen_ai.client.token.usage (superseded by gen_ai.client.inference.usage.*)": 2}


async def test_the_older_histogram_alone_still_counts() -> None:
    sdk = Sdk(DELTA, GENAI_RESOURCE)
    sdk.meter.create_histogram("gen_ai.client.token.usage").record(70, GENAI_POINT | {"gen_ai.token.type": "input"})
    result = await metrics(sdk.body())
    assert without_id_ts(result.events) == [genai(input_tokens=70)]


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
async def test_claude_code_lines_commits_and_pull_requests_are_context_events(temporality) -> None:
    sdk, state = Sdk(temporality), MemoryCumulativeState()
    lines = sdk.meter.create_counter("claude_code.lines_of_code.count")
    lines.add(120, CLAUDE_POINT | {"type": "added"})
    lines.add(30, CLAUDE_POINT | {"type": "removed"})
    sdk.meter.create_counter("claude_code.commit.count").add(2, CLAUDE_POINT)
    sdk.meter.create_counter("claude_code.pull_request.count").add(1, CLAUDE_POINT)
    result = await metrics(sdk.body(), state)
    base = {"type": "context", "team": "payments", "tool": "claude-code", "developer": CLAUDE_POINT["user.account_uuid"]}
    assert sorted(without_id_ts(result.events), key=lambda e: e["metric"]) == [
        base | {"metric": "commits", "value": 2},
        base | {"metric": "lines_added", "value": 120},
        base | {"metric": "lines_removed", "value": 30},
        base | {"metric": "pull_requests", "value": 1},
    ]
    lines.add(5, CLAUDE_POINT | {"type": "added"})
    again = await metrics(sdk.body(), state)
    if temporality == CUMULATIVE:
        assert without_id_ts(again.events) == [base | {"metric": "lines_added", "value": 5}]


async def test_unknown_genai_token_types_are_counted_never_priced_as_input() -> None:
    """A token type outside the map (a newer convention's `cache_creation`, a vendor's `audio`) is counted by type
    and never priced: the spend is what the known types cost, to the cent."""
    from aiyield.core.events import parse_items
    from aiyield.core.pricing import PriceTable

    sdk = Sdk(DELTA, {"service.name": "checkout-agent"})
    usage = sdk.meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    call = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    usage.record(1_000_000, call | {"gen_ai.token.type": "input"})
    usage.record(100_000, call | {"gen_ai.token.type": "completion"})  # output's name before semconv 1.28
    usage.record(500_000, call | {"gen_ai.token.type": "cache_creation"})
    usage.record(7, call | {"gen_ai.token.type": "audio"})
    result = await metrics(sdk.body())
    assert result.unknown_types == {"cache_creation": 1, "audio": 1}
    good, bad = parse_items(result.events, NOW)
    assert bad == []
    assert sum(e.input_tokens for e in good) == 1_000_000 and sum(e.output_tokens for e in good) == 100_000
    prices = PriceTable.load()  # gpt-4o: $2.50 input, $10 output per million
    spend = sum(prices.cost(e.model, e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens)
                for e in good)
    assert spend == pytest.approx(2.50 + 1.00, abs=1e-12)
