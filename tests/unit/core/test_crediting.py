"""Crediting, scenario by scenario: each test is one story of events with the exact deltas it must give.

Ported from the v1 tests (`apply(state, events, policy, now)`) to the v2 core (`MemoryJoinState().apply(events,
policy) -> list[Delta]`, docs/INTERFACE.md §2). Where contract v2 changed a rule, the test says so (`v2:`). What no longer
applies was dropped: arrival-time expiry and `now` (state now expires by Redis TTL in the adapter, not in the core).
The scenarios of issue 7 are at the end.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import msgspec
import pytest

from aiyield.core import crediting
from aiyield.core.crediting import (
    BranchState,
    Delta,
    DeploymentState,
    MemoryJoinState,
    Policy,
    TaskState,
    is_relevant,
)
from aiyield.core.events import Event
from aiyield.core.windows import SCALE

from .crediting_model import totals

HOUR = 3600.0
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
POLICY = Policy()
FULL = SCALE["credit"]


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


A, B, C, D, E = sha("a"), sha("b"), sha("c"), sha("d"), sha("e")


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
    repo: str = "shop",
    **extra: Any,
) -> Event:
    return event(
        type="task",
        id=id or f"task-{team}-{task_id}-{repo}-{status}-{ts}",
        ts=ts,
        task_id=task_id,
        team=team,
        tool=tool,
        status=status,
        repo=repo,
        commits=([A] if status == "completed" else []) if commits is None else commits,
        **extra,
    )


def push(ts: float, commits: list[str], branch: str = "main", id: str | None = None, repo: str = "shop", **extra: Any) -> Event:
    return event(type="push", id=id or f"push-{repo}-{branch}-{ts}", ts=ts, repo=repo, branch=branch, commits=commits, **extra)


def deployment(
    deploy_id: str = "d1",
    ts: float = T0 + HOUR,
    commits: list[str] | None = None,
    environment: str = "production",
    status: str = "succeeded",
    id: str | None = None,
    repo: str = "shop",
    **extra: Any,
) -> Event:
    if commits is None:
        commits = [] if "head" in extra or status != "succeeded" else [A]
    return event(
        type="deployment",
        id=id or f"deploy-{repo}-{deploy_id}-{environment}-{status}-{ts}",
        ts=ts,
        deploy_id=deploy_id,
        repo=repo,
        environment=environment,
        status=status,
        commits=commits,
        **extra,
    )


class Out(Counter):
    """What one batch adds to the output windows (`crediting_model.totals`); equal to a list of expected parts when
    they sum to it, so a test reads `assert deltas == [[], [credit()]]`."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            expected: Counter = Counter()
            for part in other:
                expected.update(part)
            other = Counter({k: v for k, v in expected.items() if v})
        return Counter(self) == other

    __hash__ = None  # type: ignore[assignment]


def credit(
    ts: float = T0 + HOUR, amount: int = FULL, task_id: str = "t1", team: str = "payments", tool: str = "claude-code",
    shipped: int = 1,
) -> Counter:
    """A deployment's credit to a team at its ts, and one task of (team, tool) shipped by it (`task_id` is for the
    reader: v3 counts credit per deployment and team, not per task)."""
    return Counter({("credit", team, ts, "", ""): amount, ("shipped", team, ts, tool, ""): shipped})


def uncredit(ts: float = T0 + HOUR, amount: int = FULL, **kwargs: Any) -> Counter:
    """The credit at `ts` taken out of the normalized deployments again."""
    return Counter({k: -v for k, v in credit(ts, amount, **kwargs).items()})


def retracted(ts: float, reason: str, amount: int = FULL, task_id: str = "t1", team: str = "payments") -> Counter:
    """A retraction counted in aiyield_retracted_normalized_deployments{team, reason} at the retraction's ts."""
    return Counter({("retracted", team, ts, "", reason): amount})


def contested(ts: float, task_id: str, team: str = "payments", amount: int = 1) -> Counter:
    return Counter({("contested", team, ts, "", ""): amount})


def run(*batches: list[Event], policy: Policy = POLICY) -> tuple[MemoryJoinState, list[Out]]:
    """Apply the batches in order to one store; the store after the last one and what each batch added."""
    store = MemoryJoinState()
    return store, [Out(totals(store.apply(batch, policy))) for batch in batches]


def net(deltas: list) -> Counter:
    """What the windows end up holding (from batches, or from lists of expected parts)."""
    out: Counter = Counter()
    for batch in deltas:
        for part in batch if isinstance(batch, list) else [batch]:
            out.update(part)
    return Counter({k: v for k, v in out.items() if v})


# --- joining ---------------------------------------------------------------------------------------------------


def test_task_then_deployment_in_order_credits_one_at_the_deployments_ts():
    _, deltas = run([task()], [deployment()])
    assert deltas == [[], [credit()]]


def test_deployment_before_task_credits_when_the_task_arrives_still_at_the_deployments_ts():
    _, deltas = run([deployment()], [task()])
    assert deltas == [[], [credit()]]


def test_head_only_deployment_before_its_push_is_expanded_when_the_push_arrives():
    # The task's commit A is not the deployed head C: only the push tells that A went out with C.
    head_only = deployment(head=C)
    _, deltas = run([task()], [head_only], [push(T0 + 0.5 * HOUR, [A, B, C])])
    assert deltas == [[], [], [credit()]]


def test_head_only_deployment_ships_its_head_before_any_push():
    _, deltas = run([task(commits=[C]), deployment(head=C)])
    assert deltas == [[credit()]]


