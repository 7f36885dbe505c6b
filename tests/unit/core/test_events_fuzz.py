"""Fuzzing the event decoder (issue 10): any bytes, any JSON-like value, any NDJSON body.

The decoder's documented failure is `InvalidEvent` (a rejection with a reason), and the entry points the worker,
the gateway and `aiyield send` use never raise at all: `parse_message` and `parse_items` return every item as
accepted or rejected, `decode_lines` turns a bad line into an `InvalidEvent` in its place. What is accepted obeys
the contract's bounds (docs/INTERFACE.md §1) and means the same when it is decoded again (the gateway validates,
publishes `to_dict`, and the worker validates the same event a second time).

Bounded: `AIYIELD_FUZZ_EXAMPLES` (default 300 per property) raises the count for a longer run.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiyield.core.events import (
    MAX_COST_USD,
    MAX_COUNT,
    EVENT_TYPES,
    Event,
    InvalidEvent,
    clean_name,
    decode,
    repo_name,
    decode_lines,
    envelope,
    parse_items,
    parse_message,
    to_dict,
)
from aiyield.core.pseudonym import Pseudonymiser

NOW = 1_800_000_000.0
EXAMPLES = int(os.environ.get("AIYIELD_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PSEUDONYMISE = Pseudonymiser(b"fuzz-key")

NAME_FIELDS = ("team", "tool", "model", "repo", "branch", "task_id", "deploy_id", "environment", "rollback_of")
COUNT_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "ai_lines")

# Text that reaches the corners: control characters (Cc), format characters (zero-width, bidi: Cf), the series
# separator, full-width letters, characters whose NFKC form is long (U+FDFA is 18 characters) or composes.
tricky_text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cs",)),  # lone surrogates cannot be encoded as UTF-8 JSON
        st.sampled_from(["\x00", "\x1f", "\x7f", "\x85", "\u200b", "\u200d", "\u202e", "\ufeff", "\uff50", "\ufdfa",
                         "\u0301", "e", "a", "\u2028", "\ud7ff"]),
    ),
    max_size=300,
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, MAX_COUNT, MAX_COUNT + 1, 2**63, 2**64, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, 1e6, 1e6 + 1, -0.0, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, tricky_text)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.one_of(tricky_text, st.sampled_from(NAME_FIELDS)), children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def near_valid_events(draw) -> dict:
    """An event of a known type with every field drawn from plausible and hostile values: reaches past the type
    check into every field's rules."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event: dict = {"type": event_type, "id": draw(st.one_of(st.just("e1"), tricky_text)),
                   "ts": draw(st.one_of(st.just(NOW - 60), numbers, st.sampled_from(["2026-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2026-01-01T00:00:00", "never"])))}
    for name in NAME_FIELDS:
        if draw(st.booleans()):
            event[name] = draw(st.one_of(st.just("payments"), tricky_text, scalars))
    for name in COUNT_FIELDS:
        if draw(st.booleans()):
            event[name] = draw(st.one_of(st.just(10), numbers))
    if draw(st.booleans()):
        event["cost_usd"] = draw(numbers)
    if draw(st.booleans()):
        event["developer"] = draw(st.one_of(st.just("dev@acme.example"), scalars, json_like))
    for name in ("commits", "reverts"):
        if draw(st.booleans()):
            event[name] = draw(st.lists(st.one_of(st.just("ab" * 20), st.text("0123456789abcdefABCDEFg", max_size=70), scalars), max_size=4))
    for name in ("head",):
        if draw(st.booleans()):
            event[name] = draw(st.one_of(st.just("abcdef1"), tricky_text))
    if draw(st.booleans()):
        event["status"] = draw(st.sampled_from(["started", "completed", "abandoned", "succeeded", "failed", "rolled_back", "x"]))
    return event


def check_accepted(events: list[Event]) -> None:
    """Every accepted event obeys §1's bounds, and survives the gateway -> worker trip unchanged."""
    for event in events:
        assert event.type in EVENT_TYPES
        assert math.isfinite(event.ts) and 0 <= event.ts <= NOW + 300
        assert 1 <= len(event.id) <= 128
        for name in (*NAME_FIELDS, "developer"):
            value = getattr(event, name, None)
            if value is None:
                continue
            assert isinstance(value, str) and 1 <= len(value) <= 256, (name, value)
            assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value), (name, value)
            if name != "developer":
                assert clean_name(value) == value, (name, value)  # normalising again changes nothing
        for name in COUNT_FIELDS:
            value = getattr(event, name, None)
            assert value is None or (type(value) is int and 0 <= value <= MAX_COUNT), (name, value)
        cost = getattr(event, "cost_usd", None)
        assert cost is None or (math.isfinite(cost) and 0 <= cost <= MAX_COST_USD)
        repo = getattr(event, "repo", None)
        assert repo is None or repo_name(repo) == repo  # case-folded once and for all
        if event.type == "task":
            assert all(len(c) in (40, 64) and c == c.lower() for c in event.commits)
    # What the gateway publishes, the worker reads back as the same events (developer already pseudonymised).
    again, rejected = parse_message(envelope(events), NOW)
    assert not rejected and [to_dict(e) for e in again] == [to_dict(e) for e in events]


