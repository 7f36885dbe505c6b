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
    assert table.lookup("claude-sonnet-4-20250514") == Price(1.0, 2.0, 0.1, 1.5)
    assert table.lookup("in-house-llm") == Price(0.5, 0.5, 0.0, 0.5)
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