def test_expansion_takes_the_earlier_pushes_of_the_heads_branch_only():
    batch = [
        task("on-main", commits=[A]),
        task("on-feature", commits=[B]),
        push(T0, [A], id="p1"),
        push(T0 + 0.2 * HOUR, [B], branch="feature", id="p2"),
        push(T0 + 0.4 * HOUR, [C], id="p3"),
        deployment(head=C),
    ]
    _, deltas = run(batch)
    assert deltas == [[credit(task_id="on-main")]]


def test_push_head_counts_even_when_the_webhook_truncated_its_commits():
    _, deltas = run([task(commits=[A]), push(T0, [A], head=C), deployment(head=C)])
    assert deltas == [[credit()]]


def test_expansion_stops_at_the_push_that_carries_the_head():
    batch = [task(commits=[D]), push(T0, [C]), push(T0 + 0.5 * HOUR, [D]), deployment(head=C)]
    _, deltas = run(batch)
    assert deltas == [[]]


def test_expansion_leaves_out_commits_of_an_earlier_production_deployment():
    # A went out with d1 (explicit commits); d2 deploys head B on top, and its expansion reaches back over A in the
    # branch history. v2: the task also has to precede d2 (it does: T0 + 2.5 h), so only the "no earlier production
    # deployment already contained that commit" rule keeps d2 from shipping A.
    history = [push(T0, [A]), deployment("d1", ts=T0 + HOUR, commits=[A]), push(T0 + 2 * HOUR, [B])]
    late_task = task(ts=T0 + 2.5 * HOUR, commits=[A])
    _, deltas = run([*history, deployment("d2", ts=T0 + 3 * HOUR, head=B)], [late_task])
    assert deltas == [[], []]


def test_pushes_older_than_the_join_window_are_not_used_for_expansion():
    # The contract does not bound the expansion in time; the core reaches back one join window before the
    # deployment (only a task claiming a commit pushed before the task began can tell the difference).
    later = [task(ts=T0 + 8 * DAY), push(T0 + 8 * DAY, [C]), deployment(ts=T0 + 8 * DAY, head=C)]
    _, deltas = run([push(T0, [A])], later)
    assert deltas == [[], []]


def test_v3_an_abbreviated_sha_in_a_task_claims_nothing():
    # v3: tasks claim full SHAs. The schema refuses abbreviations; were one to reach the join (a record written
    # before v3), it would claim nothing rather than guess.
    with pytest.raises(msgspec.ValidationError, match="full 40- or 64-character SHAs"):
        task(commits=[A[:7]])
    legacy = task()
    legacy.commits = [A[:7]]  # set after validation, as a record written before v3 decodes
    _, deltas = run([legacy, push(T0, [A]), deployment(commits=[A])])
    assert deltas == [[]]


def test_short_sha_in_the_deployment_names_the_full_sha_pushed_before_it():
    _, deltas = run([task(commits=[A]), push(T0, [A]), deployment(commits=[A[:8].upper()])])
    assert deltas == [[credit()]]


def test_v3_a_short_sha_names_nothing_until_a_push_of_its_full_sha_at_or_before_the_deployment():
    _, deltas = run([task(commits=[A]), deployment(commits=[A[:8]])], [push(T0 + 2 * HOUR, [A])], [push(T0, [A], id="early")])
    assert deltas == [[], [], [credit()]]


def test_v3_an_ambiguous_short_sha_names_nothing_whatever_the_order():
    twin = A[:7] + "0" * 33
    events = [task(commits=[A]), push(T0, [A]), push(T0, [twin], id="twin"), deployment(commits=[A[:7]])]
    assert run(events)[1] == [[]]
    assert net(run(events[:2], events[3:], events[2:3])[1]) == Counter()


def test_short_head_matches_the_full_sha_of_its_push():
    _, deltas = run([task(commits=[A]), push(T0, [A, B]), deployment(head=B[:7])])
    assert deltas == [[credit()]]


@pytest.mark.parametrize(
    ("gap", "shipped"),
    # v2: a deployment ships a task only if it is no earlier than the task's ts minus 5 minutes (it was -7 days).
    [(7 * DAY, True), (7 * DAY + 1, False), (-300, True), (-301, False), (-7 * DAY, False)],
)
def test_task_and_deployment_join_within_the_join_window_after_the_task(gap, shipped):
    first, second = sorted([task(ts=T0), deployment(ts=T0 + gap)], key=lambda e: e.ts)
    _, deltas = run([first], [second])
    assert deltas == [[], [credit(ts=T0 + gap)] if shipped else []]


def test_task_that_never_ships_gets_nothing_and_stays_in_the_state():
    store, deltas = run([task(commits=[D]), deployment()])
    assert deltas == [[]]
    assert ("payments", "t1") in store.tasks


# --- amount and who gets it -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ai_lines", "amount"), [(None, FULL), (0, 0), (3, 300_000), (10, FULL), (250, FULL)])
def test_credit_is_ai_lines_over_full_credit_lines_capped_at_one(ai_lines, amount):
    _, deltas = run([task(ai_lines=ai_lines), deployment()])
    assert deltas == [[credit(amount=amount)]]


def test_full_credit_lines_is_configurable():
    _, deltas = run([task(ai_lines=3), deployment()], policy=Policy(full_credit_lines=4))
    assert deltas == [[credit(amount=750_000)]]


def test_credit_goes_to_the_tasks_team_and_tool_not_the_deployments_team():
    _, deltas = run([task(team="search", tool="cursor"), deployment(team="platform")])
    assert deltas == [[credit(team="search", tool="cursor")]]


