"""The live page in a real headless browser (Debian's chromium driven by Playwright), through the running pipeline:
known events in, the page shows their teams and numbers, with no console error."""

from __future__ import annotations

import os
import time

import pytest

from aiyield.core.finance import Budgets
from aiyield.embedded import free_port
from aiyield.exporter import serve

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
#: Playwright's own browser download is not used (and cannot work offline): the system's chromium, headless.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LONG = "growth-experiments-platform"
ODD = "r&d <lab>"
SHA = "ab" * 20


def events(now: float) -> list[dict]:
    def token(i: int, team: str, cost: float) -> dict:
        return {"type": "token", "id": f"page-{i}", "ts": now - 60, "team": team, "tool": "claude-code",
                "model": "claude-sonnet-4", "input_tokens": 1000, "output_tokens": 100, "cost_usd": cost}

    return [
        token(1, LONG, 600_000.0), token(2, LONG, 649_000.25), token(3, "payments", 12.5), token(4, ODD, 3.0),
        {"type": "task", "id": "page-task", "ts": now - 50, "task_id": "t-1", "team": "payments",
         "tool": "claude-code", "status": "completed", "repo": "shop/pay", "commits": [SHA], "ai_lines": 40},
        {"type": "deployment", "id": "page-deploy", "ts": now - 40, "deploy_id": "d-1", "repo": "shop/pay",
         "environment": "production", "status": "succeeded", "commits": [SHA]},
    ]


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (Debian package `chromium`; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extras) is absent")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_page_shows_what_the_pipeline_counted(pipeline, browser, tmp_path):
    pipeline.start_worker()
    pipeline.send(events(time.time()))
    pipeline.wait_value("aiyield_normalized_deployments", 1, team="payments", window="1h")
    pipeline.wait_value("aiyield_spend_usd", 1_249_000.25, team=LONG, tool="claude-code", model="claude-sonnet-4",
                        window="1h")
    pipeline.wait_value("aiyield_spend_usd", 3.0, team=ODD, tool="claude-code", model="claude-sonnet-4", window="1h")
    port = free_port()
    server, _thread = serve(pipeline.settings.redis, port, host="127.0.0.1",
                            budgets=Budgets({"payments": 5000.0, LONG: 1_000_000.0}))
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        response = page.goto(f"http://127.0.0.1:{port}/")
        assert response is not None and response.status == 200
        assert page.title() == "aiyield — live"
        text = " ".join(page.inner_text("body").split())
        for team in (LONG, ODD, "payments"):
            assert team in text, team
        # This month: spend to date, then (after the forecast) the budget; the forecast is over it.
        assert f"{LONG} $1,249,000.25 $" in text and "$1,000,000.00" in text
        assert page.locator("tr", has_text=LONG).first.locator("td.over").count() == 1
        # The team table (7d): spend, normalized deployments, cost per normalized deployment.
        assert "payments $12.50 1.00 $12.50" in text
        assert f"{LONG} $1,249,000.25 0.00 —" in text
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        page.click("text=30d")
        page.wait_for_url(f"http://127.0.0.1:{port}/?window=30d")
        assert "Teams, last 30d" in page.inner_text("body")
        assert problems == []
    finally:
        server.shutdown()
