"""Crediting v3: which production deployment ships which AI-written code (docs/INTERFACE.md §2), incrementally.

The rules (contract v3 §2), as this module computes them:
- A task is (team, task_id). Its commits are the union over its `completed` reports (full SHAs), its lines the largest
  reported (a `completed` report without `ai_lines` counts `full_credit_lines`), its *rank* the earliest over its
  reports of the report's rank time: `ts` for a trusted source, max(`ts`, `arrival` - grace) for an event a scoped
  token sent (the gateway stamps `arrival`).
- A commit is owned by the claimant with the earliest (rank, team, task_id). A task that claims commits and owns none
  is contested, counted at its rank.
- A production deployment D's commit set is its `commits` and `head` (abbreviated SHAs resolved through the repo's
  prefix index), or, when it names only a head, the commits pushed to the branch of the latest push at or before D
  carrying that head, from the latest of (D - join window, the anchor of the previous live head-only deployment on
  that branch, the latest forced push) up to that push.
- For each commit, its *chain* is the production deployments containing it in (ts, deploy_id) order, up to and
  including the first one that was not rolled back within its survival window: later ones redeploy it.
- A task *walks* the chains of its owned commits merged, in order, within [rank - slack, newest report + join
  window]: a deployment that reverted commits of the task within its survival window ends the walk (with a credit
  then a retraction if the revert came after it, with nothing if before); a rolled-back one takes the task's lines
  and gives them back at the rollback; the first live one takes the task's lines and ends the walk.
- A deployment D earns team X min(1, L / full_credit_lines) normalized deployments at D's ts, L the lines of X's tasks
  whose walk reached D. What survives is counted as credit at D's ts; what a revert or rollback takes back is counted
  as retracted at the revert's or rollback's ts.
- One `deploy_id`, one answer: the report with the earliest (rank, event id) fixes the commit set and time; other
  reports with different commits are contested.

Cost: every entity is read and written only when a batch touches it, and most changes are folded in O(size of the
event): a commit's claimants are folded to its owner and a count; a task's commits are a set a re-report touches
once per commit it names; credit is an aggregate per (team, repo, deploy_id) updated by each task's change. A task's
walk is redone from all of its commits only when something it already relied on went away (a rollback or replaced
report of a deployment on its walk, a lost commit, an earlier rank, a forced push): these are bounded by the task's
10,000 commits and happen once per such event.

Order never matters: every rule above is a function of the set of facts; changes are computed as a desired state
diffed against what is counted. State expires by event time (`Policy.horizon`); what a task has counted when its
commits expired is final.

Pure: no I/O, no clock. `join` is a generator that yields what it needs to read (`Need`) and receives it
(`Loaded`), so any store (Redis, memory) can drive it; `run` is the synchronous driver.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Generator, Iterable, Sequence

import msgspec

from aiyield.core.events import DeploymentEvent, Event, PushEvent, TaskEvent
from aiyield.core.windows import SCALE

DAY = 86400.0
ROLLBACK, REVERT = "rollback", "revert"
#: Full SHA lengths (SHA-1, SHA-256). Tasks claim only these; pushes and deployments may abbreviate (7+).
FULL_SHA = (40, 64)
SHORT_SHA = 7
#: Commits per task (contract v3 §1): a report that would take a task past this is refused.
MAX_TASK_COMMITS = 10_000
#: A task keeps its commits inside its own state up to this many; beyond, in a set of their own (`task_commits`), so
#: a re-report of a large task reads only the commits it names.
INLINE_COMMITS = 64
#: An abbreviated SHA is resolved by reading at most this many full SHAs with its prefix: more means ambiguous.
PREFIX_CANDIDATES = 64
#: The abbreviation registry's entry (repo, LENGTHS) lists the lengths the repo's deployments abbreviate to.
LENGTHS = ""



@dataclass(frozen=True)
class Policy:
    """The configurable rules, with their defaults."""

    production_environments: frozenset[str] = frozenset({"production", "prod"})
    full_credit_lines: int = 10
    join_window: float = 7 * DAY  # seconds
    survival_window: float = DAY  # seconds
    #: A deployment may precede the task it ships by this much (clocks and reports are not exact).
    claim_slack: float = 300.0
    #: A scoped sender's report ranks no earlier than its arrival minus this (honest delivery delays).
    claim_grace: float = 3600.0

    def __post_init__(self) -> None:
        if self.full_credit_lines < 1:
            raise ValueError("full_credit_lines must be >= 1")
        if self.join_window <= 0 or self.survival_window < 0 or self.claim_grace < 0:
            raise ValueError("join_window must be > 0, survival_window and claim_grace >= 0 seconds")
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
        """How long an entity is kept past its newest event time: longer than anything that can still join it."""
        return 2 * self.late_after + self.survival_window + DAY

    def rank(self, event: TaskEvent | DeploymentEvent) -> float:
        """The event's rank time: its ts, or for a scoped sender's event no earlier than its arrival minus the grace."""
        arrival = event.arrival
        return event.ts if arrival is None else max(event.ts, arrival - self.claim_grace)

    def amount(self, lines: int) -> int:
        """min(1, lines / full_credit_lines) in fixed point, exact."""
        return round(Fraction(min(max(lines, 0), self.full_credit_lines) * SCALE["credit"], self.full_credit_lines))


# --- State: one msgspec struct per entity (array-like msgpack). Lists are kept sorted. ---

Claim = tuple[float, str, str]  # (rank, team, task_id): the earliest is the owner
Pushed = tuple[str, float]  # (branch, push ts)
Contained = tuple[float, str, float | None]  # (deployment ts, deploy_id, rollback ts or None when live)
Anchored = tuple[float, str, float, float | None]  # (deployment ts, deploy_id, anchor push ts, rollback ts)
#: One deployment a task's walk reached: (ts, repo, deploy_id, rollback ts or None, revert ts or None).
Step = tuple[float, str, str, float | None, float | None]


class CommitState(msgspec.Struct, array_like=True):
    owner: Claim | None = None
    claimants: int = 0
    pushes: list[Pushed] = []
    deploys: list[Contained] = []  # production deployments naming it in `commits` or `head`
    heads: list[str] = []  # head-only deployments whose head it is (re-anchored when a push carries it)
    reverts: list[Pushed] = []  # pushes whose `reverts` name it
    newest: float = 0.0

    @property
    def first_push(self) -> float | None:
        return min((ts for _b, ts in self.pushes), default=None)


class TaskState(msgspec.Struct, array_like=True):
    """One task; its identity (team, task_id) is its key."""

    rank: float
    newest: float
    tool: str = ""
    lines: int | None = None  # None until a `completed` report
    count: int = 0  # commits claimed
    inline: list[tuple[str, str]] = []  # (repo, sha) while count <= INLINE_COMMITS; beyond, in `task_commits`
    owned: int = 0
    # What is counted for it:
    walk: list[Step] = []
    walked_lines: int = 0  # the lines its walk contributed to the credit aggregates
    shipped: tuple[float, str, str, str] | None = None  # (ts, repo, deploy_id, tool) counted as shipping it
    contested_ts: float | None = None

    @property
    def spilled(self) -> bool:
        return self.count > INLINE_COMMITS


class CreditState(msgspec.Struct, array_like=True):
    """What the tasks of one team bring to one deployment, and what is counted for it."""

    ts: float  # the deployment's
    lines: int = 0  # L: every walk that reached it, reverted ones included
    reverts: list[tuple[float, int]] = []  # (revert ts, lines it takes back)
    given: int = 0  # counted surviving credit at ts
    retracted: list[tuple[float, str, int]] = []  # counted (ts, reason, amount)


class DeploymentFact(msgspec.Struct, array_like=True, frozen=True):
    """The report of a deploy_id with the earliest (rank, event id): it fixes the commit set and time."""

    ts: float
    rank: float
    event_id: str
    environment: str  # casefolded
    commits: tuple[str, ...]
    head: str | None
    team: str | None = None

    @property
    def content(self) -> str:
        """What the report says was deployed: reports with equal content are duplicates, others contested."""
        return hashlib.blake2b(msgspec.json.encode([list(self.commits), self.head]), digest_size=12).hexdigest()


class DeploymentState(msgspec.Struct, array_like=True):
    deploy_id: str
    fact: DeploymentFact | None = None
    resolved: list[str] = []  # full SHAs its `commits` and `head` name, as indexed in their commits
    rollbacks: list[tuple[float, str]] = []  # (ts, casefolded environment) of reports rolling it back
    anchor: Pushed | None = None  # head-only: (branch, ts) of the push it expands from, as indexed
    teams: list[str] = []  # teams with a credit aggregate on it
    reports: list[tuple[float, str, str, str]] = []  # other succeeded reports: (rank, event id, content digest, team)
    contested: list[tuple[float, str, str]] = []  # counted contested reports: (rank, team, event id)
    newest: float = 0.0


class BranchState(msgspec.Struct, array_like=True):
    """Head-only production deployments anchored on one branch, and the branch's forced pushes."""

    deployments: list[Anchored] = []
    forced: list[float] = []
    newest: float = 0.0


