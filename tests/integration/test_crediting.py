"""Normalized deployments through the real pipeline: scenarios with known answers, sent out of order."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.integration

H = 3600


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


class Scenario:
    def __init__(self, team: str, now: float) -> None:
        self.team, self.repo, self.now, self.events = team, f"acme/{team}", now, []

    def _add(self, kind: str, ago: float, **fields) -> None:
        self.events.append({"type": kind, "id": f"{self.team}-{len(self.events)}", "ts": self.now - ago, **fields})

    def task(self, ago: float, name: str, commits: list[str], ai_lines: int | None = None) -> None:
        extra = {} if ai_lines is None else {"ai_lines": ai_lines}
        self._add("task", ago, task_id=f"{self.team}-{name}", team=self.team, tool="claude-code", status="completed",
                  repo=self.repo, commits=[sha(c) for c in commits], **extra)

    def push(self, ago: float, commits: list[str], branch: str = "main") -> None:
        self._add("push", ago, repo=self.repo, branch=branch, commits=[sha(c) for c in commits])

    def deploy(self, ago: float, deploy_id: str, env: str = "production", status: str = "succeeded",
               commits: list[str] | None = None, head: str | None = None, rollback_of: str | None = None) -> None:
        fields = {"deploy_id": f"{self.team}-{deploy_id}", "repo": self.repo, "environment": env, "status": status}
        if commits is not None:
            fields["commits"] = [sha(c) for c in commits]
        if head is not None:
            fields["head"] = sha(head)
        if rollback_of is not None:
            fields["rollback_of"] = f"{self.team}-{rollback_of}"
        self._add("deployment", ago, **fields)


def scenarios(now: float) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Events and the expected normalized deployments per team and window."""
    out, expected = [], {}

    s = Scenario("inorder", now)  # task, push, deployment in order; 5 AI lines = half a deployment
    s.task(600, "t", ["c1"], ai_lines=5)
    s.push(500, ["c1"])
    s.deploy(400, "d1", head="c1")
    s._add("token", 300, team="inorder", tool="claude-code", model="claude-sonnet-4", input_tokens=1, output_tokens=1,
           cost_usd=2.0)
    out += s.events
    expected["inorder"] = {"1h": 0.5, "24h": 0.5}

    s = Scenario("late", now)  # the deployment is reported before the task that it ships
    s.deploy(400, "d1", commits=["c2"])
    s.task(600, "t", ["c2"], ai_lines=30)
    out += s.events
    expected["late"] = {"1h": 1.0}

    s = Scenario("headonly", now)  # head-only deployment, expanded from the push (which arrives after it)
    s.deploy(100, "d1", head="a3")
    s.push(300, ["a1", "a2", "a3"])
    s.push(200, ["x1"], branch="feature")  # another branch: not deployed by main's head
    s.task(400, "t1", ["a1"])
    s.task(400, "t2", ["a2"], ai_lines=20)
    s.task(400, "t3", ["x1"])
    out += s.events
    expected["headonly"] = {"1h": 2.0}

    s = Scenario("redeploy", now)  # redeploys and a second production environment add nothing
    s.task(900, "t", ["c4"])
    s.deploy(800, "d0", env="staging", commits=["c4"])
    s.deploy(700, "d1", commits=["c4"])
    s.deploy(600, "d2", commits=["c4"])
    s.deploy(500, "d3", env="prod", commits=["c4"])
    out += s.events
    expected["redeploy"] = {"1h": 1.0}

    s = Scenario("rollback", now)  # rolled back within the survival window, shipped again later
    s.task(1500, "t", ["c5"])
    s.deploy(1000, "d1", commits=["c5"])
    s.deploy(900, "d1", status="rolled_back")
    s.task(1500, "u", ["c6"])
    s.deploy(800, "d2", commits=["c6"])
    s.deploy(700, "d3", commits=["c0"], rollback_of="d2")  # a rollback by redeploying an older commit
    s.deploy(300, "d4", commits=["c5"])  # ships c5 again: credit at d4's time
    out += s.events
    expected["rollback"] = {"1h": 1.0}

    s = Scenario("survived", now)  # rolled back after the survival window: the credit stands
    s.task(27 * H, "t", ["c7"])
    s.deploy(26 * H, "d1", commits=["c7"])
    s.deploy(1 * H, "d1", status="rolled_back")
    out += s.events
    expected["survived"] = {"1h": 0.0, "24h": 0.0, "7d": 1.0, "30d": 1.0}

    s = Scenario("never", now)  # completed, deployed to staging and failed in production: never shipped
    s.task(600, "t", ["c8"])
    s.deploy(500, "d1", env="staging", commits=["c8"])
    s.deploy(400, "d2", status="failed", commits=["c8"])
    out += s.events
    expected["never"] = {"1h": 0.0, "30d": 0.0}
    return out, expected


def test_scenarios_give_exact_normalized_deployments(pipeline):
    now = time.time()
    events, expected = scenarios(now)
    random.Random(3).shuffle(events)
    pipeline.start_worker()
    for i in range(0, len(events), 7):  # many small batches, in shuffled order
        pipeline.send(events[i : i + 7])
    pipeline.send(events[:10])  # and some duplicates

    def mismatches() -> list:
        m = pipeline.metrics()
        found = [
            (team, window, m.get(("aiyield_normalized_deployments", (("team", team), ("window", window)))), value)
            for team, windows in expected.items()
            for window, value in windows.items()
        ]
        return [f for f in found if f[2] is None or abs(f[2] - f[3]) > 1e-9]

    # Everything ingested, then every expected value reached; then still the same a moment later (nothing more
    # arrives to change it: no double credit from the duplicates or late join records).
    wait_for(lambda: pipeline.events_total("task", "accepted") + pipeline.events_total("deployment", "accepted")
             + pipeline.events_total("push", "accepted") + pipeline.events_total("token", "accepted") == len(events),
             60, "every event to be accepted")
    wait_for(lambda: not mismatches(), 60, "the expected normalized deployments")
    time.sleep(2)
    assert mismatches() == []
    m = pipeline.metrics()

    def shipped(team: str) -> float | None:
        return m.get(("aiyield_tasks", (("status", "shipped"), ("team", team), ("tool", "claude-code"), ("window", "1h"))))

    assert shipped("headonly") == 2 and shipped("redeploy") == 1 and shipped("rollback") == 1
    assert shipped("never") in (None, 0)
    assert m.get(("aiyield_cost_per_normalized_deployment_usd", (("team", "inorder"), ("window", "1h")))) == 4.0
    assert ("aiyield_cost_per_normalized_deployment_usd", (("team", "never"), ("window", "1h"))) not in m
