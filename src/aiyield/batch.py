"""The worker's batch rules as pure plans: what one batch of decoded records reads and writes.

Each function returns a `store.Plan`: given the batch's fresh records it yields the reads it needs and returns the
`Writes`. No I/O happens here, so the rules are unit-tested with `store.MemoryStore` and run unchanged on Redis.
- ingest: dedup by event id, a task's final status counted once per task, input metrics.
- join: crediting (`core.crediting.join`), its state mapped onto keys, its deltas onto output metrics.
- dead letters: invalid items counted once per dead-letter message.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Callable, Generator, Mapping

import msgspec

from aiyield import keys
from aiyield.core import counters, crediting
from aiyield.core.crediting import Loaded, Need, Policy
from aiyield.core.cardinality import LABELS, Caps, admit
from aiyield.core.events import EVENT_TYPES, ContextEvent, Event, TaskEvent, TokenEvent
from aiyield.core.measures import Measure, measure, measure_delta
from aiyield.core.windows import series
from aiyield.core.pricing import PriceTable
from aiyield.store import Consumed, Got, Plan, Read, Writes

#: Events of a record, by (partition, offset).
Decoded = Mapping[tuple[int, int], list[Event]]


def _status_key(event: Event) -> keys.Marker | None:
    # A task reported completed twice (a Claude Code session that commits across several replies) is one completed
    # task: its status is counted once per task, however many events report it.
    if isinstance(event, TaskEvent) and event.status in ("completed", "abandoned"):
        return keys.seen("task", f"{event.team}\0{event.task_id}\0{event.status}")
    return None


def _labelled(event: Event) -> dict[str, str]:
    """The guarded names an event carries: team and tool (token, task and context events), model (token events)."""
    if isinstance(event, TokenEvent):
        return {"team": event.team, "tool": event.tool, "model": event.model}
    if isinstance(event, (TaskEvent, ContextEvent)):
        return {"team": event.team, "tool": event.tool}
    return {}


def guard(events: list[Event], got: Got, caps: Caps, writes: Writes, now: float) -> list[Event]:
    """The cardinality guard at ingest: names beyond the caps become `other`; admitted names are stored with the
    batch, folded occurrences counted in the `overflow` measure (see `core.cardinality`)."""
    names: dict[str, list[str]] = defaultdict(list)
    for event in events:
        for label, name in _labelled(event).items():
            names[label].append(name)
    admission = admit({label: got.sets.get(keys.names(label), set()) for label in LABELS}, caps, names)
    for label, admitted in admission.admitted.items():
        writes.names.setdefault(keys.names(label), set()).update(admitted)
    if admission.overflow:
        writes.rollup.add(now, now, {series(Measure.OVERFLOW, label): n for label, n in admission.overflow.items()})
    if not admission.rename:
        return events
    return [
        msgspec.structs.replace(event, **{label: admission.name(label, name) for label, name in _labelled(event).items()})
        for event in events
    ]


def _counted(writes: Writes) -> Writes:
    """The batch's processing-time counters (`core.counters`), from everything its rollup adds."""
    plain, peaks = counters.split(writes.rollup)
    for name, amount in plain.items():
        writes.totals[name] = writes.totals.get(name, 0) + amount
    writes.peaks = peaks
    return writes


def ingest(
    decoded: Decoded, prices: PriceTable, now: float, caps: Caps = Caps(),
    is_production: Callable[[str], bool] = Policy().is_production,
) -> Plan:
    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        events = [e for r in fresh for e in decoded[(r.partition, r.offset)]]
        # Identities as sent: dedup and "status counted once" must not depend on whether a name was folded.
        ids = [keys.seen("event", e.id) for e in events]
        statuses = [_status_key(e) for e in events]
        wanted = ids + [key for key in statuses if key is not None]
        got = yield Read(seen=tuple(wanted), sets=tuple(keys.names(label) for label in LABELS))
        writes = Writes()
        events = guard(events, got, caps, writes, now)
        known = got.seen
        batch_seen: set[keys.Marker] = set()
        for event, key, status_key in zip(events, ids, statuses):
            if key in known or key in batch_seen:
                writes.count(event.type, "duplicate")
                continue
            batch_seen.add(key)
            writes.seen.append(key)
            writes.count(event.type, "accepted")
            writes.saw(event.type, event.ts)
            if status_key is not None:
                if status_key in known or status_key in batch_seen:
                    continue  # accepted, but this task's status was already counted
                batch_seen.add(status_key)
                writes.seen.append(status_key)
            measure(writes.rollup, event, prices, now)
            deployment = counters.deployment(event, is_production)
            if deployment is not None:
                writes.totals[deployment] = writes.totals.get(deployment, 0) + 1
        return _counted(writes)

    return plan


def dead_letters(letters: Mapping[tuple[int, int], tuple[str, dict[str, int]]]) -> Plan:
    """`letters`: (dedup id, invalid items by type) of each dead-letter record."""

    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        got = yield Read(seen=tuple(keys.seen("dlq", letters[(r.partition, r.offset)][0]) for r in fresh))
        writes = Writes()
        for record in fresh:
            letter_id, by_type = letters[(record.partition, record.offset)]
            key = keys.seen("dlq", letter_id)
            if key not in got.seen and key not in writes.seen:
                writes.seen.append(key)
                for event_type, n in by_type.items():
                    writes.count(event_type if event_type in EVENT_TYPES else "unknown", "invalid", n)
        return writes

    return plan


# Join state <-> keys. Deployments and branches are keys of their own (key builder, stored type).
_KINDS: dict[str, tuple[Callable[..., str], type]] = {
    "deployments": (keys.join_deployment, crediting.DeploymentState),
    "branches": (keys.join_branch, crediting.BranchState),
}


