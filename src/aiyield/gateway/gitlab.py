"""GitLab webhooks (`Push Hook`, `Deployment Hook`) as aiyield events.

Mapping decisions where the contract is silent:

- `push` to a branch: one `push` event plus AI-trailer tasks, exactly as for GitHub (`common.branch_push`).
  GitLab sends no push time, so the event time is the head commit's timestamp (the commit whose id is `after`,
  else the last one listed). A push listing no commits (a branch deletion, or a new branch at an existing commit)
  produces nothing: it has no time, and every commit it points at arrived with an earlier push.
- GitLab lists at most 20 commits per push (`total_commits_count` has the real number); the others are not seen.
- `forced` is never set: GitLab's push hook has no force flag, and its commits carry no parent ids, so whether
  `after` descends from `before` is not in the payload. A rewritten branch is not guessed at from what is missing;
  a GitLab push is reported as a fast-forward.
- `tag_push` produces nothing, like a tag push on GitHub: tags carry no new commits to ship.
- `deployment`: `success` -> succeeded, `failed` -> failed. `running`, `canceled` and any other state produce
  nothing (a cancelled deployment never ran; it is neither a failure nor a rollback).
- The deployed commit: the hook's `short_sha` is 8 characters, the full SHA only appears in `commit_url`; the full
  one is used so the deployment joins pushes and tasks by exact SHA (docs/INTERFACE.md §2).
- Ids: `deployment_id` is unique per GitLab instance; a push is identified by project, `before` and `after`, which a
  redelivery repeats.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from aiyield.core.org import Org
from aiyield.gateway.common import BadPayload, UnsupportedEvent, branch_of, branch_push, need, parse_time

_DEPLOYMENT_STATES = {"success": "succeeded", "failed": "failed"}
_COMMIT_URL_SHA = re.compile(r"/commit/([0-9a-fA-F]{7,64})/?$")


def from_gitlab(
    payload: dict[str, Any], *, trailers: Mapping[str, str], org: Org
) -> list[dict[str, Any]]:
    """The events of one delivery, dispatched on `object_kind`.

    Raises `UnsupportedEvent` for kinds aiyield does not read and `BadPayload` when a field is missing.
    """
    kind = need(payload, "object_kind", "GitLab", str)
    if kind == "push":
        return _push(payload, trailers, org)
    if kind == "deployment":
        return _deployment(payload)
    if kind == "tag_push":
        return []
    raise UnsupportedEvent("GitLab", kind)


def _push(payload: dict[str, Any], trailers: Mapping[str, str], org: Org) -> list[dict[str, Any]]:
    branch = branch_of(need(payload, "ref", "GitLab push", str))
    listed = payload.get("commits") or []
    if branch is None or not listed:
        return []
    after = need(payload, "after", "GitLab push", str)
    commits = [(need(c, "id", "GitLab push commit", str), c.get("message") or "") for c in listed]
    head = next((c for c in listed if c["id"] == after), listed[-1])
    before = str(payload.get("before") or "")[:12]
    return branch_push(
        event_id=f"gitlab-push-{need(payload, 'project.id', 'GitLab push')}-{before}-{after}",
        ts=parse_time(need(head, "timestamp", "GitLab push commit"), "GitLab commit timestamp"),
        repo=need(payload, "project.path_with_namespace", "GitLab push"),
        branch=branch,
        head=after,
        commits=commits,
        trailers=trailers,
        org=org,
    )


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
    short = str(payload.get("short_sha") or "")
    match = _COMMIT_URL_SHA.search(str(payload.get("commit_url") or ""))
    if match is None:
        return short or None
    full = match.group(1)
    if not full.lower().startswith(short.lower()):
        raise BadPayload(f"GitLab deployment: commit_url names {full}, which does not extend short_sha {short}")
    return full
