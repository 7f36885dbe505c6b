"""Event schema v1 (docs/INTERFACE.md §1): typed models, strict validation, envelopes.

Pure: no I/O. Everything that accepts events from the outside world (worker, gateway, `aiyield send`) goes through
`parse_message` / `validate`, so there is one definition of "valid" and one wording of each rejection reason.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar, Literal, Union

import msgspec

#: Events further in the future than this are rejected (clock skew allowance).
MAX_FUTURE_SECONDS = 300.0

#: Largest count: integers up to 2^53 - 1 survive every JSON parser and float conversion exactly, and a window sum
#: of many of them still fits the store's 64-bit counters.
MAX_COUNT = 2**53 - 1
MAX_COST_USD = 1e6
MAX_NAME_CHARS = 256
#: Commits one event may list (contract v3 §1): a task's claims are bounded so one report cannot stall the join of
#: its repo; pushes and deployments list at most what a git host reports for one push or one release.
MAX_TASK_COMMITS = 1_000
MAX_PUSH_COMMITS = 10_000
MAX_DEPLOYMENT_COMMITS = 10_000
#: Lengths of a full commit SHA: SHA-1 and SHA-256 repositories.
FULL_SHA_LENGTHS = (40, 64)
# No control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) anywhere in a string. Checked in
# `__post_init__` rather than as a msgspec pattern: a regex per field was most of the decoding
# cost, and printable ASCII (nearly every name) is answered by two C-level string predicates.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Sha = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{7,64}$")]
Cost = Annotated[float, msgspec.Meta(ge=0, le=MAX_COST_USD)]
Timestamp = Union[dt.datetime, Annotated[float, msgspec.Meta(ge=0)]]


def clean_name(value: str) -> str:
    """A name as aiyield keys it: NFKC-normalised, without format characters (zero-width, bidi controls).

    Look-alikes then name the same team, tool or model: `ｐａｙｍｅｎｔｓ` is `payments`, and a zero-width space
    cannot split a team in two or hide a model from the price table. ASCII, the common case, is returned as is.
    Normalised to a fixed point: removing a format character can let NFKC compose what it separated
    (`e`, U+200B, U+0301 becomes `é` only on a second pass), and the gateway's output is validated again by the
    worker, so both must see the same name. The bounds hold after normalising too (U+FDFA alone is 18 characters).
    """
    if value.isascii():
        return value
    text = value
    for _ in range(4):
        normal = "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf")
        if normal == text:
            break
        text = normal
    if not text:
        raise ValueError(f"{value!r} is empty once normalised")
    if len(text) > MAX_NAME_CHARS:
        raise ValueError(f"longer than {MAX_NAME_CHARS} characters once normalised (NFKC)")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValueError("contains control characters once normalised (NFKC)")
    return text


def repo_name(value: str) -> str:
    """A repo as aiyield keys it: `clean_name`, then case-folded (contract v3 §1: `Billing/API` is `billing/api`,
    as on GitHub and GitLab), so a plugin that reads the name from a remote URL joins the host's webhooks.

    Folded to a fixed point, like `clean_name`: case folding can undo NFKC's normal form and the reverse, and the
    worker validates the gateway's output again. ASCII, nearly every repo, is lower-cased at once.
    """
    if value.isascii():
        return value.lower()
    text = value
    for _ in range(4):
        folded = clean_name(text).casefold()
        if folded == text and clean_name(text) == text:
            break
        text = folded
    else:
        raise ValueError(f"{value!r} has no stable case-folded form")
    if len(text) > MAX_NAME_CHARS:
        raise ValueError(f"longer than {MAX_NAME_CHARS} characters once case-folded")
    return text


class BaseEvent(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True):
    # Unknown fields are ignored rather than rejected: producers may be newer than the worker (schema evolution
    # adds optional fields), and a forward-compatible reader loses nothing it understands.
    id: EventId
    ts: Timestamp
    #: When the gateway received the event (epoch seconds), stamped on everything a sender it does not trust as an
    #: operator writes (scoped tokens, webhooks: `gateway.auth.Principal.trusted`); the join ranks such a claim no
    #: earlier than its arrival minus the claim grace (contract v3 §2 "Rank time"). Absent from trusted sources
    #: (unscoped tokens, `aiyield send`, producers writing to Kafka), whose claims rank at `ts`.
    arrival: Annotated[float, msgspec.Meta(ge=0)] | None = None

    @property
    def type(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]

    #: String fields normalised with `clean_name`.
    _names: ClassVar[tuple[str, ...]] = ()
    #: Other string fields, checked for control characters but kept as sent (ids, the pseudonymised developer).
    _raw: ClassVar[tuple[str, ...]] = ("id",)
    #: Whether the event names a repo (`repo`), which `repo_name` keys case-insensitively.
    _has_repo: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if isinstance(self.ts, dt.datetime):
            if self.ts.tzinfo is None:
                raise ValueError("ts must carry a UTC offset (RFC 3339), e.g. 2026-01-01T12:00:00Z")
            self.ts = self.ts.timestamp()
            if self.ts < 0:
                raise ValueError("ts must not be before 1970-01-01T00:00:00Z")
        names = self._names
        for name in (*self._raw, *names):
            value = getattr(self, name)
            if value is None or (value.isascii() and value.isprintable()):
                continue  # printable ASCII, nearly every name: nothing to reject or normalise
            if _CONTROL.search(value):
                raise ValueError(f"Expected `str` without control characters in `{name}`")
            if name in names:
                setattr(self, name, clean_name(value))
        if self._has_repo and self.repo is not None:  # type: ignore[attr-defined]
            self.repo = repo_name(self.repo)  # type: ignore[attr-defined]


class TokenEvent(BaseEvent, tag="token"):
    _names = ("team", "tool", "model", "repo", "task_id")
    _raw = ("id", "developer")
    _has_repo = True
    team: Name
    tool: Name
    model: Name
    input_tokens: Count
    output_tokens: Count
    cache_read_tokens: Count = 0
    cache_write_tokens: Count = 0
    #: The part of `cache_write_tokens` written with a 1-hour TTL (priced at `cache_write_1h`).
    cache_write_1h_tokens: Count = 0
    cost_usd: Cost | None = None
    developer: Name | None = None
    task_id: Name | None = None
    repo: Name | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                f"cache_write_1h_tokens ({self.cache_write_1h_tokens}) must not exceed cache_write_tokens "
                f"({self.cache_write_tokens}): it is the 1-hour part of them"
            )


class TaskEvent(BaseEvent, tag="task"):
    _names = ("task_id", "team", "tool", "repo")
    _raw = ("id", "developer")
    _has_repo = True
    task_id: Name
    team: Name
    tool: Name
    status: Literal["started", "completed", "abandoned"]
    developer: Name | None = None
    repo: Name | None = None
    commits: list[Sha] = []
    ai_lines: Count | None = None
    #: Where `ai_lines` came from: `notes` (line-level authorship notes) or `trailer` (an AI co-author trailer).
    ai_lines_source: Literal["notes", "trailer"] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.commits and self.repo is None:
            raise ValueError("repo is required when commits is non-empty")
        # Full SHAs only (v3): a prefix could be claimed before any commit has it and bind to whichever commit
        # later does. Pushes and deployments name commits that exist, so they may abbreviate.
        _at_most(self.commits, MAX_TASK_COMMITS, "a task event")
        short = next((c for c in self.commits if len(c) not in FULL_SHA_LENGTHS), None)
        if short is not None:
            raise ValueError(
                f"task commits must be full 40- or 64-character SHAs, got {short!r} ({len(short)} characters; "
                "contract v3 §1)"
            )
        self.commits = [c.lower() for c in self.commits]


class PushEvent(BaseEvent, tag="push"):
    _names = ("repo", "branch")
    _has_repo = True
    repo: Name
    branch: Name
    commits: list[Sha]
    head: Sha | None = None
    reverts: list[Sha] = []
    #: The push rewrote the branch (a force push): its commits not yet deployed are replaced (contract v3 §2).
    forced: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_most(self.commits, MAX_PUSH_COMMITS, "a push event")
        self.commits = [c.lower() for c in self.commits]
        self.reverts = [c.lower() for c in self.reverts]
        self.head = self.head.lower() if self.head else (self.commits[-1] if self.commits else None)


class DeploymentEvent(BaseEvent, tag="deployment"):
    _names = ("deploy_id", "repo", "environment", "rollback_of", "team")
    _has_repo = True
    deploy_id: Name
    repo: Name
    environment: Name
    status: Literal["succeeded", "failed", "rolled_back"]
    commits: list[Sha] = []
    head: Sha | None = None
    rollback_of: Name | None = None
    team: Name | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.status == "succeeded" and not self.commits and self.head is None:
            raise ValueError("a succeeded deployment must carry commits or head")
        _at_most(self.commits, MAX_DEPLOYMENT_COMMITS, "a deployment event")
        self.commits = [c.lower() for c in self.commits]
        self.head = self.head.lower() if self.head else None


def _at_most(commits: list[str], limit: int, what: str) -> None:
    if len(commits) > limit:
        raise ValueError(f"{what} lists at most {limit:,} commits, got {len(commits):,} (contract v3 §1)")


class ContextEvent(BaseEvent, tag="context"):
    """What a tool reports it produced beside what it cost (lines, commits, pull requests, completions accepted,
    active users), per team and tool.

    Context, not output: it earns no normalized deployment. Made by the gateway from OTLP metrics (§4) and by the
    pull connectors from vendors' admin APIs (§5).
    """

    _names = ("team", "tool")
    _raw = ("id", "developer")
    team: Name
    tool: Name
    metric: Literal[
        "lines_added", "lines_removed", "commits", "pull_requests",
        # v3, from the pull connectors (docs/CONNECTORS.md): completions, lines offered and kept, requests, sessions,
        # edit-tool decisions, and daily active or engaged users (one per user and day: user-days over a window).
        "suggestions", "acceptances", "lines_suggested", "lines_accepted", "requests", "sessions",
        "tool_accepted", "tool_rejected", "active_users", "engaged_users",
    ]
    value: Count
    developer: Name | None = None


Event = Union[TokenEvent, TaskEvent, PushEvent, DeploymentEvent, ContextEvent]
EVENT_TYPES = ("token", "task", "push", "deployment", "context")

# float_hook: a number too large for a float (1e400) becomes inf, which the bounds then reject for that one item,
# instead of failing the whole body or message as malformed JSON.
_decoder = msgspec.json.Decoder(float_hook=float)
_encoder = msgspec.json.Encoder()


class InvalidEvent(ValueError):
    """One event that failed validation; `reason` is the single human-readable cause."""

    def __init__(self, reason: str, raw: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw

    @property
    def type(self) -> str:
        """The event's declared type when it is one we know, else `unknown` (a bounded metric label)."""
        t = self.raw.get("type") if isinstance(self.raw, dict) else None
        return t if t in EVENT_TYPES else "unknown"


