"""Issue 10, findings 1 and 2, at the worker: hostile values written straight onto `aiyield.events` (no gateway in
front) are rejected one by one, counted and dead-lettered with their reasons; their neighbours count exactly;
counters saturate rather than fail; names cannot smuggle the series separator or look-alikes."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

pytestmark = pytest.mark.integration

LIMIT = 2**63 - 1  # the store's counters saturate here
MAX_COUNT = 2**53 - 1


def token(event_id: str, ts: float, **kw) -> dict:
    return {"type": "token", "id": event_id, "ts": ts, "team": "payments", "tool": "claude-code",
            "model": "claude-sonnet-4", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.25, **kw}


def raw_batch(events: list[dict], replace: dict[str, str] | None = None) -> bytes:
    """One Kafka message carrying `events`, serialised by the standard library (integers of any size); `replace`
    substitutes literal JSON text, for numbers no serialiser writes (1e400)."""
    text = json.dumps({"events": events})
    for placeholder, literal in (replace or {}).items():
        text = text.replace(json.dumps(placeholder), literal)
    return text.encode()


def workers_alive(pipeline) -> bool:
    return all(p.poll() is None for p in pipeline.workers)


def test_finding_1_extreme_numbers_are_rejected_one_by_one_and_their_batch_counts_exactly(pipeline):
    now = time.time() - 60
    valid = [token(f"ok-{i}", now, input_tokens=1000 + i) for i in range(5)]
    bad = [
        token("bad-cost", now, cost_usd=1e300),
        token("bad-2-63", now, input_tokens=2**63),
        token("bad-count", now, output_tokens=MAX_COUNT + 1),
        token("bad-1e400", now, cache_read_tokens="@1e400@"),
        token("bad-cost-1e400", now, cost_usd="@-1e400@"),
        {"type": "task", "id": "bad-lines", "ts": now, "task_id": "T1", "team": "payments", "tool": "claude-code",
         "status": "completed", "ai_lines": 2**64},
    ]
    mixed = [valid[0], bad[0], valid[1], bad[1], bad[2], valid[2], bad[3], bad[4], valid[3], bad[5], valid[4]]
    pipeline.start_worker()
    pipeline.send_raw([raw_batch(mixed, {"@1e400@": "1e400", "@-1e400@": "-1e400"})])

    pipeline.wait_value("aiyield_events_total", 5, type="token", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 5, type="token", outcome="invalid")
    pipeline.wait_value("aiyield_events_total", 1, type="task", outcome="invalid")
    labels = dict(team="payments", tool="claude-code", model="claude-sonnet-4", window="1h")
    assert pipeline.value("aiyield_tokens", type="input", **labels) == sum(1000 + i for i in range(5))
    assert pipeline.value("aiyield_spend_usd", **labels) == pytest.approx(5 * 0.25, abs=1e-12)

    reasons = {item["raw"]["id"]: item["reason"] for item in pipeline.dead_letters(6)}
    assert set(reasons) == {e["id"] for e in bad}
    assert "<= 1000000.0" in reasons["bad-cost"] and "$.cost_usd" in reasons["bad-cost"]
    assert "<= 9007199254740991" in reasons["bad-2-63"] and "<= 9007199254740991" in reasons["bad-count"]
    assert "$.cache_read_tokens" in reasons["bad-1e400"]  # inf: not an integer
    assert "$.cost_usd" in reasons["bad-cost-1e400"]
    assert "$.ai_lines" in reasons["bad-lines"]

    # The worker is up and the stream moves on: a later event counts.
    pipeline.send([token("after", now)])
    pipeline.wait_value("aiyield_events_total", 6, type="token", outcome="accepted")
    assert workers_alive(pipeline), pipeline.logs()


def test_finding_1_counters_that_would_overflow_saturate_and_the_rest_of_the_batch_is_exact(pipeline):
    now = time.time() - 60
    # 1100 events at the largest valid count: 9.9e18 input tokens for one series, past a signed 64-bit counter,
    # in ONE Kafka record (so in one batch), beside a small series that must come out exact.
    huge = [token(f"huge-{i}", now, team="big", input_tokens=MAX_COUNT, cost_usd=1.0) for i in range(1100)]
    small = [token(f"small-{i}", now, team="small", input_tokens=10 + i, cost_usd=0.5) for i in range(7)]
    events = huge[:550] + small + huge[550:]
    pipeline.start_worker()
    pipeline.send_raw([raw_batch(events)])
    pipeline.wait_value("aiyield_events_total", 1107, type="token", outcome="accepted")

    def v(name, team, **labels):
        return pipeline.value(name, team=team, tool="claude-code", model="claude-sonnet-4", **labels)

    for window in ("1h", "24h", "7d", "30d"):
        assert v("aiyield_tokens", "big", type="input", window=window) == float(LIMIT)  # saturated, not wrapped
        assert v("aiyield_tokens", "big", type="output", window=window) == 1100 * 100  # same events, exact
        assert v("aiyield_spend_usd", "big", window=window) == pytest.approx(1100.0, abs=1e-9)
        assert v("aiyield_tokens", "small", type="input", window=window) == sum(10 + i for i in range(7))
        assert v("aiyield_spend_usd", "small", window=window) == pytest.approx(3.5, abs=1e-12)

    # A later batch adding to the saturated counter (the Lua saturation path, not the Python one) changes it not,
    # and everything else in that batch still counts.
    more = [token(f"more-{i}", now, team="big", input_tokens=MAX_COUNT, cost_usd=1.0) for i in range(3)]
    pipeline.send([*more, token("small-late", now, team="small", input_tokens=1, cost_usd=0.5)])
    pipeline.wait_value("aiyield_events_total", 1111, type="token", outcome="accepted")
    assert v("aiyield_tokens", "big", type="input", window="1h") == float(LIMIT)
    assert v("aiyield_spend_usd", "big", window="1h") == pytest.approx(1103.0, abs=1e-9)
    assert v("aiyield_tokens", "small", type="input", window="1h") == sum(10 + i for i in range(7)) + 1
    assert pipeline.events_total("token", "invalid") == 0
    assert workers_alive(pipeline), pipeline.logs()


def test_finding_2_separator_and_look_alike_names(pipeline):
    now = time.time() - 60
    sonnet = 1000 * 3.0 / 1e6 + 100 * 15.0 / 1e6  # claude-sonnet-4 from the built-in table
    events = [
        token("good-1", now, team="good"),
        token("evil", now, team="evil\u001fx"),                           # the series separator: rejected
        token("spoof", now, team="good\u001fspoof", cost_usd=100.0),      # would add $100 to `good`: rejected
        token("full-width", now, team="\uff47\uff4f\uff4f\uff44"),        # ｇｏｏｄ
        token("zero-width", now, team="go\u200bod"),
        token("bidi", now, team="\u202egood"),
        # A zero-width character in the model name no longer escapes the price table (no cost_usd: priced).
        {**token("priced", now, team="good", model="claude\u200b-sonnet-4"), "cost_usd": None},
        {**token("priced-fw", now, team="good", model="\uff43laude-sonnet-4"), "cost_usd": None},
    ]
    for event in events:
        if event.get("cost_usd", 0) is None:
            del event["cost_usd"]
    pipeline.start_worker()
    pipeline.send_raw([raw_batch(events)])
    pipeline.wait_value("aiyield_events_total", 6, type="token", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 2, type="token", outcome="invalid")

    with urllib.request.urlopen(pipeline.metrics_url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    assert "\x1f" not in text and "evil" not in text and "spoof" not in text
    m = pipeline.metrics()
    teams = {dict(labels).get("team") for (_name, labels) in m} - {None}
    assert teams == {"good"}
    models = {dict(labels).get("model") for (_name, labels) in m} - {None}
    assert models == {"claude-sonnet-4"}
    assert pipeline.value("aiyield_spend_usd", team="good", tool="claude-code", model="claude-sonnet-4",
                          window="1h") == pytest.approx(4 * 0.25 + 2 * sonnet, abs=1e-12)
    assert pipeline.value("aiyield_unpriced_token_events", team="good", tool="claude-code", model="claude-sonnet-4",
                          window="1h") is None
    reasons = {item["raw"]["id"]: item["reason"] for item in pipeline.dead_letters(2)}
    assert set(reasons) == {"evil", "spoof"} and all("without control characters" in r for r in reasons.values())
    assert workers_alive(pipeline), pipeline.logs()
