"""Crediting: which deployment ships which task (docs/INTERFACE.md §2), computed incrementally from per-entity state.

Rules, in short (the interface document has them in full):
- A task is (team, task_id). Its commits are the union over its `completed` reports, its `ai_lines` the largest
  reported, its `ts` the earliest of its `started` and `completed` reports.
- A commit is owned by its earliest claimant by (ts, team, task_id); a task that owns none of its commits is
  contested and never credited.
- For each owned commit, the production deployments containing it, in (ts, repo, deploy_id) order, form a chain.
  Rolled-back deployments (rolled back within the survival window) do not count as having contained it; the first
  live one does, and no later deployment can ship the commit again. A deployment ships the task through the commit
  when it is that first live one and its ts is within [task ts - 5 min, task ts + join window]. A rolled-back
  deployment that would have shipped the task gave a credit and took it back: a retraction with reason `rollback`
  at the rollback's ts. The task is credited by the earliest deployment that ships it.
- A revert (a push whose `reverts` names a credited commit, on a branch where that commit was pushed) up to the
  end of the survival window removes the credit for good; a revert after the credit was given counts as a
  retraction with reason `revert` at the revert's ts.

Design: every rule above is a function of the *set* of facts, so the result never depends on arrival order,
batching or duplicates. State is kept per entity (a task; the commits of a repo sharing a 7-character prefix; a
deployment; a branch's head-only deployments; a branch's pushes by time), each read and written only when a batch
touches it. A batch folds its events into the entities they name, works out which commits could have changed
(their own, and for a deployment whose commit set or liveness changed, the commits pushed since the previous live
deployment on its branch), recomputes the tasks that claim those commits, and diffs each task's desired result
against what it currently has counted. The work per event therefore depends on what the event touches, never on
how much history the repo holds.

Head-only deployments (no `commits`) are expanded from pushes: the latest push at or before the deployment's ts
that carries its head anchors it to a branch, and it contains the commits pushed to that branch from a join window
before its ts up to the anchor.

State expires by event time: each entity lives `Policy.horizon` seconds past the newest event time it holds, which
is longer than anything that can still join it (an event joins nothing once it is `join_window + 1 day` old on
arrival, see `Policy.too_late`). A task whose commits or deployments have expired keeps what it has: expiry never
changes a credit.

Pure: no I/O, no clock. `join` is a generator that yields what it needs to read (`Need`) and receives it
(`Loaded`), so any store (Redis, memory) can drive it; see `run` for the synchronous driver.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Generator, Iterable, Sequence

import msgspec

from aiyield.core.events import DeploymentEvent, Event, PushEvent, TaskEvent
from aiyield.core.windows import SCALE

#: Shortest SHA the schema accepts. Commits are grouped by this prefix, and a SHA matches any SHA it is a prefix
#: of (GitLab sends short SHAs in places, git abbreviates to 7).
SHORT_SHA = 7
DAY = 86400.0

ROLLBACK, REVERT = "rollback", "revert"


@dataclass(frozen=True)
class Policy:
    """The configurable rules, with their defaults."""

    production_environments: frozenset[str] = frozenset({"production", "prod"})
    full_credit_lines: int = 10
    join_window: float = 7 * DAY  # seconds
    survival_window: float = DAY  # seconds
    #: A deployment may precede the task it ships by this much (clocks and reports are not exact).
    claim_slack: float = 300.0

    def __post_init__(self) -> None:
        if self.full_credit_lines < 1:
            raise ValueError("full_credit_lines must be >= 1")
        if self.join_window <= 0 or self.survival_window < 0:
            raise ValueError("join_window must be > 0 and survival_window >= 0 seconds")
        object.__setattr__(self, "production_environments", frozenset(e.casefold() for e in self.production_environments))

    def is_production(self, environment: str) -> bool:
        return environment.casefold() in self.production_environments

    @property
    def late_after(self) -> float:
        """An event this many seconds older than its arrival joins nothing (it still counts for spend and tasks)."""
        return self.join_window + DAY

    def too_late(self, event_ts: float, arrival: float) -> bool:
        return event_ts < arrival - self.late_after

    @property
    def horizon(self) -> float:
        """How long an entity is kept past its newest event time: longer than anything that can still join it.

        A fact at ts can be joined by events up to a join window (plus the survival window, for rollbacks and
        reverts) later in event time, and those may arrive up to `late_after` after their own ts.
        """
        return 2 * self.late_after + self.survival_window + DAY


# --- State: one msgspec struct per entity, compact (array-like msgpack). Lists are kept sorted. ---

Claim = tuple[float, str, str]  # (task ts, team, task_id): the earliest is the owner
Pushed = tuple[str, float]  # (branch, push ts)
Contained = tuple[float, str, float | None]  # (deployment ts, deploy_id, rollback ts or None when live)
Anchored = tuple[float, str, float, float | None]  # (deployment ts, deploy_id, anchor push ts, rollback ts)


class Sha(str):
    """A commit SHA; stored as bytes (a length byte and the hex digits packed), half the size of its text."""


def _pack(sha: str) -> bytes:
    return bytes([len(sha)]) + bytes.fromhex(sha + "0" * (len(sha) % 2))


def _unpack(data: bytes) -> Sha:
    return Sha(data[1:].hex()[: data[0]])


class CommitState(msgspec.Struct, array_like=True):
    sha: Sha
    claims: list[Claim] = []
    pushes: list[Pushed] = []
    deploys: list[Contained] = []  # production deployments naming it in `commits` or `head`
    heads: list[str] = []  # head-only deployments whose head it is (re-anchored when a push carries it)
    reverts: list[Pushed] = []  # pushes whose `reverts` name it
    newest: float = 0.0


class Given(msgspec.Struct, array_like=True, frozen=True):
    """A credit a task currently has counted."""

    repo: str
    deploy_id: str
    ts: float
    amount: int
    tool: str


class Retracted(msgspec.Struct, array_like=True, frozen=True, order=True):
    """A credit given and taken back (rollback or revert), counted at the retraction's ts."""

    ts: float
    reason: str
    repo: str
    deploy_id: str
    amount: int