TaskRef = tuple[str, str]  # (team, task_id)
CommitRef = tuple[str, str]  # (repo, full sha)
DeployRef = tuple[str, str]  # (repo, deploy_id)
BranchRef = tuple[str, str]  # (repo, branch)
CreditRef = tuple[str, str, str]  # (team, repo, deploy_id)
RangeRef = tuple[str, str, float, float]  # (repo, branch, lo, hi): shas pushed to the branch with lo <= ts <= hi
PrefixRef = tuple[str, str]  # (repo, abbreviated sha)
Member = tuple[str, str, str]  # (team, task_id, repo\0sha): is this commit in that spilled task's set?


@dataclass
class Need:
    """What a step of `join` must read before it can go on."""

    tasks: set[TaskRef] = field(default_factory=set)
    commits: set[CommitRef] = field(default_factory=set)
    deployments: set[DeployRef] = field(default_factory=set)
    branches: set[BranchRef] = field(default_factory=set)
    credits: set[CreditRef] = field(default_factory=set)
    ranges: set[RangeRef] = field(default_factory=set)
    members: set[Member] = field(default_factory=set)
    task_commits: set[TaskRef] = field(default_factory=set)  # every commit of a spilled task
    prefixes: set[PrefixRef] = field(default_factory=set)  # up to PREFIX_CANDIDATES + 1 full SHAs with the prefix
    abbreviations: set[PrefixRef] = field(default_factory=set)  # deployments naming an abbreviation

    def __bool__(self) -> bool:
        return any(getattr(self, f) for f in self.__dataclass_fields__)


@dataclass
class Loaded:
    """The answer to a `Need`: None (or empty) for what does not exist."""

    tasks: dict[TaskRef, TaskState | None] = field(default_factory=dict)
    commits: dict[CommitRef, CommitState | None] = field(default_factory=dict)
    deployments: dict[DeployRef, DeploymentState | None] = field(default_factory=dict)
    branches: dict[BranchRef, BranchState | None] = field(default_factory=dict)
    credits: dict[CreditRef, CreditState | None] = field(default_factory=dict)
    ranges: dict[RangeRef, list[str]] = field(default_factory=dict)
    members: dict[Member, bool] = field(default_factory=dict)
    task_commits: dict[TaskRef, list[tuple[str, str]]] = field(default_factory=dict)
    prefixes: dict[PrefixRef, list[str]] = field(default_factory=dict)
    abbreviations: dict[PrefixRef, list[str]] = field(default_factory=dict)


@dataclass
class Changes:
    """What a batch writes: changed entities, and what it adds to sets and indexes."""

    tasks: dict[TaskRef, TaskState] = field(default_factory=dict)
    commits: dict[CommitRef, CommitState] = field(default_factory=dict)
    deployments: dict[DeployRef, DeploymentState] = field(default_factory=dict)
    branches: dict[BranchRef, BranchState] = field(default_factory=dict)
    credits: dict[CreditRef, CreditState] = field(default_factory=dict)
    pushes: dict[BranchRef, list[tuple[float, str]]] = field(default_factory=dict)  # (ts, sha) added to a branch
    task_commits: dict[TaskRef, list[tuple[str, str]]] = field(default_factory=dict)  # added to a task's set
    prefixes: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # repo -> (full sha, first push ts)
    abbreviations: dict[PrefixRef, list[str]] = field(default_factory=dict)  # an abbreviation's deploy_ids, all


