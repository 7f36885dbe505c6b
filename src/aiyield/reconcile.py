"""`aiyield reconcile`: pull the providers' daily billed cost into Redis, beside aiyield's estimated spend.

Sources, as documented by the providers (request parameters and response shapes used here):

- Anthropic Admin API, Get Cost Report, `GET /v1/organizations/cost_report`
  (https://platform.claude.com/docs/en/api/admin-api/usage-cost/get-cost-report and
  https://platform.claude.com/docs/en/manage-claude/usage-cost-api). Headers `x-api-key: <admin key>` (an
  `sk-ant-admin...` key) and `anthropic-version: 2023-06-01`. Query: `starting_at` (RFC 3339, required; buckets
  snapped to the UTC day), `ending_at` (RFC 3339: buckets that end before it), `bucket_width=1d`, `limit` (1 to 31
  buckets), `page` (the previous answer's `next_page`). Answer: `{"data": [{"starting_at", "ending_at", "results":
  [{"amount", "currency", ...}]}], "has_more", "next_page"}`, where `amount` is a decimal STRING in the currency's
  lowest unit: `"123.45"` USD is $1.2345. `currency` is "currently always USD". Priority Tier costs are not in this
  report (the docs say so): an organisation on Priority Tier is billed more than this shows.
- OpenAI Administration API, Costs, `GET /v1/organization/costs`
  (https://platform.openai.com/docs/api-reference/usage/costs). Header `Authorization: Bearer <admin key>`
  (an `sk-admin-...` key). Query: `start_time` (Unix seconds, inclusive, required), `end_time` (exclusive),
  `bucket_width=1d` (the only width), `limit` (1 to 180 buckets), `page` (the previous answer's `next_page`).
  Answer: `{"object": "page", "data": [{"object": "bucket", "start_time", "end_time", "results": [{"object":
  "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"}, "line_item", "project_id"}]}],
  "has_more", "next_page"}`; `amount.value` is in USD. (The generated reference names the list `result`; both
  spellings are read.)

Mapping decisions:
- A day's billed amount is the sum of every result of its bucket (no `group_by`, so normally one), in USD, kept
  exactly (`Decimal`; OpenAI's JSON numbers are parsed as decimals, never as floats) and stored in the fixed point
  of spend (`core/billing.to_units`).
- Only complete UTC days are stored: a bucket that has not ended at `now` (today, so far) is dropped. Each run
  fetches the last `days` complete days again and overwrites them (HSET), so a day the provider revised later is
  corrected and a re-run never adds. Days older than `core/billing.RETENTION_DAYS` are deleted.
- A bucket that is not one UTC day, a currency other than USD, or an answer without `data`/`has_more` is an error:
  nothing of that provider is stored on that run (never a partial month that would read as low spend).
- One provider failing does not stop the other; the command exits 1 when any failed.
- 429 and 5xx answers and network errors are retried (`Retry-After` honoured, at most 60 s), other answers are not.
  Error messages carry the provider's error text, never the key.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

import redis

from aiyield import keys
from aiyield.core.billing import DAY, RETENTION_DAYS, day_start, to_units
from aiyield.settings import Settings

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_PATH = "/v1/organizations/cost_report"
OPENAI_PATH = "/v1/organization/costs"
#: Buckets asked for per page: Anthropic's maximum for daily buckets; OpenAI allows up to 180.
PAGE_LIMIT = {"anthropic": 31, "openai": 31}
#: A provider that keeps answering `has_more` is stopped here (a 62-day range needs 3 pages of 31 days).
MAX_PAGES = 100
USER_AGENT = "aiyield-reconcile"

Progress = Callable[[str, int, int], None]  # provider, pages fetched, days so far


class ReconcileError(RuntimeError):
    """A provider's answer could not be used; nothing of that provider is stored on this run."""


