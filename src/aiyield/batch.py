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


# Join state <-> keys. Deployments, branches and credit aggregates are keys of their own (key builder, stored type).
_KINDS: dict[str, tuple[Callable[..., str], type]] = {
    "deployments": (keys.join_deployment, crediting.DeploymentState),
    "branches": (keys.join_branch, crediting.BranchState),
    "credits": (keys.join_credit, crediting.CreditState),
}
#: Kept as fields of per-epoch hashes (stored type).
_EPOCH_KINDS: dict[str, type] = {"tasks": crediting.TaskState, "commits": crediting.CommitState}


class _Epochs:
    """Where tasks and commits live: the state that grows with pending work.

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

    def expiry_of(self, ts: float) -> int:
        return self.expiry(self.of(ts))

    @staticmethod
    def field(kind: str, ref: tuple, epoch: int) -> tuple[str, str | bytes]:
        if kind == "tasks":
            return keys.join_task(*ref, epoch)
        repo, sha = ref
        return keys.join_commits(repo, epoch), keys.commit_field(sha)

    def reads(self, kind: str, refs) -> dict[tuple[str, str | bytes], tuple[tuple, int]]:
        return {self.field(kind, ref, e): (ref, e) for ref in refs for e in self.candidates}

    def load(self, kind: str, reads: dict, got: Got, into: dict) -> None:
        latest: dict[tuple, tuple[int, bytes]] = {}
        for field, (ref, epoch) in reads.items():
            raw = got.fields.get(field)
            if raw is not None and epoch >= latest.get(ref, (-1, b""))[0]:
                latest[ref] = (epoch, raw)
        for ref in {ref for ref, _e in reads.values()}:
            if ref in latest:
                epoch, raw = latest[ref]
                self.found[(kind, ref)] = epoch
                into[ref] = crediting.decode(_EPOCH_KINDS[kind], raw)
            else:
                into[ref] = None

    def write(self, writes: Writes, kind: str, ref: tuple, value: bytes, newest: float) -> None:
        home = self.of(newest)
        for epoch in {home, self.found.get((kind, ref), home)}:
            key, name = self.field(kind, ref, epoch)
            writes.fields[(key, name)] = value if epoch == home else None
            writes.hash_expiry[key] = max(writes.hash_expiry.get(key, 0), self.expiry(epoch))


def _reads(need: Need, epochs: _Epochs) -> tuple[Read, dict]:
    """The store reads answering a `Need`, and how to map their answers back."""
    named = {_KINDS[kind][0](*ref): (kind, ref) for kind in _KINDS for ref in getattr(need, kind)}
    epoch_reads = {kind: epochs.reads(kind, getattr(need, kind)) for kind in _EPOCH_KINDS}
    ranges = {(keys.join_pushes(repo, branch), lo, hi): (repo, branch, lo, hi) for repo, branch, lo, hi in need.ranges}
    members = {(keys.join_task_commits(team, task_id), member): (team, task_id, member) for team, task_id, member in need.members}
    abbreviations = {(keys.join_abbreviations(repo), abbr): (repo, abbr) for repo, abbr in need.abbreviations}
    lex = {
        (keys.join_shas(repo, e), abbr, crediting.PREFIX_CANDIDATES + 1): (repo, abbr)
        for repo, abbr in need.prefixes for e in epochs.candidates
    }
    whole = {keys.join_task_commits(*ref): ref for ref in need.task_commits}
    read = Read(
        keys=tuple(named),
        fields=(*(f for reads in epoch_reads.values() for f in reads), *members, *abbreviations),
        ranges=tuple(ranges),
        lex=tuple(lex),
        hashes=tuple(whole),
    )
    return read, {"named": named, "epochs": epoch_reads, "ranges": ranges, "members": members,
                  "abbreviations": abbreviations, "lex": lex, "whole": whole}


def _loaded(got: Got, maps: dict, epochs: _Epochs) -> Loaded:
    loaded = Loaded()
    for key, (kind, ref) in maps["named"].items():
        raw = got.values.get(key)
        getattr(loaded, kind)[ref] = crediting.decode(_KINDS[kind][1], raw) if raw is not None else None
    for kind, reads in maps["epochs"].items():
        epochs.load(kind, reads, got, getattr(loaded, kind))
    for rng, ref in maps["ranges"].items():
        loaded.ranges[ref] = [member.split(b"@", 1)[0].decode() for member in got.ranges.get(rng, [])]
    for field, ref in maps["members"].items():
        loaded.members[ref] = got.fields.get(field) is not None
    for field, ref in maps["abbreviations"].items():
        raw = got.fields.get(field)
        loaded.abbreviations[ref] = msgspec.msgpack.decode(raw) if raw is not None else []
    for lex, ref in maps["lex"].items():
        found = {_text(m) for m in got.lex.get(lex, [])} | set(loaded.prefixes.get(ref, ()))
        loaded.prefixes[ref] = sorted(found)[: crediting.PREFIX_CANDIDATES + 1]
    for key, ref in maps["whole"].items():
        loaded.task_commits[ref] = [tuple(_text(f).split("\0", 1)) for f in got.hashes.get(key, [])]  # type: ignore[misc]
    return loaded


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def join(decoded: Decoded, policy: Policy, now: float, caps: Caps = Caps()) -> Plan:
    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        events = [e for r in fresh for e in decoded[(r.partition, r.offset)]]
        epochs = _Epochs(policy, now)
        steps = crediting.join(events, policy)
        try:
            need = next(steps)
            while True:
                read, maps = _reads(need, epochs)
                got = yield read
                need = steps.send(_loaded(got, maps, epochs))
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
            writes.values[build(*ref)] = (crediting.encode(state), epochs.expiry_of(crediting.newest(state)))
    for kind in _EPOCH_KINDS:
        for ref, state in getattr(changes, kind).items():
            epochs.write(writes, kind, ref, crediting.encode(state), crediting.newest(state))
    for ref, added in changes.task_commits.items():
        key = keys.join_task_commits(*ref)
        for repo, sha in added:
            writes.fields[(key, crediting.member_key(repo, sha))] = b"1"
        writes.hash_expiry[key] = max(writes.hash_expiry.get(key, 0), epochs.expiry_of(changes.tasks[ref].newest))
    for (repo, branch), added in changes.pushes.items():
        newest = max(ts for ts, _sha in added)
        members = [(f"{sha}@{ts!r}".encode(), ts) for ts, sha in added]
        writes.members[keys.join_pushes(repo, branch)] = (members, epochs.expiry_of(newest), newest - policy.horizon)
    for repo, shas in changes.prefixes.items():
        for sha, first in shas:
            key = keys.join_shas(repo, epochs.of(first))
            old, expire_at, below = writes.members.get(key, ([], 0, float("-inf")))
            writes.members[key] = ([*old, (sha.encode(), 0.0)], max(expire_at, epochs.expiry_of(first)), below)
    for (repo, abbr), deploy_ids in changes.abbreviations.items():
        key = keys.join_abbreviations(repo)
        writes.fields[(key, abbr)] = msgspec.msgpack.encode(sorted(deploy_ids))
        writes.hash_expiry[key] = max(writes.hash_expiry.get(key, 0), epochs.expiry_of(now))
    return writes
