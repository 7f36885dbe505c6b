"""The price rules through the running pipeline (gateway, Kafka, worker, exporter), with exact dollars: 1-hour cache
writes, the long-context tier, and a token type no mapping knows (counted on the gateway, never priced)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from .test_gateway import bearer, gateway, post  # noqa: F401 (the gateway fixture)

pytestmark = pytest.mark.integration


def test_price_rules_end_to_end(pipeline, gateway):  # noqa: F811
    now = time.time() - 5
    base = {"type": "token", "ts": now, "team": "pricing", "tool": "agent", "output_tokens": 0}
    events = [
        # claude-haiku-4-5: 600,000 5-minute writes at $1.25 + 400,000 1-hour writes at $2 = $1.55
        base | {"id": "p1", "model": "claude-haiku-4-5", "input_tokens": 0, "cache_write_tokens": 1_000_000,
                "cache_write_1h_tokens": 400_000},
        # claude-sonnet-4: 150,000 input + 50,000 cache read + 1 cache write > 200,000: long-context tier,
        # 150,000 x $6 + 50,000 x $0.60 + 10,000 x $22.50 + 1 x $7.50 per million = $1.1550075
        base | {"id": "p2", "model": "claude-sonnet-4", "input_tokens": 150_000, "cache_read_tokens": 50_000,
                "cache_write_tokens": 1, "output_tokens": 10_000},
        # more 1-hour writes than writes: invalid, with its reason
        base | {"id": "p3", "model": "claude-haiku-4-5", "input_tokens": 0, "cache_write_tokens": 1,
                "cache_write_1h_tokens": 2},
    ]
    status, answer = post(gateway + "/v1/events", events, bearer())
    assert status == 202 and answer["accepted"] == 2
    assert "must not exceed cache_write_tokens" in answer["rejected"][0]["error"]

    # An OTel GenAI histogram whose token types are input (1,000,000), completion (100,000) and an unknown one.
    def point(kind: str, value: int) -> dict:
        return {"attributes": [{"key": "gen_ai.token.type", "value": {"stringValue": kind}},
                               {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}],
                "startTimeUnixNano": str(int((now - 60) * 1e9)), "timeUnixNano": str(int(now * 1e9)),
                "count": "1", "sum": value, "bucketCounts": ["1"], "explicitBounds": []}

    otlp = {"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "genai-agent"}},
        {"key": "team", "value": {"stringValue": "pricing"}}]},
        "scopeMetrics": [{"metrics": [{"name": "gen_ai.client.token.usage", "histogram": {
            "aggregationTemporality": 1, "dataPoints": [point("input", 1_000_000), point("completion", 100_000),
                                                        point("cache_creation", 500_000)]}}]}]}]}
    status, _ = post(gateway + "/v1/metrics", json.dumps(otlp).encode(),
                     {**bearer(), "Content-Type": "application/json"})
    assert status == 200

    labels = dict(team="pricing", window="1h")
    pipeline.wait_value("aiyield_spend_usd", 1.55, tool="agent", model="claude-haiku-4-5", **labels)
    pipeline.wait_value("aiyield_spend_usd", 1.1550075, tool="agent", model="claude-sonnet-4", **labels)
    # gpt-4o: $2.50 input + $1.00 output; the 500,000 tokens of an unknown type cost nothing and are no input.
    pipeline.wait_value("aiyield_spend_usd", 3.5, tool="genai-agent", model="gpt-4o", **labels)
    assert pipeline.value("aiyield_tokens", tool="genai-agent", model="gpt-4o", type="input", **labels) == 1_000_000
    with urllib.request.urlopen(gateway + "/metrics") as response:
        text = response.read().decode()
    assert 'aiyield_unknown_token_types_total{source="otlp_metrics",type="cache_creation"} 1.0' in text
