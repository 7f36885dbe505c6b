"""The exporter's metric families from a fixed snapshot: names, labels, values, and the exact exposition text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from aiyield.core.windows import SCALE, WINDOWS, series
from aiyield.exporter import metric_families
from aiyield.readout import Snapshot


def snapshot() -> Snapshot:
    sums = {w: {} for w in WINDOWS}
    sums["1h"] = {
        series("spend", "payments", "claude-code", "claude-sonnet-4"): 3 * SCALE["spend"] // 2,
        series("tokens", "payments", "claude-code", "claude-sonnet-4", "input"): 1000,
        series("tasks", "payments", "claude-code", "completed"): 2,
        series("tasks", "payments", "claude-code", "shipped"): 1,
        series("credit", "payments"): SCALE["credit"] // 2,
        series("spend", "growth", "codex", "gpt-5"): 4 * SCALE["spend"],
    }
    return Snapshot(
        now=0, sums=sums, developers={w: {"payments": 3, "growth": 1} for w in WINDOWS}, teams={"payments", "growth"},
        events_total={("token", "accepted"): 10, ("token", "invalid"): 1}, last_ts={"token": 1700000000.0},
    )


class Fixed(Collector):
    def collect(self):
        return metric_families(snapshot())


def registry() -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(Fixed())
    return r


def test_values():
    r = registry()
    assert r.get_sample_value("aiyield_spend_usd", {"team": "payments", "tool": "claude-code", "model": "claude-sonnet-4", "window": "1h"}) == 1.5
    assert r.get_sample_value("aiyield_normalized_deployments", {"team": "payments", "window": "1h"}) == 0.5
    assert r.get_sample_value("aiyield_cost_per_normalized_deployment_usd", {"team": "payments", "window": "1h"}) == 3.0
    # A team with spend and no deployments: zero deployments shown, cost per deployment absent.
    assert r.get_sample_value("aiyield_normalized_deployments", {"team": "growth", "window": "1h"}) == 0
    assert r.get_sample_value("aiyield_cost_per_normalized_deployment_usd", {"team": "growth", "window": "1h"}) is None
    assert r.get_sample_value("aiyield_tasks", {"team": "payments", "tool": "claude-code", "status": "shipped", "window": "1h"}) == 1
    assert r.get_sample_value("aiyield_events_total", {"type": "token", "outcome": "invalid"}) == 1
    assert r.get_sample_value("aiyield_active_developers", {"team": "payments", "window": "30d"}) == 3


def test_exposition_text():
    text = generate_latest(registry()).decode()
    assert "# TYPE aiyield_events_total counter" in text
    assert 'aiyield_events_total{outcome="accepted",type="token"} 10.0' in text
    assert "# TYPE aiyield_spend_usd gauge" in text
    assert 'aiyield_spend_usd{model="claude-sonnet-4",team="payments",tool="claude-code",window="1h"} 1.5' in text
    assert 'aiyield_tokens{model="claude-sonnet-4",team="payments",tool="claude-code",type="input",window="1h"} 1000.0' in text
    assert 'aiyield_last_event_timestamp_seconds{type="token"} 1.7e+09' in text
    assert "developer=" not in text and "user=" not in text


def test_a_failed_scrape_is_a_500_and_counted():
    import urllib.error
    import urllib.request

    import pytest

    from aiyield.embedded import free_port
    from aiyield.exporter import serve

    port = free_port()
    server, _thread = serve(f"redis://127.0.0.1:{free_port()}/0", port, host="127.0.0.1")  # nobody listens there
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert info.value.code == 500
    finally:
        server.shutdown()
