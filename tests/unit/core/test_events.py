from __future__ import annotations

import pytest

from aiyield.core.events import (
    DeploymentEvent,
    InvalidEvent,
    PushEvent,
    TaskEvent,
    TokenEvent,
    decode,
    decode_lines,
    encode,
    envelope,
    parse_items,
    to_dict,
    unpack,
    validate,
)
from aiyield.core.pseudonym import Pseudonymiser

NOW = 1_800_000_000.0
TOKEN = {"type": "token", "id": "a", "ts": NOW - 10, "team": "t", "tool": "x", "model": "m", "input_tokens": 1, "output_tokens": 2}


def reason(obj) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate(obj, NOW)
    return info.value.reason


def test_each_type_parses_with_defaults():
    tok = validate(TOKEN, NOW)
    assert isinstance(tok, TokenEvent) and tok.cache_read_tokens == 0 and tok.cost_usd is None and tok.type == "token"
    task = validate({"type": "task", "id": "b", "ts": NOW, "task_id": "T", "team": "t", "tool": "x", "status": "started"}, NOW)
    assert isinstance(task, TaskEvent) and task.commits == []
    push = validate({"type": "push", "id": "c", "ts": NOW, "repo": "r", "branch": "main", "commits": ["ABCDEF1", "1234567"]}, NOW)
    assert isinstance(push, PushEvent) and push.head == "1234567" and push.commits == ["abcdef1", "1234567"]
    dep = validate({"type": "deployment", "id": "d", "ts": NOW, "deploy_id": "1", "repo": "r", "environment": "prod",
                    "status": "succeeded", "head": "ABCDEF1"}, NOW)
    assert isinstance(dep, DeploymentEvent) and dep.head == "abcdef1"


@pytest.mark.parametrize(
    "ts, expected",
    [("2027-01-15T08:00:00Z", 1800000000.0), ("2027-01-15T10:00:00+02:00", 1800000000.0), (1800000000, 1800000000.0),
     (1799999999.5, 1799999999.5)],
)
def test_ts_forms(ts, expected):
    assert validate({**TOKEN, "ts": ts}, NOW).ts == expected


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"type": "nope"}, "unknown event type 'nope'"),
        ({"input_tokens": -1}, "Expected `int` >= 0 - at `$.input_tokens`"),
        ({"input_tokens": 1.5}, "Expected `int`, got `float` - at `$.input_tokens`"),
        ({"input_tokens": True}, "Expected `int`, got `bool`"),
        ({"team": ""}, "length >= 1 - at `$.team`"),
        ({"id": "x" * 129}, "length <= 128 - at `$.id`"),
        ({"ts": NOW + 301}, "301s in the future"),
        ({"ts": "2027-01-15T08:00:00"}, "UTC offset"),
        ({"ts": "yesterday"}, "Invalid RFC3339"),
        ({"cost_usd": -0.1}, ">= 0.0 - at `$.cost_usd`"),
    ],
)
def test_one_clear_reason(change, fragment):
    assert fragment in reason({**TOKEN, **change})


def test_missing_fields_and_rules():
    assert reason({k: v for k, v in TOKEN.items() if k != "model"}) == "Object missing required field `model`"
    assert reason({k: v for k, v in TOKEN.items() if k != "type"}) == "missing required field `type`"
    assert "an event must be a JSON object, got list" == reason([1])
    task = {"type": "task", "id": "b", "ts": NOW, "task_id": "T", "team": "t", "tool": "x", "status": "completed"}
    assert "repo is required when commits is non-empty" in reason({**task, "commits": ["abcdef1" * 5 + "abcde"]})
    assert "Expected `str` matching regex" in reason({**task, "repo": "r", "commits": ["xyz"]})
    assert "Invalid enum value 'done'" in reason({**task, "status": "done"})
    dep = {"type": "deployment", "id": "d", "ts": NOW, "deploy_id": "1", "repo": "r", "environment": "prod", "status": "succeeded"}
    assert "must carry commits or head" in reason(dep)
    assert validate({**dep, "status": "failed"}, NOW).status == "failed"


def test_future_limit_is_five_minutes():
    assert validate({**TOKEN, "ts": NOW + 300}, NOW).ts == NOW + 300


def test_unknown_fields_are_ignored_for_forward_compatibility():
    assert validate({**TOKEN, "new_field": 1}, NOW).id == "a"


