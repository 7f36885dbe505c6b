"""Crediting: which deployment ships which task, as credit deltas (CONTRACT section 2).

Design: recompute and diff. The state of one repo keeps the essential facts of the events seen so far (the defining
completed event of each task, pushes, production deployments, rollback times) and the assignment task -> deployment
that has been credited. Each `apply` adds the batch's facts, recomputes the desired assignment of the whole repo
from scratch and diffs it against the stored one: a changed or removed assignment is retracted, a new one credited.
Because the desired assignment is a function of the *set* of facts, any order, batching or duplication of the same
events ends in the same credits, and a task's credits always sum to 0 or its amount.

Cost: the state is per repo and holds its deployments and rollbacks of the last join + survival window, and its
tasks and pushes of one join window more (see `_expire`). Every batch copies and recomputes the whole repo:
O(facts + commits), plus a scan of the pushes per head-only deployment. That is cheap for a repo's week of
activity, but it is paid per call, so the caller should hand over all of a repo's events of a batch at once.

Two rules depend on `now` and therefore, by design, on arrival time:
- events whose `ts` is older than `now - join_window` on arrival are ignored as too late to join: what they would
  join may already be expired, and a rollback that old falls after its deployment's credits became final;
- facts past the horizon are expired. Expiry never changes a credit: a credit whose deployment expires stands for
  good and its task is remembered as settled (so a late redeploy cannot credit it twice) for as long as anything
  could still join it. Deployments expire once `join_window + survival_window` old, as that is when their credits
  become final; the price is that a task completed more than `survival_window` after a deployment, whose event
  arrives after that deployment expired, is not shipped by it.

Pure: no I/O, no clock; `now` is passed in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Generic, Sequence, TypeVar

import msgspec

from aiyield.core.events import DeploymentEvent, PushEvent, TaskEvent
from aiyield.core.windows import SCALE

#: Shortest SHA the event schema accepts; a SHA this long or longer matches every longer SHA it is a prefix of
#: (GitLab sends short SHAs in places, git abbreviates to 7).
SHORT_SHA = 7

#: The events `apply` folds in (anything else passed to it is ignored).
CreditingEvent = TaskEvent | PushEvent | DeploymentEvent


@dataclass(frozen=True)
class Policy:
    """The configurable rules of CONTRACT section 2, with its defaults."""

    production_environments: frozenset[str] = frozenset({"production", "prod"})
    full_credit_lines: int = 10
    join_window: float = 7 * 86400  # seconds
    survival_window: float = 86400  # seconds

    def __post_init__(self) -> None:
        if self.full_credit_lines < 1:
            raise ValueError("full_credit_lines must be >= 1")
        if self.join_window <= 0 or self.survival_window < 0:
            raise ValueError("join_window must be > 0 and survival_window >= 0 seconds")


@dataclass(frozen=True)
class Credit:
    """One change of credit, to be added to the rolling windows at `ts` (the crediting deployment's time)."""

    team: str
    tool: str
    task_id: str
    deploy_id: str
    ts: float
    amount: int  # SCALE["credit"] fixed point; negative for a retraction
    shipped: int  # +1 when the task becomes shipped, -1 when that is retracted


# State. Facts are immutable and array-like (compact msgpack); only the dicts of `RepoState` change.


class TaskFact(msgspec.Struct, frozen=True, array_like=True):
    """The completed event that defines a task: the greatest (ts, event id) seen for its task_id."""

    event_id: str
    ts: float
    team: str
    tool: str
    commits: tuple[str, ...]
    ai_lines: int | None


class PushFact(msgspec.Struct, frozen=True, array_like=True):
    event_id: str
    ts: float
    branch: str
    commits: tuple[str, ...]
    head: str | None


class DeploymentFact(msgspec.Struct, frozen=True, array_like=True):
    """The earliest (ts, event id) succeeded event of a deploy_id to a production environment."""

    event_id: str
    ts: float
    commits: tuple[str, ...]
    head: str | None


class Assignment(msgspec.Struct, frozen=True, array_like=True):
    """The credit a task currently holds; any change of any field is a retraction plus a new credit."""

    deploy_id: str
    ts: float
    team: str
    tool: str
    amount: int


class RepoState(msgspec.Struct, kw_only=True):
    """All join state of one repo."""

    tasks: dict[str, TaskFact] = {}  # task_id ->
    pushes: dict[str, PushFact] = {}  # event id ->
    deployments: dict[str, DeploymentFact] = {}  # deploy_id ->
    rollbacks: dict[str, tuple[float, ...]] = {}  # deploy_id -> times of the events that rolled it back
    assigned: dict[str, Assignment] = {}  # task_id -> credit given
    # task_id -> latest ts of its completed events: credited by a deployment that has since expired, so final.
    settled: dict[str, float] = {}
    # Commit sets of expired deployments, kept while a remembered push still carries them: a head-only deployment
    # must not re-ship what an earlier deployment shipped, whether or not that deployment is still in the state.
    retired_commits: tuple[str, ...] = ()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RepoState)


