"""Normalized deployments through the real pipeline: scenarios with known answers, sent out of order."""

from __future__ import annotations

import hashlib
import random
import time
from typing import Callable

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

    def task(self, ago: float, name: str, commits: list[str], ai_lines: int | None = None, team: str | None = None,
             repo: str | None = None, status: str = "completed") -> None:
        extra = {} if ai_lines is None else {"ai_lines": ai_lines}
        self._add("task", ago, task_id=f"{self.team}-{name}", team=team or self.team, tool="claude-code", status=status,
                  repo=repo or self.repo, commits=[sha(c) for c in commits], **extra)

    def push(self, ago: float, commits: list[str], branch: str = "main", head: str | None = None,
             reverts: list[str] | None = None, forced: bool = False) -> None:
        extra = {} if head is None else {"head": sha(head)}
        if forced:
            extra["forced"] = True
        if reverts:
            extra["reverts"] = [sha(c) for c in reverts]
        self._add("push", ago, repo=self.repo, branch=branch, commits=[sha(c) for c in commits], **extra)

    def deploy(self, ago: float, deploy_id: str, env: str = "production", status: str = "succeeded",
               commits: list[str] | None = None, head: str | None = None, rollback_of: str | None = None,
               abbreviate: int = 40, repo: str | None = None) -> None:
        fields = {"deploy_id": f"{self.team}-{deploy_id}", "repo": repo or self.repo, "environment": env, "status": status}
        if commits is not None:
            fields["commits"] = [sha(c)[:abbreviate] for c in commits]
        if head is not None:
            fields["head"] = sha(head)[:abbreviate]
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
    expected["headonly"] = {"1h": 1.0}  # v3: two tasks shipped by one deployment: worth 1 to the team

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


