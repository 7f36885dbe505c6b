"""Crediting properties: order, batching, duplicates, encoding and expiry never change what is credited.

Histories are drawn from a small universe (4 tasks, 4 commits, 5 deploy ids, 2 branches, hours over two days) so
that collisions - shared commits, redeploys, rollbacks, ties in ts - are common. The windows are shortened to hours
so that join and survival edges fall inside a history.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter, defaultdict
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aiyield.core.crediting import Credit, Policy, RepoState, apply, decode_state, encode_state
from aiyield.core.events import DeploymentEvent, Event, TaskEvent

HOUR = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SPAN_HOURS = 48
POLICY = Policy(join_window=24 * HOUR, survival_window=6 * HOUR)
FULL = 1_000_000

SHAS = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(4)]

# A fixed `now` at the start of the history: nothing is too late and nothing expires, the two rules that depend on
# arrival time by design. Events "from the future" are fine for the pure function.
FIXED_NOW = T0

hours = st.integers(0, SPAN_HOURS).map(lambda h: T0 + h * HOUR)
deploy_ids = st.sampled_from(["d0", "d1", "d2", "d3", "d4"])


def _deployment(
    deploy_id: str,
    environment: str,
    status: str,
    commits: list[str],
    head: str,
    with_head: bool,
    rollback_of: str | None,
) -> dict[str, Any]:
    return {
        "type": "deployment",
        "deploy_id": deploy_id,
        "environment": environment,
        "status": status,
        "commits": commits,
        # Without commits a deployment names its head (a schema rule for succeeded ones, kept for all here).
        **({"head": head} if with_head or not commits else {}),
        **({"rollback_of": rollback_of} if rollback_of else {}),
    }


@functools.cache
def _events(pool: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """One raw event (without id) whose commits come from `pool`. Built once: building strategies is the slow part."""
    # GitLab-style short SHAs must match the full ones.
    shas = st.builds(lambda sha, short: sha[:7] if short else sha, st.sampled_from(pool), st.booleans())
    tasks = st.fixed_dictionaries(
        {
            "type": st.just("task"),
            "task_id": st.sampled_from(["t0", "t1", "t2", "t3"]),
            "team": st.sampled_from(["payments", "search"]),
            "tool": st.sampled_from(["claude-code", "cursor"]),
            "status": st.sampled_from(["completed", "completed", "completed", "started"]),
            "commits": st.lists(shas, min_size=1, max_size=2),
            "ai_lines": st.none() | st.integers(0, 15),
        }
    )
    pushes = st.fixed_dictionaries(
        {
            "type": st.just("push"),
            "branch": st.sampled_from(["main", "dev"]),
            "commits": st.lists(st.sampled_from(pool), min_size=1, max_size=3),
        }
    )
    deployments = st.builds(
        _deployment,
        deploy_id=deploy_ids,
        environment=st.sampled_from(["production", "production", "prod", "staging"]),
        status=st.sampled_from(["succeeded", "succeeded", "succeeded", "failed", "rolled_back"]),
        commits=st.just([]) | st.lists(shas, min_size=1, max_size=3),
        head=shas,
        with_head=st.booleans(),
        rollback_of=st.none() | st.none() | deploy_ids,
    )
    return st.builds(lambda raw, ts: {**raw, "ts": ts, "repo": "shop"}, tasks | pushes | deployments, hours)


@st.composite
def histories(draw: st.DrawFn, min_size: int = 6, max_size: int = 20, pool: list[str] = SHAS) -> list[Event]:
    """Distinct events (unique ids) of one repo, their commits drawn from `pool`."""
    raws = draw(st.lists(_events(tuple(pool)), min_size=min_size, max_size=max_size))
    # convert runs __post_init__: lower-cased SHAs and defaulted push heads, as in production.
    return [msgspec.convert({**raw, "id": f"e{i}"}, Event) for i, raw in enumerate(raws)]  # type: ignore[misc]


@st.composite
def batches(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    """`events` in a drawn order, split into drawn batches."""
    order = draw(st.permutations(events))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    return [order[a:b] for a, b in zip(bounds, bounds[1:]) if a < b]


def run(batched: list[list[Event]], now: float = FIXED_NOW, round_trip: bool = False) -> list[list[Credit]]:
    state: RepoState | None = None
    out = []
    for batch in batched:
        if round_trip and state is not None:
            state = decode_state(encode_state(state))
        state, credits = apply(state, batch, POLICY, now)
        out.append(credits)
    return out


def totals(credit_batches: list[list[Credit]]) -> dict[tuple[str, str, float], tuple[int, int]]:
    """What the rolling windows end up holding: summed amount and shipped count per (team, tool, ts)."""
    amount: Counter[tuple[str, str, float]] = Counter()
    shipped: Counter[tuple[str, str, float]] = Counter()
    for credits in credit_batches:
        for c in credits:
            amount[(c.team, c.tool, c.ts)] += c.amount
            shipped[(c.team, c.tool, c.ts)] += c.shipped
    return {key: (amount[key], shipped[key]) for key in amount | shipped if (amount[key], shipped[key]) != (0, 0)}


def defining_amounts(events: list[Event]) -> dict[str, int]:
    """task_id -> amount of its defining completed event (greatest (ts, id)), computed independently."""
    defining: dict[str, TaskEvent] = {}
    for e in events:
        if isinstance(e, TaskEvent) and e.status == "completed":
            if e.task_id not in defining or (e.ts, e.id) > (defining[e.task_id].ts, defining[e.task_id].id):
                defining[e.task_id] = e
    return {
        task_id: FULL if e.ai_lines is None else round(min(e.ai_lines, 10) * FULL / 10)
        for task_id, e in defining.items()
    }


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_order_and_batching_gives_the_same_credits(data):
    events = data.draw(histories())
    expected = run([events])
    assert totals(run(data.draw(batches(events)))) == totals(expected)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_duplicated_events_change_nothing(data):
    events = data.draw(histories())
    duplicates = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=8))
    assert totals(run(data.draw(batches(events + duplicates)))) == totals(run([events]))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_each_task_ends_with_zero_or_its_amount_once(data):
    events = data.draw(histories())
    per_task: Counter[str] = Counter()
    shipped: Counter[str] = Counter()
    for credits in run(data.draw(batches(events))):
        for c in credits:
            per_task[c.task_id] += c.amount
            shipped[c.task_id] += c.shipped
    amounts = defining_amounts(events)
    for task_id, total in per_task.items():
        assert (total, shipped[task_id]) in {(0, 0), (amounts[task_id], 1)}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_state_survives_encode_decode_between_batches(data):
    batched = data.draw(batches(data.draw(histories())))
    assert run(batched, round_trip=True) == run(batched)


# Moving time: each event arrives after a delay, batches are applied at the latest arrival in them, so deployments
# expire and credits settle along the way. Delays stay well under the join window: a task whose settled mark has
# expired may legitimately be credited again by a much later completion, which these histories must not produce.


@st.composite
def deliveries(draw: st.DrawFn) -> list[tuple[float, list[Event]]]:
    """(now, batch) pairs in arrival order."""
    # Fewer commits: redeploys of the same commit across expiry are what settling must handle.
    events = draw(histories(min_size=12, max_size=24, pool=SHAS[:3]))
    arrivals = sorted((e.ts + draw(st.integers(0, 6)) * HOUR, i) for i, e in enumerate(events))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=6)))
    bounds = [0, *cuts, len(events)]
    return [
        (arrivals[b - 1][0], [events[i] for _, i in arrivals[a:b]]) for a, b in zip(bounds, bounds[1:]) if a < b
    ]


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_running_credit_of_a_task_stays_between_zero_and_its_amount(delivered):
    running: defaultdict[str, int] = defaultdict(int)
    shipped: defaultdict[str, int] = defaultdict(int)
    state: RepoState | None = None
    for now, batch in delivered:
        state, credits = apply(state, batch, POLICY, now)
        for c in credits:  # at every prefix, not only at the end of the batch
            running[c.task_id] += c.amount
            shipped[c.task_id] += c.shipped
            assert 0 <= running[c.task_id] <= FULL
            assert shipped[c.task_id] in (0, 1)
        for task_id, given_credit in (state.assigned if state else {}).items():
            assert (running[task_id], shipped[task_id]) == (given_credit.amount, 1)


@settings(max_examples=300, deadline=None)
@given(deliveries(), st.lists(st.integers(1, 4 * SPAN_HOURS), min_size=1, max_size=4))
def test_expiry_emits_nothing(delivered, idle_hours):
    state: RepoState | None = None
    now = T0
    for now, batch in delivered:
        state, _ = apply(state, batch, POLICY, now)
        # However long nothing happens after this batch, time passing alone never changes a credit.
        idle = state
        for later in sorted(now + h * HOUR for h in idle_hours):
            idle, credits = apply(idle, [], POLICY, later)
            assert credits == []
    # And once everything is old enough, nothing is left to remember.
    assert apply(state, [], POLICY, now + 4 * 24 * HOUR) == (None, [])


def test_histories_exercise_credits_rollbacks_and_head_only_deployments():
    """Guard against the strategies drifting into trivial histories, where every property holds vacuously."""
    seen: Counter[str] = Counter()

    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(histories())
    def sample(events):
        deployments = [e for e in events if isinstance(e, DeploymentEvent)]
        credits = run([events])[0]
        seen["credited"] += any(c.amount > 0 for c in credits)
        seen["rolled back"] += any(e.status == "rolled_back" or e.rollback_of for e in deployments)
        seen["head only"] += any(e.status == "succeeded" and not e.commits for e in deployments)

    sample()
    assert min(seen.values()) >= 25 and len(seen) == 3, seen