class _Epochs:
    """Where tasks and commit buckets live: the state that grows with pending work.

    Each is a field of a hash of its *epoch* (its newest event time // half the horizon), and each hash expires as
    a whole a horizon after its epoch ends: no per-key or per-field expiry to pay for (~60 bytes each). A lookup
    reads the epochs that can still exist at `now`; an entity whose newest time moves to a later epoch is moved.
    """

    def __init__(self, policy: Policy, now: float) -> None:
        self.length = policy.horizon / 2
        self.horizon = policy.horizon
        self.now = now
        self.candidates = range(self.of(now - policy.horizon), self.of(now + self.length) + 1)
        self.found: dict[tuple, int] = {}  # entity -> epoch it was read from

    def of(self, ts: float) -> int:
        return int(ts // self.length)

    def expiry(self, epoch: int) -> int:
        # Never less than an hour from now: state of old events (a replay) must outlive the batch that wrote it.
        return max(int((epoch + 1) * self.length + self.horizon), int(self.now) + 3600)

    @staticmethod
    def field(kind: str, ref: tuple, epoch: int) -> tuple[str, str | bytes]:
        if kind == "tasks":
            return keys.join_task(*ref, epoch)
        repo, prefix = ref
        return keys.join_commits(repo, epoch), prefix

    def reads(self, kind: str, refs) -> dict[tuple[str, str | bytes], tuple[tuple, int]]:
        return {self.field(kind, ref, e): (ref, e) for ref in refs for e in self.candidates}

    def load(self, kind: str, reads: dict, got: Got, into: dict, empty, stored: type) -> None:
        latest: dict[tuple, tuple[int, bytes]] = {}
        for field, (ref, epoch) in reads.items():
            raw = got.fields.get(field)
            if raw is not None and epoch >= latest.get(ref, (-1, b""))[0]:
                latest[ref] = (epoch, raw)
        for ref in {ref for ref, _e in reads.values()}:
            if ref in latest:
                epoch, raw = latest[ref]
                self.found[(kind, ref)] = epoch
                into[ref] = crediting.decode(stored, raw)
            else:
                into[ref] = empty()

    def write(self, writes: Writes, kind: str, ref: tuple, value: bytes, newest: float) -> None:
        home = self.of(newest)
        for epoch in {home, self.found.get((kind, ref), home)}:
            key, name = self.field(kind, ref, epoch)
            writes.fields[(key, name)] = value if epoch == home else None
            writes.hash_expiry[key] = max(writes.hash_expiry.get(key, 0), self.expiry(epoch))


def join(decoded: Decoded, policy: Policy, now: float, caps: Caps = Caps()) -> Plan:
    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        events = [e for r in fresh for e in decoded[(r.partition, r.offset)]]
        epochs = _Epochs(policy, now)
        steps = crediting.join(events, policy)
        try:
            need = next(steps)
            while True:
                named = {_KINDS[kind][0](*ref): (kind, ref) for kind in _KINDS for ref in getattr(need, kind)}
                tasks = epochs.reads("tasks", need.tasks)
                buckets = epochs.reads("buckets", need.buckets)
                ranges = {(keys.join_pushes(repo, branch), lo, hi): (repo, branch, lo, hi) for repo, branch, lo, hi in need.ranges}
                got = yield Read(keys=tuple(named), fields=(*tasks, *buckets), ranges=tuple(ranges))
                loaded = Loaded()
                for key, (kind, ref) in named.items():
                    raw = got.values.get(key)
                    getattr(loaded, kind)[ref] = crediting.decode(_KINDS[kind][1], raw) if raw is not None else None
                epochs.load("tasks", tasks, got, loaded.tasks, lambda: None, crediting.TaskState)
                epochs.load("buckets", buckets, got, loaded.buckets, list, crediting.Bucket)
                for rng, ref in ranges.items():
                    loaded.ranges[ref] = [member.split(b"@", 1)[0].decode() for member in got.ranges.get(rng, [])]
                need = steps.send(loaded)
        except StopIteration as done:
            result: crediting.Result = done.value
        writes = _join_writes(result, policy, now, epochs)
        if result.deltas:
            # Teams credited here pass the same guard as at ingest (whichever admits a name first, both see it).
            got = yield Read(sets=(keys.TEAMS,))
            teams = admit({"team": got.sets.get(keys.TEAMS, set())}, caps, {"team": [d.team for d in result.deltas]})
            writes.names[keys.TEAMS] = set(teams.admitted.get("team", ()))
            if teams.overflow:
                writes.rollup.add(now, now, {series(Measure.OVERFLOW, "team"): teams.overflow["team"]})
            for delta in result.deltas:
                measure_delta(writes.rollup, dataclasses.replace(delta, team=teams.name("team", delta.team)), now)
        return _counted(writes)

    return plan


def _join_writes(result: crediting.Result, policy: Policy, now: float, epochs: _Epochs) -> Writes:
    writes = Writes()
    changes = result.changes
    for kind in _KINDS:
        build = _KINDS[kind][0]
        for ref, state in getattr(changes, kind).items():
            writes.values[build(*ref)] = (crediting.encode(state), epochs.expiry(epochs.of(crediting.newest(state))))
    for ref, task in changes.tasks.items():
        epochs.write(writes, "tasks", ref, crediting.encode(task), task.newest)
    for ref, bucket in changes.buckets.items():
        epochs.write(writes, "buckets", ref, crediting.encode(bucket), crediting.newest(bucket))
    for (repo, branch), added in changes.pushes.items():
        newest = max(ts for ts, _sha in added)
        members = [(f"{sha}@{ts!r}".encode(), ts) for ts, sha in added]
        writes.members[keys.join_pushes(repo, branch)] = (members, epochs.expiry(epochs.of(newest)), newest - policy.horizon)
    return writes
