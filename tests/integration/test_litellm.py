"""The real `litellm` package's `generic_api` callback, pointed at a running gateway: spend and tokens per team equal
LiteLLM's own `response_cost` and usage, and no prompt or response text reaches Kafka, Redis or the logs.

Offline: every call is a `mock_response`, prices come from LiteLLM's bundled cost map
(`LITELLM_LOCAL_MODEL_COST_MAP=True`, set before the import).
"""

from __future__ import annotations

import asyncio
import os

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from aiyield.core.windows import SCALE
from aiyield.kafka import CONSUMER_TIMEOUTS

from .conftest import wait_for

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
litellm = pytest.importorskip("litellm", reason="the litellm test extra is not installed")

pytestmark = pytest.mark.integration

TOKEN = "litellm-proxy-token"
SECRET = "SECRET-PROMPT-7d1e"
ANSWER = "SECRET-ANSWER-4b2c"


def _logger(name: str):
    from litellm.litellm_core_utils.logging_callback_manager import _generic_api_logger_cache

    return _generic_api_logger_cache[name]


async def _calls(gateway: str, log_format: str, team: str, models: list[str]) -> list:
    """LiteLLM calls with the callback configured as the proxy's `callback_settings` would; returns the responses."""
    name = f"aiyield_{log_format}_{uuid.uuid4().hex[:6]}"
    litellm.callback_settings = {name: {
        "callback_type": "generic_api", "endpoint": f"{gateway}/v1/webhooks/litellm",
        "headers": {"Authorization": f"Bearer {TOKEN}"}, "log_format": log_format,
    }}
    litellm.logging_callback_manager.add_litellm_callback(name)
    try:
        responses = []
        for i, model in enumerate(models):
            responses.append(await litellm.acompletion(
                model=model, messages=[{"role": "user", "content": f"{SECRET} {i}"}], mock_response=f"{ANSWER} {i}",
                metadata={"user_api_key_team_alias": team, "user_api_key_user_id": "alice@acme.example",
                          "tags": ["claude-code"]},
            ))
        await asyncio.sleep(0.5)  # LiteLLM logs success in a background task
        logger = _logger(name)
        assert len(logger.log_queue) == len(models)
        await logger.flush_queue()
        return responses
    finally:
        litellm.logging_callback_manager._reset_all_callbacks()


def _topic_values(pipeline) -> list[bytes]:
    """Every message of every topic of this pipeline (events, dead letters, join), from the beginning."""
    consumer = Consumer({"bootstrap.servers": pipeline.settings.kafka, "group.id": f"scan-{uuid.uuid4()}",
                         "enable.auto.commit": False, **CONSUMER_TIMEOUTS})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for topic in pipeline.settings.topics for p in range(pipeline.settings.partitions)])
    values, idle = [], 0
    try:
        while idle < 6:
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 1
            elif not msg.error():
                idle = 0
                values.append(msg.value())
    finally:
        consumer.close()
    return values


async def test_litellm_callback_spend_and_tokens_equal_litellms_own(pipeline):
    pipeline.start_worker()
    gateway = pipeline.start_gateway(AIYIELD_INGEST_TOKENS=TOKEN)
    by_team = {
        "json_array": ("payments", await _calls(gateway, "json_array", "payments", ["gpt-4o", "gpt-4o", "gpt-4o-mini"])),
        "ndjson": ("search", await _calls(gateway, "ndjson", "search", ["gpt-4o-mini", "gpt-4o"])),
    }
    calls = sum(len(r) for _t, r in by_team.values())
    await asyncio.to_thread(pipeline.wait_value, "aiyield_events_total", calls, type="token", outcome="accepted")

    for team, responses in by_team.values():
        for model in {r.model for r in responses}:
            mine = [r for r in responses if r.model == model]
            costs = [r._hidden_params["response_cost"] for r in mine]
            assert all(c > 0 for c in costs)  # the bundled cost map priced them: a real check, not 0 == 0
            labels = dict(team=team, tool="claude-code", model=model, window="1h")
            spend = pipeline.value("aiyield_spend_usd", **labels)
            assert spend == sum(round(c * SCALE["spend"]) for c in costs) / SCALE["spend"]
            assert spend == pytest.approx(sum(costs), abs=1e-9)
            assert pipeline.value("aiyield_tokens", type="input", **labels) == sum(r.usage.prompt_tokens for r in mine)
            assert pipeline.value("aiyield_tokens", type="output", **labels) == sum(r.usage.completion_tokens for r in mine)
    assert pipeline.value("aiyield_active_developers", team="payments", window="1h") == 1

    # Content was dropped at the door: not on any topic, not in Redis, not in the gateway's log.
    values = await asyncio.to_thread(_topic_values, pipeline)
    assert values and any(b"claude-code" in v for v in values)
    assert not [v for v in values if SECRET.encode() in v or ANSWER.encode() in v]
    stored = b"".join(k + pipeline.redis.dump(k) for k in pipeline.redis.scan_iter(count=1000))
    assert stored and SECRET.encode() not in stored and ANSWER.encode() not in stored
    log = (pipeline.logdir / "gateway.log").read_text()
    assert "path=/v1/webhooks/litellm status=202" in log
    assert SECRET not in log and ANSWER not in log and TOKEN not in log and "alice" not in log


async def test_litellm_callback_with_a_wrong_token_is_refused(pipeline):
    gateway = pipeline.start_gateway(AIYIELD_INGEST_TOKENS=TOKEN)
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{gateway}/v1/webhooks/litellm", data=b"[]", method="POST",
                                     headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, request, None, 10)
    assert refused.value.code == 401
