"""OTLP over gRPC (port 4317 by default) against a running gateway and pipeline: the OpenTelemetry SDK's gRPC
exporter delivers Claude Code-shaped metrics that count exactly as the same metrics sent over OTLP/HTTP; tokens,
scopes, bounds and answers are those of `/v1/metrics` and `/v1/logs`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from .conftest import wait_for

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOKEN = "grpc-ingest-token"
SCOPED = "grpc-payments-token"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
MAX_BODY = 65536


@pytest.fixture
def gateway(pipeline):
    pipeline.start_worker()
    url = pipeline.start_gateway(
        AIYIELD_INGEST_TOKENS=f"{TOKEN},{SCOPED}@team=payments", AIYIELD_MAX_BODY_BYTES=str(MAX_BODY),
    )
    return url


def claude_code_session(exporter, team: str) -> None:
    """What Claude Code exports over one session: token counts, cost, lines, and a metric aiyield does not read;
    cumulative temporality, exported three times (the last two re-sending the same totals)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "claude-code", "team": team}),
                             metric_readers=[reader])
    meter = provider.get_meter("com.anthropic.claude_code")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    cost = meter.create_counter("claude_code.cost.usage", unit="USD")
    lines = meter.create_counter("claude_code.lines_of_code.count")
    sessions = meter.create_counter("claude_code.session.count")
    attrs = {"model": "claude-sonnet-4-5", "session.id": "s-1", "user.account_uuid": "dev-1"}
    tokens.add(1000, {**attrs, "type": "input"})
    tokens.add(200, {**attrs, "type": "output"})
    tokens.add(4000, {**attrs, "type": "cacheRead"})
    cost.add(0.25, attrs)
    lines.add(5, {"type": "added"})
    sessions.add(1)
    assert provider.force_flush()
    tokens.add(500, {**attrs, "type": "input"})
    cost.add(0.125, attrs)
    assert provider.force_flush()
    assert provider.force_flush()
    provider.shutdown()


def test_sdk_grpc_exporter_counts_exactly_as_the_http_path(pipeline, gateway):
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
    from opentelemetry.sdk.metrics import Counter as SdkCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    cumulative = {SdkCounter: AggregationTemporality.CUMULATIVE}
    claude_code_session(HttpExporter(endpoint=gateway + "/v1/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                                     preferred_temporality=cumulative), team="over-http")
    claude_code_session(GrpcExporter(endpoint=pipeline.otlp_grpc, insecure=True,
                                     headers=(("authorization", f"Bearer {TOKEN}"),),
                                     preferred_temporality=cumulative), team="over-grpc")

    series = dict(tool="claude-code", model="claude-sonnet-4-5", window="1h")
    pipeline.wait_value("aiyield_spend_usd", 0.375, team="over-grpc", **series)
    pipeline.wait_value("aiyield_tool_lines", 5, team="over-grpc", tool="claude-code", change="added", window="1h")
    metrics = pipeline.metrics()

    def team_view(team: str) -> dict:
        """Every aiyield series of one team, the team label taken out."""
        return {(name, tuple(kv for kv in labels if kv[0] != "team")): value
                for (name, labels), value in metrics.items() if ("team", team) in labels}

    grpc_view, http_view = team_view("over-grpc"), team_view("over-http")
    assert grpc_view == http_view
    for kind, expected in (("input", 1500), ("output", 200), ("cache_read", 4000)):
        assert grpc_view[("aiyield_tokens", tuple(sorted({**series, "type": kind}.items())))] == expected
    assert grpc_view[("aiyield_active_developers", (("window", "1h"),))] == 1


def call(target: str, method: str, request: bytes, token: str | None = TOKEN) -> tuple[grpc.StatusCode, bytes | str]:
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 4 * MAX_BODY)]) as channel:
        export = channel.unary_unary(method)
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        try:
            return grpc.StatusCode.OK, export(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()


def token_usage(team: str, value: int, name: str = "claude_code.token.usage") -> ExportMetricsServiceRequest:
    now = int(time.time() * 1e9)
    return json_format.ParseDict({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}},
                                    {"key": "team", "value": {"stringValue": team}}]},
        "scopeMetrics": [{"metrics": [{"name": name, "sum": {
            "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "isMonotonic": True,
            "dataPoints": [{"asInt": str(value), "startTimeUnixNano": str(now - 10**9), "timeUnixNano": str(now),
                            "attributes": [{"key": "type", "value": {"stringValue": "input"}},
                                           {"key": "model", "value": {"stringValue": "claude-sonnet-4-5"}}]}]}}]}],
    }]}, ExportMetricsServiceRequest())