def test_a_task_is_defined_by_all_its_completed_reports():
    # v2 (it was "the latest completed event defines the task"): ai_lines is the largest reported. The contract
    # does not say which report names the tool; the core takes the earliest completed report's.
    first = task(ts=T0, ai_lines=2, tool="copilot", id="e1")
    latest = task(ts=T0 + 0.5 * HOUR, ai_lines=5, tool="cursor", id="e2")
    _, deltas = run([latest, deployment(), first])
    assert deltas == [[credit(amount=500_000, tool="copilot")]]


def test_a_later_report_with_more_ai_lines_raises_the_credit_at_the_same_ts():
    # v2 (it was "a redefined task is retracted and credited again"): nothing is retracted; the credit of 0.2 is
    # replaced by 0.5 at the same deployment ts, and no retraction is counted.
    _, deltas = run([task(ai_lines=2, id="e1"), deployment()], [task(ts=T0 + 60, ai_lines=5, id="e2")])
    assert deltas == [[credit(amount=200_000)], [uncredit(amount=200_000), credit(amount=500_000)]]


def test_a_later_report_with_fewer_ai_lines_changes_nothing():
    # v2: ai_lines is the largest reported.
    _, deltas = run([task(ai_lines=5, id="e1"), deployment()], [task(ts=T0 + 60, ai_lines=2, id="e2")])
    assert deltas == [[credit(amount=500_000)], []]


def test_started_and_abandoned_tasks_are_not_shipped():
    _, deltas = run([task(status="started"), task("t2", status="abandoned", commits=[A]), deployment()])
    assert deltas == [[]]


# --- at most once -----------------------------------------------------------------------------------------------


def test_redeploy_adds_nothing():
    _, deltas = run([task(), deployment("d1")], [deployment("d2", ts=T0 + 2 * HOUR)])
    assert deltas == [[credit()], []]


def test_second_production_environment_adds_nothing():
    _, deltas = run([task(), deployment("d1"), deployment("d2", ts=T0 + 2 * HOUR, environment="prod")])
    assert deltas == [[credit()]]


def test_an_earlier_deployment_arriving_late_takes_the_credit_over():
    _, deltas = run([task(), deployment("d2", ts=T0 + 2 * HOUR)], [deployment("d1", ts=T0 + HOUR)])
    assert deltas == [[credit(ts=T0 + 2 * HOUR)], [uncredit(ts=T0 + 2 * HOUR), credit()]]


def test_deployments_at_the_same_ts_are_ordered_by_deploy_id():
    # Same ts: the credit stays at that ts whichever of d1, d2 ships it, and the later arrival changes nothing.
    store, deltas = run([task(), deployment("d2")], [deployment("d1")])
    assert net(deltas) == net([[credit()]])
    shipped = store.tasks[("payments", "t1")].shipped
    assert shipped is not None and shipped[2] == "d1"


def test_duplicated_events_add_nothing():
    batch = [task(), deployment()]
    _, deltas = run(batch, batch, [*batch, *batch])
    assert deltas == [[credit()], [], []]


@pytest.mark.parametrize("environment", ["staging", "preview", "production-eu"])
def test_non_production_environment_gives_nothing(environment):
    # v2: "Production" moved to the test below (environments match case-insensitively).
    _, deltas = run([task(), deployment(environment=environment)])
    assert deltas == [[]]


@pytest.mark.parametrize("environment", ["production", "Production", "PROD", "prod"])
def test_production_environments_match_case_insensitively(environment):
    _, deltas = run([task(), deployment(environment=environment)])
    assert deltas == [[credit()]]


def test_production_environments_are_configurable():
    policy = Policy(production_environments=frozenset({"Live"}))
    batch = [task(), deployment(environment="live"), deployment("d0", ts=T0, environment="production")]
    _, deltas = run(batch, policy=policy)
    assert deltas == [[credit()]]


def test_failed_deployment_gives_nothing():
    _, deltas = run([task(), deployment(status="failed", commits=[A])])
    assert deltas == [[]]


# --- rollbacks --------------------------------------------------------------------------------------------------


def test_rollback_inside_the_survival_window_retracts_and_a_later_deployment_reships_at_its_own_ts():
    # v2: the retraction is also counted (reason rollback, at the rollback's ts), and stays when d2 ships again.
    rolled_back = deployment(ts=T0 + 5 * HOUR, status="rolled_back")
    redeploy = deployment("d2", ts=T0 + 6 * HOUR)
    _, deltas = run([task(), deployment()], [rolled_back], [redeploy])
    assert deltas == [
        [credit()],
        [uncredit(), retracted(T0 + 5 * HOUR, "rollback")],
        [credit(ts=T0 + 6 * HOUR)],
    ]


def test_rollback_moves_the_credit_to_a_later_deployment_already_seen():
    _, deltas = run(
        [task(), deployment(), deployment("d2", ts=T0 + 6 * HOUR)],
        [deployment(ts=T0 + 5 * HOUR, status="rolled_back")],
    )
    assert deltas == [
        [credit()],
        [uncredit(), credit(ts=T0 + 6 * HOUR), retracted(T0 + 5 * HOUR, "rollback")],
    ]