class TaskState(msgspec.Struct, array_like=True):
    """One task. Its identity (team, task_id) is its key, not repeated here: this is the state held per pending task."""

    ts: float
    span: int = 0  # whole seconds from `ts` to the newest report: the state is kept a horizon past that
    tool: str = ""  # of the earliest report, by (ts, tool)
    ai_lines: int | None = None
    commits: list[tuple[str, Sha]] = []  # (repo, sha)
    # What is currently counted in the windows for this task:
    given: Given | None = None
    retracted: list[Retracted] = []
    contested_ts: float | None = None

    @property
    def newest(self) -> float:
        return self.ts + self.span


class DeploymentFact(msgspec.Struct, array_like=True, frozen=True):
    """The earliest (ts, event id) succeeded production report of a deploy_id."""

    ts: float
    event_id: str
    environment: str  # casefolded
    commits: tuple[str, ...]
    head: str | None


class DeploymentState(msgspec.Struct, array_like=True):
    deploy_id: str
    fact: DeploymentFact | None = None
    rollbacks: list[tuple[float, str]] = []  # (ts, casefolded environment) of reports rolling it back
    anchor: Pushed | None = None  # head-only: (branch, ts) of the push it expands from, as indexed
    newest: float = 0.0


class BranchState(msgspec.Struct, array_like=True):
    """Head-only production deployments anchored on one branch, by (ts, deploy_id)."""

    deployments: list[Anchored] = []
    newest: float = 0.0


TaskRef = tuple[str, str]  # (team, task_id)
BucketRef = tuple[str, str]  # (repo, sha prefix)
DeployRef = tuple[str, str]  # (repo, deploy_id)
BranchRef = tuple[str, str]  # (repo, branch)
RangeRef = tuple[str, str, float, float]  # (repo, branch, lo, hi): shas pushed to the branch with lo <= ts <= hi


@dataclass
class Need:
    """What a step of `join` must read before it can go on."""

    tasks: set[TaskRef] = field(default_factory=set)
    buckets: set[BucketRef] = field(default_factory=set)
    deployments: set[DeployRef] = field(default_factory=set)
    branches: set[BranchRef] = field(default_factory=set)
    ranges: set[RangeRef] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.buckets or self.deployments or self.branches or self.ranges)


@dataclass
class Loaded:
    """The answer to a `Need`: None (or an empty list) for what does not exist."""

    tasks: dict[TaskRef, TaskState | None] = field(default_factory=dict)
    buckets: dict[BucketRef, list[CommitState]] = field(default_factory=dict)
    deployments: dict[DeployRef, DeploymentState | None] = field(default_factory=dict)
    branches: dict[BranchRef, BranchState | None] = field(default_factory=dict)
    ranges: dict[RangeRef, list[str]] = field(default_factory=dict)


@dataclass
class Changes:
    """What a batch writes: changed entities (each with the newest event time it holds) and new pushes."""

    tasks: dict[TaskRef, TaskState] = field(default_factory=dict)
    buckets: dict[BucketRef, list[CommitState]] = field(default_factory=dict)
    deployments: dict[DeployRef, DeploymentState] = field(default_factory=dict)
    branches: dict[BranchRef, BranchState] = field(default_factory=dict)
    pushes: dict[BranchRef, list[tuple[float, str]]] = field(default_factory=dict)  # (ts, sha)


