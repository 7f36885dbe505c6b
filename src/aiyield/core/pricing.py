"""Model prices and the cost of a token event.

Prices are USD per million tokens. The built-in table covers current models of the major vendors; a TOML price file
(`--prices FILE` / `AIYIELD_PRICES`) overrides or extends it, entry by entry (docs/INTERFACE.md §5).
"""

from __future__ import annotations

import functools

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

#: When the built-in table was taken from the vendors' public price pages.
BUILTIN_PRICES_DATE = "2025-11-24"


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


# Cache writes: Anthropic charges 1.25x input for 5-minute cache writes; OpenAI, Google and Amazon do not charge
# cache writes separately, so their cache_write equals the input price.
BUILTIN_PRICES: dict[str, Price] = {
    # Anthropic
    "claude-opus-4-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": Price(15.0, 75.0, 1.50, 18.75),
    "claude-opus-4": Price(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4": Price(3.0, 15.0, 0.30, 3.75),
    "claude-3-7-sonnet": Price(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.10, 1.25),
    "claude-3-5-haiku": Price(0.80, 4.0, 0.08, 1.0),
    # OpenAI
    "gpt-5.1": Price(1.25, 10.0, 0.125, 1.25),
    "gpt-5": Price(1.25, 10.0, 0.125, 1.25),
    "gpt-5-codex": Price(1.25, 10.0, 0.125, 1.25),
    "gpt-5-mini": Price(0.25, 2.0, 0.025, 0.25),
    "gpt-5-nano": Price(0.05, 0.40, 0.005, 0.05),
    "gpt-4.1": Price(2.0, 8.0, 0.50, 2.0),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10, 0.40),
    "gpt-4o": Price(2.50, 10.0, 1.25, 2.50),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075, 0.15),
    "o3": Price(2.0, 8.0, 0.50, 2.0),
    "o4-mini": Price(1.10, 4.40, 0.275, 1.10),
    # Google
    "gemini-3-pro": Price(2.0, 12.0, 0.20, 2.0),
    "gemini-2.5-pro": Price(1.25, 10.0, 0.125, 1.25),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.03, 0.30),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.01, 0.10),
    # Amazon
    "amazon.nova-premier": Price(2.50, 12.50, 0.625, 2.50),
    "amazon.nova-pro": Price(0.80, 3.20, 0.20, 0.80),
    "amazon.nova-lite": Price(0.06, 0.24, 0.015, 0.06),
    "amazon.nova-micro": Price(0.035, 0.14, 0.00875, 0.035),
}

# Providers and gateways prefix model ids ("us.anthropic.claude-sonnet-4-...", "openai/gpt-5", "models/gemini-2.5-pro").
_PREFIXES = ("us.", "eu.", "apac.", "global.", "anthropic.", "openai/", "anthropic/", "google/", "models/", "bedrock/")