def gaming_scenarios(now: float) -> tuple[list[dict], dict[tuple[str, str, str], float]]:
    """The attacks of issue 7, each with exact expected values: (metric, team, window) or (metric, team/reason, window)."""
    out: list[dict] = []
    nd, retracted, contested = "aiyield_normalized_deployments", "aiyield_retracted_normalized_deployments", "aiyield_contested_claims"
    expected: dict[tuple, float] = {}

    s = Scenario("pileon", now)  # 50 tasks claiming one commit earn one normalized deployment, not 50
    for i in range(50):
        s.task(1000 - i, f"t{i}", ["p1"])
    s.deploy(500, "d1", commits=["p1"])
    out += s.events
    expected[(nd, "pileon", "1h")] = 1.0
    expected[(contested, "pileon", "1h")] = 49

    s = Scenario("oneliners", now)  # 100 one-line tasks on one commit: the owner's 0.1, not 10
    for i in range(100):
        s.task(1000 - i, f"t{i}", ["o1"], ai_lines=1)
    s.deploy(500, "d1", commits=["o1"])
    out += s.events
    expected[(nd, "oneliners", "1h")] = 0.1
    expected[(contested, "oneliners", "1h")] = 99

    s = Scenario("takeover", now)  # another team reusing the task_id and the commit later takes nothing
    s.task(1000, "shared", ["k1"])
    s.task(900, "shared", ["k1"], team="takeover-thief")
    s.deploy(500, "d1", commits=["k1"])
    out += s.events
    expected[(nd, "takeover", "1h")] = 1.0
    expected[(nd, "takeover-thief", "1h")] = 0.0
    expected[(contested, "takeover-thief", "1h")] = 1

    s = Scenario("tworepos", now)  # one task reporting commits in two repos is credited once
    s.task(1000, "t", ["w1"])
    s.task(950, "t", ["w2"], repo="acme/tworepos-other")
    s.deploy(500, "d1", commits=["w1"])
    s.events.append({"type": "deployment", "id": "tworepos-other-d", "ts": now - 400, "deploy_id": "x",
                     "repo": "acme/tworepos-other", "environment": "production", "status": "succeeded",
                     "commits": [sha("w2")]})
    out += s.events
    expected[(nd, "tworepos", "1h")] = 1.0

    s = Scenario("rereport", now)  # a second report unions commits and raises ai_lines; a late one retracts nothing
    s.task(8 * 86400 - 7200, "t", ["r1"], ai_lines=5)
    s.deploy(8 * 86400 - 10800, "d1", commits=["r1"])  # an hour after the first report
    s.task(8 * 86400 - 9000, "t", ["r2"], ai_lines=10)
    s.task(12 * 3600, "t", ["r3"], ai_lines=2)  # 7.5 days after the first report
    out += s.events
    expected[(nd, "rereport", "7d")] = 0.0
    expected[(nd, "rereport", "30d")] = 1.0
    expected[(retracted, "rereport/rollback", "30d")] = None

    s = Scenario("ffmerge", now)  # after a fast-forward merge, commits already on main ship with the merged head
    s.push(1000, ["m1"])
    s.task(1100, "t1", ["m1"])
    s.push(900, ["f1"], branch="feature")
    s.task(950, "t2", ["f1"])
    s.push(700, ["f1"])  # main fast-forwarded to the feature's head
    s.deploy(600, "d1", head="f1")
    out += s.events
    expected[(nd, "ffmerge", "1h")] = 1.0  # v3: one deployment is worth at most 1 to a team

    s = Scenario("afterdeploy", now)  # a task created after a deployment cannot claim it through a redeploy
    s.deploy(2000, "d1", commits=["a1"])
    s.task(1500, "t", ["a1"])
    s.deploy(1000, "d2", commits=["a1"])
    out += s.events
    expected[(nd, "afterdeploy", "1h")] = 0.0

    s = Scenario("casing", now)  # environments match case-insensitively
    s.task(1000, "t", ["e1"])
    s.deploy(500, "d1", env="Production", commits=["e1"])
    out += s.events
    expected[(nd, "casing", "1h")] = 1.0

    s = Scenario("reverted", now)  # a revert within the survival window retracts the credit
    s.push(3600, ["v1"])
    s.task(3500, "t", ["v1"])
    s.deploy(3000, "d1", commits=["v1"])
    s.push(2000, ["v2"], reverts=["v1"])
    out += s.events
    expected[(nd, "reverted", "24h")] = 0.0
    expected[(retracted, "reverted/revert", "24h")] = 1.0

    s = Scenario("lategrevert", now)  # a revert after the survival window leaves the credit standing
    s.push(30 * 3600, ["g1"])
    s.task(29 * 3600, "t", ["g1"])
    s.deploy(28 * 3600, "d1", commits=["g1"])
    s.push(3600, ["g2"], reverts=["g1"])
    out += s.events
    expected[(nd, "lategrevert", "7d")] = 1.0
    expected[(retracted, "lategrevert/revert", "7d")] = None

    s = Scenario("rolledback", now)  # a rollback retracts at the rollback's time
    s.task(3 * 3600, "t", ["b1"], ai_lines=5)
    s.deploy(2 * 3600, "d1", commits=["b1"])
    s.deploy(1800, "d1", status="rolled_back")
    out += s.events
    expected[(nd, "rolledback", "24h")] = 0.0
    expected[(retracted, "rolledback/rollback", "1h")] = 0.5  # the rollback was half an hour ago
    expected[(retracted, "rolledback/rollback", "24h")] = 0.5

    s = Scenario("stagingrb", now)  # `rollback_of` from a staging deployment does not touch production
    s.task(1000, "t", ["s1"])
    s.deploy(900, "d1", commits=["s1"])
    s.deploy(800, "d2", env="staging", commits=["s0"], rollback_of="d1")
    out += s.events
    expected[(nd, "stagingrb", "1h")] = 1.0
    expected[(retracted, "stagingrb/rollback", "1h")] = None

    # --- v3 (issue 17) ---

    s = Scenario("split", now)  # one 50-line change cut into five 10-line tasks earns what one task earns: 1
    for i in range(5):
        s.task(1000, f"p{i}", [f"sp{i}"], ai_lines=10)
    s.deploy(500, "d1", commits=[f"sp{i}" for i in range(5)])
    out += s.events
    expected[(nd, "split", "1h")] = 1.0

    s = Scenario("trailers", now)  # 50 AI co-author trailer commits without lines, one deployment: 1, not 50
    for i in range(50):
        s.task(1000, f"c{i}", [f"tr{i}"])
    s.deploy(500, "d1", commits=[f"tr{i}" for i in range(50)])
    s.task(3000, "small", ["ts1"], ai_lines=3)  # a small change in a deployment of its own: 0.3
    s.deploy(2500, "d2", commits=["ts1"])
    out += s.events
    expected[(nd, "trailers", "1h")] = 1.3

    s = Scenario("abbrev", now)  # a short SHA names the full SHA pushed before the deployment, whatever the order
    s.task(1000, "t", ["ab1"])
    s.push(900, ["ab1"])
    s.deploy(500, "d1", commits=["ab1"], abbreviate=7)
    s.task(1000, "u", ["ab2"])  # never pushed: the short SHA names nothing
    s.deploy(400, "d2", commits=["ab2"], abbreviate=8)
    out += s.events
    expected[(nd, "abbrev", "1h")] = 1.0

    s = Scenario("oneanswer", now)  # two succeeded reports of one deploy_id with other commits: the first stands
    s.task(1000, "t", ["oa1"])
    s.task(1000, "u", ["oa2"])
    s.deploy(500, "d1", commits=["oa1"])
    s.deploy(400, "d1", commits=["oa2"])  # later, other commits: contested, changes nothing
    s.deploy(300, "d1", commits=["oa1"])  # identical: a duplicate
    out += s.events
    expected[(nd, "oneanswer", "1h")] = 1.0
    expected[(contested, "unassigned", "1h")] = 1

    s = Scenario("laterreport", now)  # a later report with ai_lines 0, or an earlier `started`, lowers nothing
    s.task(3600, "t", ["lr1"], ai_lines=8)
    s.deploy(1800, "d1", commits=["lr1"])
    s.task(900, "t", ["lr1"], ai_lines=0)
    s.task(7.9 * 86400, "t", [], status="started")  # 7.9 days before the deployment: still in the task's window
    out += s.events
    expected[(nd, "laterreport", "1h")] = 0.8

    s = Scenario("forced", now)  # commits force-pushed away before a head-only deployment do not ship
    s.task(1000, "gone", ["fo1"])
    s.task(1000, "kept", ["fo3"], ai_lines=4)
    s.push(900, ["fo1", "fo2"])
    s.push(800, ["fo3"], forced=True)
    s.deploy(500, "d1", head="fo3")
    out += s.events
    expected[(nd, "forced", "1h")] = 0.4

    s = Scenario("repocase", now)  # a plugin's `Acme/RepoCase` and the CD tool's `acme/repocase` are one repo
    s.task(1000, "t", ["rc1"], repo="Acme/RepoCASE")
    s.deploy(500, "d1", commits=["rc1"], repo="acme/repocase")
    out += s.events
    expected[(nd, "repocase", "1h")] = 1.0

    s = Scenario("poison", now)  # a task no counter can hold is rejected; the events after it are credited
    s._add("task", 1000, task_id="poison-x", team="poison", tool="claude-code", status="completed", repo=s.repo,
           commits=[sha("z0")], ai_lines=18446744073709551616)
    s.task(900, "t", ["z1"])
    s.deploy(500, "d1", commits=["z0", "z1"])
    out += s.events
    expected[(nd, "poison", "1h")] = 1.0
    return out, expected


