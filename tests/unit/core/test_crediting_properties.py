"""Crediting v3 properties (contract v3 §2): the incremental join gives what the reference model computes from the
whole set of facts (so arrival order, batching and duplicate reports never matter), one deployment is worth at most
one normalized deployment to a team, cutting the same AI lines into more tasks earns nothing more, a later report
never lowers a credit, and a scoped claim dated back past the grace never takes a commit.

Histories are drawn from a small universe (4 task ids, 2 teams, 5 commits, 2 repos, 3 deploy ids, 2 branches,
hours over a day, a few minutes either way) so that collisions - shared commits, reused task ids, redeploys,
rollbacks, reverts, forced pushes, abbreviations, late scoped senders, ties in ts - are common. The windows are
shortened to hours so that join and survival edges fall inside a history.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aiyield.core import crediting
from aiyield.core.crediting import Delta, MemoryJoinState, Policy
from aiyield.core.events import DeploymentEvent, Event, TaskEvent

from .crediting_model import reference, totals

HOUR = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SPAN_HOURS = 24
POLICY = Policy(join_window=12 * HOUR, survival_window=6 * HOUR, claim_grace=HOUR)
FULL = crediting.Policy().amount(10)

# Two commits share their first 7 characters (an abbreviation of either is ambiguous once both are pushed).
SHAS = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(4)]
SHAS.append(SHAS[0][:7] + hashlib.sha1(b"twin").hexdigest()[7:])
REPOS = ["shop", "shop", "shop", "web"]
TEAMS = ["payments", "search"]

FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True, report_multiple_bugs=False)


def times(first_hour: int = 0, last_hour: int = SPAN_HOURS) -> st.SearchStrategy[float]:
    return st.builds(
        lambda h, s: T0 + h * HOUR + s, st.integers(first_hour, last_hour), st.sampled_from([0, 0, 0, 240, -240])
    )


deploy_ids = st.sampled_from(["d0", "d1", "d2"])
#: Delivery delays of a scoped sender (None: a trusted source, which ranks at ts).
delays = st.sampled_from([None, None, 0, 600, 3 * HOUR])


def _deployment(
    deploy_id: str, environment: str, status: str, commits: list[str], head: str, with_head: bool, rollback_of: str | None
) -> dict[str, Any]:
    return {
        "type": "deployment",
        "deploy_id": deploy_id,
        "environment": environment,
        "status": status,
        "commits": commits,
        **({"head": head} if with_head or not commits else {}),
        **({"rollback_of": rollback_of} if rollback_of else {}),
    }


@functools.cache
def _events(pool: tuple[str, ...], teams: tuple[str, ...], repos: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """One raw event (without id). Built once: building strategies is the slow part."""
    # Deployments may name abbreviated SHAs (GitLab, Argo CD); tasks never (contract v3 §1).
    short = st.builds(lambda sha, cut: sha[:7] if cut else sha, st.sampled_from(pool), st.booleans())
    full = st.sampled_from(pool)
    completed = st.fixed_dictionaries(
        {
            "type": st.just("task"),
            "task_id": st.sampled_from(["t0", "t1", "t2", "t3"]),
            "team": st.sampled_from(teams),
            "tool": st.sampled_from(["claude-code", "cursor"]),
            "status": st.just("completed"),
            "commits": st.lists(full, min_size=1, max_size=2),
            "ai_lines": st.none() | st.integers(0, 15),
            "delay": delays,
        }
    )
    started = st.fixed_dictionaries(
        {
            "type": st.just("task"),
            "task_id": st.sampled_from(["t0", "t1", "t2", "t3"]),
            "team": st.sampled_from(teams),
            "tool": st.sampled_from(["claude-code", "cursor"]),
            "status": st.just("started"),
            "delay": delays,
        }
    )
    pushes = st.fixed_dictionaries(
        {
            "type": st.just("push"),
            "branch": st.sampled_from(["main", "dev"]),
            "commits": st.lists(full, min_size=1, max_size=3),
            "reverts": st.sampled_from([[], [], *([sha] for sha in pool)]),
            "forced": st.sampled_from([False] * 5 + [True]),
        }
    )
    deployments = st.builds(
        _deployment,
        deploy_id=deploy_ids,
        environment=st.sampled_from(["production"] * 5 + ["Production", "prod", "staging"]),
        status=st.sampled_from(["succeeded", "succeeded", "succeeded", "failed", "rolled_back", "rolled_back"]),
        commits=st.just([]) | st.lists(short, min_size=1, max_size=3),
        head=short,
        with_head=st.booleans(),
        rollback_of=st.none() | st.none() | deploy_ids,
    )
    kinds = st.sampled_from([completed] * 3 + [started] + [pushes] * 2 + [deployments] * 3).flatmap(lambda kind: kind)
    return st.builds(_stamp, kinds, times(0, 14), st.one_of(times(0, SPAN_HOURS), times(2, 16)), st.sampled_from(repos))


def _stamp(raw: dict[str, Any], early: float, late: float, repo: str) -> dict[str, Any]:
    ts = late if raw["type"] == "deployment" else early
    raw = {**raw, "ts": ts, "repo": repo}
    delay = raw.pop("delay", None)
    if delay is not None:
        raw["arrival"] = ts + delay
    return raw


@st.composite
def histories(
    draw: st.DrawFn, min_size: int = 10, max_size: int = 24, pool: tuple[str, ...] = tuple(SHAS),
    teams: tuple[str, ...] = tuple(TEAMS), repos: tuple[str, ...] = tuple(REPOS), prefix: str = "e",
) -> list[Event]:
    """Distinct events (unique ids), their commits drawn from `pool`."""
    raws = draw(st.lists(_events(pool, teams, repos), min_size=min_size, max_size=max_size))
    # Follow-ups a few hours later (around the survival window): rollbacks and reverts, rarely lined up by chance.
    for _ in range(draw(st.integers(0, 4))):
        raw = draw(st.sampled_from(raws))
        later = raw["ts"] + draw(st.integers(0, 8)) * HOUR
        if raw["type"] == "deployment":
            rollback = draw(st.booleans())
            raws.append({
                "type": "deployment", "deploy_id": draw(deploy_ids) if rollback else raw["deploy_id"],
                "repo": raw["repo"], "environment": raw["environment"],
                "status": "succeeded" if rollback else "rolled_back", "commits": [draw(st.sampled_from(pool))],
                **({"rollback_of": raw["deploy_id"]} if rollback else {}), "ts": later,
            })
        elif raw["type"] == "push":
            reverted = draw(st.sampled_from(raw["commits"]))
            raws.append({**raw, "commits": [draw(st.sampled_from(pool))], "reverts": [reverted], "ts": later, "forced": False})
    return [msgspec.convert({**raw, "id": f"{prefix}{i}"}, Event) for i, raw in enumerate(raws)]  # type: ignore[misc]


@st.composite
def batches(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    """`events` in a drawn order, split into drawn batches."""
    order = draw(st.permutations(events))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    return [order[a:b] for a, b in zip(bounds, bounds[1:]) if a < b]


def run(batched: list[list[Event]], policy: Policy = POLICY) -> Counter:
    store = MemoryJoinState()
    deltas: list[Delta] = []
    for batch in batched:
        deltas += store.apply(batch, policy)
    return totals(deltas)


def credit(result: Counter, team: str | None = None) -> int:
    return sum(v for k, v in result.items() if k[0] == "credit" and (team is None or k[1] == team))


def given_(result: Counter, team: str) -> int:
    """Credit ever given to a team: what survives plus what was retracted."""
    return sum(v for k, v in result.items() if k[0] in ("credit", "retracted") and k[1] == team)


# --- the incremental join is the model, whatever the order ------------------------------------------------------


@FAST
@given(st.data())
def test_every_order_and_batching_gives_what_the_model_computes(data):
    events = data.draw(histories())
    assert run(data.draw(batches(events))) == reference(events, POLICY)


def outputs(result: Counter) -> Counter:
    """Credit, shipped tasks and retractions (contested counts every refused report, re-sent ones too)."""
    return Counter({k: v for k, v in result.items() if k[0] != "contested"})


@FAST
@given(st.data())
def test_identical_reports_under_new_ids_change_nothing(data):
    events = data.draw(histories())
    # A re-sent report is a new event with the same content (its id sorts after the first: it never outranks it):
    # identical deployment reports are duplicates, task reports fold into the same task, pushes add nothing.
    again = [msgspec.structs.replace(e, id=f"z-again-{i}") for i, e in enumerate(data.draw(st.lists(st.sampled_from(events), max_size=6)))]
    assert outputs(run(data.draw(batches(events + again)))) == outputs(run([events]))


@FAST
@given(st.data())
def test_unrelated_events_change_nothing(data):
    events = data.draw(histories())
    other = data.draw(histories(min_size=1, max_size=8, teams=("ops",), repos=("infra",), prefix="u"))
    other = [msgspec.structs.replace(e, team="ops") if isinstance(e, DeploymentEvent) else e for e in other]
    mixed = run(data.draw(batches(events + other)))
    assert Counter({k: v for k, v in mixed.items() if k[1] != "ops"}) == run([events])


# --- what one deployment is worth ---------------------------------------------------------------------------------


@FAST
@given(histories(min_size=8, max_size=24))
def test_one_deployment_gives_a_team_at_most_one(events):
    state = MemoryJoinState()
    state.apply(events, POLICY)
    for (team, repo, deploy_id), agg in state.credits.items():
        survived, retracted = crediting.credit_outputs(agg, crediting.rollback_ts(state.deployments[(repo, deploy_id)], POLICY), POLICY)
        assert 0 <= survived + sum(a for _ts, _r, a in retracted) <= FULL


@st.composite
def cut_into_tasks(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """One change (commits, lines) shipped by one deployment, reported as one task, and as the same lines cut into
    any number of tasks over any partition of the commits."""
    n = draw(st.integers(1, 8))
    shas = [hashlib.sha1(f"cut{i}".encode()).hexdigest() for i in range(n)]
    total = draw(st.integers(0, 40))
    base = [
        {"type": "push", "id": "p", "ts": T0 + HOUR, "repo": "shop", "branch": "main", "commits": shas},
        {"type": "deployment", "id": "d", "ts": T0 + 2 * HOUR, "repo": "shop", "deploy_id": "d1",
         "environment": "production", "status": "succeeded", "head": shas[-1]},
    ]
    whole = [{"type": "task", "id": "w", "ts": T0, "task_id": "whole", "team": "payments", "tool": "cursor",
              "status": "completed", "repo": "shop", "commits": shas, "ai_lines": total}]
    owner = draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))  # commit -> piece
    pieces = sorted(set(owner))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=len(pieces) - 1, max_size=len(pieces) - 1)))
    lines = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
    split = [
        {"type": "task", "id": f"s{p}", "ts": T0, "task_id": f"piece{p}", "team": "payments", "tool": "cursor",
         "status": "completed", "repo": "shop", "commits": [s for s, o in zip(shas, owner) if o == p], "ai_lines": lines[i]}
        for i, p in enumerate(pieces)
    ]
    convert = lambda raws: [msgspec.convert(r, Event) for r in raws]  # noqa: E731
    return convert(base + whole), convert(base + split)


@FAST
@given(cut_into_tasks())
def test_cutting_the_same_lines_into_more_tasks_earns_nothing_more(case):
    whole, split = case
    assert credit(run([whole])) == credit(run([split]))


# --- a later report never lowers a credit -------------------------------------------------------------------------


@st.composite
def with_a_later_report(draw: st.DrawFn) -> tuple[list[Event], list[Event], str]:
    """A history, and the same history with one more report of one of its tasks: no earlier than the task's rank,
    naming commits the task already claims (or none), with any ai_lines (0 and none included)."""
    events = draw(histories(min_size=8, max_size=20).filter(
        lambda es: any(isinstance(e, TaskEvent) and e.status == "completed" for e in es)))
    chosen = draw(st.sampled_from([e for e in events if isinstance(e, TaskEvent) and e.status == "completed"]))
    mine = [e for e in events if isinstance(e, TaskEvent) and (e.team, e.task_id) == (chosen.team, chosen.task_id)]
    claimed = sorted({s for e in mine for s in e.commits})
    ts = max(e.ts for e in mine) + draw(st.integers(0, 12)) * HOUR
    extra = msgspec.convert({
        "type": "task", "id": "later-report", "ts": ts, "task_id": chosen.task_id, "team": chosen.team,
        "tool": chosen.tool, "status": draw(st.sampled_from(["completed", "started"])), "repo": chosen.repo,
        "commits": draw(st.lists(st.sampled_from(claimed), max_size=2)) if chosen.repo else [],
        **({"ai_lines": draw(st.integers(0, 15))} if draw(st.booleans()) else {}),
    }, Event)
    return events, [*events, extra], chosen.team


@FAST
@given(with_a_later_report(), st.data())
def test_a_later_report_never_lowers_a_credit(case, data):
    before, after, team = case
    first, second = run([before]), run(data.draw(batches(after)))
    assert given_(second, team) >= given_(first, team)
    for other in TEAMS:
        if other != team:
            assert given_(second, other) == given_(first, other)


# --- backdating ---------------------------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_a_scoped_claim_dated_back_past_the_grace_takes_nothing(data):
    """Team payments claims a commit (scoped, on time); search claims it later, dated any amount earlier, arriving
    more than the grace after payments' claim: payments keeps every credit, search gains none."""
    events = data.draw(histories(teams=("payments",)))
    honest = [e for e in events if isinstance(e, TaskEvent) and e.status == "completed"]
    if not honest:
        return
    victim = data.draw(st.sampled_from(honest))
    arrival = (victim.arrival if victim.arrival is not None else victim.ts) + POLICY.claim_grace + data.draw(st.integers(1, 20)) * 600
    thief = msgspec.convert({
        "type": "task", "id": "thief", "ts": victim.ts - data.draw(st.integers(1, 48)) * 600, "task_id": "steal",
        "team": "search", "tool": "cursor", "status": "completed", "repo": victim.repo, "commits": victim.commits,
        "ai_lines": data.draw(st.sampled_from([0, 10, 50])), "arrival": arrival,
    }, Event)
    # Payments' own claims must rank by arrival too, or a trusted backfill dated earlier legitimately wins.
    events = [msgspec.structs.replace(e, arrival=e.ts) if isinstance(e, TaskEvent) and e.arrival is None else e for e in events]
    without, with_thief = run([events]), run(data.draw(batches([*events, thief])))
    assert given_(with_thief, "payments") == given_(without, "payments")
    assert given_(with_thief, "search") == 0