@dataclass(frozen=True)
class Delta:
    """One change to the output windows, at `ts`.

    kind `credit`: normalized deployments (`amount`, fixed point) of a team, and shipped tasks (`shipped`) of
    (team, tool); kind `retracted`: retracted normalized deployments of (team, reason); kind `contested`: contested
    claims of a team.
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


def is_full(sha: str) -> bool:
    return len(sha) in FULL_SHA


def member_key(repo: str, sha: str) -> str:
    return f"{repo}\0{sha}"


# --------------------------------------------------------------------------------------------------------- the view


class _View:
    """The entities a batch has read, with its changes on top; `need` yields the reads still missing."""

    def __init__(self) -> None:
        self.loaded = Loaded()
        self.changes = Changes()
        self.original: dict[DeployRef, DeploymentState | None] = {}

    def need(self, **wanted: Iterable) -> Generator[Need, Loaded, None]:
        need = Need(**{kind: {r for r in refs if r not in getattr(self.loaded, kind)} for kind, refs in wanted.items()})
        if not need:
            return
        got = yield need
        for kind in wanted:
            into = getattr(self.loaded, kind)
            answered = getattr(got, kind)
            for ref in getattr(need, kind):
                value = answered.get(ref)
                if kind == "deployments":
                    # A copy: folding changes the state in place, and re-indexing needs what was indexed before.
                    self.original[ref] = _clone(value)
                into[ref] = value if value is not None else _EMPTY[kind]()

    # Entities (created on first write)

    def task(self, ref: TaskRef) -> TaskState | None:
        return self.loaded.tasks[ref]

    def commit(self, ref: CommitRef) -> CommitState | None:
        return self.loaded.commits.get(ref)

    def new_commit(self, ref: CommitRef) -> CommitState:
        state = self.loaded.commits.get(ref)
        if state is None:
            state = self.loaded.commits[ref] = CommitState()
        return state

    def deployment(self, ref: DeployRef) -> DeploymentState:
        state = self.loaded.deployments.get(ref)
        if state is None:
            state = self.loaded.deployments[ref] = DeploymentState(ref[1])
        return state

    def branch(self, ref: BranchRef) -> BranchState:
        state = self.loaded.branches.get(ref)
        if state is None:
            state = self.loaded.branches[ref] = BranchState()
        return state

    def credit(self, ref: CreditRef, ts: float) -> CreditState:
        state = self.loaded.credits.get(ref)
        if state is None:
            state = self.loaded.credits[ref] = CreditState(ts)
        return state

    # Writes

    def put_task(self, ref: TaskRef, state: TaskState) -> None:
        self.loaded.tasks[ref] = self.changes.tasks[ref] = state

    def put_commit(self, ref: CommitRef, state: CommitState, ts: float) -> None:
        state.newest = max(state.newest, ts)
        self.changes.commits[ref] = state

    def put_deployment(self, ref: DeployRef, state: DeploymentState) -> None:
        self.changes.deployments[ref] = state

    def put_branch(self, ref: BranchRef, state: BranchState) -> None:
        self.changes.branches[ref] = state

    def put_credit(self, ref: CreditRef, state: CreditState) -> None:
        self.changes.credits[ref] = state

    def pushed(self, rng: RangeRef) -> list[str]:
        """Shas pushed to the branch within the range: as read, plus this batch's pushes."""
        repo, branch, lo, hi = rng
        extra = [sha for ts, sha in self.changes.pushes.get((repo, branch), ()) if lo <= ts <= hi]
        return list(dict.fromkeys([*self.loaded.ranges[rng], *extra]))

    def task_commits(self, ref: TaskRef, task: TaskState) -> list[tuple[str, str]]:
        """Every commit of a task (spilled ones must have been read: `Need.task_commits`)."""
        if not task.spilled:
            return list(task.inline)
        return list(dict.fromkeys([*self.loaded.task_commits[ref], *self.changes.task_commits.get(ref, ())]))


_EMPTY: dict[str, Callable[[], object]] = {
    "tasks": lambda: None,
    "commits": lambda: None,
    "deployments": lambda: None,
    "branches": lambda: None,
    "credits": lambda: None,
    "ranges": list,
    "members": lambda: False,
    "task_commits": list,
    "prefixes": list,
    "abbreviations": list,
}


def run(read: Callable[[Need], Loaded], events: Sequence[Event], policy: Policy) -> Result:
    """Drive `join` with a synchronous reader (the memory store, tests, benchmarks)."""
    steps = join(events, policy)
    try:
        need = next(steps)
        while True:
            need = steps.send(read(need))
    except StopIteration as done:
        return done.value


@dataclass
class _Work:
    """What the fold found must be recomputed."""

    full: set[TaskRef] = field(default_factory=set)  # tasks whose walk is redone from all of their commits
    grown: dict[TaskRef, set[CommitRef]] = field(default_factory=dict)  # tasks whose walk only gains these commits
    commits: set[CommitRef] = field(default_factory=set)  # commits whose chain changed: their owners are redone
    shrunk: set[CommitRef] = field(default_factory=set)  # ... of which something left: their owners fully
    deployments: set[DeployRef] = field(default_factory=set)  # may need re-indexing (anchor or resolution moved)
    refacts: set[DeployRef] = field(default_factory=set)  # ... whose fact or rollbacks changed: re-indexed
    forced: set[DeployRef] = field(default_factory=set)  # ... anchored after a forced push: re-indexed
    rolled: set[DeployRef] = field(default_factory=set)  # whose liveness changed: their credit outputs are redone

    def grow(self, ref: TaskRef, commit: CommitRef | None = None) -> None:
        commits = self.grown.setdefault(ref, set())
        if commit is not None:
            commits.add(commit)


def join(events: Sequence[Event], policy: Policy) -> Generator[Need, Loaded, Result]:
    """Fold one batch of join events into the state and return the changes and the output deltas they cause."""
    view = _View()
    work = _Work()
    relevant = sorted((e for e in events if is_relevant(e)), key=lambda e: (e.ts, e.id))
    tasks = [e for e in relevant if isinstance(e, TaskEvent)]
    pushes = [e for e in relevant if isinstance(e, PushEvent)]
    deployments = [e for e in relevant if isinstance(e, DeploymentEvent)]

    # 1. Read what the events name.
    deploy_refs = {(d.repo, d.deploy_id) for d in deployments} | {(d.repo, d.rollback_of) for d in deployments if d.rollback_of}
    yield from view.need(
        tasks={(t.team, t.task_id) for t in tasks},
        commits={(t.repo, sha) for t in tasks if t.status == "completed" and t.repo for sha in t.commits if is_full(sha)}
        | {(p.repo, sha) for p in pushes for sha in (*_carried(p), *p.reverts) if is_full(sha)},
        deployments=deploy_refs,
        branches={(p.repo, p.branch) for p in pushes},
    )
    yield from _fold_tasks(view, work, tasks, policy)
    yield from _fold_pushes(view, work, pushes, policy)
    for d in deployments:
        _fold_deployment(view, work, d, policy)
    yield from _reindex(view, work, policy)
    deltas = yield from _recompute(view, work, policy)
    deltas += _contested_reports(view, work)
    return Result(view.changes, deltas)


# ------------------------------------------------------------------------------------------------------------ tasks


