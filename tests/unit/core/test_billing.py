"""Billed windows, provider attribution and the capture ratio (core/billing.py, core/pricing.provider_of)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aiyield.core.billing import (
    BILLED_WINDOWS, DAY, provider_daily_spend, readings, to_units, usd, window_days,
)
from aiyield.core.measures import Measure
from aiyield.core.pricing import BUILTIN_PRICES, provider_of
from aiyield.core.windows import SCALE

#: 2026-06-17 10:20 UTC
NOW = 1_781_691_600.0
TODAY = int(NOW // DAY) * DAY
YESTERDAY = TODAY - DAY


@pytest.mark.parametrize("model, provider", [
    ("claude-sonnet-4-5-20250929", "anthropic"),
    ("Claude-Opus-4-1", "anthropic"),
    ("anthropic/claude-haiku-4-5", "anthropic"),
    ("gpt-5", "openai"), ("gpt-4o-mini-2024-07-18", "openai"), ("openai/gpt-5-codex", "openai"),
    ("o1", "openai"), ("o3", "openai"), ("o3-pro", "openai"), ("o4-mini", "openai"), ("o1-preview", "openai"),
    ("codex-mini-latest", "openai"),
    # billed by a cloud, not by the vendor
    ("us.anthropic.claude-opus-4-1-20250805-v1:0", None), ("anthropic.claude-3-5-haiku", None),
    ("bedrock/anthropic.claude-sonnet-4", None), ("vertex_ai/claude-sonnet-4", None),
    ("claude-sonnet-4@20250514", None), ("azure/gpt-4o", None),
    # other vendors and near misses
    ("gemini-2.5-pro", None), ("amazon.nova-pro", None), ("other", None), ("o30x", None), ("olmo-2", None),
])
def test_provider_of(model, provider):
    assert provider_of(model) == provider


def test_every_builtin_anthropic_and_openai_model_has_its_provider():
    for model in BUILTIN_PRICES:
        expected = "anthropic" if model.startswith("claude") else "openai" if model.startswith(("gpt", "o3", "o4")) else None
        assert provider_of(model) == expected, model


def test_window_days_end_with_the_as_of_day():
    assert window_days("24h", YESTERDAY) == [YESTERDAY]
    assert window_days("7d", YESTERDAY) == [YESTERDAY - i * DAY for i in range(6, -1, -1)]
    assert len(window_days("30d", YESTERDAY)) == 30
    assert "1h" not in BILLED_WINDOWS


def test_to_units_is_exact():
    assert to_units(Decimal("1.2378912")) == 1_237_891_200
    assert to_units(Decimal("0.0000000005")) == 0  # half to even
    assert to_units(Decimal("0.0000000015")) == 2
    assert usd(to_units(Decimal("12.5"))) == 12.5


def spend(team: str, model: str, dollars: float) -> tuple[tuple[str, ...], int]:
    return (team, "tool", model), int(dollars * SCALE["spend"])


def test_provider_daily_spend_sums_models_per_provider_and_ignores_the_rest():
    buckets = {
        YESTERDAY: {Measure.SPEND: dict([
            spend("a", "claude-sonnet-4", 3), spend("b", "claude-opus-4", 2), spend("a", "gpt-5", 1),
            spend("a", "gemini-2.5-pro", 7), spend("a", "us.anthropic.claude-sonnet-4", 5)])},
        # Other measures of the day are not spend, whatever their labels.
        TODAY: {Measure.SPEND: dict([spend("a", "o3", 4)]), Measure.TOKENS: {("a", "tool", "gpt-5", "input"): 99}},
    }
    assert provider_daily_spend(buckets) == {
        "anthropic": {YESTERDAY: 5 * SCALE["spend"]},
        "openai": {YESTERDAY: SCALE["spend"], TODAY: 4 * SCALE["spend"]},
    }


def test_readings_anchor_on_the_newest_reconciled_day_and_need_every_day():
    u = SCALE["spend"]
    # Ten days billed up to the day before yesterday (yesterday not reconciled yet): 10 USD a day.
    as_of = YESTERDAY - DAY
    billed = {"anthropic": {as_of - i * DAY: 10 * u for i in range(10)}, "openai": {}}
    estimated = {"anthropic": {as_of - i * DAY: 8 * u for i in range(10)} | {YESTERDAY: 100 * u}}
    got = {(r.provider, r.window): r for r in readings(billed, estimated, history_from=TODAY - 41 * DAY)}
    assert set(got) == {("anthropic", "24h"), ("anthropic", "7d")}  # no 30d: only 10 days reconciled; openai empty
    assert got[("anthropic", "7d")].billed_usd == 70.0
    assert got[("anthropic", "7d")].estimated_usd == 56.0
    assert got[("anthropic", "7d")].capture_ratio == pytest.approx(0.8)
    assert got[("anthropic", "24h")].days == (as_of,)  # yesterday's 100 USD of estimates is outside every window


def test_capture_is_absent_when_billed_is_zero_or_history_is_gone():
    u = SCALE["spend"]
    billed = {"openai": {YESTERDAY - i * DAY: 0 for i in range(7)}}
    (r24, r7) = readings(billed, {"openai": {YESTERDAY: 5 * u}}, history_from=TODAY - 41 * DAY)
    assert (r24.billed_usd, r24.capture_ratio, r7.capture_ratio) == (0.0, None, None)
    billed = {"openai": {YESTERDAY - i * DAY: u for i in range(7)}}
    (r24, r7) = readings(billed, {}, history_from=YESTERDAY)
    assert r24.capture_ratio == 0.0  # covered by the history: nothing seen
    assert r7.capture_ratio is None and r7.billed_usd == 7.0  # six of its days are older than the history