def test_pseudonymisation_of_events_and_of_rejected_raw_items():
    p = Pseudonymiser(b"k")
    event = validate({**TOKEN, "developer": "alice@example.com"}, NOW, p)
    assert event.developer.startswith("px:") and "alice" not in event.developer
    with pytest.raises(InvalidEvent) as info:
        validate({**TOKEN, "developer": "alice@example.com", "input_tokens": -1}, NOW, p)
    assert info.value.raw["developer"] == event.developer


def test_envelopes_batches_and_lines():
    assert unpack({"events": [1, 2]}) == [1, 2]
    assert unpack(TOKEN) == [TOKEN]
    with pytest.raises(InvalidEvent, match="`events` must be a list"):
        unpack({"events": 3})
    good, bad = parse_items([TOKEN, {**TOKEN, "id": ""}, InvalidEvent("malformed JSON: x")], NOW)
    assert [e.id for e in good] == ["a"] and [b.index for b in bad] == [1, 2]
    items = decode_lines(b'{"a": 1}\n\nnot json\n[2]\n')
    assert items[0] == {"a": 1} and isinstance(items[1], InvalidEvent) and items[2] == [2]
    with pytest.raises(InvalidEvent, match="malformed JSON"):
        decode(b"{")


def test_round_trip_through_an_envelope():
    event = validate(TOKEN, NOW)
    [back] = unpack(decode(envelope([event])))
    assert validate(back, NOW) == event
    assert to_dict(event)["type"] == "token"


def test_invalid_event_type_label_is_bounded():
    assert InvalidEvent("x", {"type": "push"}).type == "push"
    assert InvalidEvent("x", {"type": "nonsense"}).type == "unknown"
    assert InvalidEvent("x", None).type == "unknown"


def test_parse_message_fast_and_general_paths_agree():
    from aiyield.core.events import parse_message

    p = Pseudonymiser(b"k")
    items = [{**TOKEN, "id": str(i), "developer": f"dev{i}"} for i in range(3)]
    fast, bad = parse_message(envelope(items), NOW, p)
    assert bad == [] and fast == parse_items(items, NOW, p)[0]
    assert fast[0].developer == p("dev0")
    # One bad item: its neighbours still pass, the bad one is named by index with its reason.
    good, bad = parse_message(envelope([items[0], {**TOKEN, "id": "x", "input_tokens": -1}, items[2]]), NOW, p)
    assert [e.id for e in good] == ["0", "2"] and [(r.index, "input_tokens" in r.error.reason) for r in bad] == [(1, True)]
    good, bad = parse_message(envelope([items[0], {**TOKEN, "id": "f", "ts": NOW + 3600}]), NOW, p)
    assert [e.id for e in good] == ["0"] and "future" in bad[0].error.reason
    # A single event (which may even carry a field called `events`) and bad JSON.
    assert [e.id for e in parse_message(encode({**TOKEN, "events": []}), NOW)[0]] == ["a"]
    good, bad = parse_message(b"{nope", NOW)
    assert good == [] and "malformed JSON" in bad[0].error.reason


def test_cache_write_1h_tokens_are_part_of_the_cache_writes():
    event = validate({**TOKEN, "cache_write_tokens": 10, "cache_write_1h_tokens": 4}, NOW)
    assert (event.cache_write_tokens, event.cache_write_1h_tokens) == (10, 4)
    assert validate(TOKEN, NOW).cache_write_1h_tokens == 0
    assert "cache_write_1h_tokens (11) must not exceed cache_write_tokens (10)" in reason(
        {**TOKEN, "cache_write_tokens": 10, "cache_write_1h_tokens": 11})
    assert "Expected `int` >= 0" in reason({**TOKEN, "cache_write_1h_tokens": -1})
    # The batch fast path applies the same rule.
    _good, bad = parse_items([{**TOKEN, "cache_write_1h_tokens": 1}], NOW)
    assert "must not exceed cache_write_tokens" in bad[0].error.reason


# -- contract v3 §1 ------------------------------------------------------------------------------------------------

FULL = "ABCDEF0123456789" * 2 + "abcdef01"  # 40 hex characters
FULL_256 = "0123456789abcdef" * 4  # a SHA-256 repository's commit
TASK = {"type": "task", "id": "t", "ts": NOW, "task_id": "T", "team": "t", "tool": "x", "status": "completed",
        "repo": "shop/api"}
