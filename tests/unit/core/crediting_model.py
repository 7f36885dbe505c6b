"""A reference model of contract v3 §2: the credits a whole history earns, computed from the set of facts at once.

Slow and plain on purpose: no state, no increments, no indexes. The incremental join (`aiyield.core.crediting`)
must give the same totals for every history, whatever the order, batching and duplicates of its events
(tests/unit/core/test_crediting_properties.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from aiyield.core.crediting import (
    PREFIX_CANDIDATES,
    REVERT,
    ROLLBACK,
    CreditState,
    Delta,
    Policy,
    credit_outputs,
    is_full,
)
from aiyield.core.events import DeploymentEvent, Event, PushEvent, TaskEvent

Key = tuple[str, str, float, str, str]  # (kind, team, ts, tool, reason)


def totals(deltas: Iterable[Delta]) -> Counter:
    """Deltas summed per (kind, team, ts, tool, reason), zeros dropped: what the output windows hold."""
    out: Counter = Counter()
    for d in deltas:
        if d.kind == "credit":
            out[("credit", d.team, d.ts, "", "")] += d.amount
            out[("shipped", d.team, d.ts, d.tool, "")] += d.shipped
        else:
            out[(d.kind, d.team, d.ts, "", d.reason)] += d.amount
    return Counter({k: v for k, v in out.items() if v})


def reference(events: Iterable[Event], policy: Policy) -> Counter:
    events = list({e.id: e for e in events}.values())
    tasks = [e for e in events if isinstance(e, TaskEvent) and e.status != "abandoned"]
    pushes = [e for e in events if isinstance(e, PushEvent)]
    deploys = [e for e in events if isinstance(e, DeploymentEvent)]
    out: Counter = Counter()

    # Tasks: rank, window, lines, commits; owners by earliest claim.
    info: dict[tuple[str, str], dict] = {}
    for e in sorted(tasks, key=lambda e: (e.ts, e.id)):
        ref = (e.team, e.task_id)
        rank = policy.rank(e)
        t = info.setdefault(ref, {"rank": rank, "tool": e.tool, "newest": e.ts, "lines": None, "commits": set()})
        if (rank, e.tool) < (t["rank"], t["tool"]):
            t["tool"] = e.tool
        t["rank"] = min(t["rank"], rank)
        t["newest"] = max(t["newest"], e.ts)
        if e.status == "completed":
            t["lines"] = max(-1 if t["lines"] is None else t["lines"], policy.full_credit_lines if e.ai_lines is None else e.ai_lines)
            t["commits"] |= {(e.repo, s) for s in e.commits if e.repo and is_full(s)}
    owner: dict[tuple[str, str], tuple] = {}
    for ref, t in info.items():
        for c in t["commits"]:
            claim = (t["rank"], *ref)
            if c not in owner or claim < owner[c]:
                owner[c] = claim

    # Pushes.
    pushed: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    reverted: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    branch_log: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    forced: dict[tuple[str, str], list[float]] = defaultdict(list)
    for p in pushes:
        carried = [*p.commits, *([p.head] if p.head and p.head not in p.commits else [])]
        for s in carried:
            if is_full(s):
                pushed[(p.repo, s)].append((p.branch, p.ts))
                branch_log[(p.repo, p.branch)].append((p.ts, s))
        for s in p.reverts:
            if is_full(s):
                reverted[(p.repo, s)].append((p.branch, p.ts))
        if p.forced:
            forced[(p.repo, p.branch)].append(p.ts)

    # Deployments: facts, contested reports, rollbacks.
    facts: dict[tuple[str, str], DeploymentEvent] = {}
    reports: dict[tuple[str, str], list[DeploymentEvent]] = defaultdict(list)
    rollbacks: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    for d in deploys:
        env = d.environment.casefold()
        if d.status == "succeeded" and policy.is_production(env):
            ref = (d.repo, d.deploy_id)
            reports[ref].append(d)
            if ref not in facts or (policy.rank(d), d.id) < (policy.rank(facts[ref]), facts[ref].id):
                facts[ref] = d
        target = d.deploy_id if d.status == "rolled_back" else d.rollback_of if d.status == "succeeded" else None
        if target is not None:
            rollbacks[(d.repo, target)].append((d.ts, env))

    def content(d: DeploymentEvent) -> tuple:
        return (sorted(set(d.commits)), d.head)

    for ref, fact in facts.items():
        for r in reports[ref]:
            if r.id != fact.id and content(r) != content(fact):
                out[("contested", r.team or "unassigned", policy.rank(r), "", "")] += 1

    def rho(ref) -> float | None:
        fact = facts[ref]
        env = fact.environment.casefold()
        valid = [ts for ts, e in rollbacks[ref] if e == env and fact.ts <= ts <= fact.ts + policy.survival_window]
        return min(valid) if valid else None

    def resolve(repo: str, sha: str, ts: float) -> str | None:
        if is_full(sha):
            return sha
        candidates = sorted({s for (r, s) in pushed if r == repo and s.startswith(sha)})
        if len(candidates) > PREFIX_CANDIDATES:
            return None
        ok = [s for s in candidates if min(t for _b, t in pushed[(repo, s)]) <= ts]
        return ok[0] if len(ok) == 1 else None

    # Commit sets: explicit, or expanded from the head's branch.
    order = sorted(facts, key=lambda ref: (facts[ref].ts, ref[1]))
    contains: dict[tuple[str, str], set[str]] = {}
    anchors: dict[tuple[str, str], tuple[str, float]] = {}
    for ref in order:
        fact = facts[ref]
        repo = ref[0]
        if fact.commits:
            names = [*fact.commits, *([fact.head] if fact.head else [])]
            contains[ref] = {s for n in names if (s := resolve(repo, n, fact.ts))}
            continue
        head = resolve(repo, fact.head, fact.ts)  # type: ignore[arg-type]
        cands = [(t, b) for b, t in pushed.get((repo, head), []) if t <= fact.ts] if head else []
        if not cands:
            contains[ref] = {head} if head else set()
            continue
        anchor_ts, branch = max(cands)
        anchors[ref] = (branch, anchor_ts)
        lo = fact.ts - policy.join_window
        for other in order:
            if (facts[other].ts, other[1]) >= (fact.ts, ref[1]):
                break
            if other[0] == repo and anchors.get(other, ("", 0))[0] == branch and rho(other) is None:
                lo = max(lo, anchors[other][1])
        earlier_forced = [f for f in forced[(repo, branch)] if f <= anchor_ts]
        if earlier_forced:
            lo = max(lo, max(earlier_forced))
        contains[ref] = {head} | {s for t, s in branch_log[(repo, branch)] if lo <= t <= anchor_ts}

    def chain(c: tuple[str, str]) -> list[tuple[str, str]]:
        out_ = []
        for ref in order:
            if ref[0] == c[0] and c[1] in contains[ref]:
                out_.append(ref)
                if rho(ref) is None:
                    break
        return out_

    def revert_ts(c: tuple[str, str], deploy_ts: float) -> float | None:
        branches = {b for b, _ in pushed.get(c, [])}
        times = [t for b, t in reverted.get(c, []) if b in branches and t <= deploy_ts + policy.survival_window]
        return min(times) if times else None

    # Walks, aggregates, outputs.
    aggregates: dict[tuple[str, str, str], CreditState] = {}
    for ref, t in sorted(info.items()):
        owned = [c for c in t["commits"] if owner[c] == (t["rank"], *ref)]
        if t["commits"] and not owned:
            out[("contested", ref[0], t["rank"], "", "")] += 1
        candidates: dict[tuple, float | None] = {}
        for c in owned:
            for d in chain(c):
                ts = facts[d].ts
                if not t["rank"] - policy.claim_slack <= ts <= t["newest"] + policy.join_window:
                    continue
                r = revert_ts(c, ts)
                key = (ts, *d)
                prev = candidates.get(key)
                candidates[key] = r if prev is None else (prev if r is None else min(prev, r))
        lines = t["lines"] or 0
        for key in sorted(candidates):
            ts, repo, deploy_id = key
            rolled = rho((repo, deploy_id))
            rev = candidates[key]
            agg = aggregates.setdefault((ref[0], repo, deploy_id), CreditState(ts))
            if rev is not None and (rolled is None or rev < rolled):
                if rev >= ts:
                    agg.lines += lines
                    agg.reverts.append((rev, lines))
                break
            agg.lines += lines
            if rolled is None:
                out[("shipped", ref[0], ts, t["tool"], "")] += 1
                break
    for (team, repo, deploy_id), agg in aggregates.items():
        agg.reverts.sort()
        given, retracted = credit_outputs(agg, rho((repo, deploy_id)), policy)
        out[("credit", team, agg.ts, "", "")] += given
        for ts, reason, amount in retracted:
            assert reason in (REVERT, ROLLBACK)
            out[("retracted", team, ts, "", reason)] += amount
    return Counter({k: v for k, v in out.items() if v})
