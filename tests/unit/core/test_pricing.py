from __future__ import annotations

import pytest

from aiyield.core.pricing import BUILTIN_PRICES, Price, PriceFileError, PriceTable, read_price_file


def test_builtin_table_covers_the_major_vendors():
    names = " ".join(BUILTIN_PRICES)
    for vendor_model in ("claude", "gpt", "gemini", "amazon.nova"):
        assert vendor_model in names


@pytest.mark.parametrize(
    "model, key",
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("openai/gpt-5", "gpt-5"),
        ("models/gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("amazon.nova-pro-v1:0", "amazon.nova-pro"),
        ("GPT-4o", "gpt-4o"),
    ],
)
def test_lookup_maps_versions_and_provider_prefixes_to_their_family(model, key):
    assert PriceTable.load().lookup(model) == BUILTIN_PRICES[key]


def test_unknown_model_has_no_price():
    table = PriceTable.load()
    assert table.lookup("llama-3-70b") is None
    assert table.cost("llama-3-70b", 1, 1, 0, 0) is None
    assert table.lookup("gpt-50") is None  # not a "gpt-5" version


def test_cost_arithmetic():
    table = PriceTable({"m": Price(3.0, 15.0, 0.3, 3.75)})
    assert table.cost("m", 1_000_000, 0, 0, 0) == 3.0
    assert table.cost("m", 1000, 200, 5000, 100) == pytest.approx(0.007875)


def test_price_file_overrides_and_extends(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text('[models."claude-sonnet-4"]\ninput = 1.0\noutput = 2.0\ncache_read = 0.1\ncache_write = 1.5\n'
                    '[models."in-house-llm"]\ninput = 0.5\noutput = 0.5\n')
    table = PriceTable.load(path)
    assert table.lookup("claude-sonnet-4-20250514") == Price(1.0, 2.0, 0.1, 1.5, 2.0)
    assert table.lookup("in-house-llm") == Price(0.5, 0.5, 0.0, 0.625, 1.0)  # writes 1.25x and 2x input by default
    assert table.lookup("in-house-llm").source == str(path)
    assert table.lookup("gpt-5") == BUILTIN_PRICES["gpt-5"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not toml [", "not valid TOML"),
        ("[other]\nx=1", "no [models."),
        ('[models."m"]\ninput = 1.0', "lacks `output`"),
        ('[models."m"]\ninput = -1\noutput = 1', "must be a number >= 0"),
        ('[models."m"]\ninput = "cheap"\noutput = 1', "must be a number >= 0"),
        ('[models."m"]\ninput = 1\noutput = 1\nreasoning = 2', "unknown keys ['reasoning']"),
    ],
)
def test_price_file_errors_are_clear(tmp_path, text, fragment):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PriceFileError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        read_price_file(path)


def test_missing_price_file(tmp_path):
    with pytest.raises(PriceFileError, match="does not exist"):
        PriceTable.load(tmp_path / "nope.toml")


# One test per price rule, exact dollars (docs/FINANCE.md "Price rules").


def test_one_hour_cache_writes_cost_twice_input_five_minute_writes_one_and_a_quarter():
    table = PriceTable.load()  # claude-haiku-4-5: input $1, 5-minute write $1.25, 1-hour write $2 per million
    # 1,000,000 cache-write tokens, 400,000 of them with a 1-hour TTL: 600,000 x 1.25 + 400,000 x 2 per million.
    assert table.cost("claude-haiku-4-5", 0, 0, 0, 1_000_000, 400_000) == pytest.approx(0.75 + 0.80, abs=1e-12)
    assert table.cost("claude-haiku-4-5", 0, 0, 0, 1_000_000, 1_000_000) == pytest.approx(2.00, abs=1e-12)
    assert table.cost("claude-haiku-4-5", 0, 0, 0, 1_000_000) == pytest.approx(1.25, abs=1e-12)


def test_one_hour_write_price_defaults_to_twice_input_in_a_price_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[models."m"]\ninput = 4.0\noutput = 8.0\n')
    table = PriceTable.load(path)
    assert table.cost("m", 0, 0, 0, 2_000_000, 1_000_000) == pytest.approx(5.0 + 8.0, abs=1e-12)


def test_long_context_tier_applies_when_the_input_side_exceeds_the_threshold():
    table = PriceTable.load()  # claude-sonnet-4: > 200,000 input-side tokens: $6 input, $22.50 output, $0.60 read
    at = table.cost("claude-sonnet-4", 150_000, 10_000, 50_000, 0)  # exactly 200,000: base tier
    assert at == pytest.approx(150_000 * 3 / 1e6 + 10_000 * 15 / 1e6 + 50_000 * 0.3 / 1e6, abs=1e-12)
    assert at == pytest.approx(0.615, abs=1e-12)
    above = table.cost("claude-sonnet-4", 150_000, 10_000, 50_000, 1)  # one cache-write token more: all long-context
    assert above == pytest.approx(0.9 + 0.225 + 0.03 + 7.5e-6, abs=1e-12)


def test_long_context_tier_from_a_price_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[models."m"]\ninput = 1.0\noutput = 2.0\ncache_read = 0.1\neffective = 2026-01-01\n'
                    'source = "contract 42"\n'
                    '[models."m".long_context]\nthreshold = 1000\ninput = 2.0\noutput = 3.0\n')
    table = PriceTable.load(path)
    price = table.lookup("m")
    assert (price.source, price.effective) == ("contract 42", "2026-01-01")
    # Cache reads follow the tier's input ratio (0.1 x 2): 0.2; writes default to 1.25x and 2x the tier's input.
    assert table.cost("m", 1000, 1_000_000, 1000, 0) == pytest.approx((2000 + 3_000_000 + 200) / 1e6, abs=1e-12)
    assert table.cost("m", 0, 0, 0, 1001, 1) == pytest.approx((1000 * 2.5 + 1 * 4.0) / 1e6, abs=1e-12)
    assert table.cost("m", 1000, 0, 0, 0) == pytest.approx(0.001, abs=1e-12)  # not above: base


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[models."m"]\ninput = 1\noutput = 1\n[models."m".long_context]\ninput = 2\noutput = 2', "threshold must be"),
        ('[models."m"]\ninput = 1\noutput = 1\nlong_context = 3', "long_context must be a table"),
        ('[models."m"]\ninput = 1\noutput = 1\n[models."m".long_context]\nthreshold = 5\ninput = 2', "lacks `output`"),
        ('[models."m"]\ninput = 1\noutput = 1\ncache_write_1h = -2', "cache_write_1h must be a number >= 0"),
    ],
)
def test_tier_errors_are_clear(tmp_path, text, fragment):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PriceFileError, match=fragment):
        read_price_file(path)


def test_builtin_entries_name_their_source_and_date():
    for name, price in PriceTable.load().entries():
        assert price.source.startswith("https://") and price.effective == "2025-11-24", name
