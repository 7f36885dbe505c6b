"""Model prices and the cost of a token event.

Prices are USD per million tokens. The built-in table covers current models of the major vendors; a TOML price file
(`--prices FILE` / `AIYIELD_PRICES`) overrides or extends it, entry by entry (docs/INTERFACE.md §5).

Rules (docs/FINANCE.md "Price rules"), each applied to one event:

- input, output and cache reads at their prices;
- cache writes by TTL: `cache_write_1h_tokens` (the 1-hour part of `cache_write_tokens`) at `cache_write_1h`, the
  rest (5-minute writes) at `cache_write`. Defaults in a price file: `cache_write` 1.25x input, `cache_write_1h`
  2x input (Anthropic's multipliers; vendors that do not charge writes separately report none);
- long context: when the event's input side (input + cache read + cache write tokens) exceeds the model's
  `long_context.threshold`, every token of the event is priced at the long-context rates (the vendors' rule: the
  whole request moves to the higher tier, not the part above the threshold).

Each entry records where its numbers come from (`source`) and since when they apply (`effective`), which
`aiyield prices` prints.
"""

from __future__ import annotations

import datetime as dt
import functools

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

#: When the built-in table was taken from the vendors' public price pages.
BUILTIN_PRICES_DATE = "2025-11-24"

#: Default multipliers of the input price for cache writes in a price file (Anthropic's published rates).
CACHE_WRITE_5M_FACTOR = 1.25
CACHE_WRITE_1H_FACTOR = 2.0


@dataclass(frozen=True)
class Rates:
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0
    #: 1-hour cache writes; None: 2x input.
    cache_write_1h: float | None = None

    @property
    def write_1h(self) -> float:
        return self.cache_write_1h if self.cache_write_1h is not None else CACHE_WRITE_1H_FACTOR * self.input

    def usd(self, input_tokens: int, output_tokens: int, cache_read: int, cache_write_5m: int, cache_write_1h: int) -> float:
        return (
            input_tokens * self.input + output_tokens * self.output + cache_read * self.cache_read
            + cache_write_5m * self.cache_write + cache_write_1h * self.write_1h
        ) / 1_000_000


@dataclass(frozen=True)
class LongContext(Rates):
    """The rates of an event whose input side exceeds `threshold` tokens."""

    threshold: int = 0


@dataclass(frozen=True)
class Price(Rates):
    long_context: LongContext | None = None
    #: Where the numbers come from (a vendor's price page, a price file) and since when they apply (YYYY-MM-DD).
    source: str = field(default="", compare=False)
    effective: str = field(default="", compare=False)

    def rates(self, input_side: int) -> Rates:
        lc = self.long_context
        return lc if lc is not None and input_side > lc.threshold else self


_ANTHROPIC = "https://www.anthropic.com/pricing#api"
_OPENAI = "https://openai.com/api/pricing/"
_GOOGLE = "https://ai.google.dev/gemini-api/docs/pricing"
_AMAZON = "https://aws.amazon.com/bedrock/pricing/"


def _anthropic(i: float, o: float, long_context: LongContext | None = None) -> Price:
    """Anthropic: cache reads 0.1x input, 5-minute writes 1.25x, 1-hour writes 2x."""
    return Price(i, o, round(i * 0.1, 6), round(i * 1.25, 6), round(i * 2, 6), long_context, _ANTHROPIC, BUILTIN_PRICES_DATE)


def _flat(i: float, o: float, read: float, source: str, long_context: LongContext | None = None) -> Price:
    """OpenAI, Google, Amazon: cache writes are not charged separately (priced as input, whatever the TTL)."""
    return Price(i, o, read, i, i, long_context, source, BUILTIN_PRICES_DATE)


#: Claude Sonnet 4 and 4.5 with the 1M-token context: requests above 200k input tokens at the long-context rates.
_SONNET_LONG = LongContext(6.0, 22.5, 0.6, 7.5, 12.0, threshold=200_000)

