"""The live page from a fixed snapshot: what it says, that names are escaped, and how the exporter's app serves it.
(The page in a real browser, through the running pipeline: tests/integration/test_page_browser.py.)"""

from __future__ import annotations

import dataclasses
import io
from html.parser import HTMLParser

from prometheus_client import CollectorRegistry

from aiyield import page
from aiyield.core.measures import Measure
from aiyield.core.windows import SCALE
from aiyield.exposition import CONTENT_TYPE, wsgi_app
from aiyield.readout import Billed

from test_exporter import BUDGETS, NOW, Fixed, snapshot


def text_of(document: str) -> str:
    """The page's visible text, as a reader sees it (entities decoded, tags gone, SVG titles included)."""

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skip = False

        def handle_starttag(self, tag, attrs):
            self.skip = tag == "style"

        def handle_endtag(self, tag):
            self.skip = False

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(document)
    return " ".join(" ".join(parser.parts).split())


def test_the_page_shows_month_teams_waste_and_billed():
    day = int(NOW // 86400) * 86400
    billed = Billed(days={"anthropic": {day - d * 86400: 30 * SCALE[Measure.SPEND] for d in range(1, 31)}})
    document = page.render(snapshot(), billed, BUDGETS, window="24h")
    text = text_of(document)
    # This month: payments spent 24 USD a day since the 1st (17 days in June to the 17th) against a 3,000 budget.
    assert "This month (2026-06, UTC)" in text
    assert "payments $408.00" in text and "$3,000.00" in text
    assert "finance-only $0.00" in text  # a budget without spend is still shown
    # Teams over the chosen window, with cost per normalized deployment and retractions (1.25 = 0.25 + 1).
    assert "Teams, last 24h" in text
    assert "payments $1.50 0.50 $3.00 0.25 1.00" in text
    # growth spends and has never shipped: flagged.
    assert "growth usage without output" in text
    # Billed against estimated (the estimate counts models of known providers only).
    assert "anthropic" in text and "$900.00" in text
    assert "Spend per hour, last 7 days (USD): peak $1.00" in text
    assert document.count("<script") == 0 and "http://" not in document and "https://" not in document


def test_every_name_is_escaped():
    snap = snapshot()
    evil = '<img src=x onerror="alert(1)">&co'
    renamed = {k: {m: {(evil if labels[0] == "growth" else labels[0], *labels[1:]): v for labels, v in rows.items()}
                   for m, rows in amounts.items()} for k, amounts in snap.sums.items()}
    snap = dataclasses.replace(snap, sums=renamed, teams={"payments", evil}, buckets={}, bucket_teams={})
    document = page.render(snap, Billed(), BUDGETS)
    assert evil not in document and "<img" not in document
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;co" in document
    assert evil in text_of(document)


def call(app, path: str, query: str = "") -> tuple[str, dict, bytes]:
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_the_exporter_app_serves_the_page_at_root_and_metrics_elsewhere():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(snapshot()))
    windows = []

    def fake_page(window: str) -> str:
        windows.append(window)
        return "<p>payments</p>"

    app = wsgi_app(registry, page=fake_page)
    status, headers, body = call(app, "/", "window=30d")
    assert status == "200 OK" and headers["Content-Type"] == "text/html; charset=utf-8" and body == b"<p>payments</p>"
    assert windows == ["30d"]
    status, headers, body = call(app, "/metrics")
    assert headers["Content-Type"] == CONTENT_TYPE and b"aiyield_spend_usd" in body

    def broken(window: str) -> str:
        raise RuntimeError("redis is gone")

    status, _headers, body = call(wsgi_app(registry, page=broken), "/")
    assert status.startswith("500") and b"page failed" in body
