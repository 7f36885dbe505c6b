"""Crediting, scenario by scenario: each test is one story of events with the exact credits it must give."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from aiyield.core.crediting import (
    Credit,
    Policy,
    RepoState,
    apply,
    decode_state,
    encode_state,
    is_relevant,
)
from aiyield.core.events import Event

HOUR = 3600.0
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW = T0 + 2 * DAY
POLICY = Policy()
FULL = 1_000_000


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


A, B, C, D = sha("a"), sha("b"), sha("c"), sha("d")


def event(**fields: Any) -> Event:
    # msgspec.convert runs __post_init__, so SHAs are lower-cased and push heads defaulted as in production.
    return msgspec.convert(fields, Event)  # type: ignore[arg-type]


def task(
    task_id: str = "t1",
    ts: float = T0,
    commits: list[str] | None = None,
    team: str = "payments",
    tool: str = "claude-code",
    status: str = "completed",
    id: str | None = None,
    **extra: Any,
) -> Event:
    return event(
        type="task",
        id=id or f"task-{task_id}-{ts}",
        ts=ts,
        task_id=task_id,
        team=team,
        tool=tool,
        status=status,
        repo="shop",
        commits=[A] if commits is None else commits,
        **extra,
    )


def push(ts: float, commits: list[str], branch: str = "main", id: str | None = None, **extra: Any) -> Event:
    return event(type="push", id=id or f"push-{ts}", ts=ts, repo="shop", branch=branch, commits=commits, **extra)


def deployment(
    deploy_id: str = "d1",
    ts: float = T0 + HOUR,
    commits: list[str] | None = None,
    environment: str = "production",
    status: str = "succeeded",
    id: str | None = None,
    **extra: Any,
) -> Event:
    if commits is None:
        commits = [] if "head" in extra else [A]
    return event(
        type="deployment",
        id=id or f"deploy-{deploy_id}-{status}-{ts}",
        ts=ts,
        deploy_id=deploy_id,
        repo="shop",
        environment=environment,
        status=status,
        commits=commits,
        **extra,
    )


def credit(
    ts: float = T0 + HOUR,
    amount: int = FULL,
    task_id: str = "t1",
    deploy_id: str = "d1",
    team: str = "payments",
    tool: str = "claude-code",
) -> Credit:
    return Credit(team, tool, task_id, deploy_id, ts, amount, shipped=1)


def retraction(ts: float = T0 + HOUR, amount: int = FULL, **kwargs: Any) -> Credit:
    given = credit(ts, amount, **kwargs)
    return Credit(given.team, given.tool, given.task_id, given.deploy_id, given.ts, -given.amount, -1)


def run(
    *batches: list[Event], now: float = NOW, policy: Policy = POLICY
) -> tuple[RepoState | None, list[list[Credit]]]:
    """Apply the batches in order; the state after the last one and the credits of each batch."""
    state: RepoState | None = None
    out = []
    for batch in batches:
        state, credits = apply(state, batch, policy, now)
        out.append(credits)
    return state, out


# --- joining ---------------------------------------------------------------------------------------------------


def test_task_then_deployment_in_order_credits_one_at_the_deployments_ts():
    _, credits = run([task()], [deployment()])
    assert credits == [[], [credit()]]


def test_deployment_before_task_credits_when_the_task_arrives_still_at_the_deployments_ts():
    _, credits = run([deployment()], [task()])
    assert credits == [[], [credit()]]


def test_head_only_deployment_before_its_push_is_expanded_when_the_push_arrives():
    # The task's commit A is not the deployed head C: only the push tells that A went out with C.
    head_only = deployment(head=C)
    _, credits = run([task()], [head_only], [push(T0 + 0.5 * HOUR, [A, B, C])])
    assert credits == [[], [], [credit()]]


def test_head_only_deployment_ships_its_head_before_any_push():
    _, credits = run([task(commits=[C]), deployment(head=C)])
    assert credits == [[credit()]]


def test_expansion_takes_the_earlier_pushes_of_the_heads_branch_only():
    batch = [
        task("on-main", commits=[A]),
        task("on-feature", commits=[B]),
        push(T0, [A], id="p1"),
        push(T0 + 0.2 * HOUR, [B], branch="feature", id="p2"),
        push(T0 + 0.4 * HOUR, [C], id="p3"),
        deployment(head=C),
    ]
    _, credits = run(batch)
    assert credits == [[credit(task_id="on-main")]]


def test_push_head_counts_even_when_the_webhook_truncated_its_commits():
    _, credits = run([task(commits=[A]), push(T0, [A], head=C), deployment(head=C)])
    assert credits == [[credit()]]


def test_expansion_stops_at_the_push_that_carries_the_head():
    batch = [task(commits=[D]), push(T0, [C]), push(T0 + 0.5 * HOUR, [D]), deployment(head=C)]
    _, credits = run(batch)
    assert credits == [[]]


def test_expansion_leaves_out_commits_of_an_earlier_production_deployment():
    # The task completed seven days after A first went out with d1, just outside d1's join window and just inside
    # d2's: d2 only deploys B on top, so it must not ship A again because A is in the branch history.
    history = [push(T0, [A]), deployment("d1", ts=T0 + HOUR, commits=[A]), push(T0 + 2 * HOUR, [B])]
    state, _ = run([*history, deployment("d2", ts=T0 + 3 * HOUR, head=B)], now=T0 + 3 * HOUR)
    late_task = task(ts=T0 + 7 * DAY + 2 * HOUR, commits=[A])
    _, credits = apply(state, [late_task], POLICY, late_task.ts)
    assert credits == []


def test_pushes_older_than_the_join_window_are_not_used_for_expansion():
    state, _ = apply(None, [push(T0, [A])], POLICY, T0)
    later = [task(ts=T0 + 8 * DAY), push(T0 + 8 * DAY, [C]), deployment(ts=T0 + 8 * DAY, head=C)]
    _, credits = apply(state, later, POLICY, T0 + 8 * DAY)
    assert credits == []


def test_short_sha_in_the_task_matches_the_full_sha_deployed():
    _, credits = run([task(commits=[A[:7]]), deployment(commits=[A])])
    assert credits == [[credit()]]


def test_short_sha_in_the_deployment_matches_the_full_sha_of_the_task():
    _, credits = run([task(commits=[A]), deployment(commits=[A[:8].upper()])])
    assert credits == [[credit()]]


def test_short_head_matches_the_full_sha_of_its_push():
    _, credits = run([task(commits=[A]), push(T0, [A, B]), deployment(head=B[:7])])
    assert credits == [[credit()]]


@pytest.mark.parametrize(
    ("gap", "shipped"), [(7 * DAY, True), (7 * DAY + 1, False), (-7 * DAY, True), (-7 * DAY - 1, False)]
)
def test_task_and_deployment_join_within_the_join_window_either_way(gap, shipped):
    # Each side is sent when it happens, so neither is too late on arrival.
    first, second = sorted([task(ts=T0), deployment(ts=T0 + gap)], key=lambda e: e.ts)
    state, early = apply(None, [first], POLICY, first.ts)
    _, late = apply(state, [second], POLICY, second.ts)
    assert early == []
    assert late == ([credit(ts=T0 + gap)] if shipped else [])


def test_task_that_never_ships_gets_nothing_and_stays_in_the_state():
    state, credits = run([task(commits=[D]), deployment()])
    assert credits == [[]]
    assert state is not None and "t1" in state.tasks


# --- amount and who gets it -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ai_lines", "amount"), [(None, FULL), (0, 0), (3, 300_000), (10, FULL), (250, FULL)])
def test_credit_is_ai_lines_over_full_credit_lines_capped_at_one(ai_lines, amount):
    _, credits = run([task(ai_lines=ai_lines), deployment()])
    assert credits == [[credit(amount=amount)]]


def test_full_credit_lines_is_configurable():
    _, credits = run([task(ai_lines=3), deployment()], policy=Policy(full_credit_lines=4))
    assert credits == [[credit(amount=750_000)]]


def test_credit_goes_to_the_tasks_team_and_tool_not_the_deployments_team():
    _, credits = run([task(team="search", tool="cursor"), deployment(team="platform")])
    assert credits == [[credit(team="search", tool="cursor")]]


def test_the_latest_completed_event_of_a_task_defines_it():
    first = task(ts=T0, ai_lines=2, tool="copilot", id="e1")
    latest = task(ts=T0 + 0.5 * HOUR, ai_lines=5, tool="cursor", id="e2")
    _, credits = run([latest, deployment(), first])
    assert credits == [[credit(amount=500_000, tool="cursor")]]


def test_a_redefined_task_is_retracted_and_credited_again():
    _, credits = run([task(ai_lines=2, id="e1"), deployment()], [task(ts=T0 + 60, ai_lines=5, id="e2")])
    assert credits == [[credit(amount=200_000)], [retraction(amount=200_000), credit(amount=500_000)]]


def test_started_and_abandoned_tasks_are_not_shipped():
    _, credits = run([task(status="started"), task("t2", status="abandoned"), deployment()])
    assert credits == [[]]


# --- at most once -----------------------------------------------------------------------------------------------


def test_redeploy_adds_nothing():
    _, credits = run([task(), deployment("d1")], [deployment("d2", ts=T0 + 2 * HOUR)])
    assert credits == [[credit()], []]


def test_second_production_environment_adds_nothing():
    _, credits = run([task(), deployment("d1"), deployment("d2", ts=T0 + 2 * HOUR, environment="prod")])
    assert credits == [[credit()]]


def test_an_earlier_deployment_arriving_late_takes_the_credit_over():
    _, credits = run([task(), deployment("d2", ts=T0 + 2 * HOUR)], [deployment("d1", ts=T0 + HOUR)])
    assert credits == [
        [credit(ts=T0 + 2 * HOUR, deploy_id="d2")],
        [retraction(ts=T0 + 2 * HOUR, deploy_id="d2"), credit(deploy_id="d1")],
    ]


def test_deployments_at_the_same_ts_are_ordered_by_deploy_id():
    _, credits = run([task(), deployment("d2")], [deployment("d1")])
    assert credits == [[credit(deploy_id="d2")], [retraction(deploy_id="d2"), credit(deploy_id="d1")]]


def test_duplicated_events_add_nothing():
    batch = [task(), deployment()]
    _, credits = run(batch, batch, [*batch, *batch])
    assert credits == [[credit()], [], []]


@pytest.mark.parametrize("environment", ["staging", "Production", "preview"])
def test_non_production_environment_gives_nothing(environment):
    _, credits = run([task(), deployment(environment=environment)])
    assert credits == [[]]


def test_production_environments_are_configurable():
    policy = Policy(production_environments=frozenset({"live"}))
    batch = [task(), deployment(environment="live"), deployment("d0", ts=T0, environment="production")]
    _, credits = run(batch, policy=policy)
    assert credits == [[credit()]]


def test_failed_deployment_gives_nothing():
    _, credits = run([task(), deployment(status="failed")])
    assert credits == [[]]


# --- rollbacks --------------------------------------------------------------------------------------------------


def test_rollback_inside_the_survival_window_retracts_and_a_later_deployment_reships_at_its_own_ts():
    rolled_back = deployment(ts=T0 + 5 * HOUR, status="rolled_back", commits=[])
    redeploy = deployment("d2", ts=T0 + 6 * HOUR)
    _, credits = run([task(), deployment()], [rolled_back], [redeploy])
    assert credits == [[credit()], [retraction()], [credit(ts=T0 + 6 * HOUR, deploy_id="d2")]]


def test_rollback_moves_the_credit_to_a_later_deployment_already_seen():
    _, credits = run(
        [task(), deployment(), deployment("d2", ts=T0 + 6 * HOUR)],
        [deployment(ts=T0 + 5 * HOUR, status="rolled_back", commits=[])],
    )
    assert credits == [[credit()], [retraction(), credit(ts=T0 + 6 * HOUR, deploy_id="d2")]]


def test_rollback_via_rollback_of_from_any_environment_and_status():
    revert = deployment("d9", ts=T0 + 2 * HOUR, environment="staging", status="failed", commits=[], rollback_of="d1")
    _, credits = run([task(), deployment()], [revert])
    assert credits == [[credit()], [retraction()]]


@pytest.mark.parametrize(("after", "retracted"), [(-1, False), (0, True), (DAY, True), (DAY + 1, False)])
def test_only_a_rollback_inside_the_survival_window_counts(after, retracted):
    rollback = deployment(ts=T0 + HOUR + after, status="rolled_back", commits=[])
    _, credits = run([task(), deployment()], [rollback])
    assert credits == [[credit()], [retraction()] if retracted else []]


def test_rollback_before_the_deployment_was_seen_prevents_the_credit():
    rolled_back = deployment(ts=T0 + 2 * HOUR, status="rolled_back", commits=[])
    _, credits = run([rolled_back], [task(), deployment()])
    assert credits == [[], []]


def test_the_earliest_succeeded_event_defines_a_deployment():
    # Two succeeded events for d1: the window of a rollback counts from the earliest one.
    again = deployment(ts=T0 + 20 * HOUR, id="again")
    rollback = deployment(ts=T0 + HOUR + DAY + 1, status="rolled_back", commits=[])
    _, credits = run([task(), deployment(), again, rollback])
    assert credits == [[credit()]]


# --- lateness, expiry, state ------------------------------------------------------------------------------------


def test_events_older_than_the_join_window_on_arrival_are_ignored():
    state, credits = run([task(ts=T0), deployment(ts=T0 + HOUR)], now=T0 + 7 * DAY + 1)
    assert credits == [[]]
    assert state is not None and not state.tasks and "d1" in state.deployments


def test_expiry_drops_the_whole_state_and_emits_nothing():
    state, credits = run([task(), push(T0, [A]), deployment()])
    assert credits == [[credit()]]
    state, expired = apply(state, [], POLICY, T0 + 30 * DAY)
    assert (state, expired) == (None, [])


def test_a_credit_stands_after_its_deployment_expires_and_a_late_redeploy_adds_nothing():
    # The task completed 6 days after its commit first shipped, so a redeploy a week later is still in its window.
    state, credits = run([task(ts=T0 + 6 * DAY), deployment()], now=T0 + 6 * DAY)
    assert credits == [[credit()]]
    state, expired = apply(state, [], POLICY, T0 + 8.5 * DAY)
    assert expired == []
    assert state is not None and state.settled == {"t1": T0 + 6 * DAY} and not state.deployments
    state, credits_after = apply(state, [deployment("d2", ts=T0 + 8.5 * DAY)], POLICY, T0 + 8.5 * DAY)
    assert credits_after == []


def test_commits_of_an_expired_deployment_are_still_not_reshipped_by_expansion():
    # A went out with d1 and was pushed again later (a merge, say). Once d1 has expired, the head-only d2 still must
    # not ship A: d1's commits are remembered for as long as a remembered push carries them.
    state, _ = run([deployment("d1", ts=T0, commits=[A])], now=T0)
    state, _ = apply(state, [push(T0 + 2 * DAY, [A])], POLICY, T0 + 8.5 * DAY)
    assert state is not None and not state.deployments and state.retired_commits == (A,)
    later = [push(T0 + 8 * DAY, [B]), deployment("d2", ts=T0 + 8.5 * DAY, head=B), task(ts=T0 + 8.5 * DAY)]
    _, credits = apply(state, later, POLICY, T0 + 8.5 * DAY)
    assert credits == []


def test_input_state_is_not_modified():
    state, _ = run([task()])
    assert state is not None
    before = encode_state(state)
    apply(state, [deployment()], POLICY, NOW)
    assert encode_state(state) == before


def test_state_round_trips_through_msgpack():
    state, _ = run(
        [task(ai_lines=4), push(T0, [A, B]), deployment(head=B), deployment("d2", status="rolled_back", commits=[])]
    )
    assert state is not None and state.assigned and state.rollbacks
    data = encode_state(state)
    assert isinstance(data, bytes)
    assert decode_state(data) == state


def test_empty_state_is_none():
    assert apply(None, [], POLICY, NOW) == (None, [])
    assert apply(None, [task(status="started")], POLICY, NOW) == (None, [])


# --- relevance and policy ---------------------------------------------------------------------------------------


def test_is_relevant_selects_what_crediting_joins():
    token = event(type="token", id="k", ts=T0, team="t", tool="x", model="m", input_tokens=1, output_tokens=1)
    no_commits = event(type="task", id="n", ts=T0, task_id="t", team="t", tool="x", status="completed", repo="shop")
    assert is_relevant(task())
    assert not is_relevant(task(status="started"))
    assert not is_relevant(no_commits)
    assert not is_relevant(token)
    assert is_relevant(push(T0, [A]))
    assert is_relevant(deployment(status="failed", commits=[]))


@pytest.mark.parametrize("bad", [{"full_credit_lines": 0}, {"join_window": 0}, {"survival_window": -1}])
def test_policy_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        Policy(**bad)