def test_rollback_via_rollback_of_from_a_succeeded_deployment_of_the_same_environment():
    # v2 (it was "from any environment and status"): only a succeeded deployment of the same repo and
    # environment rolls back with `rollback_of`.
    revert = deployment("d9", ts=T0 + 2 * HOUR, commits=[B], rollback_of="d1")
    _, deltas = run([task(), deployment()], [revert])
    assert deltas == [[credit()], [uncredit(), retracted(T0 + 2 * HOUR, "rollback")]]


@pytest.mark.parametrize(
    "rollback",
    [
        {"environment": "staging"},
        {"environment": "prod"},  # another production environment is not the same environment
        {"status": "failed"},
        {"repo": "web"},
    ],
)
def test_rollback_of_from_another_environment_status_or_repo_does_not_roll_back(rollback):
    # v2 (it used to retract).
    revert = deployment("d9", ts=T0 + 2 * HOUR, commits=[B], rollback_of="d1", **rollback)
    _, deltas = run([task(), deployment()], [revert])
    assert deltas == [[credit()], []]


def test_rolled_back_report_matches_the_environment_case_insensitively():
    _, deltas = run([task(), deployment()], [deployment(ts=T0 + 2 * HOUR, status="rolled_back", environment="PRODUCTION")])
    assert deltas == [[credit()], [uncredit(), retracted(T0 + 2 * HOUR, "rollback")]]


@pytest.mark.parametrize(("after", "is_retracted"), [(-1, False), (0, True), (DAY, True), (DAY + 1, False)])
def test_only_a_rollback_inside_the_survival_window_counts(after, is_retracted):
    rollback = deployment(ts=T0 + HOUR + after, status="rolled_back")
    _, deltas = run([task(), deployment()], [rollback])
    assert deltas == [[credit()], [uncredit(), retracted(T0 + HOUR + after, "rollback")] if is_retracted else []]


def test_rollback_before_the_deployment_was_seen_prevents_the_credit():
    # v2: the credit was given and taken back, so the retraction is counted (and no credit ever shows).
    rolled_back = deployment(ts=T0 + 2 * HOUR, status="rolled_back")
    _, deltas = run([rolled_back], [task(), deployment()])
    assert deltas == [[], [retracted(T0 + 2 * HOUR, "rollback")]]


def test_the_earliest_succeeded_event_defines_a_deployment():
    # Two succeeded events for d1: the window of a rollback counts from the earliest one.
    again = deployment(ts=T0 + 20 * HOUR, id="again")
    rollback = deployment(ts=T0 + HOUR + DAY + 1, status="rolled_back")
    _, deltas = run([task(), deployment(), again, rollback])
    assert deltas == [[credit()]]


# --- state ------------------------------------------------------------------------------------------------------
# Dropped from v1: "events older than the join window on arrival are ignored" and "expiry drops the whole state"
# (arrival time is the adapter's business now: Policy.too_late, Redis TTL); "a credit stands after its deployment
# expires" and "commits of an expired deployment are not reshipped" (no expiry in the core; the redeploy half is
# kept below).


def test_a_redeploy_a_week_later_adds_nothing():
    _, deltas = run([task(), deployment()], [deployment("d2", ts=T0 + 6.5 * DAY)])
    assert deltas == [[credit()], []]


def test_too_late_is_the_join_window_plus_one_day_after_the_events_ts():
    assert POLICY.late_after == 8 * DAY
    assert not POLICY.too_late(T0, arrival=T0 + 8 * DAY)
    assert POLICY.too_late(T0, arrival=T0 + 8 * DAY + 1)


def _snapshot(store: MemoryJoinState) -> dict[str, dict[Any, bytes]]:
    return {
        "tasks": {k: crediting.encode(v) for k, v in store.tasks.items()},
        "commits": {k: crediting.encode(v) for k, v in store.commits.items()},
        "credits": {k: crediting.encode(v) for k, v in store.credits.items()},
        "deployments": {k: crediting.encode(v) for k, v in store.deployments.items()},
        "branches": {k: crediting.encode(v) for k, v in store.branches.items()},
        "pushes": {k: repr(v).encode() for k, v in store.pushes.items()},
    }


def test_join_reads_but_never_modifies_the_store():
    store, _ = run([task(), push(T0, [A, B])])
    before = _snapshot(store)
    result = crediting.run(store.read, [deployment(head=B)], POLICY)
    assert Out(totals(result.deltas)) == [credit()]
    assert _snapshot(store) == before


def test_state_round_trips_through_msgpack():
    store, _ = run(
        [
            task(ai_lines=4),
            task("t2", status="started", commits=[]),
            push(T0, [A, B]),
            push(T0 + 2 * HOUR, [C], reverts=[A]),
            deployment(head=B),
            deployment("d2", status="rolled_back"),
        ]
    )
    assert store.tasks and store.commits and store.deployments and store.branches and store.credits
    for kind, entities in [
        (TaskState, store.tasks),
        (crediting.CommitState, store.commits),
        (crediting.CreditState, store.credits),
        (DeploymentState, store.deployments),
        (BranchState, store.branches),
    ]:
        for value in entities.values():
            data = crediting.encode(value)
            assert isinstance(data, bytes)
            assert crediting.decode(kind, data) == value


def test_empty_batches_give_nothing():
    assert MemoryJoinState().apply([], POLICY) == []
    assert MemoryJoinState().apply([task(status="started")], POLICY) == []


# --- relevance and policy ---------------------------------------------------------------------------------------


