"""GitLab webhooks (`Push Hook`, `Deployment Hook`) as aiyield events.

Mapping decisions where the contract is silent:

- `push` to a branch: one `push` event plus AI-trailer tasks, exactly as for GitHub (`common.ai_commit_tasks`).
  GitLab sends no push time, so the event time is the head commit's timestamp (the commit whose id is `after`,
  else the last one listed). A push listing no commits (a branch deletion, or a new branch at an existing commit)
  produces nothing: it has no time, and every commit it points at arrived with an earlier push.
- GitLab lists at most 20 commits per push (`total_commits_count` has the real number); the others are not seen.
- `tag_push` produces nothing, like a tag push on GitHub: tags carry no new commits to ship.
- `deployment`: `success` -> succeeded, `failed` -> failed. `running`, `canceled` and any other state produce
  nothing (a cancelled deployment never ran; it is neither a failure nor a rollback).
- The deployed commit: the hook's `short_sha` is 8 characters, the full SHA only appears in `commit_url`; the full
  one is used so the deployment joins pushes and tasks by exact SHA (CONTRACT section 2).
- Ids: `deployment_id` is unique per GitLab instance; a push is identified by project, `before` and `after`, which a
  redelivery repeats.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from aiyield.gateway.common import BadPayload, UnsupportedEvent, ai_commit_tasks, need, parse_time

_BRANCH_PREFIX = "refs/heads/"
_DEPLOYMENT_STATES = {"success": "succeeded", "failed": "failed"}
_COMMIT_URL_SHA = re.compile(r"/commit/([0-9a-fA-F]{7,64})/?$")


def from_gitlab(
    payload: dict[str, Any], *, trailers: Mapping[str, str], repo_teams: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The events of one delivery, dispatched on `object_kind`.

    Raises `UnsupportedEvent` for kinds aiyield does not read and `BadPayload` when a field is missing.
    """
    kind = need(payload, "object_kind", "GitLab", str)
    if kind == "push":
        return _push(payload, trailers, repo_teams)
    if kind == "deployment":
        return _deployment(payload)
    if kind == "tag_push":
        return []
    raise UnsupportedEvent("GitLab", kind)


def _push(payload: dict[str, Any], trailers: Mapping[str, str], repo_teams: Mapping[str, str]) -> list[dict[str, Any]]:
    ref = need(payload, "ref", "GitLab push", str)
    commits = payload.get("commits") or []
    if not ref.startswith(_BRANCH_PREFIX) or not commits:
        return []
    repo = need(payload, "project.path_with_namespace", "GitLab push")
    after = need(payload, "after", "GitLab push", str)
    shas = [need(c, "id", "GitLab push commit", str) for c in commits]
    head = next((c for c in commits if c["id"] == after), commits[-1])
    ts = parse_time(need(head, "timestamp", "GitLab push commit"), "GitLab commit timestamp")
    before = str(payload.get("before") or "")[:12]
    push = {
        "type": "push",
        "id": f"gitlab-push-{need(payload, 'project.id', 'GitLab push')}-{before}-{after}",
        "ts": ts,
        "repo": repo,
        "branch": ref[len(_BRANCH_PREFIX) :],
        "commits": shas,
        "head": after,
    }
    tasks = ai_commit_tasks(
        repo, ((c["id"], c.get("message", "")) for c in commits), ts=ts, trailers=trailers, repo_teams=repo_teams
    )
    return [push, *tasks]


def _deployment(payload: dict[str, Any]) -> list[dict[str, Any]]:
    status = _DEPLOYMENT_STATES.get(need(payload, "status", "GitLab deployment", str))
    if status is None:
        return []
    deployment_id = need(payload, "deployment_id", "GitLab deployment")
    event = {
        "type": "deployment",
        "id": f"gitlab-deployment-{deployment_id}-{status}",
        "ts": parse_time(need(payload, "status_changed_at", "GitLab deployment"), "GitLab status_changed_at"),
        "deploy_id": str(deployment_id),
        "repo": need(payload, "project.path_with_namespace", "GitLab deployment"),
        "environment": need(payload, "environment", "GitLab deployment"),
        "status": status,
    }
    head = _full_sha(payload)
    if head is not None:
        event["head"] = head
    return [event]


def _full_sha(payload: dict[str, Any]) -> str | None:
    """The deployed commit: the full SHA from `commit_url` when it extends `short_sha`, else `short_sha` itself."""
    short = payload.get("short_sha") or ""
    match = _COMMIT_URL_SHA.search(payload.get("commit_url") or "")
    if match is None:
        return short or None
    full = match.group(1)
    if not full.lower().startswith(short.lower()):
        raise BadPayload(f"GitLab deployment: commit_url names {full}, which does not extend short_sha {short}")
    return full
