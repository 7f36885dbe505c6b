"""LiteLLM adapter, fed by bodies the real `litellm` package posted (tests/fixtures/litellm, all three log formats)."""

import json
from pathlib import Path

import pytest

from aiyield.core.events import InvalidEvent, encode, parse_items
from aiyield.gateway.common import BadPayload
from aiyield.gateway.litellm import from_litellm, tool_of

FIXTURES = Path(__file__).parents[2] / "fixtures" / "litellm"
NOW = 2_000_000_000.0

EXPECTED = [
    {"team": "payments", "tool": "claude-code", "model": "claude-sonnet-4-5", "input_tokens": 300,
     "output_tokens": 300, "cache_read_tokens": 800, "cache_write_tokens": 100, "cost_usd": 0.006015,
     "developer": "alice@acme.example"},
    {"team": "team-9c1d", "tool": "cursor", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 20,
     "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.00022500000000000002},
    {"team": "unassigned", "tool": "litellm", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 20,
     "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 1.35e-05},
]


def bodies(log_format: str) -> list[bytes]:
    if log_format == "single":
        return [p.read_bytes() for p in sorted(FIXTURES.glob("single.*.json"))]
    return [(FIXTURES / ("json_array.json" if log_format == "json_array" else "ndjson.ndjson")).read_bytes()]


def raw_payloads(log_format: str) -> list[dict]:
    out = []
    for body in bodies(log_format):
        document = json.loads(body) if log_format != "ndjson" else [json.loads(line) for line in body.splitlines()]
        out += document if isinstance(document, list) else [document]
    return out


def payloads() -> list[dict]:
    return json.loads((FIXTURES / "json_array.json").read_bytes())


@pytest.mark.parametrize("log_format", ["json_array", "ndjson", "single"])
def test_every_log_format_gives_the_same_events(log_format):
    events, ignored = [], {}
    for body in bodies(log_format):
        result = from_litellm(body)
        events += result.events
        for k, v in result.ignored.items():
            ignored[k] = ignored.get(k, 0) + v
    assert ignored == {"failure": 1}
    sent = [p for p in raw_payloads(log_format) if p["status"] == "success"]
    assert [e["id"] for e in events] == [p["id"] for p in sent]
    assert [e["ts"] for e in events] == [p["endTime"] for p in sent]
    assert [{k: v for k, v in e.items() if k not in ("type", "id", "ts")} for e in events] == EXPECTED
    good, bad = parse_items(events, NOW)
    assert bad == [] and len(good) == 3


@pytest.mark.parametrize("log_format", ["json_array", "ndjson", "single"])
def test_no_content_survives_the_adapter(log_format):
    for body in bodies(log_format):
        assert b"SECRET" in body  # the fixture does carry content...
        out = encode(from_litellm(body).events)
        assert b"SECRET" not in out and b"refactor" not in out  # ...and none of it leaves the adapter


def test_input_plus_cache_tokens_is_litellms_prompt_tokens():
    first = payloads()[0]
    event = from_litellm(json.dumps(first).encode()).events[0]
    assert event["input_tokens"] + event["cache_read_tokens"] + event["cache_write_tokens"] == first["prompt_tokens"]
    assert event["output_tokens"] == first["completion_tokens"]


def test_team_alias_wins_over_team_id_and_developer_falls_back_to_end_user():
    p = payloads()[1]
    p["metadata"]["user_api_key_team_alias"] = "web"
    p["end_user"] = "customer-42"
    event = from_litellm(json.dumps(p).encode()).events[0]
    assert event["team"] == "web" and event["developer"] == "customer-42"


@pytest.mark.parametrize(
    ("tags", "agent", "tool"),
    [
        (["User-Agent: claude-cli", "User-Agent: claude-cli/2.0.14 (external, cli)"], None, "claude-code"),
        ([], "claude-cli/2.0.14 (external, cli)", "claude-code"),
        ([], "codex_cli_rs/0.44.0 (Mac OS 15.6.1; arm64) iTerm.app/3.6.2", "codex"),
        ([], "GitHubCopilotChat/0.31.0", "copilot"),
        ([], "aider/0.86.0", "aider"),
        (["prod", "Cursor"], "python-httpx/0.28.1", "cursor"),
        ([], "OpenAI/Python 1.109.1", "litellm"),
        ([], "python-httpx/0.28.1", "litellm"),
        (None, None, "litellm"),
        ([1, None], 42, "litellm"),
    ],
)
def test_tool_from_tags_then_user_agent(tags, agent, tool):
    assert tool_of(tags, agent) == tool


def test_a_bad_ndjson_line_is_one_rejected_item():
    lines = (FIXTURES / "ndjson.ndjson").read_bytes().splitlines()
    body = b"\n".join([lines[0], b"{not json", lines[1]])
    events = from_litellm(body).events
    assert isinstance(events[1], InvalidEvent)
    good, bad = parse_items(events, NOW)
    assert len(good) == 2 and [r.index for r in bad] == [1]


@pytest.mark.parametrize("body", [b"{not json", b'"text"', b"42", b""])
def test_a_body_that_is_not_json_is_a_bad_payload(body):
    with pytest.raises(BadPayload):
        from_litellm(body)


def test_missing_fields_are_rejected_by_the_validator_without_content():
    result = from_litellm(json.dumps([{"status": "success", "messages": [{"content": "SECRET"}]}]).encode())
    good, bad = parse_items(result.events, NOW)
    assert good == [] and len(bad) == 1
    assert b"SECRET" not in encode(bad[0].error.raw)


@pytest.mark.parametrize("where", ["litellm", "anthropic"])
def test_one_hour_cache_writes_are_read_where_the_provider_reports_the_ttl(where):
    first = payloads()[0]
    usage = first["metadata"]["usage_object"]
    if where == "litellm":  # LiteLLM's normalised usage
        usage.setdefault("prompt_tokens_details", {})["cache_creation_token_details"] = {
            "ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40}
    else:  # Anthropic's own usage object, passed through
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40}
    (event,) = from_litellm(json.dumps(first).encode()).events
    assert (event["cache_write_tokens"], event["cache_write_1h_tokens"]) == (100, 40)
    good, bad = parse_items([event], NOW)
    assert bad == [] and good[0].cache_write_1h_tokens == 40


def test_no_ttl_reported_means_no_one_hour_writes():
    assert all("cache_write_1h_tokens" not in e for e in from_litellm((FIXTURES / "json_array.json").read_bytes()).events)
