"""aiyield.reconcile without Redis: the payload parsers on the providers' documented examples, and fetching through
a local server of both APIs (pagination, auth headers, query parameters, retries, errors)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from aiyield.reconcile import Http, ReconcileError, anthropic_days, fetch, openai_days
from aiyield.settings import Settings
from tests.billing_apis import ANTHROPIC_KEY, OPENAI_KEY, PAGE_SIZE

DAY = 86400
#: 2026-06-17 10:20 UTC
NOW = 1_781_691_600.0
TODAY = int(NOW // DAY) * DAY

# The documented example answer of Anthropic's Get Cost Report (platform.claude.com/docs/en/api/admin-api/usage-cost/
# get-cost-report), grouped by workspace and description.
ANTHROPIC_EXAMPLE = {
    "data": [{
        "starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z",
        "results": [{"currency": "USD", "amount": "123.78912", "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                     "description": "Claude Sonnet 4 Usage - Input Tokens", "cost_type": "tokens",
                     "context_window": "0-200k", "model": "claude-sonnet-4-20250514", "service_tier": "standard",
                     "token_type": "uncached_input_tokens"}],
    }],
    "has_more": True,
    "next_page": "page_MjAyNS0wNS0xNFQwMDowMDowMFo=",
}
# The documented example answer of OpenAI's Costs endpoint (platform.openai.com/docs/api-reference/usage/costs).
OPENAI_EXAMPLE = """{"object": "page", "data": [{"object": "bucket", "start_time": 1730419200, "end_time": 1730505600,
  "results": [{"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"},
  "line_item": null, "project_id": null}]}], "has_more": false, "next_page": null}"""
AUG_1 = 1754006400  # 2025-08-01T00:00:00Z


def test_anthropic_amount_is_cents_as_a_decimal_string():
    assert anthropic_days(ANTHROPIC_EXAMPLE, NOW) == {AUG_1: Decimal("1.2378912")}


def test_openai_amount_is_usd_kept_exact():
    page = json.loads(OPENAI_EXAMPLE, parse_float=Decimal)
    assert openai_days(page, NOW) == {1730419200: Decimal("0.06")}
    # The generated reference spells the list `result`.
    page["data"][0]["result"] = page["data"][0].pop("results")
    assert openai_days(page, NOW) == {1730419200: Decimal("0.06")}


def test_results_of_a_day_are_summed_and_an_empty_day_is_zero():
    page = {"data": [
        {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z",
         "results": [{"currency": "USD", "amount": "100"}, {"currency": "USD", "amount": "0.5"}]},
        {"starting_at": "2025-08-02T00:00:00Z", "ending_at": "2025-08-03T00:00:00Z", "results": []},
    ], "has_more": False, "next_page": None}
    assert anthropic_days(page, NOW) == {AUG_1: Decimal("1.005"), AUG_1 + DAY: Decimal(0)}


def test_an_incomplete_day_is_dropped():
    page = {"object": "page", "has_more": False, "next_page": None, "data": [
        {"object": "bucket", "start_time": TODAY - DAY, "end_time": TODAY, "results": []},
        {"object": "bucket", "start_time": TODAY, "end_time": TODAY + DAY,
         "results": [{"amount": {"value": Decimal(5), "currency": "usd"}}]}]}
    assert openai_days(page, NOW) == {TODAY - DAY: Decimal(0)}


@pytest.mark.parametrize("page, error", [
    ({"data": []}, "without `data` and `has_more`"),
    ({"error": {"message": "x"}}, "without `data` and `has_more`"),
    ({"data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-01T01:00:00Z", "results": []}],
      "has_more": False}, "not one UTC day"),
    ({"data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z",
                "results": [{"currency": "EUR", "amount": "1"}]}], "has_more": False}, "currency"),
    ({"data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z",
                "results": [{"currency": "USD", "amount": "abc"}]}], "has_more": False}, "decimal `amount`"),
])
def test_unusable_answers_are_errors(page, error):
    with pytest.raises(ReconcileError, match=error):
        anthropic_days(page, NOW)


def settings(apis, **kw) -> Settings:
    return Settings(anthropic_admin_key=ANTHROPIC_KEY, openai_admin_key=OPENAI_KEY, anthropic_api_url=apis.url,
                    openai_api_url=apis.url, **kw)


def test_anthropic_fetch_follows_pages_with_the_documented_request(billing_apis):
    start = TODAY - 20 * DAY
    billing_apis.anthropic = {TODAY - DAY: ["1500.5", "499.5"], TODAY - 20 * DAY: ["1"], TODAY: ["99999"]}
    pages = []
    got = fetch("anthropic", settings(billing_apis), start, NOW, Http(), lambda p, n, d: pages.append((p, n, d)))
    assert got == {d: Decimal(0) for d in range(start, TODAY, DAY)} | {TODAY - DAY: Decimal(20), start: Decimal("0.01")}
    requests = billing_apis.of("/v1/organizations/cost_report")
    assert len(requests) == 3 and pages[-1] == ("anthropic", 3, 20)  # 20 days, 7 a page
    for i, r in enumerate(requests):
        assert r.headers["x-api-key"] == ANTHROPIC_KEY and r.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in r.headers
        assert r.param("starting_at") == "2026-05-28T00:00:00Z" and r.param("ending_at") == "2026-06-17T10:20:00Z"
        assert r.param("bucket_width") == "1d" and r.param("limit") == "31"
        assert (r.param("page") is None) == (i == 0)
    assert requests[1].param("page").startswith("page_")


def test_openai_fetch_follows_pages_with_the_documented_request(billing_apis):
    start = TODAY - 10 * DAY
    billing_apis.openai = {TODAY - DAY: ["4.25", "0.75"], TODAY: ["1000.1"]}
    got = fetch("openai", settings(billing_apis), start, NOW, Http())
    assert got == {d: Decimal(0) for d in range(start, TODAY, DAY)} | {TODAY - DAY: Decimal(5)}
    requests = billing_apis.of("/v1/organization/costs")
    assert len(requests) == 2  # 11 buckets (today's incomplete one included by the server), 7 a page
    for r in requests:
        assert r.headers["authorization"] == f"Bearer {OPENAI_KEY}" and "x-api-key" not in r.headers
        assert r.param("start_time") == str(start) and r.param("end_time") == str(int(NOW))
        assert r.param("bucket_width") == "1d" and r.param("limit") == "31"
    assert requests[1].param("page") == f"cursor-{start + PAGE_SIZE * DAY}"


def test_rate_limits_and_server_errors_are_retried(billing_apis):
    billing_apis.failures = [429, 503]
    waits = []
    got = fetch("openai", settings(billing_apis), TODAY - DAY, NOW, Http(sleep=waits.append))
    assert got == {TODAY - DAY: Decimal(0)}
    assert waits == [0.0, 0.0]  # Retry-After: 0
    billing_apis.failures = [500] * 4
    with pytest.raises(ReconcileError, match="HTTP 500"):
        fetch("openai", settings(billing_apis), TODAY - DAY, NOW, Http(sleep=waits.append))


class Canned(Http):
    """Answers every request with one page, as a changed API could."""

    def __init__(self, page: dict) -> None:
        super().__init__()
        self.page = page

    def get(self, *args, **kw):
        return self.page


def test_an_answer_of_another_shape_is_an_error():
    anthropic = Settings(anthropic_admin_key=ANTHROPIC_KEY)
    with pytest.raises(ReconcileError, match="unexpected answer"):
        fetch("anthropic", anthropic, TODAY - DAY, NOW, Canned({"data": [{"results": []}], "has_more": False}))
    with pytest.raises(ReconcileError, match="`has_more` without a `next_page`"):
        fetch("anthropic", anthropic, TODAY - DAY, NOW, Canned({"data": [], "has_more": True, "next_page": None}))


def test_a_wrong_key_is_an_error_that_does_not_show_the_key(billing_apis):
    wrong = Settings(anthropic_admin_key="sk-ant-admin01-WRONG", anthropic_api_url=billing_apis.url)
    with pytest.raises(ReconcileError, match="HTTP 401.*invalid x-api-key") as info:
        fetch("anthropic", wrong, TODAY - DAY, NOW, Http(sleep=lambda s: None))
    assert "WRONG" not in str(info.value)
    assert len(billing_apis.requests) == 1  # a 401 is not retried


def test_admin_keys_stay_out_of_repr_and_urls_are_checked():
    s = Settings.from_env({"AIYIELD_ANTHROPIC_ADMIN_KEY": "sk-ant-admin01-secret", "AIYIELD_OPENAI_ADMIN_KEY": "sk-admin-secret",
                           "AIYIELD_OPENAI_API_URL": "http://127.0.0.1:9/"})
    assert s.anthropic_admin_key == "sk-ant-admin01-secret" and s.openai_api_url == "http://127.0.0.1:9"
    assert "secret" not in repr(s)
    from aiyield.settings import SettingsError

    with pytest.raises(SettingsError, match="AIYIELD_ANTHROPIC_API_URL"):
        Settings.from_env({"AIYIELD_ANTHROPIC_API_URL": "api.anthropic.com"})
