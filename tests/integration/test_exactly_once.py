"""A worker SIGKILLed mid-stream and restarted leaves every counter exactly right."""

from __future__ import annotations

import hashlib
import re
import signal
import time

import pytest

from aiyield import keys
from aiyield.core.windows import SEP

from .conftest import wait_for

pytestmark = pytest.mark.integration

EVENTS = 40_000
DUPLICATES = 2_000
REPOS = 150


def workload(now: int, n_events: int = EVENTS, duplicates: int = DUPLICATES, repos: int = REPOS) -> list[dict]:
    """Token events (with re-sent duplicates) and, per repo, a task that ships: the fault tests' workload too."""
    events = [
        {
            "type": "token", "id": f"e{i}", "ts": now - (i % 3000), "team": f"team-{i % 4}", "tool": "claude-code",
            "model": "claude-sonnet-4", "input_tokens": 10 + i % 7, "output_tokens": 3, "cost_usd": 0.001,
            "developer": f"dev-{i % 50}",
        }
        for i in range(n_events)
    ]
    # Re-sent events, interleaved: each must count once as a duplicate and add nothing.
    for j in range(duplicates):
        events.insert(j * 20 + 10, dict(events[j * 20]))
    # Work that ships: per repo a task, its push and a head-only production deployment, spread through the stream
    # so the join runs (and is killed) mid-stream too.
    for r in range(repos):
        commit = hashlib.sha1(f"c{r}".encode()).hexdigest()
        repo = f"acme/repo-{r}"
        shipped = [
            {"type": "task", "id": f"task-{r}", "ts": now - 60, "task_id": f"T{r}", "team": f"team-{r % 4}",
             "tool": "claude-code", "status": "completed", "repo": repo, "commits": [commit]},
            {"type": "push", "id": f"push-{r}", "ts": now - 50, "repo": repo, "branch": "main", "commits": [commit]},
            {"type": "deployment", "id": f"dep-{r}", "ts": now - 40, "deploy_id": f"D{r}", "repo": repo,
             "environment": "production", "status": "succeeded", "head": commit},
        ]
        for k, event in enumerate(shipped):
            events.insert((r * 3 + k) * len(events) // (repos * 3 + 1), event)
    return events


def accepted(pipeline) -> int:
    return int(pipeline.redis.hget(keys.EVENTS_TOTAL, f"token{SEP}accepted") or 0)


def assignments(pipeline, worker: int) -> list[set[int]]:
    """The partitions of the events topic faust assigned to one worker, in order, from its log tables
    (rows like `| <namespace>aiyield.events | {0, 2} |` or `{0-3}`)."""
    found = []
    log = (pipeline.logdir / f"worker-{worker}.log").read_text(errors="replace")
    for match in re.finditer(rf"\| {re.escape(pipeline.settings.events_topic)} +\| \{{([0-9, -]+)\}}", log):
        partitions: set[int] = set()
        for part in match.group(1).split(","):
            low, _, high = part.strip().partition("-")
            partitions.update(range(int(low), int(high or low) + 1))
        found.append(partitions)
    return found


def credited(pipeline) -> float:
    return sum(
        v for (name, labels), v in pipeline.metrics().items()
        if name == "aiyield_normalized_deployments" and ("window", "30d") in labels
    )


def expected_input_tokens(n_events: int = EVENTS) -> int:
    return sum(10 + i % 7 for i in range(n_events))


def assert_exact(pipeline, n_events: int = EVENTS, duplicates: int = DUPLICATES, repos: int = REPOS) -> None:
    assert pipeline.events_total("token", "accepted") == n_events
    assert pipeline.events_total("token", "duplicate") == duplicates
    m = pipeline.metrics()
    spend = sum(v for (name, labels), v in m.items() if name == "aiyield_spend_usd" and ("window", "30d") in labels)
    assert spend == pytest.approx(n_events * 0.001, abs=1e-9)
    tokens = sum(
        v for (name, labels), v in m.items()
        if name == "aiyield_tokens" and ("window", "30d") in labels and ("type", "input") in labels
    )
    assert tokens == expected_input_tokens(n_events)
    devs = sum(v for (name, labels), v in m.items() if name == "aiyield_active_developers" and ("window", "30d") in labels)
    assert devs == len({(i % 4, i % 50) for i in range(n_events)})  # distinct developers per team, summed
    nd = sum(v for (name, labels), v in m.items() if name == "aiyield_normalized_deployments" and ("window", "30d") in labels)
    assert nd == repos
    shipped = sum(
        v for (name, labels), v in m.items()
        if name == "aiyield_tasks" and ("window", "30d") in labels and ("status", "shipped") in labels
    )
    assert shipped == repos
    # The processing-time counters (contract v3 §3) are written in the same transaction: just as exact.
    total = lambda name, **want: sum(  # noqa: E731
        v for (n, labels), v in m.items() if n == name and all((k, w) in labels for k, w in want.items())
    )
    assert total("aiyield_spend_usd_total") == pytest.approx(n_events * 0.001, abs=1e-9)
    assert total("aiyield_tokens_total", type="input") == expected_input_tokens(n_events)
    assert total("aiyield_normalized_deployments_total") == repos
    assert total("aiyield_tasks_total", status="shipped") == repos
    assert total("aiyield_deployments_total", environment="production", status="succeeded") == repos


@pytest.mark.parametrize("kills", [1, 3])
def test_sigkill_mid_stream_neither_loses_nor_double_counts(isolated_env, tmp_path, kills):
    from .conftest import Pipeline

    # Small batches: many transactions, so a kill lands between and inside them.
    pipeline = Pipeline({**isolated_env, "AIYIELD_BATCH_MESSAGES": "3"}, tmp_path)
    try:
        pipeline.send(workload(int(time.time())))
        for k in range(kills):
            worker = pipeline.start_worker()
            floor = accepted(pipeline)
            wait_for(lambda: accepted(pipeline) > floor, 90, "the worker to make progress")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            assert accepted(pipeline) < EVENTS, "the kill came too late to be mid-stream"
        pipeline.start_worker()
        wait_for(lambda: accepted(pipeline) >= EVENTS and credited(pipeline) >= REPOS, 180, "the restarted worker to finish")
        time.sleep(2)  # anything double-applied after the last event would show up here
        assert_exact(pipeline)
    finally:
        pipeline.close()


def test_two_workers_split_partitions_and_survive_a_kill(isolated_env, tmp_path):
    from .conftest import Pipeline

    pipeline = Pipeline({**isolated_env, "AIYIELD_BATCH_MESSAGES": "3"}, tmp_path)
    try:
        first, second = pipeline.start_worker(), pipeline.start_worker()

        def split() -> list[set[int]] | None:
            latest = [assignments(pipeline, i)[-1:] for i in (0, 1)]
            if all(latest) and latest[0][0] and latest[1][0] and not latest[0][0] & latest[1][0]:
                return [latest[0][0], latest[1][0]]
            return None

        # Both in the group, holding disjoint shares, before data flows.
        shares = wait_for(split, 60, "the two workers to split the partitions")
        pipeline.send(workload(int(time.time())))
        wait_for(lambda: accepted(pipeline) > 0, 90, "progress")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert accepted(pipeline) < EVENTS, "the kill came too late to be mid-stream"
        wait_for(lambda: accepted(pipeline) >= EVENTS and credited(pipeline) >= REPOS, 180, "the survivor to take over")
        time.sleep(2)
        assert second.poll() is None
        assert assignments(pipeline, 1)[-1] == shares[0] | shares[1]  # the survivor took over the killed one's
        assert_exact(pipeline)
    finally:
        pipeline.close()