def encode_state(state: RepoState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes) -> RepoState:
    return _decoder.decode(data)


def is_relevant(event: object) -> bool:
    """Whether crediting needs the event: completed tasks with a repo and commits, every push and deployment.

    Every deployment counts, whatever its status or environment, because any of them may carry `rollback_of`.
    """
    if isinstance(event, TaskEvent):
        return event.status == "completed" and event.repo is not None and bool(event.commits)
    return isinstance(event, (PushEvent, DeploymentEvent))


def apply(
    state: RepoState | None, events: Sequence[CreditingEvent], policy: Policy, now: float
) -> tuple[RepoState | None, list[Credit]]:
    """Add one batch of one repo's events; return the new state (None when empty) and the credit deltas it causes.

    The input state is not modified. Irrelevant events (see `is_relevant`) and events older than
    `now - join_window` are ignored. Retractions come before credits in the result, so a running sum per task
    never goes negative or above the task's amount.
    """
    state = _copy(state) if state is not None else RepoState()
    too_late = now - policy.join_window
    for event in events:
        if is_relevant(event) and event.ts >= too_late:
            _remember(state, event, policy)
    commit_sets = _commit_sets(state, policy)
    desired = _assign(state, commit_sets, policy)
    credits = _diff(state.assigned, desired)
    state.assigned = desired
    _expire(state, commit_sets, policy, now)
    return (state if _holds_anything(state) else None), credits


def _copy(state: RepoState) -> RepoState:
    return RepoState(
        tasks=dict(state.tasks),
        pushes=dict(state.pushes),
        deployments=dict(state.deployments),
        rollbacks=dict(state.rollbacks),
        assigned=dict(state.assigned),
        settled=dict(state.settled),
        retired_commits=state.retired_commits,
    )


def _remember(state: RepoState, event: CreditingEvent, policy: Policy) -> None:
    """Fold one event into the state. Each rule keeps a deterministic winner, so arrival order never matters."""
    if isinstance(event, TaskEvent):
        _remember_task(state, event)
    elif isinstance(event, PushEvent):
        # The same id is the same event (a redelivery), so the first copy is as good as any.
        state.pushes.setdefault(event.id, PushFact(event.id, event.ts, event.branch, tuple(event.commits), event.head))
    else:
        _remember_deployment(state, event, policy)


def _remember_task(state: RepoState, event: TaskEvent) -> None:
    if event.task_id in state.settled:
        # Already credited for good; a later completion only keeps the mark alive for as long as it could join.
        state.settled[event.task_id] = max(state.settled[event.task_id], event.ts)
        return
    task = TaskFact(event.id, event.ts, event.team, event.tool, tuple(event.commits), event.ai_lines)
    current = state.tasks.get(event.task_id)
    if current is None or (task.ts, task.event_id) > (current.ts, current.event_id):
        state.tasks[event.task_id] = task