class Unauthorized(ReconcileError):
    """The provider refused the credential (HTTP 401 or 403, in `status`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ReconcileError):
    """HTTP 404: for a daily report, not processed yet."""


# ----------------------------------------------------------------------------------------------- pure parsers


def _rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _day(start: float, end: float, provider: str) -> int:
    if start % DAY or end - start != DAY:
        raise ReconcileError(f"{provider}: bucket {start:.0f}..{end:.0f} is not one UTC day")
    return int(start)


def _envelope(page: Mapping[str, Any], provider: str) -> list:
    if not isinstance(page, Mapping) or not isinstance(page.get("data"), list) or not isinstance(page.get("has_more"), bool):
        raise ReconcileError(f"{provider}: answer without `data` and `has_more`: {str(page)[:200]}")
    return page["data"]


def anthropic_days(page: Mapping[str, Any], now: float) -> dict[int, Decimal]:
    """One page of Anthropic's cost report: UTC day start -> USD, complete days only."""
    out: dict[int, Decimal] = {}
    for bucket in _envelope(page, "anthropic"):
        start, end = _rfc3339(bucket["starting_at"]), _rfc3339(bucket["ending_at"])
        if end > now:
            continue
        total = Decimal(0)
        for result in bucket.get("results") or []:
            if str(result.get("currency", "USD")).upper() != "USD":
                raise ReconcileError(f"anthropic: currency {result.get('currency')!r}, expected USD")
            try:
                total += Decimal(str(result["amount"])) / 100  # cents, as a decimal string
            except (KeyError, InvalidOperation):
                raise ReconcileError(f"anthropic: result without a decimal `amount`: {result}") from None
        out[_day(start, end, "anthropic")] = total
    return out


def openai_days(page: Mapping[str, Any], now: float) -> dict[int, Decimal]:
    """One page of OpenAI's organisation costs: UTC day start -> USD, complete days only."""
    out: dict[int, Decimal] = {}
    for bucket in _envelope(page, "openai"):
        start, end = float(bucket["start_time"]), float(bucket["end_time"])
        if end > now:
            continue
        total = Decimal(0)
        for result in bucket.get("results", bucket.get("result")) or []:
            amount = result.get("amount") or {}
            if str(amount.get("currency", "usd")).lower() != "usd":
                raise ReconcileError(f"openai: currency {amount.get('currency')!r}, expected usd")
            try:
                total += Decimal(str(amount["value"]))  # USD
            except (KeyError, InvalidOperation):
                raise ReconcileError(f"openai: result without a numeric `amount.value`: {result}") from None
        out[_day(start, end, "openai")] = total
    return out


# ----------------------------------------------------------------------------------------------- HTTP


