"""Join cost against history and fan-in: does crediting one new event depend on how much the repo already holds, on
how many commits its task has, or on how many tasks claim its commit?

    .venv/bin/python bench/join.py [--tasks 100000] [--pushes 20000] [--deployments 200] [--repeat 20] [--fan 10000]

Runs the worker's real join plan (`aiyield.batch.join`) through the real store (`RedisStore.transact`, WATCH/MULTI
with offsets) on an embedded Valkey. Preloads one repo with pending tasks (their commits not deployed yet), pushes
to `main` and live head-only production deployments anchored on it; then times new batches — a task, a push, a
head-only deployment (shipping the commits pushed since the previous one), and a 1,000-event mix — on that repo and
on an empty one. Reports milliseconds per batch (median of --repeat runs) and Redis bytes of state per pending task.

Fan-in (contract v3 §2): in the loaded repo, a task of --fan commits (reported 1,000 at a time), a re-report of one
of its commits and of all of them, a deployment of one of its commits, and a commit claimed by --fan tasks, touched
by one more claim and by a deployment; each beside the same work on a one-commit task or a one-claimant commit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time

import msgspec
import redis

from aiyield import batch
from aiyield.core.crediting import Policy
from aiyield.core.events import Event
from aiyield.embedded import embedded_services
from aiyield.store import Consumed, RedisStore

POLICY = Policy()
NOW = time.time()
DAY = 86400.0


def sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def event(**fields) -> Event:
    return msgspec.convert(fields, Event)  # type: ignore[arg-type]


class Bench:
    def __init__(self, url: str, repo: str) -> None:
        self.store = RedisStore(url)
        self.repo = repo
        self.offset = 0

    async def join(self, events: list[Event]) -> float:
        """Apply one batch as the worker does; returns seconds."""
        record = Consumed(f"join:{self.repo}", 0, self.offset, None, b"", NOW)
        self.offset += 1
        started = time.perf_counter()
        await self.store.transact("join", [record], batch.join({(0, record.offset): events}, POLICY, NOW))
        return time.perf_counter() - started

    def task(self, n: int, ts: float, commit: str, commits: list[str] | None = None, id: str | None = None) -> Event:
        return event(type="task", id=id or f"task-{self.repo}-{n}", ts=ts, task_id=f"t{n}", team=f"team{n % 20}",
                     tool="claude-code", status="completed", repo=self.repo, commits=commits or [commit], ai_lines=12)

    def push(self, n: int, ts: float, commits: list[str], branch: str = "main") -> Event:
        return event(type="push", id=f"push-{self.repo}-{n}", ts=ts, repo=self.repo, branch=branch, commits=commits)

    def deploy(self, n: int, ts: float, head: str) -> Event:
        return event(type="deployment", id=f"deploy-{self.repo}-{n}", ts=ts, deploy_id=f"d{n}", repo=self.repo,
                     environment="production", status="succeeded", head=head)


async def preload(bench: Bench, tasks: int, pushes: int, deployments: int, client: redis.Redis) -> float:
    """History spread over six days ending a day ago; returns bytes of state per pending task."""
    start = NOW - 7 * DAY
    step = 6 * DAY / pushes
    every = max(1, pushes // deployments)
    chunk: list[Event] = []
    for i in range(pushes):
        ts = start + i * step
        chunk.append(bench.push(i, ts, [sha(bench.repo, "main", i)]))
        if i % every == every - 1:
            chunk.append(bench.deploy(i, ts + 1, sha(bench.repo, "main", i)))
        if len(chunk) >= 1000:
            await bench.join(chunk)
            chunk = []
    if chunk:
        await bench.join(chunk)
    before = _state_bytes(client)
    for first in range(0, tasks, 1000):
        await bench.join([bench.task(n, start + n * 6 * DAY / tasks, sha(bench.repo, "pending", n))
                          for n in range(first, min(tasks, first + 1000))])
        print(f"\r  preloaded {min(tasks, first + 1000):,} / {tasks:,} pending tasks", end="", file=sys.stderr)
    print(file=sys.stderr)
    return (_state_bytes(client) - before) / max(tasks, 1)


def _state_bytes(client: redis.Redis) -> int:
    """Redis memory without client buffers (a large pipeline's buffers are not state)."""
    memory = client.info("memory")
    return memory["used_memory"] - memory.get("mem_clients_normal", 0)


async def measure(bench: Bench, repeat: int) -> dict[str, float]:
    """Median milliseconds per batch kind; each run uses fresh ids and commits, after the preloaded history."""
    times: dict[str, list[float]] = {"task": [], "push": [], "deployment": [], "mix of 1,000": []}
    base = 10_000_000
    for r in range(repeat):
        n = base + r * 10_000
        ts = NOW - 3600 + r
        commit = sha(bench.repo, "new", n)
        times["task"].append(await bench.join([bench.task(n, ts, commit)]))
        times["push"].append(await bench.join([bench.push(n, ts + 1, [commit])]))
        times["deployment"].append(await bench.join([bench.deploy(n, ts + 2, commit)]))
        mix: list[Event] = []
        for k in range(1, 501):
            c = sha(bench.repo, "mix", n, k)
            mix += [bench.task(n + k, ts, c)]
            if k % 2 == 0:  # on a branch of its own, so the next round's deployment on main ships only its commit
                mix.append(bench.push(n + k, ts + 1, [c], branch=f"mix-{r}"))
        mix += [bench.deploy(n + 10_000 - 1 - k, ts + 2, sha(bench.repo, "mix", n, 500 - 2 * k)) for k in range(250)]
        times["mix of 1,000"].append(await bench.join(mix))
    return {kind: statistics.median(values) * 1000 for kind, values in times.items()}


async def fan_in(bench: Bench, fan: int, repeat: int) -> list[tuple[str, float, float]]:
    """(work, ms on a large task or a many-claimant commit, ms of the same work at size one)."""
    ts = NOW - 2 * 3600
    big = [sha(bench.repo, "big", i) for i in range(fan)]
    reports = [bench.task(90_000_000, ts, "", big[i:i + 1000], id=f"big-{i}") for i in range(0, fan, 1000)]
    started = time.perf_counter()
    for report in reports:
        await bench.join([report])
    big_fold = (time.perf_counter() - started) * 1000 / max(1, fan // 1000)
    small = [sha(bench.repo, "small", i) for i in range(1000)]
    small_fold = await bench.join([bench.task(90_000_001, ts, "", small)]) * 1000
    shared = sha(bench.repo, "shared")
    for first in range(0, fan, 1000):
        await bench.join([bench.task(91_000_000 + n, ts + n, shared) for n in range(first, min(fan, first + 1000))])
    lone = sha(bench.repo, "lone")
    await bench.join([bench.task(92_000_000, ts, lone)])
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in (
        "re-report one commit", "deploy one commit", "claim a commit again",
        "deploy a claimed commit")}
    for r in range(repeat):
        rid = f"again-{r}"
        out["re-report one commit"].append((
            await bench.join([bench.task(90_000_000, ts, big[r], id=rid)]),
            await bench.join([bench.task(92_000_000, ts, lone, id=rid)])))
        out["deploy one commit"].append((
            await bench.join([bench.deploy(95_000_000 + r, ts + 60, big[fan - 1 - r])]),
            await bench.join([bench.deploy(96_000_000 + r, ts + 60, small[999 - r])])))
        out["claim a commit again"].append((
            await bench.join([bench.task(93_000_000 + r, ts + 10, shared)]),
            await bench.join([bench.task(94_000_000 + r, ts + 10, lone)])))
        out["deploy a claimed commit"].append((
            await bench.join([bench.deploy(97_000_000 + r, ts + 100 + r, shared)]),
            await bench.join([bench.deploy(98_000_000 + r, ts + 100 + r, lone)])))
    every = [bench.task(90_000_000, ts, "", big[i:i + 1000], id=f"all-{i}") for i in range(0, fan, 1000)]
    started = time.perf_counter()
    for report in every:
        await bench.join([report])
    re_all = (time.perf_counter() - started) * 1000 / max(1, fan // 1000)
    re_small = await bench.join([bench.task(90_000_001, ts, "", small, id="all-small")]) * 1000
    rows = [("task: 1,000 commits folded", big_fold, small_fold), ("task: 1,000 commits re-reported", re_all, re_small)]
    for kind, pairs in out.items():
        rows.append((kind, statistics.median(p[0] for p in pairs) * 1000, statistics.median(p[1] for p in pairs) * 1000))
    return rows


async def run(args: argparse.Namespace) -> None:
    with embedded_services(want_kafka=False) as svc:
        client = redis.Redis.from_url(svc.redis)
        empty = Bench(svc.redis, "acme/empty")
        loaded = Bench(svc.redis, "acme/monorepo")
        print(f"preloading {args.tasks:,} pending tasks, {args.pushes:,} pushes, {args.deployments} head-only "
              "deployments ...", file=sys.stderr)
        per_task = await preload(loaded, args.tasks, args.pushes, args.deployments, client)
        await measure(Bench(svc.redis, "acme/warm-up"), 3)  # connections, scripts, allocator: not the repo's cost
        cold = await measure(empty, args.repeat)
        hot = await measure(loaded, args.repeat)
        print(f"\nbytes of Redis state per pending task: {per_task:.0f}")
        print(f"{'batch':<16}{'empty repo ms':>16}{'loaded repo ms':>16}{'ratio':>8}")
        for kind in cold:
            print(f"{kind:<16}{cold[kind]:>16.2f}{hot[kind]:>16.2f}{hot[kind] / cold[kind]:>8.2f}")
        print(f"\nfan-in in the loaded repo: a task of {args.fan:,} commits, a commit of {args.fan:,} claimants", file=sys.stderr)
        rows = await fan_in(loaded, args.fan, args.repeat)
        print(f"\n{'work':<34}{'at size ' + format(args.fan, ','):>16}{'baseline':>14}{'ratio':>8}")
        for kind, heavy, light in rows:
            print(f"{kind:<34}{heavy:>16.2f}{light:>14.2f}{heavy / light:>8.2f}")
        await empty.store.close()
        await loaded.store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--pushes", type=int, default=20_000)
    ap.add_argument("--deployments", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--fan", type=int, default=10_000, help="Commits of the large task, claimants of the shared commit.")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