BUILTIN_PRICES: dict[str, Price] = {
    # Anthropic
    "claude-opus-4-5": _anthropic(5.0, 25.0),
    "claude-opus-4-1": _anthropic(15.0, 75.0),
    "claude-opus-4": _anthropic(15.0, 75.0),
    "claude-sonnet-4-5": _anthropic(3.0, 15.0, _SONNET_LONG),
    "claude-sonnet-4": _anthropic(3.0, 15.0, _SONNET_LONG),
    "claude-3-7-sonnet": _anthropic(3.0, 15.0),
    "claude-haiku-4-5": _anthropic(1.0, 5.0),
    "claude-3-5-haiku": _anthropic(0.80, 4.0),
    # OpenAI
    "gpt-5.1": _flat(1.25, 10.0, 0.125, _OPENAI),
    "gpt-5": _flat(1.25, 10.0, 0.125, _OPENAI),
    "gpt-5-codex": _flat(1.25, 10.0, 0.125, _OPENAI),
    "gpt-5-mini": _flat(0.25, 2.0, 0.025, _OPENAI),
    "gpt-5-nano": _flat(0.05, 0.40, 0.005, _OPENAI),
    "gpt-4.1": _flat(2.0, 8.0, 0.50, _OPENAI),
    "gpt-4.1-mini": _flat(0.40, 1.60, 0.10, _OPENAI),
    "gpt-4o": _flat(2.50, 10.0, 1.25, _OPENAI),
    "gpt-4o-mini": _flat(0.15, 0.60, 0.075, _OPENAI),
    "o3": _flat(2.0, 8.0, 0.50, _OPENAI),
    "o4-mini": _flat(1.10, 4.40, 0.275, _OPENAI),
    # Google: prompts above 200k tokens at the higher tier
    "gemini-3-pro": _flat(2.0, 12.0, 0.20, _GOOGLE, LongContext(4.0, 18.0, 0.40, 4.0, 4.0, threshold=200_000)),
    "gemini-2.5-pro": _flat(1.25, 10.0, 0.125, _GOOGLE, LongContext(2.50, 15.0, 0.25, 2.50, 2.50, threshold=200_000)),
    "gemini-2.5-flash": _flat(0.30, 2.50, 0.03, _GOOGLE),
    "gemini-2.5-flash-lite": _flat(0.10, 0.40, 0.01, _GOOGLE),
    # Amazon
    "amazon.nova-premier": _flat(2.50, 12.50, 0.625, _AMAZON),
    "amazon.nova-pro": _flat(0.80, 3.20, 0.20, _AMAZON),
    "amazon.nova-lite": _flat(0.06, 0.24, 0.015, _AMAZON),
    "amazon.nova-micro": _flat(0.035, 0.14, 0.00875, _AMAZON),
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

    def entries(self) -> list[tuple[str, Price]]:
        """Every entry of the table, by name (what `aiyield prices` prints)."""
        return sorted(self._prices.items())

    def cost(
        self, model: str, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int,
        cache_write_1h: int = 0,
    ) -> float | None:
        """USD cost of one event, or None when the model is unknown (counted as unpriced rather than guessed).

        `cache_write` is every cache-write token, `cache_write_1h` the part of it written with a 1-hour TTL (the
        validator guarantees it is no larger)."""
        p = self.lookup(model)
        if p is None:
            return None
        rates = p.rates(input_tokens + cache_read + cache_write)
        return rates.usd(input_tokens, output_tokens, cache_read, cache_write - cache_write_1h, cache_write_1h)


_RATE_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
_ENTRY_KEYS = {*_RATE_KEYS, "long_context", "source", "effective"}


def read_price_file(path: str | Path) -> dict[str, Price]:
    """Parse a TOML price file (`[models."name"] input = .. output = ..`), with a clear error for each mistake.

    Each entry's `source` defaults to the file's path and its `effective` date to the file's modification day (UTC).
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise PriceFileError(f"price file {path} does not exist") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceFileError(f"price file {path} is not valid TOML: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict):
        raise PriceFileError(f'price file {path} has no [models."<name>"] tables')
    modified = dt.datetime.fromtimestamp(Path(path).stat().st_mtime, dt.timezone.utc).date().isoformat()
    out: dict[str, Price] = {}
    for name, entry in models.items():
        where = f"price file {path}: models.{name}"
        if not isinstance(entry, dict):
            raise PriceFileError(f"{where} must be a table")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise PriceFileError(f"{where} has unknown keys {sorted(unknown)}")
        rates = _rates(where, {k: v for k, v in entry.items() if k in _RATE_KEYS})
        long_context = None
        if "long_context" in entry:
            lc = entry["long_context"]
            if not isinstance(lc, dict):
                raise PriceFileError(f"{where}.long_context must be a table")
            extra = set(lc) - {*_RATE_KEYS, "threshold"}
            if extra:
                raise PriceFileError(f"{where}.long_context has unknown keys {sorted(extra)}")
            threshold = lc.get("threshold")
            if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
                raise PriceFileError(f"{where}.long_context.threshold must be an integer >= 0 (input tokens)")
            given = {k: v for k, v in lc.items() if k in _RATE_KEYS}
            # Cache reads follow the tier's input price in the same ratio as below the threshold.
            if "cache_read" not in given and "input" in given and rates["input"]:
                given["cache_read"] = rates["cache_read"] * _number(f"{where}.long_context", "input", given["input"]) / rates["input"]
            long_context = LongContext(**_rates(f"{where}.long_context", given), threshold=threshold)
        for key in ("source", "effective"):
            if key in entry and not isinstance(entry[key], (str, dt.date)):
                raise PriceFileError(f"{where}.{key} must be a string (effective: a date, YYYY-MM-DD)")
        out[name.lower()] = Price(
            **rates, long_context=long_context, source=str(entry.get("source", path)),
            effective=str(entry.get("effective", modified)),
        )
    return out


def _number(where: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PriceFileError(f"{where}.{key} must be a number >= 0")
    return float(value)


def _rates(where: str, given: Mapping[str, object]) -> dict[str, float]:
    """Rates of one entry (or tier) with the defaults filled: cache reads free, writes 1.25x and 2x input."""
    for key in ("input", "output"):
        if key not in given:
            raise PriceFileError(f"{where} lacks `{key}`")
    values = {key: _number(where, key, value) for key, value in given.items()}
    values.setdefault("cache_read", 0.0)
    values.setdefault("cache_write", CACHE_WRITE_5M_FACTOR * values["input"])
    values.setdefault("cache_write_1h", CACHE_WRITE_1H_FACTOR * values["input"])
    return values


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