def _remember_deployment(state: RepoState, event: DeploymentEvent, policy: Policy) -> None:
    # Only production successes can ship; every deployment may still roll another one back.
    if event.status == "succeeded" and event.environment in policy.production_environments:
        deployment = DeploymentFact(event.id, event.ts, tuple(event.commits), event.head)
        current = state.deployments.get(event.deploy_id)
        if current is None or (deployment.ts, deployment.event_id) < (current.ts, current.event_id):
            state.deployments[event.deploy_id] = deployment
    rolled_back = {event.deploy_id} if event.status == "rolled_back" else set()
    if event.rollback_of is not None:
        rolled_back.add(event.rollback_of)
    for deploy_id in rolled_back:
        state.rollbacks[deploy_id] = tuple(sorted({*state.rollbacks.get(deploy_id, ()), event.ts}))


_V = TypeVar("_V")


class _CommitIndex(Generic[_V]):
    """SHA -> values, where a SHA matches any SHA it is a prefix of (or that is a prefix of it)."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[tuple[str, _V]]] = defaultdict(list)

    def add(self, sha: str, value: _V) -> None:
        self._buckets[sha[:SHORT_SHA]].append((sha, value))

    def lookup(self, sha: str) -> list[_V]:
        return [value for known, value in self._buckets.get(sha[:SHORT_SHA], ()) if _same_commit(known, sha)]

    def __contains__(self, sha: str) -> bool:
        return bool(self.lookup(sha))


def _same_commit(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def _live_deployments(state: RepoState, policy: Policy) -> list[tuple[str, DeploymentFact]]:
    """Deployments not rolled back within their survival window, first deployment first."""
    live = [
        (deploy_id, deployment)
        for deploy_id, deployment in state.deployments.items()
        if not any(
            deployment.ts <= rollback_ts <= deployment.ts + policy.survival_window
            for rollback_ts in state.rollbacks.get(deploy_id, ())
        )
    ]
    return sorted(live, key=lambda item: (item[1].ts, item[0]))


def _commit_sets(state: RepoState, policy: Policy) -> dict[str, frozenset[str]]:
    """deploy_id -> commit set, for every live deployment, in order (head-only ones expanded from pushes)."""
    pushes = sorted(state.pushes.values(), key=lambda push: (push.ts, push.event_id))
    shipped_before: _CommitIndex[None] = _CommitIndex()
    for sha in state.retired_commits:
        shipped_before.add(sha, None)
    commit_sets: dict[str, frozenset[str]] = {}
    for deploy_id, deployment in _live_deployments(state, policy):
        declared = frozenset(deployment.commits) | ({deployment.head} if deployment.head else frozenset())
        if deployment.commits or deployment.head is None:  # the schema gives a head to every deployment w/o commits
            commit_set = declared
        else:
            pushed = _pushed_up_to(deployment.head, pushes, since=deployment.ts - policy.join_window)
            commit_set = declared | {sha for sha in pushed if sha not in shipped_before}
        for sha in commit_set:
            shipped_before.add(sha, None)
        commit_sets[deploy_id] = commit_set
    return commit_sets


def _pushed_up_to(head: str, pushes: list[PushFact], since: float) -> list[str]:
    """Commits of the pushes on the branch of the earliest push carrying `head`, up to and including that push.

    `pushes` is sorted by (ts, event id); pushes before `since` are not used. Empty until a push carrying the head
    arrives.
    """
    in_window = [push for push in pushes if push.ts >= since]
    for position, push in enumerate(in_window):
        if any(_same_commit(sha, head) for sha in _carried(push)):
            same_branch = [earlier for earlier in in_window[: position + 1] if earlier.branch == push.branch]
            return [sha for earlier in same_branch for sha in _carried(earlier)]
    return []


def _carried(push: PushFact) -> tuple[str, ...]:
    # Webhooks truncate `commits` (GitHub keeps 20) but always name the head.
    return push.commits + (push.head,) if push.head else push.commits


def _assign(state: RepoState, commit_sets: dict[str, frozenset[str]], policy: Policy) -> dict[str, Assignment]:
    """task_id -> the first live deployment (by ts, deploy_id) within the join window that carries its commits."""
    deployments = [(deploy_id, state.deployments[deploy_id]) for deploy_id in commit_sets]  # already in order
    carried_by: _CommitIndex[int] = _CommitIndex()
    for position, (deploy_id, _) in enumerate(deployments):
        for sha in commit_sets[deploy_id]:
            carried_by.add(sha, position)
    assignment: dict[str, Assignment] = {}
    for task_id, task in state.tasks.items():
        candidates = sorted({position for sha in task.commits for position in carried_by.lookup(sha)})
        for position in candidates:
            deploy_id, deployment = deployments[position]
            if abs(deployment.ts - task.ts) <= policy.join_window:
                amount = _amount(task.ai_lines, policy)
                assignment[task_id] = Assignment(deploy_id, deployment.ts, task.team, task.tool, amount)
                break
    return assignment


def _amount(ai_lines: int | None, policy: Policy) -> int:
    """min(1, ai_lines / full_credit_lines) in fixed point, computed exactly (1 when ai_lines is unknown)."""
    if ai_lines is None:
        return SCALE["credit"]
    return round(Fraction(min(ai_lines, policy.full_credit_lines) * SCALE["credit"], policy.full_credit_lines))


def _diff(old: dict[str, Assignment], new: dict[str, Assignment]) -> list[Credit]:
    retractions = [
        Credit(given.team, given.tool, task_id, given.deploy_id, given.ts, -given.amount, -1)
        for task_id, given in sorted(old.items())
        if new.get(task_id) != given
    ]
    credits = [
        Credit(wanted.team, wanted.tool, task_id, wanted.deploy_id, wanted.ts, wanted.amount, 1)
        for task_id, wanted in sorted(new.items())
        if old.get(task_id) != wanted
    ]
    return retractions + credits


def _expire(state: RepoState, commit_sets: dict[str, frozenset[str]], policy: Policy, now: float) -> None:
    """Drop what can no longer change any credit, so that the next recompute gives the same assignment.

    A deployment older than `final` can no longer be rolled back (its survival window ended before `now -
    join_window`, so any rollback would arrive too late), and no later deployment can be earlier than it: its
    credits are final. Its tasks become settled and its commit set joins `retired_commits`. Tasks and pushes are
    kept one join window longer, because the deployments still in the state join tasks and expand from pushes up to
    a join window before their own ts; dropping them sooner could take a credit back.
    """
    final = now - policy.join_window - policy.survival_window
    unused = final - policy.join_window
    retired = set(state.retired_commits)
    for deploy_id, deployment in list(state.deployments.items()):
        if deployment.ts < final:
            del state.deployments[deploy_id]
            retired |= commit_sets.get(deploy_id, frozenset())  # rolled-back deployments have none
    for task_id, given in list(state.assigned.items()):
        if given.deploy_id not in state.deployments:
            del state.assigned[task_id]
            state.settled[task_id] = state.tasks.pop(task_id).ts

    state.rollbacks = {
        deploy_id: kept
        for deploy_id, times in state.rollbacks.items()
        if (kept := tuple(ts for ts in times if ts >= final))
    }
    state.tasks = {task_id: task for task_id, task in state.tasks.items() if task.ts >= unused}
    state.settled = {task_id: ts for task_id, ts in state.settled.items() if ts >= unused}
    state.pushes = {event_id: push for event_id, push in state.pushes.items() if push.ts >= unused}
    # Retired commits only ever subtract from expansions, and expansions only draw from remembered pushes.
    pushed: _CommitIndex[None] = _CommitIndex()
    for push in state.pushes.values():
        for sha in _carried(push):
            pushed.add(sha, None)
    state.retired_commits = tuple(sorted(sha for sha in retired if sha in pushed))


def _holds_anything(state: RepoState) -> bool:
    return any(getattr(state, name) for name in state.__struct_fields__)
