"""GitHub adapter, on GitHub's example deliveries from @octokit/webhooks-examples (tests/fixtures/github)."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aiyield.core.org import Org
from aiyield.core.events import validate
from aiyield.core.provenance import DEFAULT_AI_TRAILERS
from aiyield.gateway.common import BadPayload, UnsupportedEvent
from aiyield.gateway.github import from_github
from aiyield.core.provenance import commit_task_id

FIXTURES = Path(__file__).parents[2] / "fixtures" / "github"
NOW = 2_000_000_000.0
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
REPO = "Codertocat/Hello-World"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def convert(event_name: str, payload: dict[str, Any], repo_teams: dict[str, str] | None = None) -> list[dict]:
    events = from_github(
        event_name, payload, trailers=DEFAULT_AI_TRAILERS, org=Org.from_repo_teams(repo_teams or {}), delivery_id="72d3162e-cc78"
    )
    for event in events:
        validate(event, NOW)
    return events


def with_message(payload: dict[str, Any], message: str) -> dict[str, Any]:
    """The real branch push, its one commit re-worded (the examples hold no AI-co-authored commit)."""
    payload = copy.deepcopy(payload)
    payload["commits"][0]["message"] = payload["head_commit"]["message"] = message
    return payload


def test_branch_push() -> None:
    assert convert("push", fixture("push.branch")) == [
        {
            "type": "push",
            "id": "github-push-72d3162e-cc78",
            "ts": 1557933657.0,  # repository.pushed_at, GitHub's clock, not the commit's 15:19:25Z
            "repo": REPO,
            "branch": "master",
            "commits": [SHA],
            "head": SHA,
        }
    ]


@pytest.mark.parametrize("name", ["push.tag-created", "push.tag-deleted"])
def test_tag_pushes_produce_nothing(name: str) -> None:
    assert convert("push", fixture(name)) == []


@pytest.mark.parametrize("forced, expected", [(True, True), (False, None), ("true", None), (None, None)])
def test_a_force_push_says_so(forced: Any, expected: bool | None) -> None:
    """GitHub's own `forced` flag (the example push has `forced: false`; its value is changed in code, as with the
    other variants): only a JSON `true` marks the push forced."""
    payload = copy.deepcopy(fixture("push.branch"))
    assert payload["forced"] is False
    payload["forced"] = forced
    (push,) = convert("push", payload)
    assert push.get("forced") is expected
    assert validate(push, NOW).forced is (expected is True)


def test_branch_deletion_produces_nothing() -> None:
    payload = copy.deepcopy(fixture("push.branch"))
    payload.update(deleted=True, created=False, before=SHA, after="0" * 40, commits=[], head_commit=None)
    assert convert("push", payload) == []


def test_ai_co_authored_commit_is_a_completed_task_with_full_credit() -> None:
    payload = with_message(fixture("push.branch"), "Add README\n\nCo-authored-by: Claude <noreply@anthropic.com>\n")
    push, task = convert("push", payload, repo_teams={REPO: "payments"})
    assert push["commits"] == [SHA]
    task_id = commit_task_id(REPO, SHA)  # the git hook's id: hook and webhook report one task
    assert task == {
        "type": "task",
        "id": f"{task_id}:completed",
        "ts": 1557933657.0,
        "task_id": task_id,
        "team": "payments",
        "tool": "claude-code",
        "status": "completed",
        "repo": REPO,
        "commits": [SHA],
    }
    assert "ai_lines" not in task
    # The repo is named as GitHub spells it; the validator keys it case-insensitively, and so does the task id.
    assert validate(task, NOW).repo == REPO.lower()
    assert task_id == commit_task_id(REPO.lower(), SHA.upper())


def test_ai_task_of_an_unmapped_repo_is_unassigned() -> None:
    payload = with_message(fixture("push.branch"), "Fix\n\nCo-authored-by: Copilot <copilot@github.com>")
    task = convert("push", payload)[1]
    assert (task["team"], task["tool"]) == ("unassigned", "copilot")


def test_configured_trailers_replace_the_defaults() -> None:
    payload = with_message(fixture("push.branch"), "Fix\n\nCo-authored-by: Claude <noreply@anthropic.com>")
    events = from_github("push", payload, trailers={"ourbot": "ourbot"}, org=Org(), delivery_id="d")
    assert [e["type"] for e in events] == ["push"]


def test_push_time_falls_back_to_the_head_commit() -> None:
    payload = copy.deepcopy(fixture("push.branch"))
    del payload["repository"]["pushed_at"]
    assert convert("push", payload)[0]["ts"] == 1557933565.0  # 2019-05-15T15:19:25Z


def test_redelivery_yields_identical_events() -> None:
    payload = with_message(fixture("push.branch"), "x\n\nCo-authored-by: Cursor Agent <cursoragent@cursor.com>")
    assert convert("push", payload) == convert("push", copy.deepcopy(payload))


def test_successful_deployment_status() -> None:
    assert convert("deployment_status", fixture("deployment_status.success")) == [
        {
            "type": "deployment",
            "id": "github-deployment-status-209916254",
            "ts": 1557933655.0,
            "deploy_id": "145988746",
            "repo": REPO,
            "environment": "production",
            "status": "succeeded",
            "head": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        }
    ]


@pytest.mark.parametrize(
    "state, status",
    [("failure", "failed"), ("error", "failed"), ("inactive", None), ("pending", None), ("queued", None)],
)
def test_deployment_states(state: str, status: str | None) -> None:
    payload = copy.deepcopy(fixture("deployment_status.success"))
    payload["deployment_status"]["state"] = state
    events = convert("deployment_status", payload)
    assert [e["status"] for e in events] == ([status] if status else [])


def test_in_progress_deployment_produces_nothing() -> None:
    assert convert("deployment_status", fixture("deployment_status.in_progress")) == []


def test_status_without_environment_uses_the_deployment_s() -> None:
    payload = copy.deepcopy(fixture("deployment_status.success"))
    del payload["deployment_status"]["environment"]
    payload["deployment"]["environment"] = "prod"
    assert convert("deployment_status", payload)[0]["environment"] == "prod"


def test_ping_produces_nothing() -> None:
    assert convert("ping", fixture("ping")) == []


def test_unknown_event_is_unsupported() -> None:
    with pytest.raises(UnsupportedEvent, match="'issues'") as info:
        convert("issues", {"action": "opened"})
    assert not isinstance(info.value, BadPayload)


@pytest.mark.parametrize(
    "event_name, mutate, message",
    [
        ("push", lambda p: p["repository"].pop("full_name"), "repository.full_name"),
        ("push", lambda p: p.update(ref=42), "`ref` must be a str"),
        ("push", lambda p: p["commits"][0].pop("id"), "commit payload has no `id`"),
        ("deployment_status", lambda p: p["deployment"].pop("sha"), "deployment.sha"),
        ("deployment_status", lambda p: p.pop("deployment_status"), "deployment_status.state"),
    ],
)
def test_missing_fields_are_bad_payloads(event_name: str, mutate, message: str) -> None:
    payload = copy.deepcopy(fixture("push.branch" if event_name == "push" else "deployment_status.success"))
    mutate(payload)
    with pytest.raises(BadPayload, match=message):
        convert(event_name, payload)


def test_push_without_delivery_id_is_a_bad_payload() -> None:
    with pytest.raises(BadPayload, match="X-GitHub-Delivery"):
        from_github("push", fixture("push.branch"), trailers={}, org=Org(), delivery_id="")
