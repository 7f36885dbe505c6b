"""Join cost against history: does crediting one new event depend on how much the repo already holds?

    .venv/bin/python bench/join.py [--tasks 100000] [--pushes 20000] [--deployments 200] [--repeat 20]

Runs the worker's real join plan (`aiyield.batch.join`) through the real store (`RedisStore.transact`, WATCH/MULTI
with offsets) on an embedded Valkey. Preloads one repo with pending tasks (their commits not deployed yet), pushes
to `main` and live head-only production deployments anchored on it; then times new batches — a task, a push, a
head-only deployment (shipping the commits pushed since the previous one), and a 1,000-event mix — on that repo and
on an empty one. Reports milliseconds per batch (median of --repeat runs) and Redis bytes of state per pending task.
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

    def task(self, n: int, ts: float, commit: str) -> Event:
        return event(type="task", id=f"task-{self.repo}-{n}", ts=ts, task_id=f"t{n}", team=f"team{n % 20}",
                     tool="claude-code", status="completed", repo=self.repo, commits=[commit], ai_lines=12)

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
        await empty.store.close()
        await loaded.store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--pushes", type=int, default=20_000)
    ap.add_argument("--deployments", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=20)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