def _fold_tasks(view: _View, work: _Work, events: list[TaskEvent], policy: Policy) -> Generator[Need, Loaded, None]:
    by_task: dict[TaskRef, list[TaskEvent]] = {}
    for e in events:
        by_task.setdefault((e.team, e.task_id), []).append(e)
    # Spilled tasks: is each named commit already in the task's set?
    yield from view.need(members={
        (*ref, member_key(e.repo, sha))
        for ref, reports in by_task.items() if (t := view.task(ref)) is not None and t.spilled
        for e in reports if e.status == "completed" and e.repo for sha in e.commits
    })
    reclaim: dict[TaskRef, float] = {}  # tasks whose rank moved earlier: old rank
    claims: dict[TaskRef, list[CommitRef]] = {}
    for ref, reports in by_task.items():
        task = view.task(ref)
        before = None if task is None else (task.rank, task.newest, task.tool, task.lines)
        if task is None:
            first = reports[0]
            task = TaskState(rank=policy.rank(first), newest=first.ts, tool=first.tool)
        known = set(task.inline) if not task.spilled else set()
        added: list[CommitRef] = []
        for e in reports:
            rank = policy.rank(e)
            if (rank, e.tool) < (task.rank, task.tool):
                task.tool = e.tool
            task.rank = min(task.rank, rank)
            task.newest = max(task.newest, e.ts)
            if e.status != "completed":
                continue
            new = [
                (e.repo, sha) for sha in dict.fromkeys(e.commits)
                if e.repo and is_full(sha) and (e.repo, sha) not in known and not view.loaded.members.get((*ref, member_key(e.repo, sha)))
            ]
            if task.count + len(new) > MAX_TASK_COMMITS:
                continue  # contract v3 §1: a report that would take a task past 10,000 commits is refused whole
            task.lines = max(task.lines if task.lines is not None else -1, e.ai_lines if e.ai_lines is not None else policy.full_credit_lines)
            known.update(new)
            added += new
            task.count += len(new)
        if before is not None and before[0] != task.rank:
            reclaim[ref] = before[0]
            work.full.add(ref)
        elif before is not None and before[1] != task.newest and not _ends(task):
            work.full.add(ref)  # a later report widens the window a task without a live deployment may join in
        if before is None or before[2:] != (task.tool, task.lines) or added:
            work.grow(ref)
        _store_commits(view, ref, task, added)
        claims[ref] = added
        if before is None or before != (task.rank, task.newest, task.tool, task.lines) or added:
            view.put_task(ref, task)
    # Tasks whose rank moved claim every commit they already had at the new rank.
    yield from view.need(task_commits={ref for ref in reclaim if view.task(ref).spilled})  # type: ignore[union-attr]
    everything = {ref: view.task_commits(ref, view.task(ref)) for ref in reclaim}  # type: ignore[arg-type]
    yield from view.need(commits={c for commits in everything.values() for c in commits})
    losers: dict[TaskRef, int] = {}
    for ref, task_ref_commits in everything.items():
        task = view.task(ref)
        assert task is not None
        new_claims = set(claims.get(ref, ()))
        for cref in task_ref_commits:
            if cref not in new_claims:
                _claim(view, work, ref, task, cref, reclaim[ref], losers, new=False)
    for ref, added in claims.items():
        task = view.task(ref)
        assert task is not None
        for cref in added:
            _claim(view, work, ref, task, cref, None, losers, new=True)
    # Owners that lost commits: one fewer owned each, and a walk redone without them.
    yield from view.need(tasks=set(losers))
    for ref, lost in losers.items():
        loser = view.task(ref)
        if loser is not None:
            loser.owned -= lost
            view.put_task(ref, loser)
            work.full.add(ref)


def _store_commits(view: _View, ref: TaskRef, task: TaskState, added: list[CommitRef]) -> None:
    if not added:
        return
    if task.count <= INLINE_COMMITS:
        task.inline = sorted({*task.inline, *added})
        return
    spill = [*task.inline, *added]  # crossing the limit moves the inline ones out too
    task.inline = []
    view.changes.task_commits.setdefault(ref, []).extend(spill)


def _claim(
    view: _View, work: _Work, ref: TaskRef, task: TaskState, cref: CommitRef, old_rank: float | None,
    losers: dict[TaskRef, int], new: bool,
) -> None:
    """The task claims the commit at its rank: it becomes the owner if it ranks first (the old owner loses it)."""
    commit = view.new_commit(cref)
    claim: Claim = (task.rank, *ref)
    if new:
        commit.claimants += 1
    elif commit.owner == (old_rank, *ref):
        commit.owner = claim  # still the owner, at its new rank
        view.put_commit(cref, commit, task.newest)
        return
    if commit.owner is None or claim < commit.owner:
        if commit.owner is not None:
            loser = (commit.owner[1], commit.owner[2])
            losers[loser] = losers.get(loser, 0) + 1
        commit.owner = claim
        task.owned += 1
        view.put_task(ref, task)
        work.grow(ref, cref)
    view.put_commit(cref, commit, task.newest)


def _ends(task: TaskState) -> bool:
    """Whether the task's walk ended (at a live deployment or a revert): a wider window changes nothing then."""
    if not task.walk:
        return False
    _ts, _repo, _id, rolled, reverted = task.walk[-1]
    return rolled is None or reverted is not None


# ----------------------------------------------------------------------------------------------------------- pushes


def _carried(push: PushEvent) -> tuple[str, ...]:
    # Webhooks truncate `commits` (GitHub keeps 20) but always name the head.
    return (*push.commits, push.head) if push.head and push.head not in push.commits else tuple(push.commits)


def _fold_pushes(view: _View, work: _Work, pushes: list[PushEvent], policy: Policy) -> Generator[Need, Loaded, None]:
    new_shas: dict[str, set[str]] = {}  # repo -> full shas whose first push moved earlier
    for p in pushes:
        bref = (p.repo, p.branch)
        if p.forced:
            branch = view.branch(bref)
            _insort_unique(branch.forced, p.ts)
            branch.newest = max(branch.newest, p.ts)
            view.put_branch(bref, branch)
            # Head-only deployments anchored at or after it lose what it rewrote: their ranges are redone.
            affected = {(p.repo, d) for _ts, d, anchor, _r in branch.deployments if anchor >= p.ts}
            work.deployments |= affected
            work.forced |= affected
        for sha in _carried(p):
            if not is_full(sha):
                continue  # pushes from git hosting carry full SHAs; an abbreviation here names no commit
            cref = (p.repo, sha)
            commit = view.new_commit(cref)
            first = commit.first_push
            _insort_unique(commit.pushes, (p.branch, p.ts))
            view.put_commit(cref, commit, p.ts)
            view.changes.pushes.setdefault(bref, []).append((p.ts, sha))
            work.commits.add(cref)
            work.deployments |= {(p.repo, d) for d in commit.heads}  # a head pushed again may re-anchor
            if first is None or p.ts < first:
                new_shas.setdefault(p.repo, set()).add(sha)
        for sha in p.reverts:
            if not is_full(sha):
                continue
            cref = (p.repo, sha)
            commit = view.new_commit(cref)
            _insort_unique(commit.reverts, (p.branch, p.ts))
            view.put_commit(cref, commit, p.ts)
            work.commits.add(cref)
    for repo, shas in new_shas.items():
        for sha in shas:
            commit = view.commit((repo, sha))
            assert commit is not None and commit.first_push is not None
            view.changes.prefixes.setdefault(repo, []).append((sha, commit.first_push))
    # Deployments that named an abbreviation of a newly pushed SHA resolve it again.
    # Only at the lengths the repo's deployments abbreviate to (`LENGTHS`): most repos have none, GitLab's 8, Argo's 7.
    yield from view.need(abbreviations={(repo, LENGTHS) for repo in new_shas})
    lengths = {repo: [int(n) for n in view.loaded.abbreviations.get((repo, LENGTHS), ())] for repo in new_shas}
    abbreviations = {(repo, sha[:n]) for repo, shas in new_shas.items() for sha in shas for n in lengths[repo] if n < len(sha)}
    yield from view.need(abbreviations=abbreviations)
    for pref in abbreviations:
        work.deployments |= {(pref[0], d) for d in view.loaded.abbreviations.get(pref, ())}


# ------------------------------------------------------------------------------------------------------ deployments