PUSH = {"type": "push", "id": "p", "ts": NOW, "repo": "shop/api", "branch": "main", "commits": []}
DEPLOY = {"type": "deployment", "id": "d", "ts": NOW, "deploy_id": "1", "repo": "shop/api", "environment": "prod",
          "status": "succeeded", "head": "abcdef1"}


def test_task_commits_are_full_shas_lower_cased():
    task = validate({**TASK, "commits": [FULL, FULL_256]}, NOW)
    assert task.commits == [FULL.lower(), FULL_256]


@pytest.mark.parametrize("sha", ["abcdef1", FULL[:12], FULL[:39], FULL + "a", FULL_256[:63]])
def test_an_abbreviated_sha_in_a_task_is_invalid_naming_the_rule(sha):
    text = reason({**TASK, "commits": [FULL, sha]})
    assert "task commits must be full 40- or 64-character SHAs" in text and "contract v3 §1" in text
    assert repr(sha) in text


def test_pushes_and_deployments_may_abbreviate():
    assert validate({**PUSH, "commits": ["ABCDEF1", FULL]}, NOW).commits == ["abcdef1", FULL.lower()]
    assert validate({**DEPLOY, "commits": ["abcdef1"]}, NOW).head == "abcdef1"


@pytest.mark.parametrize(
    "event, limit, what",
    [(TASK, 1_000, "a task event"), (PUSH, 10_000, "a push event"), ({**DEPLOY, "head": None}, 10_000, "a deployment event")],
)
def test_commit_lists_are_bounded(event, limit, what):
    event = {k: v for k, v in event.items() if v is not None}
    shas = [f"{i:040x}" for i in range(limit + 1)]
    assert len(validate({**event, "commits": shas[:limit]}, NOW).commits) == limit
    text = reason({**event, "commits": shas})
    assert text == f"{what} lists at most {limit:,} commits, got {limit + 1:,} (contract v3 §1)"


def test_forced_is_an_optional_boolean():
    assert validate(PUSH, NOW).forced is False and "forced" not in to_dict(validate(PUSH, NOW))
    forced = validate({**PUSH, "forced": True}, NOW)
    assert forced.forced is True and to_dict(forced)["forced"] is True
    assert "Expected `bool`" in reason({**PUSH, "forced": "yes"})


@pytest.mark.parametrize("event", [TASK, PUSH, DEPLOY, {**TOKEN, "repo": "shop/api"}])
def test_repo_names_are_case_insensitive(event):
    assert validate({**event, "repo": "Shop/API"}, NOW).repo == "shop/api"
    # Full-width letters and German sharp s: NFKC, then case folding.
    assert validate({**event, "repo": "\uff33hop/Stra\u00dfe"}, NOW).repo == "shop/strasse"


def test_a_repo_that_grows_past_the_bound_when_folded_is_invalid():
    assert "256 characters once case-folded" in reason({**PUSH, "repo": "\u00df" * 200})


def test_arrival_is_an_optional_epoch_time_kept_through_the_envelope():
    assert validate(TASK, NOW).arrival is None and "arrival" not in to_dict(validate(TASK, NOW))
    stamped = validate({**TASK, "arrival": NOW - 1}, NOW)
    assert stamped.arrival == NOW - 1
    [back] = unpack(decode(envelope([stamped])))
    assert back["arrival"] == NOW - 1 and validate(back, NOW) == stamped
    assert "arrival is 3600s in the future" in reason({**TASK, "arrival": NOW + 3600})
    assert ">= 0" in reason({**TASK, "arrival": -1})
    assert "got `str` - at `$.arrival`" in reason({**TASK, "arrival": "2026-01-01T00:00:00Z"})


def test_aiyield_send_refuses_what_v3_makes_invalid():
    # `aiyield send` and the gateway both validate with parse_items: the same reasons, by index.
    lines = b"\n".join(encode(e) for e in ({**TASK, "commits": [FULL]}, {**TASK, "commits": ["abcdef1"]}))
    good, bad = parse_items(decode_lines(lines), NOW)
    assert [e.commits for e in good] == [[FULL.lower()]]
    assert [b.index for b in bad] == [1] and "contract v3 §1" in bad[0].error.reason