def test_tokens_scopes_bounds_and_answers_are_the_http_gateways(pipeline, gateway):
    target = pipeline.otlp_grpc
    body = token_usage("payments", 100).SerializeToString()
    assert call(target, METRICS, body, token=None)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert call(target, METRICS, body, token="wrong")[0] == grpc.StatusCode.UNAUTHENTICATED
    assert call(target, LOGS, b"", token="wrong")[0] == grpc.StatusCode.UNAUTHENTICATED

    # A scoped token: everything outside its team refused is PERMISSION_DENIED; a mix is a partial success.
    code, detail = call(target, METRICS, token_usage("web", 7).SerializeToString(), token=SCOPED)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "team 'web' is outside this ingest token's scope" in detail
    mixed = token_usage("payments", 100)
    mixed.resource_metrics.extend(token_usage("web", 7).resource_metrics)
    code, raw = call(target, METRICS, mixed.SerializeToString(), token=SCOPED)
    assert code == grpc.StatusCode.OK, raw
    answer = ExportMetricsServiceResponse.FromString(raw)
    assert answer.partial_success.rejected_data_points == 1
    assert "outside this ingest token's scope" in answer.partial_success.error_message

    # Bounds: the message limit is the body limit; an undecodable request is INVALID_ARGUMENT.
    huge = token_usage("payments", 1, name="x" * (MAX_BODY + 1)).SerializeToString()
    assert call(target, METRICS, huge)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call(target, METRICS, b"\xff\xff\xff")[0] == grpc.StatusCode.INVALID_ARGUMENT

    # Logs: Claude Code's api_request records, the same decoding as /v1/logs.
    export = json.loads((FIXTURES / "otlp/beagle_claude-code-2.1.193_logs.otlp.json").read_bytes())
    now_ns = str(int((time.time() - 30) * 1e9))
    for resource in export["resourceLogs"]:
        for scope in resource["scopeLogs"]:
            for record in scope["logRecords"]:
                record["timeUnixNano"] = record["observedTimeUnixNano"] = now_ns
                record["attributes"] = [a for a in record["attributes"] if a["key"] != "event.timestamp"]
    logs = json_format.ParseDict(export, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    code, raw = call(target, LOGS, logs.SerializeToString())
    assert code == grpc.StatusCode.OK, raw
    assert not ExportLogsServiceResponse.FromString(raw).HasField("partial_success")

    # The events were on Kafka before the answers: the pipeline counts them.
    pipeline.wait_value("aiyield_tokens", 100, team="payments", tool="claude-code", model="claude-sonnet-4-5",
                        type="input", window="1h")
    wait_for(lambda: sum(v for (name, labels), v in pipeline.metrics().items()
                         if name == "aiyield_spend_usd" and ("window", "1h") in labels) > 0, 60, "log spend")
    assert pipeline.value("aiyield_tokens", team="web", tool="claude-code", model="claude-sonnet-4-5", type="input",
                          window="1h") is None
    import urllib.request

    with urllib.request.urlopen(gateway + "/metrics") as response:
        text = response.read().decode()
    assert f'aiyield_gateway_grpc_requests_total{{code="UNAUTHENTICATED",method="{METRICS}"}} 2.0' in text
    assert f'aiyield_gateway_grpc_requests_total{{code="PERMISSION_DENIED",method="{METRICS}"}} 1.0' in text
    assert 'aiyield_gateway_rejected_items_total{source="otlp_metrics"} 2.0' in text


def test_a_taken_grpc_port_stops_the_gateway_with_what_to_do(pipeline):
    import socket
    import subprocess
    import sys

    from aiyield.embedded import free_port

    with socket.socket() as taken:  # e.g. a local OpenTelemetry Collector on 4317
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**pipeline.env, "AIYIELD_OTLP_GRPC_PORT": str(taken.getsockname()[1]),
               "AIYIELD_GATEWAY_PORT": str(free_port())}
        done = subprocess.run([sys.executable, "-m", "aiyield", "gateway"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 1
    assert "OTLP/gRPC cannot listen" in done.stderr and "AIYIELD_OTLP_GRPC_PORT" in done.stderr