@dataclass
class Http:
    """HTTP with JSON answers, retrying what a retry can fix. `sleep` is a parameter so tests need not wait.

    Shared by `aiyield reconcile` and the pull connectors (`aiyield.pulling`)."""

    timeout: float = 30.0
    attempts: int = 4
    sleep: Callable[[float], None] = time.sleep

    def get(self, url: str, params: list[tuple[str, str]], headers: Mapping[str, str], provider: str) -> Any:
        return self.request("GET", url, params, headers, provider)

    def request(
        self, method: str, url: str, params: list[tuple[str, str]], headers: Mapping[str, str], provider: str,
        body: Any = None, decode: bool = True,
    ) -> Any:
        """One request, retried on 429, 5xx and network errors (`Retry-After` honoured, at most 60 s). `body` is
        sent as JSON; with `decode=False` the answer's bytes are returned as they are (NDJSON downloads).
        A refused credential (401, 403) raises `Unauthorized`, a 404 `NotFound`; other failures `ReconcileError`."""
        full = f"{url}?{urlencode(params)}" if params else url
        data = json.dumps(body).encode() if body is not None else None
        extra = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(
            full, data=data, method=method,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **extra, **headers},
        )
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return json.loads(raw, parse_float=Decimal) if decode else raw
            except urllib.error.HTTPError as exc:
                text = exc.read()[:500].decode(errors="replace")
                if (exc.code == 429 or exc.code >= 500) and attempt < self.attempts:
                    self.sleep(_retry_after(exc.headers.get("Retry-After"), attempt))
                    continue
                message = f"{provider}: HTTP {exc.code} from {url}: {text}"
                if exc.code in (401, 403):
                    raise Unauthorized(message, exc.code) from None
                raise (NotFound if exc.code == 404 else ReconcileError)(message) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt < self.attempts:
                    self.sleep(_retry_after(None, attempt))
                    continue
                raise ReconcileError(f"{provider}: cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
            except json.JSONDecodeError:
                raise ReconcileError(f"{provider}: {url} did not answer JSON") from None
        raise AssertionError("unreachable")


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        return min(60.0, max(0.0, float(header))) if header else float(2 ** (attempt - 1))
    except ValueError:
        return float(2 ** (attempt - 1))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch(provider: str, settings: Settings, start: int, now: float, http: Http, progress: Progress | None = None) -> dict[int, Decimal]:
    """Every complete day from `start` to `now` that the provider reports, following `next_page` to the end."""
    if provider == "anthropic":
        url = settings.anthropic_api_url + ANTHROPIC_PATH
        headers = {"x-api-key": settings.anthropic_admin_key, "anthropic-version": ANTHROPIC_VERSION}
        base = [("starting_at", _iso(start)), ("ending_at", _iso(now)), ("bucket_width", "1d"),
                ("limit", str(PAGE_LIMIT[provider]))]
        parse = anthropic_days
    elif provider == "openai":
        url = settings.openai_api_url + OPENAI_PATH
        headers = {"Authorization": f"Bearer {settings.openai_admin_key}"}
        base = [("start_time", str(start)), ("end_time", str(int(now))), ("bucket_width", "1d"),
                ("limit", str(PAGE_LIMIT[provider]))]
        parse = openai_days
    else:
        raise ValueError(provider)
    days: dict[int, Decimal] = {}
    page_token: str | None = None
    for pages in range(1, MAX_PAGES + 1):
        answer = http.get(url, base + ([("page", page_token)] if page_token else []), headers, provider)
        try:
            parsed = parse(answer, now)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReconcileError(f"{provider}: unexpected answer ({type(exc).__name__}: {exc})") from None
        for day, amount in parsed.items():
            if day >= start:
                days[day] = days.get(day, Decimal(0)) + amount
        if progress is not None:
            progress(provider, pages, len(days))
        if not answer["has_more"]:
            return days
        page_token = answer.get("next_page")
        if not page_token:
            raise ReconcileError(f"{provider}: `has_more` without a `next_page`")
    raise ReconcileError(f"{provider}: still `has_more` after {MAX_PAGES} pages")


# ----------------------------------------------------------------------------------------------- store


def store(client: redis.Redis, provider: str, days: Mapping[int, Decimal], now: float) -> None:
    """Overwrite the provider's billed days (idempotent), drop days past retention, note the sync time: atomically."""
    key = keys.billed_days(provider)
    oldest = day_start(now) - RETENTION_DAYS * DAY
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                stale = [f for f in pipe.hkeys(key) if int(f) < oldest]
                pipe.multi()
                if days:
                    pipe.hset(key, mapping={str(day): to_units(amount) for day, amount in days.items()})
                if stale:
                    pipe.hdel(key, *stale)
                pipe.hset(keys.BILLED_SYNCED, provider, repr(float(now)))
                pipe.execute()
                return
            except redis.WatchError:
                continue


# ----------------------------------------------------------------------------------------------- the command


def configured(settings: Settings) -> list[str]:
    """Providers with an admin key, in display order."""
    return [p for p, key in (("anthropic", settings.anthropic_admin_key), ("openai", settings.openai_admin_key)) if key]


@dataclass
class Outcome:
    provider: str
    days: dict[int, Decimal] = field(default_factory=dict)
    error: str | None = None


def run(
    settings: Settings, client: redis.Redis, now: float, days: int = 30, http: Http | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Fetch and store the last `days` complete UTC days of every configured provider."""
    http = http or Http()
    start = day_start(now) - days * DAY
    outcomes = []
    for provider in configured(settings):
        try:
            fetched = fetch(provider, settings, start, now, http, progress)
        except ReconcileError as exc:
            outcomes.append(Outcome(provider, error=str(exc)))
            continue
        store(client, provider, fetched, now)
        outcomes.append(Outcome(provider, days=fetched))
    return outcomes