class PriceFileError(ValueError):
    pass


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)
        # Longest key first, so "gpt-5-mini-2025-08-07" matches "gpt-5-mini" before "gpt-5".
        self._keys = sorted(self._prices, key=len, reverse=True)
        self._looked_up: dict[str, Price | None] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PriceTable":
        prices = dict(BUILTIN_PRICES)
        if path:
            prices.update(read_price_file(path))
        return cls(prices)

    def lookup(self, model: str) -> Price | None:
        """The price of a model, remembered per model id (a bounded number of ids: the cardinality guard runs first)."""
        try:
            return self._looked_up[model]
        except KeyError:
            pass
        price = self._lookup(model)
        if len(self._looked_up) < 65536:
            self._looked_up[model] = price
        return price

    def _lookup(self, model: str) -> Price | None:
        """Exact id first, then the longest known id that the (provider-stripped) model id starts with.

        Vendors append dates and versions ("claude-sonnet-4-5-20250929"); the prefix match maps them to their family.
        """
        name = model.lower()
        if name in self._prices:
            return self._prices[name]
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        for key in self._keys:
            if name == key or name.startswith(key + "-") or name.startswith(key + "@") or name.startswith(key + ":"):
                return self._prices[key]
        return None

    def cost(self, model: str, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> float | None:
        """USD cost, or None when the model is unknown (counted as unpriced rather than guessed)."""
        p = self.lookup(model)
        if p is None:
            return None
        return (
            input_tokens * p.input + output_tokens * p.output + cache_read * p.cache_read + cache_write * p.cache_write
        ) / 1_000_000


def read_price_file(path: str | Path) -> dict[str, Price]:
    """Parse a TOML price file (`[models."name"] input = .. output = ..`), with a clear error for each mistake."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PriceFileError(f"price file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceFileError(f"price file {path} is not valid TOML: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict):
        raise PriceFileError(f'price file {path} has no [models."<name>"] tables')
    out: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise PriceFileError(f"price file {path}: models.{name} must be a table")
        unknown = set(entry) - {"input", "output", "cache_read", "cache_write"}
        if unknown:
            raise PriceFileError(f"price file {path}: models.{name} has unknown keys {sorted(unknown)}")
        for field in ("input", "output"):
            if field not in entry:
                raise PriceFileError(f"price file {path}: models.{name} lacks `{field}`")
        values = {}
        for field, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PriceFileError(f"price file {path}: models.{name}.{field} must be a number >= 0")
            values[field] = float(value)
        values.setdefault("cache_read", 0.0)
        values.setdefault("cache_write", values["input"])
        out[name.lower()] = Price(**values)
    return out


# ------------------------------------------------------------------------------------------------ billing providers

#: Providers whose bill `aiyield reconcile` reads (docs/INTERFACE.md §5), in display order.
PROVIDERS = ("anthropic", "openai")

#: Model-id families billed by each provider's own API, matched on the lower-cased id after the gateway prefixes
#: `anthropic/` and `openai/` (LiteLLM's direct routes) are removed. `o1`, `o3` and `o4` match alone or followed by
#: `-` (`o4-mini`), so an unrelated `o30x` is not taken for OpenAI's.
_PROVIDER_FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (provider, id prefixes, exact ids or `id-` prefixes)
    ("anthropic", ("claude",), ()),
    ("openai", ("gpt", "codex"), ("o1", "o3", "o4")),
)

#: Model ids served, and billed, by a cloud rather than by the model's vendor: Amazon Bedrock (`anthropic.claude-…`,
#: `us.anthropic.…`, `bedrock/…`), Google Vertex AI (`vertex_ai/…`, `claude-…@20250514`), Azure OpenAI (`azure/…`).
#: Their spend is on the cloud's invoice, not the vendor's, so it is attributed to no provider.
_CLOUD_ROUTES = ("bedrock/", "vertex_ai/", "vertex/", "azure/", "azure_ai/")
_CLOUD_PREFIXES = ("anthropic.", "us.", "eu.", "apac.", "global.")


@functools.lru_cache(maxsize=4096)  # the exporter asks for the same few models for every day of history, every scrape
def provider_of(model: str) -> str | None:
    """The provider whose bill carries this model's spend: `anthropic`, `openai`, or None.

    The one place models are mapped to providers (the capture ratio, docs/INTERFACE.md §3):

    | model id (lower case)                                        | provider  |
    |--------------------------------------------------------------|-----------|
    | `claude*`, `anthropic/claude*`                               | anthropic |
    | `gpt*`, `codex*`, `o1`, `o3`, `o4`, `o1-*`, `o3-*`, `o4-*`, and the same after `openai/` | openai |
    | Bedrock, Vertex AI and Azure ids (`anthropic.claude-…`, `us.anthropic.…`, `bedrock/…`, `vertex_ai/…`, `claude-…@date`, `azure/…`) | none: the cloud bills them |
    | anything else (`gemini-*`, `amazon.nova-*`, `other`)          | none      |
    """
    name = model.strip().lower()
    if name.startswith(_CLOUD_ROUTES) or name.startswith(_CLOUD_PREFIXES) or "@" in name:
        return None
    for gateway in ("anthropic/", "openai/"):
        if name.startswith(gateway):
            name = name[len(gateway):]
            break
    for provider, prefixes, exact in _PROVIDER_FAMILIES:
        if name.startswith(prefixes) or any(name == e or name.startswith(e + "-") for e in exact):
            return provider
    return None