@dataclass(frozen=True)
class Rejected:
    index: int
    error: InvalidEvent


def validate(obj: Any, now: float, pseudonymise: Callable[[str], str] | None = None) -> Event:
    """Turn one decoded JSON object into a typed event or raise `InvalidEvent` with one clear reason.

    `now` is injected (never read from the clock here) so the future-`ts` rule is testable. With `pseudonymise`,
    the developer id is replaced in the event and also in a rejected item's raw copy (it goes to the dead-letter
    topic, and raw ids are never stored).
    """
    try:
        return _validate(obj, now, pseudonymise)
    except InvalidEvent as exc:
        if pseudonymise is not None and isinstance(exc.raw, dict) and isinstance(exc.raw.get("developer"), str):
            exc.raw = {**exc.raw, "developer": pseudonymise(exc.raw["developer"])}
        raise


def _validate(obj: Any, now: float, pseudonymise: Callable[[str], str] | None) -> Event:
    if not isinstance(obj, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {type(obj).__name__}", obj)
    if "type" not in obj:
        raise InvalidEvent("missing required field `type`", obj)
    if obj["type"] not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {obj['type']!r}; expected one of {', '.join(EVENT_TYPES)}", obj)
    try:
        event: Event = msgspec.convert(obj, Event)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        raise InvalidEvent(str(exc), obj) from None
    return _finish(event, now, pseudonymise, obj)


def _finish(event: Event, now: float, pseudonymise: Callable[[str], str] | None, raw: Any) -> Event:
    """The rules that need the clock or the key, applied after the schema."""
    if event.ts > now + MAX_FUTURE_SECONDS:
        raise InvalidEvent(f"ts is {event.ts - now:.0f}s in the future (limit {MAX_FUTURE_SECONDS:.0f}s)", raw)
    if event.arrival is not None and event.arrival > now + MAX_FUTURE_SECONDS:
        raise InvalidEvent(f"arrival is {event.arrival - now:.0f}s in the future (limit {MAX_FUTURE_SECONDS:.0f}s)", raw)
    if pseudonymise is not None and getattr(event, "developer", None) is not None:
        event.developer = pseudonymise(event.developer)  # type: ignore[union-attr]
    return event


class _Envelope(msgspec.Struct):
    events: list[Event]  # type: ignore[valid-type]
    type: Any = msgspec.UNSET  # present only when the message is an event that happens to have `events`


_envelope_decoder = msgspec.json.Decoder(_Envelope)


def parse_message(raw: bytes, now: float, pseudonymise: Callable[[str], str] | None = None) -> tuple[list[Event], list[Rejected]]:
    """All events of one message value: a single event or an envelope, each item validated on its own.

    Fast path: a well-formed envelope decodes straight into typed events, without building dicts first (most
    messages, since producers batch). Anything else (a single event, an invalid item, bad JSON) takes the general
    path, which finds each bad item and its reason; both paths apply the same rules.
    """
    try:
        envelope_ = _envelope_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        envelope_ = None
    if envelope_ is not None and envelope_.type is msgspec.UNSET:
        try:
            return [_finish(e, now, pseudonymise, None) for e in envelope_.events], []
        except InvalidEvent:
            pass  # an event from the future: the general path names it, by index, with its raw item
    try:
        return parse_items(unpack(decode(raw)), now, pseudonymise)
    except InvalidEvent as exc:
        return [], [Rejected(0, exc)]


def unpack(payload: Any) -> list[Any]:
    """The items of one message value: a single event object or a batch envelope `{"events": [...]}`."""
    if isinstance(payload, dict) and "events" in payload and "type" not in payload:
        items = payload["events"]
        if not isinstance(items, list):
            raise InvalidEvent("`events` must be a list", payload)
        return items
    return [payload]


def decode_lines(body: bytes | str) -> list[Any]:
    """NDJSON: one item per non-blank line; a line that is not JSON becomes an `InvalidEvent` item in its place."""
    lines = body.splitlines()
    items: list[Any] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            items.append(decode(line))
        except InvalidEvent as exc:
            items.append(exc)
    return items


def decode(raw: bytes | str) -> Any:
    """Decode JSON bytes, turning any syntax error into `InvalidEvent`."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"malformed JSON: {exc}", None) from None
    except RecursionError:
        raise InvalidEvent("malformed JSON: nested too deeply", None) from None


def parse_items(
    items: list[Any], now: float, pseudonymise: Callable[[str], str] | None = None
) -> tuple[list[Event], list[Rejected]]:
    """Validate every item independently: one bad item never takes its neighbours down with it.

    An item may already be an `InvalidEvent` (an NDJSON line that was not JSON): it is rejected at its index.
    """
    good: list[Event] = []
    bad: list[Rejected] = []
    for i, item in enumerate(items):
        if isinstance(item, InvalidEvent):
            bad.append(Rejected(i, item))
            continue
        try:
            good.append(validate(item, now, pseudonymise))
        except InvalidEvent as exc:
            bad.append(Rejected(i, exc))
    return good, bad


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def to_dict(event: Event) -> dict[str, Any]:
    """The canonical JSON form of a validated event (ts as epoch seconds, type tag included)."""
    return msgspec.to_builtins(event)


def envelope(events: list[Any]) -> bytes:
    """One Kafka message value carrying many events: faust pays per message, so producers batch (~100 per message)."""
    return _encoder.encode({"events": [e if isinstance(e, dict) else to_dict(e) for e in events]})