def _fold_deployment(view: _View, work: _Work, event: DeploymentEvent, policy: Policy) -> None:
    environment = event.environment.casefold()
    if event.status == "succeeded" and policy.is_production(environment):
        ref = (event.repo, event.deploy_id)
        state = view.deployment(ref)
        fact = DeploymentFact(
            event.ts, policy.rank(event), event.id, environment, tuple(sorted(set(event.commits))), event.head, event.team
        )
        old = state.fact
        if old is None or (fact.rank, fact.event_id) < (old.rank, old.event_id):
            if old is not None:
                _insort_unique(state.reports, _report(old))
            state.fact = fact
            work.deployments.add(ref)
            work.refacts.add(ref)
        elif (fact.rank, fact.event_id) != (old.rank, old.event_id):
            _insort_unique(state.reports, _report(fact))
        state.newest = max(state.newest, event.ts)
        view.put_deployment(ref, state)
    # Only a succeeded deployment can roll another back (`rollback_of`); a `rolled_back` report rolls back its own
    # deploy_id. Either counts only in the rolled-back deployment's environment (checked against its fact).
    target = event.deploy_id if event.status == "rolled_back" else event.rollback_of if event.status == "succeeded" else None
    if target is not None:
        ref = (event.repo, target)
        state = view.deployment(ref)
        if (event.ts, environment) not in state.rollbacks:
            _insort_unique(state.rollbacks, (event.ts, environment))
            state.newest = max(state.newest, event.ts)
            view.put_deployment(ref, state)
            work.deployments.add(ref)
            work.refacts.add(ref)


def _report(fact: DeploymentFact) -> tuple[float, str, str, str]:
    """A report that is not (or no longer) the deployment's fact: contested if its content differs from the fact's."""
    return (fact.rank, fact.event_id, fact.content, fact.team or "unassigned")


def rollback_ts(state: DeploymentState | None, policy: Policy) -> float | None:
    """When the deployment was rolled back within its survival window, in its own environment; None if it lives."""
    if state is None or state.fact is None:
        return None
    fact = state.fact
    valid = [
        ts for ts, environment in state.rollbacks
        if environment == fact.environment and fact.ts <= ts <= fact.ts + policy.survival_window
    ]
    return min(valid) if valid else None


def _head_only(state: DeploymentState | None) -> str | None:
    """The full head of a deployment that names no commits (None if it names commits, or its head is unresolved)."""
    if state is None or state.fact is None or state.fact.commits or state.fact.head is None:
        return None
    return state.resolved[0] if state.resolved else None


def _reindex(view: _View, work: _Work, policy: Policy) -> Generator[Need, Loaded, None]:
    """Re-index every deployment whose fact, liveness, anchor or resolution changed, and note the commits whose
    chain changed with it: all of them `shrunk` (their owners' walks redone in full) unless the deployment is new,
    whose commits only gained it."""
    yield from view.need(deployments=work.deployments)
    candidates = {ref for ref in work.deployments if view.loaded.deployments.get(ref) is not None}
    # Resolve abbreviated SHAs: a prefix names the one full SHA of the repo pushed at or before the deployment.
    abbreviated = {
        (ref[0], sha) for ref in candidates for sha in _names(view.loaded.deployments[ref]) if not is_full(sha)  # type: ignore[arg-type]
    }
    yield from view.need(prefixes=abbreviated)
    yield from view.need(commits={(repo, sha) for pref in abbreviated for repo in [pref[0]] for sha in view.loaded.prefixes.get(pref, ())})
    redo = set(work.refacts | work.forced) & candidates
    # New facts naming abbreviations are registered under them, to be resolved again when a matching SHA is pushed.
    register: dict[PrefixRef, set[str]] = {}
    for ref in work.refacts & candidates:
        for sha in _names(view.loaded.deployments[ref]):  # type: ignore[arg-type]
            if not is_full(sha):
                register.setdefault((ref[0], sha), set()).add(ref[1])
    for repo, abbreviation in list(register):
        register.setdefault((repo, LENGTHS), set()).add(str(len(abbreviation)))
    yield from view.need(abbreviations=set(register))
    for pref, names in register.items():
        known = view.changes.abbreviations.get(pref) or view.loaded.abbreviations.get(pref) or []
        if not names <= set(known):
            view.changes.abbreviations[pref] = sorted({*known, *names})
    for ref in candidates:
        state = view.loaded.deployments[ref]
        assert state is not None
        resolved = _resolve(view, ref, state)
        if resolved != state.resolved:
            state.resolved = resolved
            view.put_deployment(ref, state)
            redo.add(ref)
    heads = {(ref[0], h) for ref in candidates if (h := _head_only(view.loaded.deployments[ref])) is not None}
    yield from view.need(commits=heads)
    plans = {ref: _anchor_plan(view, ref) for ref in candidates}
    redo |= {ref for ref, (old, new) in plans.items() if old != new}
    plans = {ref: plan for ref, plan in plans.items() if ref in redo}
    yield from view.need(branches={(ref[0], a[0]) for ref, (old, new) in plans.items() for a in (old, new) if a})
    brand_new = {ref for ref in redo if view.original.get(ref) is None or view.original[ref].fact is None}  # type: ignore[union-attr]
    ranges: set[RangeRef] = set()
    old_ranges: set[RangeRef] = set()
    for ref, (old, _new) in plans.items():
        if old is not None:
            rng = _range(view, ref, old, policy)
            if ref in work.forced:  # what the forced push rewrote was in its range before: the widest one
                rng = (rng[0], rng[1], view.loaded.deployments[ref].fact.ts - policy.join_window, rng[3])  # type: ignore[union-attr]
            old_ranges.add(rng)
    _apply_anchors(view, plans, policy)
    for ref, (_old, new) in plans.items():
        if new is not None:
            rng = _range(view, ref, new, policy)
            (ranges if ref in brand_new else old_ranges).add(rng)
    explicit_old = {ref: set(_indexed(view.original.get(ref))) for ref in redo}
    explicit_new = {ref: set(_indexed(view.loaded.deployments[ref])) for ref in redo}
    yield from view.need(
        ranges=ranges | old_ranges,
        commits={(ref[0], sha) for ref in redo for sha in explicit_old[ref] | explicit_new[ref]},
    )
    for ref in redo:
        _index_explicit(view, ref, explicit_old[ref], explicit_new[ref], policy)
        commits = {(ref[0], sha) for sha in explicit_old[ref] | explicit_new[ref]}
        work.commits |= commits
        if ref not in brand_new:
            work.shrunk |= commits
            work.rolled.add(ref)
    for rng in ranges | old_ranges:
        commits = {(rng[0], sha) for sha in view.pushed(rng)}
        work.commits |= commits
        if rng in old_ranges:
            work.shrunk |= commits


def _names(state: DeploymentState) -> tuple[str, ...]:
    fact = state.fact
    return () if fact is None else (*fact.commits, *([fact.head] if fact.head else []))