def test_is_relevant_selects_what_crediting_joins():
    # v2: started tasks and completed tasks without commits are relevant (their ts is the task's ts).
    token = event(type="token", id="k", ts=T0, team="t", tool="x", model="m", input_tokens=1, output_tokens=1)
    no_commits = event(type="task", id="n", ts=T0, task_id="t", team="t", tool="x", status="completed", repo="shop")
    assert is_relevant(task())
    assert is_relevant(task(status="started"))
    assert is_relevant(no_commits)
    assert not is_relevant(task(status="abandoned"))
    assert not is_relevant(token)
    assert is_relevant(push(T0, [A]))
    assert is_relevant(deployment(status="failed"))


@pytest.mark.parametrize("bad", [{"full_credit_lines": 0}, {"join_window": 0}, {"survival_window": -1}])
def test_policy_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        Policy(**bad)


# --- v2: bugs found while porting ---------------------------------------------------------------------------------


def test_a_later_report_with_a_new_commit_in_another_batch_does_not_crash():
    # _fold_task re-claims *all* the task's commits, but `join` only read the buckets of the new event's commits.
    _, deltas = run([task(commits=[A], id="e1")], [task(ts=T0 + HOUR, commits=[B], id="e2")])
    assert deltas == [[], []]


def test_a_started_report_that_moves_the_tasks_ts_back_does_not_crash():
    _, deltas = run([task(ts=T0 + 2 * HOUR), deployment()], [task(status="started", ts=T0)])
    assert deltas == [[], [credit()]]


def test_a_started_report_sets_the_tasks_ts_in_one_batch():
    # v2: a task's ts is the earliest of its started and completed reports. Started at T0, completed after its
    # commit was deployed at T0 + 1 h: still shipped by that deployment. (The same in two batches: see above.)
    _, deltas = run([task(ts=T0 + 2 * HOUR), deployment(), task(status="started", ts=T0)])
    assert deltas == [[credit()]]


def test_the_tool_of_the_earliest_report_does_not_depend_on_batching():
    # The task's tool is that of its earliest report, started ones included (by (ts, tool)): cursor, at T0.
    started = task(status="started", ts=T0, tool="cursor")
    reports = [task(ts=T0 + 10, tool="cursor", id="c10"), task(ts=T0 + 5, tool="cursor", id="c5")]
    copilot = task(ts=T0 + 7, tool="copilot", id="c7")
    _, one_batch = run([started, *reports, copilot, deployment()])
    _, batched = run([started], [reports[0]], [reports[1]], [copilot], [deployment()])
    assert one_batch == [[credit(tool="cursor")]]
    assert net(batched) == net(one_batch)


def test_a_late_revert_outside_the_survival_window_changes_nothing_after_the_branch_index_is_pruned():
    # d1 (head-only, head B) shipped A. 20 days later d2 lands on main, and _apply_reindex drops d1 from main's
    # index (older than Policy.horizon = 18 days before d2). A revert of A, far outside the survival window,
    # then makes the core recompute t1: A's chain is empty now, and the credit silently disappears (no
    # retraction counted). Without d2 the same revert changes nothing.
    shipped = [task(commits=[A]), push(T0, [A, B]), deployment(head=B)]
    later = [push(T0 + 20 * DAY, [C]), deployment("d2", ts=T0 + 20 * DAY, head=C)]
    revert = [push(T0 + 20 * DAY + 60, [D], reverts=[A])]
    _, without_d2 = run(shipped, revert)
    assert without_d2 == [[credit()], []]
    _, deltas = run(shipped, later, revert)
    assert deltas == [[credit()], [], []]


def test_an_earlier_report_of_a_deployment_arriving_later_replaces_its_commits():
    # d1 is reported twice; the earliest (ts, id) report defines it (commits [B]), so A was never deployed. In one
    # batch: no credit. Across batches the store's state object is both `original_deployments[ref]` and the one
    # _fold_deployment mutates, so _index_explicit sees no change and A keeps d1 in its `deploys`.
    # v3: one deploy_id, one answer: the report with other commits is counted as contested.
    late, early = deployment(ts=T0 + 2 * HOUR, commits=[A], id="r2"), deployment(ts=T0 + HOUR, commits=[B], id="r1")
    refused = contested(T0 + 2 * HOUR, "r2", team="unassigned")
    _, one_batch = run([late, task(), early])
    assert one_batch == [[refused]]
    _, deltas = run([late], [task(), early])
    assert net(deltas) == net([[refused]])


# --- v2: the scenarios of issue 7 -------------------------------------------------------------------------------


def test_50_tasks_claiming_one_commit_earn_one_credit():
    claims = [task(f"t{i:02d}", ts=T0 + i) for i in range(50)]
    _, deltas = run([*reversed(claims), deployment()])
    assert deltas == [[credit(task_id="t00"), *(contested(T0 + i, f"t{i:02d}") for i in range(1, 50))]]


