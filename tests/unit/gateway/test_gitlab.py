"""GitLab adapter, on GitLab's documentation examples (tests/fixtures/gitlab)."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aiyield.core.org import Org
from aiyield.core.events import validate
from aiyield.core.provenance import DEFAULT_AI_TRAILERS
from aiyield.gateway.common import BadPayload, UnsupportedEvent, parse_time
from aiyield.gateway.gitlab import from_gitlab
from aiyield.core.provenance import commit_task_id

FIXTURES = Path(__file__).parents[2] / "fixtures" / "gitlab"
NOW = 2_000_000_000.0
FULL_SHA = "279484c09fbe69ededfced8c1bb6e6d24616b468"
FIRST, HEAD = "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def convert(payload: dict[str, Any], repo_teams: dict[str, str] | None = None) -> list[dict]:
    events = from_gitlab(payload, trailers=DEFAULT_AI_TRAILERS, org=Org.from_repo_teams(repo_teams or {}))
    for event in events:
        validate(event, NOW)
    return events


DEPLOYED = {
    "type": "deployment",
    "id": "gitlab-deployment-15-succeeded",
    "ts": 1619639400.0,  # "2021-04-28 21:50:00 +0200"
    "deploy_id": "15",
    "repo": "root/test-deployment-webhooks",
    "environment": "staging",
    "status": "succeeded",
    "head": FULL_SHA,  # from commit_url; the hook's short_sha is 279484c0
}


@pytest.mark.parametrize("name", ["deployment.success.go-gitlab", "deployment.success.pydantic-gitlab-webhooks"])
def test_successful_deployment_carries_the_full_sha(name: str) -> None:
    assert convert(fixture(name)) == [DEPLOYED]


@pytest.mark.parametrize("status, mapped", [("failed", "failed"), ("running", None), ("canceled", None)])
def test_deployment_states(status: str, mapped: str | None) -> None:
    payload = copy.deepcopy(fixture("deployment.success.go-gitlab"))
    payload["status"] = status
    events = convert(payload)
    assert [(e["status"], e["id"]) for e in events] == ([(mapped, f"gitlab-deployment-15-{mapped}")] if mapped else [])


def test_deployment_without_commit_url_keeps_the_short_sha() -> None:
    payload = copy.deepcopy(fixture("deployment.success.go-gitlab"))
    del payload["commit_url"]
    assert convert(payload)[0]["head"] == "279484c0"


def test_commit_url_contradicting_short_sha_is_a_bad_payload() -> None:
    payload = copy.deepcopy(fixture("deployment.success.go-gitlab"))
    payload["short_sha"] = "deadbeef"
    with pytest.raises(BadPayload, match="does not extend short_sha"):
        convert(payload)


def test_push() -> None:
    assert convert(fixture("push.pydantic-gitlab-webhooks")) == [
        {
            "type": "push",
            "id": f"gitlab-push-15-95790bf891e7-{HEAD}",
            "ts": 1325626589.0,  # the head commit's "2012-01-03T23:36:29+02:00": GitLab sends no push time
            "repo": "mike/diaspora",
            "branch": "master",
            "commits": [FIRST, HEAD],  # 2 of total_commits_count 4: GitLab truncates, nothing to recover
            "head": HEAD,
        }
    ]


def test_a_gitlab_push_is_never_marked_forced() -> None:
    """GitLab's push hook has no force flag and no parent ids: a push whose `before` is not among its commits' parents
    may or may not be a rewrite, and aiyield does not guess (contract v3 §1: `forced` where the payload says so)."""
    payload = copy.deepcopy(fixture("push.pydantic-gitlab-webhooks"))
    assert "forced" not in payload
    payload["before"] = "f" * 40  # a before that none of the listed commits mentions
    (push,) = convert(payload)
    assert "forced" not in push and validate(push, NOW).forced is False


def test_ai_co_authored_commits_are_tasks_shared_with_github_s_logic() -> None:
    payload = copy.deepcopy(fixture("push.pydantic-gitlab-webhooks"))
    payload["commits"][0]["message"] += "\n\nCo-authored-by: Gemini <gemini-code-assist@google.com>"
    push, task = convert(payload, repo_teams={"mike/diaspora": "platform"})
    task_id = commit_task_id("mike/diaspora", FIRST)
    assert task == {
        "type": "task",
        "id": f"{task_id}:completed",
        "ts": push["ts"],
        "task_id": task_id,
        "team": "platform",
        "tool": "gemini",
        "status": "completed",
        "repo": "mike/diaspora",
        "commits": [FIRST],
    }


@pytest.mark.parametrize(
    "change",
    [
        {"after": "0" * 40, "commits": [], "checkout_sha": None},  # branch deleted
        {"commits": []},  # new branch at an existing commit: no time, nothing new
    ],
)
def test_pushes_without_commits_produce_nothing(change: dict[str, Any]) -> None:
    payload = copy.deepcopy(fixture("push.pydantic-gitlab-webhooks"))
    payload.update(change)
    assert convert(payload) == []


def test_tag_push_produces_nothing() -> None:
    payload = copy.deepcopy(fixture("push.pydantic-gitlab-webhooks"))
    payload.update(object_kind="tag_push", event_name="tag_push", ref="refs/tags/v1.0.0")
    assert convert(payload) == []


def test_pipeline_hook_is_unsupported() -> None:
    with pytest.raises(UnsupportedEvent, match="'pipeline'"):
        convert(fixture("pipeline.success.go-gitlab"))


@pytest.mark.parametrize(
    "name, mutate, message",
    [
        ("deployment.success.go-gitlab", lambda p: p.pop("status_changed_at"), "status_changed_at"),
        ("deployment.success.go-gitlab", lambda p: p.update(status_changed_at="2021-04-28 21:50:00"), "UTC offset"),
        ("deployment.success.go-gitlab", lambda p: p.pop("project"), "project.path_with_namespace"),
        ("push.pydantic-gitlab-webhooks", lambda p: p["commits"][1].pop("timestamp"), "timestamp"),
        ("push.pydantic-gitlab-webhooks", lambda p: p.pop("object_kind"), "object_kind"),
    ],
)
def test_missing_fields_are_bad_payloads(name: str, mutate, message: str) -> None:
    payload = copy.deepcopy(fixture(name))
    mutate(payload)
    with pytest.raises(BadPayload, match=message):
        convert(payload)


@pytest.mark.parametrize(
    "text, epoch",
    [
        ("2021-04-28 21:50:00 +0200", 1619639400.0),  # Deployment Hook
        ("2016-08-12 15:23:28 UTC", 1471015408.0),  # Pipeline Hook
        ("2011-12-12T14:27:31+02:00", 1323692851.0),  # commit timestamps
    ],
)
def test_gitlab_timestamp_formats(text: str, epoch: float) -> None:
    assert parse_time(text, "t") == epoch
