"""Billed spend end to end: `aiyield reconcile` against a local server of both cost APIs (tests/billing_apis.py)
into a real Redis, and the exporter's `aiyield_billed_usd` / `aiyield_spend_capture_ratio` beside the spend that
the real pipeline (Kafka, worker) recorded for the same days.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiyield import keys
from aiyield.core.windows import SCALE
from aiyield.exporter import build_registry
from aiyield.reconcile import run
from aiyield.settings import Settings
from tests.billing_apis import ANTHROPIC_KEY, OPENAI_KEY

from .conftest import wait_for

pytestmark = pytest.mark.integration

DAY = 86400


def reconcile_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiyield", "reconcile", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def api_env(base: dict[str, str], apis, openai_key: str = OPENAI_KEY) -> dict[str, str]:
    import os

    return {**os.environ, **base, "AIYIELD_ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY, "AIYIELD_OPENAI_ADMIN_KEY": openai_key,
            "AIYIELD_ANTHROPIC_API_URL": apis.url, "AIYIELD_OPENAI_API_URL": apis.url, "COLUMNS": "200"}


def stored(client: redis.Redis, provider: str) -> dict[int, int]:
    return {int(d): int(v) for d, v in client.hgetall(keys.billed_days(provider)).items()}


def test_reconcile_stores_complete_days_and_a_rerun_overwrites(isolated_env, billing_apis):
    today = int(time.time() // DAY) * DAY
    billing_apis.anthropic = {today - DAY: ["1500.5", "499.5"], today - 3 * DAY: ["250"], today: ["99999"]}
    billing_apis.openai = {today - DAY: ["4.25", "0.75"], today - 9 * DAY: ["1.5"], today: ["1000"]}
    env = api_env(isolated_env, billing_apis)
    client = redis.Redis.from_url(isolated_env["AIYIELD_REDIS"])

    result = reconcile_cli(env, "--days", "10")
    assert result.returncode == 0, result.stderr
    u = SCALE["spend"]
    days = range(today - 10 * DAY, today, DAY)
    assert stored(client, "anthropic") == {d: 0 for d in days} | {today - DAY: 20 * u, today - 3 * DAY: 5 * u // 2}
    assert stored(client, "openai") == {d: 0 for d in days} | {today - DAY: 5 * u, today - 9 * DAY: 3 * u // 2}
    # Progress on stderr, one line per page; the stored table on stdout, with the totals.
    assert "anthropic: page 2 fetched, 10 days so far" in result.stderr
    assert "openai: page 2 fetched" in result.stderr
    total = next(line for line in result.stdout.splitlines() if "total" in line)
    assert [cell.strip() for cell in total.split("│") if cell.strip()] == ["total", "22.50", "6.50"]
    # Both APIs were paged (10 days at 7 a page), each with its own credentials.
    assert len(billing_apis.of("/v1/organizations/cost_report")) == 2
    assert len(billing_apis.of("/v1/organization/costs")) == 2

    # The provider revised a day: the re-run overwrites it, and adds nothing to the others.
    billing_apis.anthropic[today - DAY] = ["3000"]
    assert reconcile_cli(env, "--days", "10").returncode == 0
    assert stored(client, "anthropic") == {d: 0 for d in days} | {today - DAY: 30 * u, today - 3 * DAY: 5 * u // 2}
    assert stored(client, "openai")[today - DAY] == 5 * u


def test_a_failing_provider_is_reported_and_the_other_is_stored(isolated_env, billing_apis):
    today = int(time.time() // DAY) * DAY
    billing_apis.anthropic = {today - DAY: ["700"]}
    result = reconcile_cli(api_env(isolated_env, billing_apis, openai_key="sk-admin-REVOKED"), "--days", "3")
    assert result.returncode == 1
    assert "not stored: openai: HTTP 401" in result.stderr and "Incorrect API key provided" in result.stderr
    assert "REVOKED" not in result.stdout + result.stderr
    client = redis.Redis.from_url(isolated_env["AIYIELD_REDIS"])
    assert stored(client, "anthropic")[today - DAY] == 7 * SCALE["spend"]
    assert stored(client, "openai") == {}
    assert set(client.hkeys(keys.BILLED_SYNCED)) == {b"anthropic"}


def test_no_provider_configured_is_a_configuration_error(isolated_env):
    import os

    result = reconcile_cli({**os.environ, **isolated_env})
    assert result.returncode == 2 and "AIYIELD_ANTHROPIC_ADMIN_KEY" in result.stderr


def token(event_id: str, ts: float, model: str, usd: float, team: str = "payments") -> dict:
    return {"type": "token", "id": event_id, "ts": ts, "team": team, "tool": "claude-code" if "claude" in model else "codex",
            "model": model, "input_tokens": 100, "output_tokens": 10, "cost_usd": usd}


def test_billed_and_capture_ratio_beside_the_pipeline_spend(pipeline, billing_apis):
    now = time.time()
    today = int(now // DAY) * DAY
    noon = lambda days_ago: today - days_ago * DAY + DAY // 2  # noqa: E731

    # Billed. Anthropic: 10 USD a day for 30 days, 20 USD yesterday (two results). OpenAI: 5 USD yesterday, 2.50 on
    # each of the six days before, nothing earlier. Today's incomplete day is served with a large amount.
    billing_apis.anthropic = {today - d * DAY: ["1000.00"] for d in range(2, 31)}
    billing_apis.anthropic[today - DAY] = ["1500.5", "499.5"]
    billing_apis.anthropic[today] = ["500000"]
    billing_apis.openai = {today - DAY: ["4.25", "0.75"], today: ["777.7"]}
    billing_apis.openai.update({today - d * DAY: ["2.5"] for d in range(2, 8)})

    # Seen by aiyield. Anthropic: 15 USD yesterday, 7.50 on each of the six days before, 10 USD ten days ago.
    # OpenAI: 5 USD yesterday (gpt-5 + o3), 2 USD (o4-mini) on each of the six days before.
    events = [token("a-y1", noon(1), "claude-sonnet-4-20250514", 10.0), token("a-y2", noon(1), "claude-opus-4-1", 5.0),
              token("o-y1", noon(1), "gpt-5", 4.0, team="growth"), token("o-y2", noon(1), "o3", 1.0, team="growth"),
              token("a-10", noon(10), "claude-haiku-4-5", 10.0)]
    for d in range(2, 8):
        events += [token(f"a-{d}", noon(d), "claude-sonnet-4-5", 7.5), token(f"o-{d}", noon(d), "o4-mini", 2.0)]
    # Not any provider's own bill (Bedrock, Gemini), and today (no billed window covers it).
    events += [token("bedrock", noon(1), "us.anthropic.claude-sonnet-4-20250514-v1:0", 100.0),
               token("gemini", noon(1), "gemini-2.5-pro", 50.0), token("today", (today + now) / 2, "claude-sonnet-4", 1000.0)]
    pipeline.start_worker()
    pipeline.send(events)
    wait_for(lambda: pipeline.events_total("token", "accepted") == len(events), 120, "every token event")

    settings = Settings(anthropic_admin_key=ANTHROPIC_KEY, openai_admin_key=OPENAI_KEY,
                        anthropic_api_url=billing_apis.url, openai_api_url=billing_apis.url)
    client = redis.Redis.from_url(pipeline.settings.redis)
    outcomes = run(settings, client, now, days=30)
    assert [(o.provider, o.error, len(o.days)) for o in outcomes] == [("anthropic", None, 30), ("openai", None, 30)]

    # The exporter, at the same `now`, over the real Redis.
    text = generate_latest(build_registry(pipeline.settings.redis, clock=lambda: now)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def v(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    expected = {
        # provider, days: (billed USD, capture ratio)
        ("anthropic", "1"): (20.0, 15 / 20),
        ("anthropic", "7"): (80.0, 60 / 80),
        ("anthropic", "30"): (310.0, 70 / 310),
        ("openai", "1"): (5.0, 5 / 5),
        ("openai", "7"): (20.0, 17 / 20),
        ("openai", "30"): (20.0, 17 / 20),
    }
    for (provider, days), (billed, capture) in expected.items():
        assert v("aiyield_billed_usd", provider=provider, days=days) == billed, (provider, days)
        assert v("aiyield_billed_estimated_usd", provider=provider, days=days) == pytest.approx(billed * capture)
        assert v("aiyield_spend_capture_ratio", provider=provider, days=days) == capture, (provider, days)
    billed_labels = {k[1] for k in samples if k[0].startswith(("aiyield_billed_usd", "aiyield_spend_capture"))}
    assert billed_labels and not [labels for labels in billed_labels if "window" in dict(labels)]
    for provider in ("anthropic", "openai"):
        assert v("aiyield_billed_through_timestamp_seconds", provider=provider) == today
        assert v("aiyield_billed_last_sync_timestamp_seconds", provider=provider) == now
    # The same spend is in aiyield's own 30d window, Bedrock and Gemini included: only the attribution differs.
    assert v("aiyield_spend_usd", team="payments", tool="claude-code", model="us.anthropic.claude-sonnet-4-20250514-v1:0",
             window="30d") == 100.0


def test_rebuild_keeps_the_billed_days(isolated_env):
    """`aiyield rebuild` clears what Kafka can restore; the bill is not on Kafka."""
    from decimal import Decimal

    from aiyield.rebuild import _delete_state
    from aiyield.reconcile import store

    client = redis.Redis.from_url(isolated_env["AIYIELD_REDIS"])
    now = time.time()
    yesterday = int(now // DAY) * DAY - DAY
    store(client, "openai", {yesterday: Decimal("12.5")}, now)
    client.hset(keys.window("1h", 0), "x", 1)
    assert _delete_state(client) == 1
    assert stored(client, "openai") == {yesterday: 12_500_000_000}
    assert client.hget(keys.BILLED_SYNCED, "openai") is not None


def test_days_past_retention_are_dropped(isolated_env):
    from decimal import Decimal

    from aiyield.core.billing import RETENTION_DAYS
    from aiyield.reconcile import store

    client = redis.Redis.from_url(isolated_env["AIYIELD_REDIS"])
    now = time.time()
    today = int(now // DAY) * DAY
    store(client, "anthropic", {today - RETENTION_DAYS * DAY: Decimal(1), today - (RETENTION_DAYS + 1) * DAY: Decimal(2)},
          now - 10)
    store(client, "anthropic", {today - DAY: Decimal(3)}, now)
    assert stored(client, "anthropic") == {today - RETENTION_DAYS * DAY: SCALE["spend"], today - DAY: 3 * SCALE["spend"]}