def _resolve(view: _View, ref: DeployRef, state: DeploymentState) -> list[str]:
    """The full SHAs a deployment names: full ones as they are, abbreviations through the prefix index (the one full
    SHA with that prefix first pushed at or before the deployment; none or several name nothing). A head-only
    deployment's head comes first."""
    fact = state.fact
    if fact is None:
        return []
    out: list[str] = []
    for sha in ((fact.head,) if not fact.commits and fact.head else (*fact.commits, *([fact.head] if fact.head else []))):
        if is_full(sha):
            out.append(sha)
            continue
        batch = [c for c, _ts in view.changes.prefixes.get(ref[0], ()) if c.startswith(sha)]
        candidates = sorted({*view.loaded.prefixes.get((ref[0], sha), ()), *batch})
        if len(candidates) > PREFIX_CANDIDATES:
            continue
        pushed = [
            c for c in candidates
            if (commit := view.commit((ref[0], c))) is not None and commit.first_push is not None and commit.first_push <= fact.ts
        ]
        if len(pushed) == 1:
            out.append(pushed[0])
    head_first = out[:1] if not fact.commits else []
    return head_first + sorted(set(out) - set(head_first))


def _indexed(state: DeploymentState | None) -> list[str]:
    """The full SHAs a deployment names explicitly (what is indexed in their commits' `deploys`)."""
    if state is None or state.fact is None:
        return []
    return list(state.resolved)


def _anchor_plan(view: _View, ref: DeployRef) -> tuple[Pushed | None, Pushed | None]:
    """(old anchor as indexed, new anchor): the latest push at or before the deployment carrying its head."""
    state = view.loaded.deployments[ref]
    assert state is not None
    new: Pushed | None = None
    head = _head_only(state)
    if head is not None:
        commit = view.commit((ref[0], head))
        assert state.fact is not None
        candidates = [(ts, branch) for branch, ts in (commit.pushes if commit else ()) if ts <= state.fact.ts]
        if candidates:
            ts, branch = max(candidates)
            new = (branch, ts)
    return state.anchor, new


def _range(view: _View, ref: DeployRef, anchor: Pushed, policy: Policy) -> RangeRef:
    """The pushes on the anchor's branch this deployment may be the first live one to contain: from a join window
    before it, the anchor of the previous live deployment on the branch or the latest forced push, up to its anchor."""
    state = view.loaded.deployments[ref]
    assert state is not None and state.fact is not None
    branch, anchor_ts = anchor
    bstate = view.branch((ref[0], branch))
    lo = state.fact.ts - policy.join_window
    for ts, deploy_id, earlier_anchor, rolled_back in bstate.deployments:
        if (ts, deploy_id) >= (state.fact.ts, ref[1]):
            break
        if rolled_back is None:
            lo = max(lo, earlier_anchor)
    forced = bisect.bisect_right(bstate.forced, anchor_ts)
    if forced:
        lo = max(lo, bstate.forced[forced - 1])
    return (ref[0], branch, lo, anchor_ts)


def _apply_anchors(view: _View, plans: dict[DeployRef, tuple[Pushed | None, Pushed | None]], policy: Policy) -> None:
    """Move each deployment's branch-index entry to its new anchor, with its current liveness."""
    for ref, (old, new) in plans.items():
        repo, deploy_id = ref
        state = view.loaded.deployments[ref]
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
            branch.forced = [f for f in branch.forced if f >= horizon]
            view.put_branch((repo, new[0]), branch)
        if state.anchor != new:
            state.anchor = new
            view.put_deployment(ref, state)


def _index_explicit(view: _View, ref: DeployRef, before: set[str], after: set[str], policy: Policy) -> None:
    """Record the deployment, with its liveness, in the commits it names; head-only ones also under `heads`."""
    repo, deploy_id = ref
    state = view.loaded.deployments[ref]
    assert state is not None
    for sha in before - after:
        commit = view.commit((repo, sha))
        if commit is not None:
            commit.deploys = [c for c in commit.deploys if c[1] != deploy_id]
            commit.heads = [h for h in commit.heads if h != deploy_id]
            view.put_commit((repo, sha), commit, commit.newest)
    if state.fact is None:
        return
    entry = (state.fact.ts, deploy_id, rollback_ts(state, policy))
    head = _head_only(state)
    for sha in after:
        commit = view.new_commit((repo, sha))
        commit.deploys = [c for c in commit.deploys if c[1] != deploy_id]
        _insort_unique(commit.deploys, entry)
        if sha == head and deploy_id not in commit.heads:
            commit.heads.append(deploy_id)
        elif sha != head and deploy_id in commit.heads:
            commit.heads.remove(deploy_id)
        view.put_commit((repo, sha), commit, state.fact.ts)


# -------------------------------------------------------------------------------------------------------- the walk


def _chain(view: _View, repo: str, commit: CommitState, policy: Policy) -> list[tuple[float, str, float | None]]:
    """The production deployments containing the commit, in order, up to the first live one: (ts, deploy_id,
    rollback ts). Those naming it, and head-only ones anchored where it was pushed, at or after that push, at most a
    join window later, with no forced push between."""
    found = {(ts, deploy_id, rolled) for ts, deploy_id, rolled in commit.deploys}
    for branch, pushed_at in commit.pushes:
        state = view.loaded.branches.get((repo, branch)) or BranchState()
        start = bisect.bisect_left(state.deployments, (pushed_at,))
        for ts, deploy_id, anchor_ts, rolled in state.deployments[start:]:
            if ts > pushed_at + policy.join_window:
                break
            if anchor_ts < pushed_at:
                continue
            forced = bisect.bisect_right(state.forced, pushed_at)
            if forced < len(state.forced) and state.forced[forced] <= anchor_ts:
                continue  # rewritten away before this deployment
            found.add((ts, deploy_id, rolled))
            if rolled is None:
                break
    chain = []
    for item in sorted(found, key=lambda f: f[:2]):
        chain.append(item)
        if item[2] is None:
            break
    return chain


def _reverted(commit: CommitState, deploy_ts: float, policy: Policy) -> float | None:
    """When a push reverted the commit on a branch it was pushed to, up to the survival window after deploy_ts."""
    branches = {b for b, _ in commit.pushes}
    times = [ts for branch, ts in commit.reverts if branch in branches and ts <= deploy_ts + policy.survival_window]
    return min(times) if times else None


def _steps(view: _View, ref: TaskRef, task: TaskState, commits: Iterable[CommitRef], policy: Policy) -> dict[tuple[float, str, str], Step] | None:
    """The deployments the task's owned commits among `commits` reach within its window, with the earliest revert
    of those commits per deployment. None when a commit has expired (what the task has counted is then final)."""
    claim = (task.rank, *ref)
    lo, hi = task.rank - policy.claim_slack, task.newest + policy.join_window
    steps: dict[tuple[float, str, str], Step] = {}
    for cref in commits:
        commit = view.commit(cref)
        if commit is None:
            return None
        if commit.owner != claim:
            continue
        for ts, deploy_id, rolled in _chain(view, cref[0], commit, policy):
            if not lo <= ts <= hi:
                continue
            key = (ts, cref[0], deploy_id)
            reverted = _reverted(commit, ts, policy)
            old = steps.get(key)
            if old is not None and old[4] is not None:
                reverted = old[4] if reverted is None else min(reverted, old[4])
            steps[key] = (ts, cref[0], deploy_id, rolled, reverted)
    return steps