@dataclass(frozen=True)
class Delta:
    """One change to the output windows, at `ts`.

    kind `credit`: normalized deployments (`amount`, fixed point) and shipped tasks (`shipped`) of (team, tool);
    kind `retracted`: retracted normalized deployments of (team, reason); kind `contested`: contested claims of team.
    """

    kind: str
    team: str
    ts: float
    amount: int
    tool: str = ""
    reason: str = ""
    shipped: int = 0
    task_id: str = ""  # for logs and tests; never a metric label


@dataclass
class Result:
    changes: Changes
    deltas: list[Delta]


def is_relevant(event: object) -> bool:
    """Whether crediting reads the event: tasks that start or complete, every push and deployment."""
    if isinstance(event, TaskEvent):
        return event.status != "abandoned"
    return isinstance(event, (PushEvent, DeploymentEvent))


def partition_key(event: TaskEvent | PushEvent | DeploymentEvent) -> str:
    """The join topic's key: one repo's events go to one partition (a task without a repo, by its identity)."""
    repo = event.repo
    return repo if repo is not None else f"\0{event.team}\0{event.task_id}"  # type: ignore[union-attr]


def same_commit(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def bucket_of(repo: str, sha: str) -> BucketRef:
    return (repo, sha[:SHORT_SHA])


def amount(ai_lines: int | None, policy: Policy) -> int:
    """min(1, ai_lines / full_credit_lines) in fixed point, computed exactly (1 when ai_lines is unknown)."""
    if ai_lines is None:
        return SCALE["credit"]
    return round(Fraction(min(ai_lines, policy.full_credit_lines) * SCALE["credit"], policy.full_credit_lines))


class _View:
    """The entities a batch has read, with its changes on top; `need` yields the reads still missing."""

    def __init__(self) -> None:
        self.tasks: dict[TaskRef, TaskState | None] = {}
        self.buckets: dict[BucketRef, list[CommitState]] = {}
        self.deployments: dict[DeployRef, DeploymentState | None] = {}
        self.branches: dict[BranchRef, BranchState | None] = {}
        self.ranges: dict[RangeRef, list[str]] = {}
        self.changes = Changes()
        self.original_deployments: dict[DeployRef, DeploymentState | None] = {}

    def need(
        self,
        tasks: Iterable[TaskRef] = (),
        buckets: Iterable[BucketRef] = (),
        deployments: Iterable[DeployRef] = (),
        branches: Iterable[BranchRef] = (),
        ranges: Iterable[RangeRef] = (),
    ) -> Generator[Need, Loaded, None]:
        need = Need(
            {r for r in tasks if r not in self.tasks},
            {r for r in buckets if r not in self.buckets},
            {r for r in deployments if r not in self.deployments},
            {r for r in branches if r not in self.branches},
            {r for r in ranges if r not in self.ranges},
        )
        if not need:
            return
        loaded = yield need
        for ref in need.tasks:
            self.tasks[ref] = loaded.tasks.get(ref)
        for ref in need.buckets:
            self.buckets[ref] = list(loaded.buckets.get(ref) or [])
        for ref in need.deployments:
            self.deployments[ref] = loaded.deployments.get(ref)
            # A copy: folding changes the state in place, and re-indexing needs what was indexed before.
            self.original_deployments[ref] = _clone(self.deployments[ref])
        for ref in need.branches:
            self.branches[ref] = loaded.branches.get(ref)
        for ref in need.ranges:
            self.ranges[ref] = list(loaded.ranges.get(ref) or [])

    # Commits

    def commit(self, repo: str, sha: str, create: bool = False) -> CommitState | None:
        ref = bucket_of(repo, sha)
        bucket = self.buckets[ref]
        for state in bucket:
            if same_commit(state.sha, sha):
                if create and len(sha) > len(state.sha):
                    state.sha = Sha(sha)  # the longest form names it
                return state
        if not create:
            return None
        state = CommitState(Sha(sha))
        bucket.append(state)
        return state

    def touch_commit(self, repo: str, state: CommitState, ts: float) -> None:
        state.newest = max(state.newest, ts)
        ref = bucket_of(repo, state.sha)
        self.changes.buckets[ref] = self.buckets[ref]

    # Tasks, deployments, branches

    def put_task(self, ref: TaskRef, state: TaskState) -> None:
        self.tasks[ref] = self.changes.tasks[ref] = state

    def put_deployment(self, ref: DeployRef, state: DeploymentState) -> None:
        self.deployments[ref] = self.changes.deployments[ref] = state

    def branch(self, ref: BranchRef) -> BranchState:
        state = self.branches.get(ref)
        if state is None:
            state = self.branches[ref] = BranchState()
        return state

    def put_branch(self, ref: BranchRef, state: BranchState) -> None:
        self.branches[ref] = self.changes.branches[ref] = state

    def add_push(self, ref: BranchRef, ts: float, sha: str) -> None:
        self.changes.pushes.setdefault(ref, []).append((ts, sha))

    def pushed(self, rng: RangeRef) -> list[str]:
        """Shas pushed to the branch within the range: as read, plus this batch's pushes."""
        repo, branch, lo, hi = rng
        extra = [sha for ts, sha in self.changes.pushes.get((repo, branch), ()) if lo <= ts <= hi]
        return list(dict.fromkeys([*self.ranges[rng], *extra]))


def run(read: Callable[[Need], Loaded], events: Sequence[Event], policy: Policy) -> Result:
    """Drive `join` with a synchronous reader (the memory store, tests, benchmarks)."""
    steps = join(events, policy)
    try:
        need = next(steps)
        while True:
            need = steps.send(read(need))
    except StopIteration as done:
        return done.value


def join(events: Sequence[Event], policy: Policy) -> Generator[Need, Loaded, Result]:
    """Fold one batch of join events into the state and return the changes and the output deltas they cause."""
    view = _View()
    events = [e for e in events if is_relevant(e)]
    tasks = [e for e in events if isinstance(e, TaskEvent)]
    pushes = [e for e in events if isinstance(e, PushEvent)]
    deployments = [e for e in events if isinstance(e, DeploymentEvent)]

    # 1. Read what the events name.
    buckets: set[BucketRef] = set()
    for t in tasks:
        if t.status == "completed" and t.repo is not None:
            buckets |= {bucket_of(t.repo, sha) for sha in t.commits}
    for p in pushes:
        buckets |= {bucket_of(p.repo, sha) for sha in (*_carried(p), *p.reverts)}
    deploy_refs: set[DeployRef] = set()
    for d in deployments:
        deploy_refs.add((d.repo, d.deploy_id))
        if d.rollback_of is not None:
            deploy_refs.add((d.repo, d.rollback_of))
    yield from view.need(tasks={(t.team, t.task_id) for t in tasks}, buckets=buckets, deployments=deploy_refs)
    # A report that changes a known task's time moves its claim on every commit it already has.
    known = [view.tasks.get((t.team, t.task_id)) for t in tasks]
    yield from view.need(buckets={bucket_of(repo, sha) for k in known if k is not None for repo, sha in k.commits})

    # 2. Fold the events in; note which commits and deployments may have changed.
    commits: set[tuple[str, str]] = set()  # (repo, sha) whose owner or chain may have changed
    touched_tasks: set[TaskRef] = set()
    for t in tasks:
        _fold_task(view, t, commits, touched_tasks)
    reanchor: set[DeployRef] = set()
    for p in pushes:
        for sha in _carried(p):
            state = view.commit(p.repo, sha, create=True)
            assert state is not None
            _insort_unique(state.pushes, (p.branch, p.ts))
            view.touch_commit(p.repo, state, p.ts)
            view.add_push((p.repo, p.branch), p.ts, state.sha)
            commits.add((p.repo, state.sha))
            reanchor |= {(p.repo, deploy_id) for deploy_id in state.heads}
        for sha in p.reverts:
            state = view.commit(p.repo, sha, create=True)
            assert state is not None
            _insort_unique(state.reverts, (p.branch, p.ts))
            view.touch_commit(p.repo, state, p.ts)
            commits.add((p.repo, state.sha))
    changed: set[DeployRef] = set()
    for d in deployments:
        _fold_deployment(view, d, policy, changed)

    # 3. Re-index deployments whose commit set or liveness may have changed.
    yield from view.need(deployments=reanchor)
    redo = {ref for ref in changed | reanchor if view.deployments.get(ref) is not None}
    heads = {bucket_of(ref[0], h) for ref in redo if (h := _head_only(view.deployments[ref])) is not None}  # type: ignore[arg-type]
    yield from view.need(buckets=heads)
    plans = {ref: _reindex_plan(view, ref, policy) for ref in redo}
    # The branch index of every anchor involved, before and after, then the commit ranges it spans.
    yield from view.need(branches={(ref[0], a[0]) for ref, (old, new) in plans.items() for a in (old, new) if a})
    ranges: set[RangeRef] = set()
    for ref, (old, new) in plans.items():
        if old is not None:
            ranges.add(_range(view, ref, old, policy))
    _apply_reindex(view, plans, policy)
    for ref, (_old, new) in plans.items():
        if new is not None:
            ranges.add(_range(view, ref, new, policy))
    explicit = {
        (ref[0], sha)
        for ref in redo
        for sha in _explicit(view.deployments[ref]) | _explicit(view.original_deployments.get(ref))
    }
    yield from view.need(ranges=ranges, buckets={bucket_of(repo, sha) for repo, sha in explicit})
    for ref in redo:
        _index_explicit(view, ref, policy)
    commits |= explicit
    for rng in ranges:
        commits |= {(rng[0], sha) for sha in view.pushed(rng)}

    # 4. Every task claiming a changed commit, and every commit of those tasks.
    yield from view.need(buckets={bucket_of(repo, sha) for repo, sha in commits})
    for repo, sha in commits:
        state = view.commit(repo, sha)
        if state is not None:
            touched_tasks |= {(team, task_id) for _ts, team, task_id in state.claims}
    yield from view.need(tasks=touched_tasks)
    live = {ref: t for ref in touched_tasks if (t := view.tasks.get(ref)) is not None}
    yield from view.need(buckets={bucket_of(repo, sha) for t in live.values() for repo, sha in t.commits})
    branch_refs = set()
    for t in live.values():
        for repo, sha in t.commits:
            state = view.commit(repo, sha)
            if state is not None:
                branch_refs |= {(repo, branch) for branch, _ts in state.pushes}
    yield from view.need(branches=branch_refs)

    # 5. Recompute each of those tasks and diff against what it has counted.
    deltas: list[Delta] = []
    for ref in sorted(live):
        task = live[ref]
        wanted = _desired(view, ref, task, policy)
        if wanted is None:  # something it depends on has expired: what it has counted is final
            continue
        given, retracted, contested_ts = wanted
        found = _diff(ref, task, given, retracted, contested_ts)
        if found:
            task.given, task.retracted, task.contested_ts = given, retracted, contested_ts
            view.put_task(ref, task)
            deltas += found
    return Result(view.changes, deltas)


def _carried(push: PushEvent) -> tuple[str, ...]:
    # Webhooks truncate `commits` (GitHub keeps 20) but always name the head.
    return (*push.commits, push.head) if push.head and push.head not in push.commits else tuple(push.commits)


def _insort_unique(items: list, item: object) -> None:
    position = bisect.bisect_left(items, item)
    if position == len(items) or items[position] != item:
        items.insert(position, item)


def _fold_task(view: _View, event: TaskEvent, commits: set[tuple[str, str]], touched: set[TaskRef]) -> None:
    ref = (event.team, event.task_id)
    task = view.tasks.get(ref)
    existed = task is not None
    if task is None:
        task = TaskState(ts=event.ts, tool=event.tool)
    before = (task.ts, len(task.commits), task.ai_lines, task.tool)
    newest_before = task.newest
    old_claim: Claim = (task.ts, *ref)
    if (event.ts, event.tool) < (task.ts, task.tool):
        task.tool = event.tool
    newest = max(task.newest, event.ts)
    task.ts = min(task.ts, event.ts)
    task.span = math.ceil(newest - task.ts)
    if event.status == "completed":
        if event.ai_lines is not None:
            task.ai_lines = max(task.ai_lines or 0, event.ai_lines)
        if event.repo is not None:
            for sha in event.commits:
                if not any(repo == event.repo and same_commit(known, sha) for repo, known in task.commits):
                    task.commits.append((event.repo, Sha(sha)))
    task.commits.sort()
    if existed and (task.ts, len(task.commits), task.ai_lines, task.tool) == before:
        if task.newest != newest_before:  # only kept alive longer
            view.put_task(ref, task)
        return
    new_claim: Claim = (task.ts, *ref)
    for repo, sha in task.commits:
        state = view.commit(repo, sha, create=True)
        assert state is not None
        if old_claim != new_claim and old_claim in state.claims:
            state.claims.remove(old_claim)
        _insort_unique(state.claims, new_claim)
        view.touch_commit(repo, state, task.newest)
        commits.add((repo, state.sha))
    view.put_task(ref, task)
    touched.add(ref)


def _fold_deployment(view: _View, event: DeploymentEvent, policy: Policy, changed: set[DeployRef]) -> None:
    environment = event.environment.casefold()
    if event.status == "succeeded" and policy.is_production(environment):
        ref = (event.repo, event.deploy_id)
        state = _deployment(view, ref)
        fact = DeploymentFact(event.ts, event.id, environment, tuple(sorted(set(event.commits))), event.head)
        if state.fact is None or (fact.ts, fact.event_id) < (state.fact.ts, state.fact.event_id):
            state.fact = fact
            state.newest = max(state.newest, event.ts)
            view.put_deployment(ref, state)
            changed.add(ref)
    # Only a succeeded deployment can roll another back (`rollback_of`); a `rolled_back` report rolls back its own
    # deploy_id. Either counts only in the rolled-back deployment's environment (checked against its fact).
    target = event.deploy_id if event.status == "rolled_back" else event.rollback_of if event.status == "succeeded" else None
    if target is not None:
        ref = (event.repo, target)
        state = _deployment(view, ref)
        if (event.ts, environment) not in state.rollbacks:
            _insort_unique(state.rollbacks, (event.ts, environment))
            state.newest = max(state.newest, event.ts)
            view.put_deployment(ref, state)
            changed.add(ref)


def _deployment(view: _View, ref: DeployRef) -> DeploymentState:
    state = view.deployments.get(ref)
    return state if state is not None else DeploymentState(ref[1])


def rollback_ts(state: DeploymentState, policy: Policy) -> float | None:
    """When the deployment was rolled back within its survival window, in its own environment; None if it lives."""
    fact = state.fact
    if fact is None:
        return None
    valid = [
        ts for ts, environment in state.rollbacks
        if environment == fact.environment and fact.ts <= ts <= fact.ts + policy.survival_window
    ]
    return min(valid) if valid else None


def _head_only(state: DeploymentState | None) -> str | None:
    if state is None or state.fact is None or state.fact.commits or state.fact.head is None:
        return None
    return state.fact.head


def _explicit(state: DeploymentState | None) -> set[str]:
    if state is None or state.fact is None:
        return set()
    return {*state.fact.commits, *([state.fact.head] if state.fact.head else [])}


def _reindex_plan(view: _View, ref: DeployRef, policy: Policy) -> tuple[Pushed | None, Pushed | None]:
    """(old anchor as indexed, new anchor): the latest push at or before the deployment carrying its head."""
    state = view.deployments[ref]
    assert state is not None
    new: Pushed | None = None
    head = _head_only(state)
    if head is not None:
        commit = view.commit(ref[0], head)
        assert state.fact is not None
        candidates = [(ts, branch) for branch, ts in (commit.pushes if commit else ()) if ts <= state.fact.ts]
        if candidates:
            ts, branch = max(candidates)
            new = (branch, ts)
    return state.anchor, new


def _range(view: _View, ref: DeployRef, anchor: Pushed, policy: Policy) -> RangeRef:
    """The pushes on the anchor's branch this deployment may be the first live one to contain.

    From a join window before its ts, or from the latest anchor of an earlier live deployment on that branch if that
    is later (what that one already contains), up to its anchor.
    """
    state = view.deployments[ref]
    assert state is not None and state.fact is not None
    branch, anchor_ts = anchor
    lo = state.fact.ts - policy.join_window
    for ts, deploy_id, earlier_anchor, rolled_back in view.branch((ref[0], branch)).deployments:
        if (ts, deploy_id) >= (state.fact.ts, ref[1]):
            break
        if rolled_back is None:
            lo = max(lo, earlier_anchor)
    return (ref[0], branch, lo, anchor_ts)


def _apply_reindex(view: _View, plans: dict[DeployRef, tuple[Pushed | None, Pushed | None]], policy: Policy) -> None:
    """Move each deployment's branch-index entry to its new anchor, with its current liveness."""
    for ref, (old, new) in plans.items():
        repo, deploy_id = ref
        state = view.deployments[ref]
        assert state is not None
        if old is not None:
            branch = view.branch((repo, old[0]))
            branch.deployments = [e for e in branch.deployments if e[1] != deploy_id]
            view.put_branch((repo, old[0]), branch)
        if new is not None and state.fact is not None:
            branch = view.branch((repo, new[0]))
            branch.deployments = [e for e in branch.deployments if e[1] != deploy_id]
            _insort_unique(branch.deployments, (state.fact.ts, deploy_id, new[1], rollback_ts(state, policy)))
            branch.newest = max(branch.newest, state.fact.ts)
            horizon = branch.newest - policy.horizon
            branch.deployments = [e for e in branch.deployments if e[0] >= horizon]
            view.put_branch((repo, new[0]), branch)
        if state.anchor != new:
            state.anchor = new
            view.put_deployment(ref, state)


def _index_explicit(view: _View, ref: DeployRef, policy: Policy) -> None:
    """Record the deployment, with its liveness, in the commits it names; head-only ones also under `heads`."""
    repo, deploy_id = ref
    before = view.original_deployments.get(ref)
    state = view.deployments[ref]
    assert state is not None
    for sha in _explicit(before) - _explicit(state):
        commit = view.commit(repo, sha)
        if commit is not None:
            commit.deploys = [c for c in commit.deploys if c[1] != deploy_id]
            commit.heads = [h for h in commit.heads if h != deploy_id]
            view.touch_commit(repo, commit, commit.newest)
    if state.fact is None:
        return
    entry = (state.fact.ts, deploy_id, rollback_ts(state, policy))
    head = _head_only(state)
    for sha in _explicit(state):
        commit = view.commit(repo, sha, create=True)
        assert commit is not None
        commit.deploys = [c for c in commit.deploys if c[1] != deploy_id]
        _insort_unique(commit.deploys, entry)
        if sha == head and deploy_id not in commit.heads:
            commit.heads.append(deploy_id)
        elif sha != head and deploy_id in commit.heads:
            commit.heads.remove(deploy_id)
        view.touch_commit(repo, commit, state.fact.ts)


def _chain(view: _View, repo: str, commit: CommitState, policy: Policy) -> list[tuple[float, str, str, float | None]]:
    """The production deployments containing the commit, in order, up to the first live one.

    (ts, repo, deploy_id, rollback ts): those it names, and head-only ones anchored on a branch it was pushed to,
    at or after that push and at most a join window later.
    """
    found = {(ts, repo, deploy_id, rolled_back) for ts, deploy_id, rolled_back in commit.deploys}
    for branch, pushed_at in commit.pushes:
        entries = (view.branches.get((repo, branch)) or BranchState()).deployments
        start = bisect.bisect_left(entries, (pushed_at,))
        for ts, deploy_id, anchor_ts, rolled_back in entries[start:]:
            if ts > pushed_at + policy.join_window:
                break
            if anchor_ts >= pushed_at:
                found.add((ts, repo, deploy_id, rolled_back))
                if rolled_back is None:
                    break
    chain = []
    for item in sorted(found, key=lambda f: f[:3]):
        chain.append(item)
        if item[3] is None:
            break
    return chain


def _desired(
    view: _View, ref: TaskRef, task: TaskState, policy: Policy
) -> tuple[Given | None, list[Retracted], float | None] | None:
    """What the task should have counted: its credit, its retractions, and whether it is contested."""
    if not task.commits:
        return None, [], None
    claim = (task.ts, *ref)
    owned: list[tuple[str, CommitState]] = []
    for repo, sha in task.commits:
        commit = view.commit(repo, sha)
        if commit is None:
            return None  # expired: keep what the task has
        if commit.claims and commit.claims[0] == claim:
            owned.append((repo, commit))
    if not owned:
        return None, [], task.ts
    worth = amount(task.ai_lines, policy)
    earliest, latest = task.ts - policy.claim_slack, task.ts + policy.join_window
    # Every deployment that would ship the task, through any of its owned commits, with the commits it ships.
    ships: dict[tuple[float, str, str], tuple[float | None, list[CommitState]]] = {}
    for repo, commit in owned:
        for ts, deploy_repo, deploy_id, rolled in _chain(view, repo, commit, policy):
            if earliest <= ts <= latest:
                ships.setdefault((ts, deploy_repo, deploy_id), (rolled, []))[1].append(commit)
    if task.given is not None and not any(_indexed(view, repo, c, task.given.deploy_id) for repo, c in owned):
        return None  # the deployment that credited it has expired from the index: its credit is final
    # In event time: each rolled-back one gave a credit and took it back; a revert ends it for good; the first that
    # survives keeps it.
    retracted: list[Retracted] = []
    for (ts, repo, deploy_id), (rolled, commits) in sorted(ships.items()):
        reverted = min(
            (
                revert_ts
                for commit in commits
                for branch, revert_ts in commit.reverts
                if revert_ts <= ts + policy.survival_window and any(b == branch for b, _ in commit.pushes)
            ),
            default=None,
        )
        if reverted is not None and (rolled is None or reverted < rolled):
            if reverted >= ts:  # credited, then reverted: a retraction; reverted before it shipped: never credited
                retracted.append(Retracted(reverted, REVERT, repo, deploy_id, worth))
            return None, sorted(retracted), None
        if rolled is not None:
            retracted.append(Retracted(rolled, ROLLBACK, repo, deploy_id, worth))
            continue
        return Given(repo, deploy_id, ts, worth, task.tool), sorted(retracted), None
    return None, sorted(retracted), None


def _indexed(view: _View, repo: str, commit: CommitState, deploy_id: str) -> bool:
    """Whether the deployment is still known to contain the commit (named by it, or anchored where it was pushed)."""
    if any(d == deploy_id for _ts, d, _rolled in commit.deploys):
        return True
    return any(
        d == deploy_id
        for branch, _pushed in commit.pushes
        for _ts, d, _anchor, _rolled in (view.branches.get((repo, branch)) or BranchState()).deployments
    )


def _diff(
    ref: TaskRef, task: TaskState, given: Given | None, retracted: list[Retracted], contested_ts: float | None
) -> list[Delta]:
    team, task_id = ref
    out: list[Delta] = []
    if task.given != given:
        if task.given is not None:
            old = task.given
            out.append(Delta("credit", team, old.ts, -old.amount, tool=old.tool, shipped=-1, task_id=task_id))
        if given is not None:
            out.append(Delta("credit", team, given.ts, given.amount, tool=given.tool, shipped=1, task_id=task_id))
    if task.retracted != retracted:
        for old in task.retracted:
            if old not in retracted:
                out.append(Delta("retracted", team, old.ts, -old.amount, reason=old.reason, task_id=task_id))
        for new in retracted:
            if new not in task.retracted:
                out.append(Delta("retracted", team, new.ts, new.amount, reason=new.reason, task_id=task_id))
    if task.contested_ts != contested_ts:
        if task.contested_ts is not None:
            out.append(Delta("contested", team, task.contested_ts, -1, task_id=task_id))
        if contested_ts is not None:
            out.append(Delta("contested", team, contested_ts, 1, task_id=task_id))
    return out


def newest(state: TaskState | list[CommitState] | DeploymentState | BranchState) -> float:
    """The newest event time an entity holds: it is kept `Policy.horizon` past this."""
    if isinstance(state, list):
        return max((c.newest for c in state), default=0.0)
    return state.newest


class MemoryJoinState:
    """Join state in memory, with the same reads and writes as the Redis store: tests and benchmarks."""

    def __init__(self) -> None:
        self.tasks: dict[TaskRef, TaskState] = {}
        self.buckets: dict[BucketRef, list[CommitState]] = {}
        self.deployments: dict[DeployRef, DeploymentState] = {}
        self.branches: dict[BranchRef, BranchState] = {}
        self.pushes: dict[BranchRef, list[tuple[float, str]]] = {}

    def read(self, need: Need) -> Loaded:
        # Copies, as a store hands out: the join changes what it reads.
        return Loaded(
            tasks={r: _clone(self.tasks.get(r)) for r in need.tasks},
            buckets={r: _clone(self.buckets.get(r, [])) for r in need.buckets},
            deployments={r: _clone(self.deployments.get(r)) for r in need.deployments},
            branches={r: _clone(self.branches.get(r)) for r in need.branches},
            ranges={
                r: [sha for ts, sha in sorted(self.pushes.get((r[0], r[1]), ())) if r[2] <= ts <= r[3]]
                for r in need.ranges
            },
        )

    def write(self, changes: Changes) -> None:
        self.tasks.update({r: _clone(s) for r, s in changes.tasks.items()})
        self.buckets.update({r: _clone(s) for r, s in changes.buckets.items()})
        self.deployments.update({r: _clone(s) for r, s in changes.deployments.items()})
        self.branches.update({r: _clone(s) for r, s in changes.branches.items()})
        for ref, added in changes.pushes.items():
            self.pushes.setdefault(ref, []).extend(added)

    def apply(self, events: Sequence[Event], policy: Policy) -> list[Delta]:
        result = run(self.read, events, policy)
        self.write(result.changes)
        return result.deltas


def _enc_hook(obj: object) -> object:
    if isinstance(obj, Sha):
        return _pack(obj)
    raise NotImplementedError(f"cannot store {type(obj).__name__}")


def _dec_hook(kind: type, obj: object) -> object:
    if kind is Sha and isinstance(obj, bytes):
        return _unpack(obj)
    raise NotImplementedError(f"cannot read {kind.__name__} from {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
Bucket = list[CommitState]
_decoders = {
    kind: msgspec.msgpack.Decoder(kind, dec_hook=_dec_hook) for kind in (TaskState, Bucket, DeploymentState, BranchState)
}


def encode(state: TaskState | list[CommitState] | DeploymentState | BranchState) -> bytes:
    return _encoder.encode(state)


def decode(kind: type, data: bytes):
    """Decode one stored entity; `kind` is TaskState, `Bucket`, DeploymentState or BranchState."""
    return _decoders[kind].decode(data)


def _clone(value):
    if value is None:
        return None
    return decode(Bucket if isinstance(value, list) else type(value), encode(value))
