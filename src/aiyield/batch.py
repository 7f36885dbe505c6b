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
from aiyield.core import crediting
from aiyield.core.crediting import Loaded, Need, Policy
from aiyield.core.cardinality import LABELS, Caps, admit
from aiyield.core.events import EVENT_TYPES, Event, TaskEvent, TokenEvent
from aiyield.core.measures import Measure, measure, measure_delta
from aiyield.core.windows import series
from aiyield.core.pricing import PriceTable
from aiyield.store import Consumed, Got, Plan, Read, Writes

#: Events of a record, by (partition, offset).
Decoded = Mapping[tuple[int, int], list[Event]]


def _status_key(event: Event) -> str | None:
    # A task reported completed twice (a Claude Code session that commits across several replies) is one completed
    # task: its status is counted once per task, however many events report it.
    if isinstance(event, TaskEvent) and event.status in ("completed", "abandoned"):
        return keys.seen("task", f"{event.team}\0{event.task_id}\0{event.status}")
    return None


def _labelled(event: Event) -> dict[str, str]:
    """The guarded names an event carries: team and tool (token and task events), model (token events)."""
    if isinstance(event, TokenEvent):
        return {"team": event.team, "tool": event.tool, "model": event.model}
    if isinstance(event, TaskEvent):
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


def ingest(decoded: Decoded, prices: PriceTable, now: float, caps: Caps = Caps()) -> Plan:
    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        events = [e for r in fresh for e in decoded[(r.partition, r.offset)]]
        # Identities as sent: dedup and "status counted once" must not depend on whether a name was folded.
        ids = [keys.seen("event", e.id) for e in events]
        statuses = [_status_key(e) for e in events]
        wanted = ids + [key for key in statuses if key is not None]
        got = yield Read(keys=tuple(wanted), sets=tuple(keys.names(label) for label in LABELS))
        writes = Writes()
        events = guard(events, got, caps, writes, now)
        batch_seen: set[str] = set()
        for event, key, status_key in zip(events, ids, statuses):
            if got.values.get(key) is not None or key in batch_seen:
                writes.count(event.type, "duplicate")
                continue
            batch_seen.add(key)
            writes.seen.append(key)
            writes.count(event.type, "accepted")
            writes.saw(event.type, event.ts)
            if status_key is not None:
                if got.values.get(status_key) is not None or status_key in batch_seen:
                    continue  # accepted, but this task's status was already counted
                batch_seen.add(status_key)
                writes.seen.append(status_key)
            measure(writes.rollup, event, prices, now)
        return writes

    return plan


def dead_letters(letters: Mapping[tuple[int, int], tuple[str, dict[str, int]]]) -> Plan:
    """`letters`: (dedup id, invalid items by type) of each dead-letter record."""

    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        got = yield Read(keys=tuple(keys.seen("dlq", letters[(r.partition, r.offset)][0]) for r in fresh))
        writes = Writes()
        for record in fresh:
            letter_id, by_type = letters[(record.partition, record.offset)]
            key = keys.seen("dlq", letter_id)
            if got.values.get(key) is None and key not in writes.seen:
                writes.seen.append(key)
                for event_type, n in by_type.items():
                    writes.count(event_type if event_type in EVENT_TYPES else "unknown", "invalid", n)
        return writes

    return plan


# Join state <-> keys. Each entity kind stored as a key of its own: its key builder and its stored type. Commit
# buckets are fields of their repo's hash instead (`keys.join_commits`).
_KINDS: dict[str, tuple[Callable[..., str], type]] = {
    "tasks": (keys.join_task, crediting.TaskState),
    "deployments": (keys.join_deployment, crediting.DeploymentState),
    "branches": (keys.join_branch, crediting.BranchState),
}


def join(decoded: Decoded, policy: Policy, now: float, caps: Caps = Caps()) -> Plan:
    def plan(fresh: list[Consumed]) -> Generator[Read, Got, Writes]:
        events = [e for r in fresh for e in decoded[(r.partition, r.offset)]]
        steps = crediting.join(events, policy)
        try:
            need = next(steps)
            while True:
                named = {_KINDS[kind][0](*ref): (kind, ref) for kind in _KINDS for ref in getattr(need, kind)}
                buckets = {(keys.join_commits(repo), prefix): (repo, prefix) for repo, prefix in need.buckets}
                ranges = {(keys.join_pushes(repo, branch), lo, hi): (repo, branch, lo, hi) for repo, branch, lo, hi in need.ranges}
                got = yield Read(keys=tuple(named), fields=tuple(buckets), ranges=tuple(ranges))
                need = steps.send(_loaded(named, buckets, ranges, got))
        except StopIteration as done:
            result: crediting.Result = done.value
        writes = _join_writes(result, policy, now)
        if result.deltas:
            # Teams credited here pass the same guard as at ingest (whichever admits a name first, both see it).
            got = yield Read(sets=(keys.TEAMS,))
            teams = admit({"team": got.sets.get(keys.TEAMS, set())}, caps, {"team": [d.team for d in result.deltas]})
            writes.names[keys.TEAMS] = set(teams.admitted.get("team", ()))
            if teams.overflow:
                writes.rollup.add(now, now, {series(Measure.OVERFLOW, "team"): teams.overflow["team"]})
            deltas = [dataclasses.replace(d, team=teams.name("team", d.team)) for d in result.deltas]
        else:
            deltas = []
        for delta in deltas:
            measure_delta(writes.rollup, delta, now)
        return writes

    return plan


def _loaded(named: dict[str, tuple[str, tuple]], buckets: dict[tuple, tuple], ranges: dict[tuple, tuple], got: Got) -> Loaded:
    loaded = Loaded()
    for key, (kind, ref) in named.items():
        raw = got.values.get(key)
        getattr(loaded, kind)[ref] = crediting.decode(_KINDS[kind][1], raw) if raw is not None else None
    for field, ref in buckets.items():
        raw = got.fields.get(field)
        loaded.buckets[ref] = crediting.decode(crediting.Bucket, raw) if raw is not None else []
    for rng, ref in ranges.items():
        loaded.ranges[ref] = [member.split(b"@", 1)[0].decode() for member in got.ranges.get(rng, [])]
    return loaded


def _join_writes(result: crediting.Result, policy: Policy, now: float) -> Writes:
    writes = Writes()
    # Kept a horizon past the newest event time the entity holds; never less than an hour from now, so that state
    # of old events (a replay) does not vanish before the batch that wrote it is acknowledged.
    floor = int(now) + 3600

    def expire(newest: float) -> int:
        return max(int(newest + policy.horizon), floor)

    changes = result.changes
    for kind in _KINDS:
        build = _KINDS[kind][0]
        for ref, state in getattr(changes, kind).items():
            writes.values[build(*ref)] = (crediting.encode(state), expire(crediting.newest(state)))
    for (repo, prefix), bucket in changes.buckets.items():
        writes.fields[(keys.join_commits(repo), prefix)] = (crediting.encode(bucket), expire(crediting.newest(bucket)))
    for (repo, branch), added in changes.pushes.items():
        newest = max(ts for ts, _sha in added)
        members = [(f"{sha}@{ts!r}".encode(), ts) for ts, sha in added]
        writes.members[keys.join_pushes(repo, branch)] = (members, expire(newest), newest - policy.horizon)
    return writes
