"""The current OpenTelemetry GenAI token counters and Claude Code's context metrics, from the real SDK's OTLP/HTTP
exporter through a running gateway and worker to /metrics, with exact values."""

from __future__ import annotations

import pytest

from .test_gateway import bearer, gateway  # noqa: F401 - the gateway fixture

pytestmark = pytest.mark.integration


def _provider(gateway_url: str, resource: dict):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(
        endpoint=gateway_url + "/v1/metrics", headers=bearer(),
        preferred_temporality={Counter: AggregationTemporality.CUMULATIVE,
                               Histogram: AggregationTemporality.CUMULATIVE},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create(resource), metric_readers=[reader])


def test_genai_counters_win_over_the_histogram_and_context_metrics_arrive(pipeline, gateway):  # noqa: F811
    provider = _provider(gateway, {"service.name": "support-bot", "team": "support"})
    meter = provider.get_meter("support-bot")
    usage = {n: meter.create_counter(f"gen_ai.client.inference.usage.{n}", unit="{token}")
             for n in ("input_tokens", "output_tokens", "cache_read.input_tokens", "cache_write.input_tokens",
                       "reasoning.output_tokens")}
    legacy = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    point = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat"}
    for _ in range(2):  # two calls, two cumulative exports
        usage["input_tokens"].add(1000, point)
        usage["cache_read.input_tokens"].add(600, point)
        usage["cache_write.input_tokens"].add(100, point)
        usage["output_tokens"].add(300, point)
        usage["reasoning.output_tokens"].add(120, point)
        legacy.record(1000, {**point, "gen_ai.token.type": "input"})
        legacy.record(300, {**point, "gen_ai.token.type": "output"})
        assert provider.force_flush()
    provider.shutdown()

    claude = _provider(gateway, {"service.name": "claude-code", "team": "payments"})
    cc = claude.get_meter("com.anthropic.claude_code")
    cc.create_counter("claude_code.lines_of_code.count").add(42, {"type": "added", "user.account_uuid": "u-1"})
    cc.create_counter("claude_code.lines_of_code.count").add(7, {"type": "removed", "user.account_uuid": "u-1"})
    cc.create_counter("claude_code.commit.count").add(3, {"user.account_uuid": "u-1"})
    cc.create_counter("claude_code.pull_request.count").add(1, {"user.account_uuid": "u-1"})
    assert claude.force_flush()
    claude.shutdown()

    labels = dict(team="support", tool="support-bot", model="gpt-4o", window="1h")
    pipeline.wait_value("aiyield_tokens", 2 * 300, type="output", **labels)
    assert pipeline.value("aiyield_tokens", type="input", **labels) == 2 * (1000 - 600 - 100)
    assert pipeline.value("aiyield_tokens", type="cache_read", **labels) == 2 * 600
    assert pipeline.value("aiyield_tokens", type="cache_write", **labels) == 2 * 100
    # priced by the worker from the built-in table: present and positive
    assert (pipeline.value("aiyield_spend_usd", **labels) or 0) > 0

    ctx = dict(team="payments", tool="claude-code", window="1h")
    pipeline.wait_value("aiyield_tool_pull_requests", 1, **ctx)
    assert pipeline.value("aiyield_tool_lines", change="added", **ctx) == 42
    assert pipeline.value("aiyield_tool_lines", change="removed", **ctx) == 7
    assert pipeline.value("aiyield_tool_commits", **ctx) == 3
    # and their processing-time counters
    assert pipeline.value("aiyield_tool_lines_total", change="added", team="payments", tool="claude-code") == 42
    assert pipeline.value("aiyield_tool_commits_total", team="payments", tool="claude-code") == 3
    assert not [k for k in pipeline.metrics() if k[0].startswith("aiyield_tool_") and any(
        label in ("developer", "user") for label, _v in k[1])]