def test_100_one_line_tasks_on_one_commit_earn_a_tenth():
    claims = [task(f"t{i:03d}", ts=T0 + i, ai_lines=1) for i in range(100)]
    _, deltas = run(claims[50:], [deployment()], claims[:50])
    assert sum(v for k, v in net(deltas).items() if k[0] == "credit") == FULL // 10
    assert net(deltas) == net([[credit(amount=FULL // 10, task_id="t000")]]) | net(
        [[contested(T0 + i, f"t{i:03d}") for i in range(1, 100)]]
    )


def test_the_earliest_claimant_owns_the_commit_whichever_arrives_first():
    # Claims are by (ts, team, task_id): a tie in ts goes to the team first in order.
    early, late = task("t2", ts=T0, team="search"), task("t1", ts=T0 + 60)
    _, deltas = run([late, deployment()], [early])
    assert deltas == [
        [credit()],
        [uncredit(), contested(T0 + 60, "t1"), credit(team="search", task_id="t2")],
    ]
    tie = [task("t1", ts=T0, team="search"), task("t1", ts=T0, team="payments")]
    _, deltas = run([*tie, deployment()])
    assert deltas == [[credit(), contested(T0, "t1", team="search")]]


def test_another_team_reusing_a_task_id_does_not_take_the_credit():
    _, deltas = run([task(), deployment()], [task(team="search", tool="cursor", ts=T0 + 2 * HOUR)])
    assert deltas == [[credit()], [contested(T0 + 2 * HOUR, "t1", team="search")]]


def test_another_team_reusing_a_task_id_before_the_deployment_is_contested_too():
    _, deltas = run([task(), task(team="search", ts=T0 + 60)], [deployment()])
    assert deltas == [[contested(T0 + 60, "t1", team="search")], [credit()]]


def test_the_same_task_id_in_two_repos_is_one_task_credited_once():
    reports = [task(commits=[A], repo="shop", id="e1"), task(commits=[B], repo="web", ts=T0 + 60, id="e2")]
    deploys = [deployment(commits=[A]), deployment("w1", ts=T0 + 2 * HOUR, commits=[B], repo="web")]
    _, deltas = run([*reports, *deploys])
    assert deltas == [[credit()]]
    # The later deployment first: the credit moves to the earlier one when it arrives.
    _, deltas = run([*reports, deploys[1]], [deploys[0]])
    assert deltas == [[credit(ts=T0 + 2 * HOUR)], [uncredit(ts=T0 + 2 * HOUR), credit()]]


def test_a_second_completed_report_unions_commits_and_never_retracts():
    first, second = task(commits=[A], id="e1"), task(commits=[B], ts=T0 + 3 * HOUR, id="e2")
    _, deltas = run([first, deployment(commits=[A])], [second], [deployment("d2", ts=T0 + 4 * HOUR, commits=[B])])
    assert deltas == [[credit()], [], []]


def test_a_second_completed_report_unions_commits_in_one_batch():
    # A session that commits across two replies: the second reply's commit is what shipped first.
    first, second = task(commits=[A], id="e1"), task(commits=[B], ts=T0 + 3 * HOUR, id="e2")
    _, deltas = run([first, second, deployment(ts=T0 + 4 * HOUR, commits=[B]), deployment("d2", ts=T0 + 5 * HOUR)])
    assert deltas == [[credit(ts=T0 + 4 * HOUR)]]


def test_a_re_report_seven_and_a_half_days_later_retracts_nothing():
    _, deltas = run([task(id="e1"), deployment()], [task(ts=T0 + 7.5 * DAY, id="e2")])
    assert deltas == [[credit()], []]


def test_a_head_only_deployment_after_a_fast_forward_merge_ships_what_is_on_main():
    # B is pushed to a feature branch first, then main fast-forwards to it: the deployment of head B follows the
    # latest push carrying B (main), so A, already on main, ships with it.
    batch = [
        task("on-main", commits=[A]),
        task("on-feature", commits=[B]),
        push(T0, [A]),
        push(T0 + 0.1 * HOUR, [B], branch="feature"),
        push(T0 + 0.2 * HOUR, [B]),
        deployment(head=B),
    ]
    # v3: one deployment is worth at most 1 to a team, however many of its tasks it ships.
    _, deltas = run(batch)
    assert deltas == [[credit(shipped=2)]]
    _, deltas = run(batch[:4], [batch[5]], [batch[4]])  # the merge push arrives last
    assert net(deltas) == net([[credit(shipped=2)]])


def test_a_task_created_after_a_deployment_is_not_credited_by_a_redeploy():
    _, deltas = run(
        [deployment(ts=T0, commits=[A])],
        [task(ts=T0 + HOUR)],
        [deployment("d2", ts=T0 + 2 * HOUR, commits=[A])],
        [push(T0 - 60, [A, B]), deployment("d3", ts=T0 + 3 * HOUR, head=B)],
    )
    assert deltas == [[], [], [], []]


def test_a_task_reported_a_few_minutes_after_the_deployment_is_still_credited():
    _, deltas = run([deployment(ts=T0)], [task(ts=T0 + 300)])
    assert deltas == [[], [credit(ts=T0)]]


def test_environment_Production_ships():
    _, deltas = run([task(), deployment(environment="Production")])
    assert deltas == [[credit()]]


@pytest.mark.parametrize(("after", "is_retracted"), [(0, True), (5 * HOUR, True), (DAY, True), (DAY + 1, False)])
def test_a_revert_within_the_survival_window_retracts_with_reason_revert(after, is_retracted):
    shipped = [task(), push(T0 + 0.5 * HOUR, [A]), deployment()]
    revert = push(T0 + HOUR + after, [E], reverts=[A])
    _, deltas = run(shipped, [revert])
    assert deltas == [[credit()], [uncredit(), retracted(T0 + HOUR + after, "revert")] if is_retracted else []]


def test_a_revert_on_a_branch_the_commit_was_never_pushed_to_retracts_nothing():
    _, deltas = run([task(), push(T0 + 0.5 * HOUR, [A]), deployment()], [push(T0 + 2 * HOUR, [E], branch="x", reverts=[A])])
    assert deltas == [[credit()], []]


def test_a_revert_arriving_first_prevents_the_credit_and_a_reverted_commit_is_never_shipped_again():
    revert = push(T0 + 2 * HOUR, [E], reverts=[A])
    _, deltas = run([revert], [task(), push(T0 + 0.5 * HOUR, [A]), deployment()])
    assert deltas == [[], [retracted(T0 + 2 * HOUR, "revert")]]
    # Reverted before any deployment: never credited, and nothing to retract.
    _, deltas = run([task(), push(T0 + 0.5 * HOUR, [A]), revert], [deployment(ts=T0 + 3 * HOUR)])
    assert deltas == [[], []]


def test_a_reverted_and_rolled_back_credit_is_retracted_once_and_not_shipped_again():
    # The contract does not say which reason wins; the core counts the rollback (its ts), even when the revert came
    # first (see the report).
    _, deltas = run(
        [task(), push(T0 + 0.5 * HOUR, [A]), deployment()],
        [push(T0 + 5 * HOUR, [E], reverts=[A])],
        [deployment(ts=T0 + 6 * HOUR, status="rolled_back")],
        [deployment("d2", ts=T0 + 7 * HOUR)],
    )
    held = net(deltas)
    assert sum(v for k, v in held.items() if k[0] == "retracted") == FULL
    assert not any(k[0] in ("credit", "shipped") for k in held)


def test_a_rollback_retracts_with_reason_rollback_at_the_rollbacks_ts():
    _, deltas = run([task(ai_lines=4), deployment()], [deployment(ts=T0 + 3 * HOUR, status="rolled_back")])
    assert deltas == [[credit(amount=400_000)], [uncredit(amount=400_000), retracted(T0 + 3 * HOUR, "rollback", 400_000)]]


def test_rollback_of_from_a_staging_deployment_does_not_retract_a_production_one():
    staging = deployment("s1", ts=T0 + 2 * HOUR, environment="staging", commits=[B], rollback_of="d1")
    _, deltas = run([task(), deployment()], [staging])
    assert deltas == [[credit()], []]


def test_contested_claims_are_counted_for_the_refused_tasks_team():
    _, deltas = run([task(team="payments"), task("t7", team="search", ts=T0 + HOUR, commits=[A, A.upper()])])
    assert deltas == [[contested(T0 + HOUR, "t7", team="search")]]


def test_a_task_owning_one_of_its_commits_is_not_contested():
    _, deltas = run([task(commits=[A]), task("t2", ts=T0 + 60, commits=[A, B]), deployment(commits=[A, B])])
    assert deltas == [[credit(shipped=2)]]  # v3: both tasks ship, the deployment is worth 1


# --- v3: the scenarios of issue 17 --------------------------------------------------------------------------------


def scoped(event_: Event, arrival: float) -> Event:
    """The event as the gateway forwards it from a scoped token: stamped with its arrival."""
    return msgspec.structs.replace(event_, arrival=arrival)


def test_v3_a_claim_dated_earlier_but_sent_past_the_grace_cannot_take_another_teams_commit():
    honest = scoped(task(ts=T0), arrival=T0)
    shipped = deployment(ts=T0 + HOUR)
    for lines in (10, 0):
        thief = scoped(task("steal", ts=T0 - 60, team="search", ai_lines=lines), arrival=T0 + 2 * HOUR)
        _, deltas = run([honest, shipped], [thief])
        assert deltas == [[credit()], [contested(T0 + HOUR, "steal", team="search")]]  # ranked at arrival - 1 h
        _, deltas = run([thief], [honest, shipped])  # whatever order they reach the worker in
        assert net(deltas) == net([[credit(), contested(T0 + HOUR, "steal", team="search")]])


def test_v3_an_honest_delay_under_the_grace_keeps_event_time_order():
    first = scoped(task(ts=T0 - 60, team="search"), arrival=T0 + 30 * 60)  # written earlier, delivered 31 min late
    second = scoped(task("t2", ts=T0), arrival=T0)
    _, deltas = run([second, deployment()], [first])
    assert net(deltas) == net([[credit(team="search"), contested(T0, "t2")]])


def test_v3_trusted_sources_rank_at_ts_so_a_backfill_stays_exact():
    live = scoped(task(ts=T0), arrival=T0)
    backfill = task("old", ts=T0 - DAY, team="search")  # `aiyield send` or a producer on Kafka: no arrival stamp
    _, deltas = run([live, deployment()], [backfill])
    assert net(deltas) == net([[credit(team="search", task_id="old"), contested(T0, "t1")]])


def test_v3_a_scoped_claim_sent_long_after_the_code_shipped_claims_nothing():
    late = scoped(task(ts=T0 - HOUR), arrival=T0 + 3 * HOUR)  # ranks at T0 + 2 h, after the deployment
    _, deltas = run([push(T0 - HOUR, [A]), deployment(ts=T0)], [late])
    assert deltas == [[], []]


def test_v3_one_change_cut_into_five_tasks_earns_what_one_task_earns():
    whole = [task("whole", commits=[A, B, C, D, E], ai_lines=50)]
    pieces = [task(f"p{i}", commits=[sha_], ai_lines=10) for i, sha_ in enumerate([A, B, C, D, E])]
    ship = deployment(commits=[A, B, C, D, E])
    assert net(run([*whole, ship])[1]) == net([[credit()]])
    assert net(run([*pieces, ship])[1]) == net([[credit(shipped=5)]])


def test_v3_fifty_trailer_commits_without_lines_in_one_deployment_earn_one():
    commits = [sha(f"c{i}") for i in range(50)]
    trailers = [task(f"trailer-{i}", commits=[c]) for i, c in enumerate(commits)]
    assert net(run([*trailers, deployment(commits=commits)])[1]) == net([[credit(shipped=50)]])


def test_v3_small_changes_in_one_deployment_add_up_to_one():
    tasks_ = [task(f"t{i}", commits=[c], ai_lines=3) for i, c in enumerate([A, B, C, D])]
    assert net(run([*tasks_[:2], deployment(commits=[A, B])])[1]) == net([[credit(amount=600_000, shipped=2)]])
    assert net(run([*tasks_, deployment(commits=[A, B, C, D])])[1]) == net([[credit(shipped=4)]])


def test_v3_one_deploy_id_one_answer_whatever_order_its_reports_arrive_in():
    first = deployment(commits=[B], id="r1")
    other = deployment(ts=T0 + 2 * HOUR, commits=[A], id="r2")
    refused = contested(T0 + 2 * HOUR, "r2", team="unassigned")
    for order in ([first, other], [other, first]):
        _, deltas = run([task()], [order[0]], [order[1]])
        assert net(deltas) == net([[refused]])  # A was never deployed by d1
    same = deployment(commits=[B], id="r3")  # an identical re-report is a duplicate, not contested
    assert net(run([task(), first, same])[1]) == Counter()


def test_v3_a_later_report_without_lines_or_with_zero_lines_never_lowers_a_credit():
    for later in (task(ts=T0 + HOUR, ai_lines=0, id="zero"), task(ts=T0 + 2 * HOUR, id="none")):
        _, deltas = run([task(ai_lines=7), deployment()], [later])
        assert net(deltas) == net([[credit(amount=FULL if later.ai_lines is None else 700_000)]])


def test_v3_an_earlier_started_report_never_retracts_a_credit():
    # The task completed at T0 + 7 d and shipped at T0 + 7.5 d; a `started` report dated 7 days before it widens the
    # task's window back instead of moving the join window away from the deployment.
    done, ship = task(ts=T0 + 7 * DAY), deployment(ts=T0 + 7.5 * DAY)
    started = task(ts=T0, status="started", commits=[])
    _, deltas = run([done, ship], [started])
    assert net(deltas) == net([[credit(ts=T0 + 7.5 * DAY)]])


def test_v3_commits_force_pushed_away_before_a_head_only_deployment_do_not_ship():
    history = [task("gone", commits=[A]), task("kept", commits=[C]), push(T0, [A, B])]
    rewrite = push(T0 + 0.5 * HOUR, [C], forced=True)
    ship = deployment(head=C)
    assert run([*history, rewrite, ship])[1] == [[credit()]]  # only "kept"
    assert net(run([*history, ship], [rewrite])[1]) == net([[credit()]])  # the forced push arriving last


def test_v3_a_rollback_of_a_multi_team_deployment_retracts_each_teams_credit():
    events = [task(ai_lines=5), task("s", team="search", commits=[B]), deployment(commits=[A, B])]
    _, deltas = run(events, [deployment(ts=T0 + 2 * HOUR, status="rolled_back")])
    assert net(deltas) == net([[
        retracted(T0 + 2 * HOUR, "rollback", 500_000), retracted(T0 + 2 * HOUR, "rollback", team="search"),
    ]])


def test_v3_a_revert_takes_the_reverted_tasks_lines_out_of_the_deployments_credit():
    events = [task(ai_lines=6), task("t2", commits=[B], ai_lines=8), push(T0, [A, B]), deployment(head=B)]
    _, deltas = run(events, [push(T0 + 2 * HOUR, [C], reverts=[A])])
    # 14 lines gave 1; without the reverted task's 6, 8 lines are worth 0.8: 0.2 retracted at the revert.
    # The reverted task no longer counts as shipped.
    assert net(deltas) == net([[credit(amount=800_000, shipped=1), retracted(T0 + 2 * HOUR, "revert", 200_000)]])


# --- v3: cost does not grow with a task's size or a commit's claimants --------------------------------------------


def test_v3_a_re_report_of_a_large_task_reads_only_the_commits_it_names():
    commits = [sha(f"big{i}") for i in range(3000)]
    reports = [task("big", commits=commits[i:i + 1000], id=f"r{i}") for i in range(0, 3000, 1000)]
    store, _ = run(reports)
    assert store.tasks[("payments", "big")].count == 3000 and not store.tasks[("payments", "big")].inline
    reads: list[crediting.Need] = []

    def counting(need: crediting.Need) -> crediting.Loaded:
        reads.append(need)
        return store.read(need)

    crediting.run(counting, [task("big", commits=commits[:1], id="again")], POLICY)
    assert sum(len(n.members) + len(n.commits) + len(n.task_commits) for n in reads) <= 4


def test_v3_a_commit_with_many_claimants_is_one_owner_and_a_count():
    store, _ = run([task(f"t{i:04d}", ts=T0 + i) for i in range(2000)])
    commit = store.commits[("shop", A)]
    assert commit.owner == (T0, "payments", "t0000") and commit.claimants == 2000
    assert len(crediting.encode(commit)) < 100


def test_v3_a_report_taking_a_task_past_10000_commits_is_refused_whole():
    commits = [sha(f"many{i}") for i in range(10_001)]
    reports = [task("many", commits=commits[i:i + 1000], id=f"m{i}") for i in range(0, 10_000, 1000)]
    store, _ = run(reports, [task("many", commits=commits[10_000:], ai_lines=3, id="over")])
    assert store.tasks[("payments", "many")].count == 10_000
    assert store.tasks[("payments", "many")].lines == 10  # the refused report's lines did not count either
