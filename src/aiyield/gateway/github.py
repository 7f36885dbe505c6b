"""GitHub webhooks (`push`, `deployment_status`, `ping`) as aiyield events.

Mapping decisions where the contract is silent:

- `push` to a branch: one `push` event, plus one completed `task` per commit with an AI `Co-authored-by:` trailer
  (see `common.branch_push`; no `ai_lines`, so full credit). Tag pushes and branch deletions carry no
  commits to ship and produce nothing.
- Push time is `repository.pushed_at`, GitHub's own clock at the push; `head_commit.timestamp` is only the
  fallback because it is the committer's clock: rebased or cherry-picked commits carry old dates (which would push
  the event out of the join window) and a skewed laptop can date them in the future (which the validator rejects).
- GitHub lists at most 2048 commits per push; commits beyond that are not seen, here or anywhere else.
- `forced` is GitHub's own flag (true when the push rewrote the branch, e.g. `git push --force`); anything but
  `true` leaves the push unforced.
- `deployment_status`: `success` -> succeeded; `failure` and `error` -> failed. `inactive` produces nothing:
  GitHub marks a deployment inactive when a newer one to the same environment replaces it, which is not a
  rollback. `pending`, `queued` and `in_progress` are not outcomes yet and produce nothing; so does any state GitHub
  adds later, rather than rejecting deliveries that were never wrong.
- Ids: `X-GitHub-Delivery` identifies the event, not the delivery (github/docs#32822): a redelivery keeps it, so
  the push id derives from it. A deployment status has its own id in the payload.
"""

from __future__ import annotations

from typing import Any, Mapping

from aiyield.core.org import Org
from aiyield.gateway.common import BadPayload, UnsupportedEvent, branch_of, branch_push, need, parse_time

_DEPLOYMENT_STATES = {"success": "succeeded", "failure": "failed", "error": "failed"}


def from_github(
    event_name: str,
    payload: dict[str, Any],
    *,
    trailers: Mapping[str, str],
    org: Org,
    delivery_id: str,
) -> list[dict[str, Any]]:
    """The events of one delivery; `event_name` is the `X-GitHub-Event` header.

    Raises `UnsupportedEvent` for event kinds aiyield does not read and `BadPayload` when a field is missing.
    """
    if event_name == "ping":
        return []
    if event_name == "push":
        return _push(payload, trailers, org, delivery_id)
    if event_name == "deployment_status":
        return _deployment_status(payload)
    raise UnsupportedEvent("GitHub", event_name)


def _push(
    payload: dict[str, Any], trailers: Mapping[str, str], org: Org, delivery_id: str
) -> list[dict[str, Any]]:
    branch = branch_of(need(payload, "ref", "GitHub push", str))
    if branch is None or payload.get("deleted"):
        return []
    if not delivery_id:
        raise BadPayload("GitHub push delivery has no X-GitHub-Delivery id to derive an event id from")
    repo = need(payload, "repository.full_name", "GitHub push")
    pushed_at = payload["repository"].get("pushed_at")
    if pushed_at is None:
        pushed_at = need(payload, "head_commit.timestamp", "GitHub push")
    commits = payload.get("commits") or []
    return branch_push(
        event_id=f"github-push-{delivery_id}",
        ts=parse_time(pushed_at, "GitHub push time"),
        repo=repo,
        branch=branch,
        head=need(payload, "after", "GitHub push"),
        commits=[(need(c, "id", "GitHub push commit", str), c.get("message") or "") for c in commits],
        trailers=trailers,
        org=org,
        forced=payload.get("forced") is True,
    )


def _deployment_status(payload: dict[str, Any]) -> list[dict[str, Any]]:
    status = _DEPLOYMENT_STATES.get(need(payload, "deployment_status.state", "GitHub deployment_status", str))
    if status is None:
        return []
    deployment_status = payload["deployment_status"]
    return [
        {
            "type": "deployment",
            "id": f"github-deployment-status-{need(payload, 'deployment_status.id', 'GitHub deployment_status')}",
            "ts": parse_time(
                need(payload, "deployment_status.created_at", "GitHub deployment_status"), "GitHub status time"
            ),
            "deploy_id": str(need(payload, "deployment.id", "GitHub deployment_status")),
            "repo": need(payload, "repository.full_name", "GitHub deployment_status"),
            "environment": deployment_status.get("environment")
            or need(payload, "deployment.environment", "GitHub deployment_status"),
            "status": status,
            "head": need(payload, "deployment.sha", "GitHub deployment_status"),
        }
    ]