def _settle(mismatches: Callable[[], list]) -> None:
    """Wait for no mismatch (failing with the mismatches themselves), then check nothing moves a moment later."""
    try:
        wait_for(lambda: not mismatches(), 60, "the expected values")
    except AssertionError:
        assert mismatches() == []
    time.sleep(2)


def _labels(metric: str, who: str, window: str) -> tuple:
    if metric == "aiyield_retracted_normalized_deployments":
        team, reason = who.split("/")
        return tuple(sorted({"team": team, "reason": reason, "window": window}.items()))
    return tuple(sorted({"team": who, "window": window}.items()))


def test_gaming_attempts_earn_nothing_extra(pipeline):
    now = time.time()
    events, expected = gaming_scenarios(now)
    valid = len(events) - 1  # the poison task
    random.Random(7).shuffle(events)
    pipeline.start_worker()
    for i in range(0, len(events), 13):
        pipeline.send(events[i : i + 13])
    pipeline.send(events[::5])  # duplicates

    def mismatches() -> list:
        m = pipeline.metrics()
        wrong = []
        for (metric, who, window), value in expected.items():
            found = m.get((metric, _labels(metric, who, window)))
            if (found is None) != (value is None) or (value is not None and abs(found - value) > 1e-9):
                wrong.append((metric, who, window, found, value))
        return wrong

    accepted = lambda: sum(pipeline.events_total(t, "accepted") for t in ("task", "push", "deployment"))  # noqa: E731
    wait_for(lambda: accepted() == valid, 60, "every valid event to be accepted")
    wait_for(lambda: pipeline.events_total("task", "invalid") == 1, 60, "the poison task to be counted invalid")
    _settle(mismatches)
    assert mismatches() == []
    # The poison task is on the dead-letter topic with its reason.
    reasons = [item["reason"] for item in pipeline.dead_letters(1)]
    assert len(reasons) == 1 and "ai_lines" in reasons[0] and "9007199254740991" in reasons[0]


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
    _settle(mismatches)
    assert mismatches() == []
    m = pipeline.metrics()

    def shipped(team: str) -> float | None:
        return m.get(("aiyield_tasks", (("status", "shipped"), ("team", team), ("tool", "claude-code"), ("window", "1h"))))

    assert shipped("headonly") == 2 and shipped("redeploy") == 1 and shipped("rollback") == 1
    assert shipped("never") in (None, 0)
    assert m.get(("aiyield_cost_per_normalized_deployment_usd", (("team", "inorder"), ("window", "1h")))) == 4.0
    assert ("aiyield_cost_per_normalized_deployment_usd", (("team", "never"), ("window", "1h"))) not in m