def check_partition(items: list, good: list, bad: list) -> None:
    assert len(good) + len(bad) == len(items)
    assert all(isinstance(r.error, InvalidEvent) and r.error.reason for r in bad)
    assert sorted(r.index for r in bad) == [r.index for r in bad] and len({r.index for r in bad}) == len(bad)
    assert all(0 <= r.index < len(items) for r in bad)


@fuzz
@given(st.binary(max_size=2000))
def test_any_bytes_are_accepted_or_rejected_never_raise(raw):
    good, bad = parse_message(raw, NOW, PSEUDONYMISE)
    check_accepted(good)
    assert all(r.error.reason for r in bad)
    if not good and not bad:  # nothing accepted and nothing rejected: only an empty batch says so
        assert decode(raw) == {"events": []} or decode(raw).get("events") == []


@fuzz
@given(json_like)
def test_any_json_value_as_a_message(value):
    raw = json.dumps(value, allow_nan=True).encode()
    good, bad = parse_message(raw, NOW, PSEUDONYMISE)
    check_accepted(good)
    assert all(r.error.reason for r in bad)
    if isinstance(value, dict) and isinstance(value.get("events"), list) and "type" not in value and "NaN" not in repr(value) and "inf" not in repr(value):
        check_partition(value["events"], good, bad)  # a well-formed batch: one verdict per item


@fuzz
@given(st.lists(st.one_of(near_valid_events(), json_like), max_size=8))
def test_near_valid_events_in_a_batch(items):
    good, bad = parse_items(items, NOW, PSEUDONYMISE)
    check_partition(items, good, bad)
    check_accepted(good)
    # The same batch as a Kafka message gives the same verdicts (the worker's fast and general paths agree).
    try:
        raw = json.dumps({"events": items}, allow_nan=False).encode()
    except ValueError:
        return  # NaN / Infinity are not JSON: the whole message is malformed (test_any_bytes covers it)
    good2, bad2 = parse_message(raw, NOW, PSEUDONYMISE)
    assert [to_dict(e) for e in good2] == [to_dict(e) for e in good]
    assert [r.index for r in bad2] == [r.index for r in bad]
    # Raw developer ids never reach a rejected item (it goes to the dead-letter topic).
    for r in bad:
        raw_item = r.error.raw
        if isinstance(raw_item, dict) and "developer" in raw_item and isinstance(items[r.index], dict):
            assert raw_item["developer"] != items[r.index].get("developer") or not isinstance(raw_item["developer"], str)


@fuzz
@given(st.one_of(st.binary(max_size=2000), st.lists(st.one_of(json_like, near_valid_events()), max_size=6).map(
    lambda items: "\n".join(json.dumps(i, allow_nan=True) for i in items).encode())))
def test_ndjson_lines(body):
    items = decode_lines(body)
    good, bad = parse_items(items, NOW, PSEUDONYMISE)
    check_partition(items, good, bad)
    check_accepted(good)


@fuzz
@given(st.one_of(st.binary(max_size=500), st.text(max_size=500)))
def test_decode_raises_only_invalid_event(raw):
    try:
        decode(raw)
    except InvalidEvent as exc:
        assert exc.reason.startswith("malformed JSON")


def test_nesting_deeper_than_the_parser_is_a_rejection():
    deep = b"[" * 100_000 + b"]" * 100_000
    good, bad = parse_message(deep, NOW)
    assert not good and "nested too deeply" in bad[0].error.reason
    assert isinstance(decode_lines(deep)[0], InvalidEvent)


@fuzz
@given(tricky_text)
@example("e\u200b\u0301")  # the zero-width space blocked composition; once removed, NFKC composes: é
@example("\ufdfa" * 256)  # 256 characters whose NFKC form is 4,608
@example("\u200b")
def test_clean_name_is_idempotent_and_bounded(text):
    try:
        once = clean_name(text)
    except ValueError:
        return
    assert clean_name(once) == once
    assert 1 <= len(once) <= 256 or text.isascii()
    assert not any(unicodedata.category(ch) == "Cf" for ch in once)


@fuzz
@given(tricky_text)
@example("\u00df" * 129)  # 129 characters that fold to 258
@example("\uff33hop/API")
@example("\u0130stanbul")  # dotted capital I folds to i + combining dot
def test_repo_name_is_idempotent_and_bounded(text):
    try:
        once = repo_name(text)
    except ValueError:
        return
    assert repo_name(once) == once and clean_name(once) == once and once.casefold() == once
    assert 1 <= len(once) <= 256 or text.isascii()


def test_a_name_that_grows_past_the_bound_when_normalised_is_rejected():
    event = {"type": "token", "id": "x", "ts": NOW, "team": "\ufdfa" * 256, "tool": "t", "model": "m",
             "input_tokens": 1, "output_tokens": 1}
    good, bad = parse_items([event], NOW)
    assert not good and "256" in bad[0].error.reason
    # The gateway's output, read again by the worker, is the same name: normalisation is done once and for all.
    event = {**event, "team": "pay\u200b\u0301ments"}
    (first,), _ = parse_items([event], NOW)
    (second,), _ = parse_items([to_dict(first)], NOW)
    assert first.team == second.team == "pa\u00fdments"  # y + combining acute, composed
