"""Crediting v3 through the running pipeline (issue 17): claims sent through the gateway with scoped tokens cannot be
stolen by dating them earlier, a repo-scoped token writes no other team's task, repo names join whatever their
case, and a busy repo's backlog is absorbed by one worker without stalling its partition."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from .conftest import wait_for
from .test_gateway import post

pytestmark = pytest.mark.integration

GRACE = 3  # seconds: the claim grace, shortened so that "arrived later than the grace" fits in a test


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def task(task_id: str, team: str, commits: list[str], ts: float, repo: str = "acme/payments", **extra) -> dict:
    return {"type": "task", "id": f"{team}-{task_id}-{ts}", "ts": ts, "task_id": task_id, "team": team,
            "tool": "claude-code", "status": "completed", "repo": repo, "commits": [sha(c) for c in commits], **extra}


def deployment(deploy_id: str, commits: list[str], ts: float, repo: str = "acme/payments") -> dict:
    return {"type": "deployment", "id": f"deploy-{deploy_id}", "ts": ts, "deploy_id": deploy_id, "repo": repo,
            "environment": "production", "status": "succeeded", "commits": [sha(c) for c in commits]}


def test_claims_dated_back_through_the_gateway_take_nothing(pipeline, tmp_path):
    org = tmp_path / "org.toml"
    org.write_text('[teams.payments]\nrepos = ["acme/pay*"]\n\n[teams.search]\nrepos = ["acme/search"]\n')
    pipeline.env["AIYIELD_CLAIM_GRACE_SECONDS"] = str(GRACE)
    pipeline.start_worker()
    url = pipeline.start_gateway(
        AIYIELD_INGEST_TOKENS="operator,pay@team=payments,search@team=search,ci@repo=acme/*", AIYIELD_ORG=str(org),
        AIYIELD_CLAIM_GRACE_SECONDS=str(GRACE),
    ) + "/v1/events"
    as_ = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    now = time.time()
    # The CD system's deployments arrive first (order does not matter), through a repo-scoped token; the plugin
    # reports the repo as its remote URL spells it.
    ships = [deployment("d1", ["c1"], now - 60), deployment("d2", ["c2"], now - 50)]
    assert post(url, ships, as_("ci"))[1]["accepted"] == 2
    honest = [task("h1", "payments", ["c1"], now - 600, repo="Acme/Payments", ai_lines=10),
              task("h2", "payments", ["c2"], now - 600, ai_lines=10)]
    assert post(url, honest, as_("pay"))[1]["accepted"] == 2
    pipeline.wait_value("aiyield_normalized_deployments", 2.0, team="payments", window="1h")
    time.sleep(GRACE + 1)
    # Another team sends claims on the same commits dated earlier (one worth lines, one erasing with 0 lines), and
    # tries to write a payments task: the first are ranked at their arrival, the last refused at the gateway.
    thieves = [task("s1", "search", ["c1"], now - 700, ai_lines=50), task("s2", "search", ["c2"], now - 700, ai_lines=0)]
    status, answer = post(url, [*thieves, task("h1", "payments", ["c1"], now - 900)], as_("search"))
    assert status == 202 and answer["accepted"] == 2 and [r["index"] for r in answer["rejected"]] == [2]
    status, answer = post(url, task("x", "search", ["c1"], now - 900), as_("ci"))  # acme/payments is not search's
    assert status == 403 and "contract v3 §4" in answer["rejected"][0]["error"]
    assert post(url, thieves, as_("search"))[0] == 202  # duplicates
    pipeline.wait_value("aiyield_contested_claims", 2.0, team="search", window="1h")
    time.sleep(2)  # nothing else moves
    assert pipeline.value("aiyield_normalized_deployments", team="payments", window="1h") == 2.0
    assert pipeline.value("aiyield_normalized_deployments", team="search", window="1h") in (None, 0.0)
    assert pipeline.value("aiyield_retracted_normalized_deployments_total", team="payments", reason="rollback") in (None, 0.0)
    # An operator's backfill (an unscoped token: trusted) ranks at its ts, as a replay must.
    backfill = task("b1", "search", ["c3"], now - 3000, ai_lines=10)
    later = task("h3", "payments", ["c3"], now - 600, ai_lines=10)
    assert post(url, [later], as_("pay"))[0] == 202
    assert post(url, [backfill, deployment("d3", ["c3"], now - 30)], as_("operator"))[0] == 202
    pipeline.wait_value("aiyield_normalized_deployments", 1.0, team="search", window="1h")


@pytest.mark.parametrize("shared_prefix", [False, True], ids=["random-shas", "one-7-character-prefix"])
def test_a_busy_repos_backlog_is_absorbed_and_a_new_deployment_credited(pipeline, shared_prefix):
    """50,000 events of one repo waiting when the worker starts (a backfill, a worker catching up): batches of
    ~10,000 events, every Redis script call bounded; then a new deployment in that repo is credited."""
    now = time.time()
    repo = "acme/busy"
    rng = random.Random(17)

    def commit(i: int) -> str:
        full = hashlib.sha1(f"busy{i}".encode()).hexdigest()
        return "abcdef1" + full[7:] if shared_prefix else full

    events: list[dict] = []
    for i in range(35_000):
        events.append({"type": "task", "id": f"bt{i}", "ts": now - 3000 + i * 0.05, "task_id": f"bt{i}",
                       "team": f"team{i % 7}", "tool": "claude-code", "status": "completed", "repo": repo,
                       "commits": [commit(i)], "ai_lines": 5})
    for i in range(15_000):
        events.append({"type": "push", "id": f"bp{i}", "ts": now - 2500 + i * 0.05, "repo": repo,
                       "branch": f"b{i % 40}", "commits": [commit(100_000 + i)]})
    rng.shuffle(events)
    pipeline.send(events)
    worker = pipeline.start_worker()
    wait_for(lambda: pipeline.events_total("task", "accepted") + pipeline.events_total("push", "accepted") == 50_000,
             240, "the backlog to be ingested")
    # A new change in the busy repo ships: owned by team3's task 3, which claimed commit(3) in the backlog.
    pipeline.send([{**deployment("busy-1", [], now - 10, repo=repo), "commits": [commit(3)]}])
    pipeline.wait_value("aiyield_normalized_deployments", 0.5, timeout=240, team="team3", window="1h")
    assert worker.poll() is None, pipeline.logs()
    assert "too many results to unpack" not in pipeline.logs()
    assert pipeline.events_total("task", "invalid") == 0


def test_a_huge_task_and_a_crowded_commit_do_not_stall_their_partition(pipeline):
    """A task of 10,000 commits (reported 1,000 at a time, then all of them again) and a commit claimed by 2,000
    tasks: a deployment of one commit of each is credited to its owner, exactly, while they are in the state."""
    now = time.time()
    repo = "acme/stall"
    big = [hashlib.sha1(f"stall{i}".encode()).hexdigest() for i in range(10_000)]
    reports = [{"type": "task", "id": f"big-{rnd}-{i}", "ts": now - 900, "task_id": "big", "team": "bulk",
                "tool": "claude-code", "status": "completed", "repo": repo, "commits": big[i:i + 1000], "ai_lines": 40}
               for rnd in range(2) for i in range(0, 10_000, 1000)]
    crowd = [{"type": "task", "id": f"crowd-{i}", "ts": now - 800 + i * 0.01, "task_id": f"c{i}",
              "team": "first" if i == 0 else "crowd", "tool": "claude-code", "status": "completed", "repo": repo,
              "commits": [sha("crowded")], "ai_lines": 10} for i in range(2000)]
    ships = [deployment("stall-1", [], now - 60, repo=repo) | {"commits": [big[4321]]},
             deployment("stall-2", ["crowded"], now - 50, repo=repo)]
    pipeline.start_worker()
    pipeline.send(reports + crowd)
    pipeline.send(ships)
    pipeline.wait_value("aiyield_normalized_deployments", 1.0, timeout=120, team="bulk", window="1h")
    pipeline.wait_value("aiyield_normalized_deployments", 1.0, timeout=60, team="first", window="1h")
    pipeline.wait_value("aiyield_contested_claims", 1999.0, timeout=60, team="crowd", window="1h")
    time.sleep(2)
    assert pipeline.value("aiyield_normalized_deployments", team="crowd", window="1h") in (None, 0.0)
    assert pipeline.value("aiyield_tasks", team="bulk", tool="claude-code", status="shipped", window="1h") == 1.0