def _walk(candidates: dict[tuple[float, str, str], Step]) -> list[Step]:
    """In order: a revert before a rollback ends the walk, a rolled-back deployment is passed, a live one ends it."""
    out: list[Step] = []
    for key in sorted(candidates):
        step = candidates[key]
        ts, _repo, _id, rolled, reverted = step
        if reverted is not None and (rolled is None or reverted < rolled):
            out.append((ts, step[1], step[2], rolled, reverted))
            return out
        out.append((ts, step[1], step[2], rolled, None))
        if rolled is None:
            return out
    return out


def _contributions(walk: list[Step], lines: int) -> list[tuple[CreditRefTail, int, float | None]]:
    """(deployment, lines, revert ts) the walk brings to credit aggregates: a revert before the deployment brings
    nothing (it never shipped)."""
    return [((s[1], s[2]), lines, s[4]) for s in walk if s[4] is None or s[4] >= s[0]]


CreditRefTail = tuple[str, str]  # (repo, deploy_id)


def _recompute(view: _View, work: _Work, policy: Policy) -> Generator[Need, Loaded, list[Delta]]:
    # Owners of the commits whose chain changed.
    yield from view.need(commits=work.commits)
    for cref in work.commits:
        commit = view.commit(cref)
        if commit is None or commit.owner is None:
            continue
        owner = (commit.owner[1], commit.owner[2])
        if cref in work.shrunk:
            work.full.add(owner)
        else:
            work.grow(owner, cref)
    refs = work.full | set(work.grown)
    yield from view.need(tasks=refs)
    live = {ref: t for ref in refs if (t := view.task(ref)) is not None}
    yield from view.need(task_commits={ref for ref in work.full if ref in live and live[ref].spilled})
    considered = {
        ref: view.task_commits(ref, task) if ref in work.full else sorted(work.grown.get(ref, ()))
        for ref, task in live.items()
    }
    yield from _load_chains(view, considered)
    # A commit's chain ends at its first live deployment: one that went live before the task's window cuts off the
    # later deployments the task may have reached through that commit, so its walk is redone from every commit.
    escalate = {ref for ref, task in live.items() if ref not in work.full and _cut_before(view, ref, task, considered[ref], policy)}
    if escalate:
        work.full |= escalate
        yield from view.need(task_commits={ref for ref in escalate if live[ref].spilled})
        considered.update({ref: view.task_commits(ref, live[ref]) for ref in escalate})
        yield from _load_chains(view, {ref: considered[ref] for ref in escalate})
    # Each task's new walk, and the credit aggregates it changes.
    walks: dict[TaskRef, list[Step]] = {}
    for ref, task in live.items():
        steps = _steps(view, ref, task, considered[ref], policy)
        if steps is None:
            continue  # something it depends on has expired: what it has counted is final
        if ref not in work.full:
            for step in task.walk:  # a walk that only gains commits keeps where it went
                key = step[:3]
                old = steps.get(key)
                reverted = step[4] if old is None or old[4] is None else (old[4] if step[4] is None else min(old[4], step[4]))
                steps[key] = (*step[:4], reverted)
        walks[ref] = _walk(steps)
    credit_refs: set[CreditRef] = set()
    for ref, walk in walks.items():
        for s in (*live[ref].walk, *walk):
            credit_refs.add((ref[0], s[1], s[2]))
    rolled_refs = {(team, *d) for d in work.rolled if (st := view.loaded.deployments.get(d)) is not None for team in st.teams}
    yield from view.need(credits=credit_refs | rolled_refs, deployments={(r[1], r[2]) for r in credit_refs | rolled_refs})
    touched: set[CreditRef] = set(rolled_refs)
    deltas: list[Delta] = []
    for ref in sorted(walks):
        task, walk = live[ref], walks[ref]
        if any(view.loaded.deployments.get((s[1], s[2])) in (None,) or view.loaded.deployments[(s[1], s[2])].fact is None  # type: ignore[union-attr]
               for s in (*task.walk, *walk)):
            continue  # a deployment it reached has expired: what it has counted is final
        lines = task.lines or 0
        old = _contributions(task.walk, task.walked_lines)
        new = _contributions(walk, lines)
        if old != new:
            for (d, amount, reverted), sign in [*((c, -1) for c in old), *((c, 1) for c in new)]:
                cref = (ref[0], *d)
                state = view.credit(cref, _deploy_ts(view, d))
                state.lines += sign * amount
                if reverted is not None:
                    entry = (reverted, amount)
                    if sign > 0:
                        _insort(state.reverts, entry)
                    else:
                        state.reverts.remove(entry)
                touched.add(cref)
        last = _shipped(walk)
        shipped = None if last is None else (*last, task.tool)
        contested_ts = task.rank if task.count and not task.owned else None
        deltas += _task_deltas(ref, task, shipped, contested_ts)
        if (task.walk, task.walked_lines, task.shipped, task.contested_ts) != (walk, lines, shipped, contested_ts):
            task.walk, task.walked_lines, task.shipped, task.contested_ts = walk, lines, shipped, contested_ts
            view.put_task(ref, task)
    for cref in sorted(touched):
        deltas += _credit_deltas(view, cref, policy)
    return deltas


def _load_chains(view: _View, considered: dict[TaskRef, list[CommitRef]]) -> Generator[Need, Loaded, None]:
    """The commits, and the branch indexes of where they were pushed, that walking these commits reads."""
    yield from view.need(commits={c for commits in considered.values() for c in commits})
    yield from view.need(branches={
        (cref[0], branch) for commits in considered.values() for cref in commits
        if (commit := view.commit(cref)) is not None for branch, _ts in commit.pushes
    })


def _cut_before(view: _View, ref: TaskRef, task: TaskState, commits: list[CommitRef], policy: Policy) -> bool:
    claim = (task.rank, *ref)
    lo = task.rank - policy.claim_slack
    for cref in commits:
        commit = view.commit(cref)
        if commit is None or commit.owner != claim:
            continue
        if any(rolled is None and ts < lo for ts, _id, rolled in _chain(view, cref[0], commit, policy)):
            return True
    return False


def _deploy_ts(view: _View, d: CreditRefTail) -> float:
    state = view.loaded.deployments.get(d)
    assert state is not None and state.fact is not None
    return state.fact.ts


def _shipped(walk: list[Step]) -> tuple[float, str, str] | None:
    if walk and walk[-1][3] is None and walk[-1][4] is None:
        return walk[-1][:3]
    return None


def _task_deltas(
    ref: TaskRef, task: TaskState, shipped: tuple[float, str, str, str] | None, contested_ts: float | None
) -> list[Delta]:
    team, task_id = ref
    out: list[Delta] = []
    if task.shipped != shipped:
        if task.shipped is not None:
            out.append(Delta("credit", team, task.shipped[0], 0, tool=task.shipped[3], shipped=-1, task_id=task_id))
        if shipped is not None:
            out.append(Delta("credit", team, shipped[0], 0, tool=shipped[3], shipped=1, task_id=task_id))
    if task.contested_ts != contested_ts:
        if task.contested_ts is not None:
            out.append(Delta("contested", team, task.contested_ts, -1, task_id=task_id))
        if contested_ts is not None:
            out.append(Delta("contested", team, contested_ts, 1, task_id=task_id))
    return out


