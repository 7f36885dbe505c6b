"""LiteLLM's `generic_api` logging callback (`POST /v1/webhooks/litellm`) as aiyield token events.

The proxy posts StandardLoggingPayload objects (LiteLLM's `litellm.types.utils.StandardLoggingPayload`) in one of
three `log_format`s, all with `Content-Type: application/json`:

- `json_array` (the default): a JSON array of payloads;
- `ndjson`: one payload per line;
- `single`: one payload per request.

So the body is read as JSON first (an array or one object), and only when it is not one JSON document, as NDJSON
(a line that is not JSON is a rejected item, its neighbours still count).

Mapping decisions (docs/INTERFACE.md §4), one token event per successful call:

- `id`: the payload's `id` (the response id; LiteLLM retries a batch with the same ids, deduplicated downstream).
- `ts`: `endTime` (epoch seconds: when the call finished and its cost was incurred), else `startTime`.
- `cost_usd`: `response_cost`, authoritative (never re-priced). A payload without one is priced by the worker.
- Tokens: `prompt_tokens` / `completion_tokens`. Cache tokens from `metadata.usage_object`, when reported:
  `cache_read_input_tokens` (else `prompt_tokens_details.cached_tokens`) and `cache_creation_input_tokens` (else
  `prompt_tokens_details.cache_creation_tokens`). LiteLLM's `prompt_tokens` *includes* cached input, for every
  provider (it normalises Anthropic's separate counts the OpenAI way), so the cache tokens are subtracted from it:
  `input + cache_read + cache_write` is LiteLLM's `prompt_tokens`, and no token is counted twice.
  `cache_write_1h_tokens`: the 1-hour part of the writes, where the provider reports the TTL (Anthropic):
  `prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens`, else Anthropic's own
  `cache_creation.ephemeral_1h_input_tokens` in the usage object.
- `model`: `model`, else `unknown` (the spend still counts, under a visible placeholder).
- `team`: `metadata.user_api_key_team_alias`, else `metadata.user_api_key_team_id`, else `unassigned`.
- `tool`: the first known tool (`KNOWN_TOOLS`) named by a `request_tags` entry, else by a product of the
  `user_agent` (payload, then `metadata.user_agent`; `claude-cli/2.0.1 (external, cli)` is `claude-code`), else
  `litellm`.
- `developer`: `metadata.user_api_key_user_id`, else `end_user`; raw here, pseudonymised by the validator.
- Failed calls (`status` other than `success`) carry no usage: ignored and counted as `failure`.

Content is dropped at the door: each event is built from the allow-list above and nothing else, so `messages`,
`response`, `model_parameters`, `error_str`, guardrail and tool-call metadata (everything that can carry prompt or
response text) never reach Kafka, Redis, the dead-letter topic or a log line. A rejected item's raw copy is the
event built here, not the payload. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from aiyield.core.events import InvalidEvent, decode, decode_lines
from aiyield.gateway.common import UNASSIGNED, BadPayload

#: Tool of calls that name none.
DEFAULT_TOOL = "litellm"
UNKNOWN_MODEL = "unknown"

#: Case-insensitive substrings of a request tag or of a user agent's product name, with the tool they name; first
#: match wins. Products, not whole user agents: `python-httpx/0.28` and `OpenAI/Python 1.x` name no tool.
KNOWN_TOOLS: tuple[tuple[str, str], ...] = (
    ("claude-cli", "claude-code"),
    ("claude-code", "claude-code"),
    ("claude_code", "claude-code"),
    ("codex", "codex"),
    ("cursor", "cursor"),
    ("copilot", "copilot"),
    ("aider", "aider"),
    ("roo-code", "roo-code"),
    ("roocode", "roo-code"),
    ("kilo-code", "kilo-code"),
    ("kilocode", "kilo-code"),
    ("cline", "cline"),
    ("opencode", "opencode"),
    ("gemini-cli", "gemini"),
    ("goose", "goose"),
    ("windsurf", "windsurf"),
    ("kiro", "kiro"),
    ("continue", "continue"),
)

_PRODUCT = re.compile(r"([^\s/()]+)/")


@dataclass
class LiteLLMResult:
    events: list[Any] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)


def payloads(body: bytes) -> list[Any]:
    """The StandardLoggingPayload items of one callback body, whichever `log_format` sent it."""
    try:
        document = decode(body)
    except InvalidEvent:
        document = None
        if b"\n" not in body.strip():
            raise BadPayload("malformed JSON body (expected LiteLLM's json_array, ndjson or single log_format)") from None
    except RecursionError:
        raise BadPayload("malformed JSON: nested too deeply") from None
    if document is None:
        try:
            return decode_lines(body)
        except RecursionError:
            raise BadPayload("malformed JSON: nested too deeply") from None
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        return [document]
    raise BadPayload(f"expected a JSON array or object, got {type(document).__name__}")


def from_litellm(body: bytes) -> LiteLLMResult:
    """Token events from one callback body. Raises `BadPayload` for a body that is not JSON or NDJSON at all."""
    result = LiteLLMResult()
    for item in payloads(body):
        if isinstance(item, InvalidEvent):  # an NDJSON line that was not JSON: rejected at its index
            result.events.append(item)
            continue
        if not isinstance(item, dict):
            result.events.append(InvalidEvent(f"a LiteLLM payload must be a JSON object, got {type(item).__name__}"))
            continue
        status = item.get("status")
        if status not in (None, "success"):
            result.ignored["failure"] += 1
            continue
        result.events.append(token_event(item))
    return result


def token_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """One StandardLoggingPayload as a token event dict, from allow-listed fields only (validated later)."""
    metadata = _mapping(payload.get("metadata"))
    usage = _mapping(metadata.get("usage_object"))
    details = _mapping(usage.get("prompt_tokens_details"))
    cache_read = _first_count(usage.get("cache_read_input_tokens"), details.get("cached_tokens"))
    cache_write = _first_count(usage.get("cache_creation_input_tokens"), details.get("cache_creation_tokens"))
    prompt = payload.get("prompt_tokens", 0)
    input_tokens = prompt
    if _is_count(prompt):
        input_tokens = max(0, prompt - cache_read - cache_write)
    event: dict[str, Any] = {
        "type": "token",
        "id": payload.get("id"),
        "ts": payload.get("endTime") or payload.get("startTime"),
        "team": _text(metadata.get("user_api_key_team_alias")) or _text(metadata.get("user_api_key_team_id")) or UNASSIGNED,
        "tool": tool_of(payload.get("request_tags"), payload.get("user_agent") or metadata.get("user_agent")),
        "model": _text(payload.get("model")) or UNKNOWN_MODEL,
        "input_tokens": input_tokens,
        "output_tokens": payload.get("completion_tokens", 0),
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }
    ttl = _mapping(details.get("cache_creation_token_details")) or _mapping(usage.get("cache_creation"))
    if (one_hour := _first_count(ttl.get("ephemeral_1h_input_tokens"))) > 0:
        event["cache_write_1h_tokens"] = one_hour
    if payload.get("response_cost") is not None:
        event["cost_usd"] = payload["response_cost"]
    developer = _text(metadata.get("user_api_key_user_id")) or _text(payload.get("end_user"))
    if developer:
        event["developer"] = developer
    return event


def tool_of(tags: Any, user_agent: Any) -> str:
    """The known tool named by a request tag, else by a product of the user agent, else `litellm`."""
    names = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    if isinstance(user_agent, str):
        names += _PRODUCT.findall(user_agent) or [user_agent]
    for name in names:
        lowered = name.lower()
        for needle, tool in KNOWN_TOOLS:
            if needle in lowered:
                return tool
    return DEFAULT_TOOL


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _first_count(*values: Any) -> int:
    for value in values:
        if _is_count(value):
            return value
    return 0