def credit_outputs(state: CreditState, rolled: float | None, policy: Policy) -> tuple[int, list[tuple[float, str, int]]]:
    """(surviving credit at the deployment's ts, retractions (ts, reason, amount)) of one team's aggregate.

    Given: min(1, L / full) at the deployment. Each revert (in time) takes the reverted task's lines out of L and
    retracts the difference; a rollback retracts what is left.
    """
    current = state.lines
    retracted: list[tuple[float, str, int]] = []
    for ts, lines in state.reverts:
        if rolled is not None and ts >= rolled:
            break
        after = current - lines
        taken = policy.amount(current) - policy.amount(after)
        if taken:
            retracted.append((ts, REVERT, taken))
        current = after
    if rolled is not None and policy.amount(current):
        retracted.append((rolled, ROLLBACK, policy.amount(current)))
        current = 0
    return policy.amount(current), retracted


def _credit_deltas(view: _View, ref: CreditRef, policy: Policy) -> list[Delta]:
    team, repo, deploy_id = ref
    deployment = view.loaded.deployments.get((repo, deploy_id))
    state = view.loaded.credits.get(ref)
    if state is None or deployment is None or deployment.fact is None:
        return []
    old_ts, state.ts = state.ts, deployment.fact.ts
    given, retracted = credit_outputs(state, rollback_ts(deployment, policy), policy)
    out: list[Delta] = []
    if (given, state.ts) != (state.given, old_ts):
        if state.given:
            out.append(Delta("credit", team, old_ts, -state.given))
        if given:
            out.append(Delta("credit", team, state.ts, given))
    old, new = sorted(state.retracted), sorted(retracted)
    if old != new:
        for ts, reason, amount in old:
            out.append(Delta("retracted", team, ts, -amount, reason=reason))
        for ts, reason, amount in new:
            out.append(Delta("retracted", team, ts, amount, reason=reason))
    if out or state.lines or state.reverts:
        state.given, state.retracted = given, new
        view.put_credit(ref, state)
        if team not in deployment.teams:
            _insort_unique(deployment.teams, team)
            view.put_deployment((repo, deploy_id), deployment)
    return out


def _contested_reports(view: _View, work: _Work) -> list[Delta]:
    """Succeeded reports of a deploy_id that lost to its first report with other commits: counted as contested."""
    out: list[Delta] = []
    for ref, state in view.changes.deployments.items():
        if state.fact is None:
            continue
        winner = state.fact.content
        wanted = sorted((rank, team, event_id) for rank, event_id, content, team in state.reports if content != winner)
        if wanted != state.contested:
            out += [Delta("contested", team, ts, -1) for ts, team, _id in state.contested]
            out += [Delta("contested", team, ts, 1) for ts, team, _id in wanted]
            state.contested = wanted
    return out


def _insort_unique(items: list, item: object) -> None:
    position = bisect.bisect_left(items, item)
    if position == len(items) or items[position] != item:
        items.insert(position, item)


def _insort(items: list, item: object) -> None:
    bisect.insort(items, item)


def newest(state: TaskState | CommitState | DeploymentState | BranchState | CreditState) -> float:
    """The newest event time an entity holds: it is kept `Policy.horizon` past this."""
    return state.ts if isinstance(state, CreditState) else state.newest


# ------------------------------------------------------------------------------------------------ the memory store


class MemoryJoinState:
    """Join state in memory, with the same reads and writes as the Redis store: tests and benchmarks."""

    def __init__(self) -> None:
        self.tasks: dict[TaskRef, TaskState] = {}
        self.commits: dict[CommitRef, CommitState] = {}
        self.deployments: dict[DeployRef, DeploymentState] = {}
        self.branches: dict[BranchRef, BranchState] = {}
        self.credits: dict[CreditRef, CreditState] = {}
        self.pushes: dict[BranchRef, list[tuple[float, str]]] = {}
        self.task_sets: dict[TaskRef, set[tuple[str, str]]] = {}
        self.prefix_index: dict[str, dict[str, float]] = {}
        self.abbreviations: dict[PrefixRef, list[str]] = {}

    def read(self, need: Need) -> Loaded:
        # Copies, as a store hands out: the join changes what it reads.
        def entity(kind: str) -> dict:
            table = getattr(self, kind)
            return {r: _clone(table.get(r)) for r in getattr(need, kind)}

        return Loaded(
            tasks=entity("tasks"), commits=entity("commits"), deployments=entity("deployments"),
            branches=entity("branches"), credits=entity("credits"),
            ranges={
                r: [sha for ts, sha in sorted(self.pushes.get((r[0], r[1]), ())) if r[2] <= ts <= r[3]]
                for r in need.ranges
            },
            members={m: tuple(m[2].split("\0", 1)) in self.task_sets.get((m[0], m[1]), set()) for m in need.members},  # type: ignore[misc]
            task_commits={r: sorted(self.task_sets.get(r, ())) for r in need.task_commits},
            prefixes={
                r: sorted(s for s in self.prefix_index.get(r[0], {}) if s.startswith(r[1]))[: PREFIX_CANDIDATES + 1]
                for r in need.prefixes
            },
            abbreviations={r: list(self.abbreviations.get(r, ())) for r in need.abbreviations},
        )

    def write(self, changes: Changes) -> None:
        for kind in ("tasks", "commits", "deployments", "branches", "credits"):
            getattr(self, kind).update({r: _clone(s) for r, s in getattr(changes, kind).items()})
        for ref, added in changes.pushes.items():
            self.pushes.setdefault(ref, []).extend(added)
        for ref, added in changes.task_commits.items():
            self.task_sets.setdefault(ref, set()).update(added)
        for repo, shas in changes.prefixes.items():
            index = self.prefix_index.setdefault(repo, {})
            for sha, ts in shas:
                index[sha] = min(ts, index.get(sha, ts))
        self.abbreviations.update({ref: list(ids) for ref, ids in changes.abbreviations.items()})

    def apply(self, events: Sequence[Event], policy: Policy) -> list[Delta]:
        result = run(self.read, events, policy)
        self.write(result.changes)
        return result.deltas


# -------------------------------------------------------------------------------------------------------- encoding

_encoder = msgspec.msgpack.Encoder()
STATES = (TaskState, CommitState, DeploymentState, BranchState, CreditState)
_decoders = {kind: msgspec.msgpack.Decoder(kind) for kind in STATES}


def encode(state: TaskState | CommitState | DeploymentState | BranchState | CreditState) -> bytes:
    return _encoder.encode(state)


def decode(kind: type, data: bytes):
    """Decode one stored entity of the given state type."""
    return _decoders[kind].decode(data)


def _clone(value):
    if value is None:
        return None
    return decode(type(value), encode(value))
