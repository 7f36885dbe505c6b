"""Argo CD notifications as aiyield deployment events.

Argo CD's webhook service sends whatever body the operator's template renders, so aiyield ships the template:
`deploy/argocd/notifications-cm.yaml`. It renders one flat JSON object of strings:

    {"id", "app", "repo", "revision", "environment", "phase", "sync_status", "health_status", "finished_at"}

`id` is `<namespace>/<app>@<operation startedAt>`, one sync operation, and becomes the `deploy_id`. The outcome:

- phase `Failed` or `Error`, or health `Degraded` -> failed (a degradation after a finished sync fails that sync);
- phase `Succeeded`, sync `Synced` and health `Healthy` -> succeeded;
- anything else (`Running`, `Progressing`, `OutOfSync`, ...) is no outcome yet and produces nothing.

The event id is derived from `id` and the outcome, because Argo CD retries on network errors and 5xx (the retry
is deduplicated) while one sync can legitimately report success and later degradation (both are kept). Argo CD
has no notion of rollback in these fields; send `rolled_back` events through `/v1/events` for that.
"""

from __future__ import annotations

import re
from typing import Any

from aiyield.gateway.common import BadPayload, parse_time, stable_id

FIELDS = ("id", "app", "repo", "revision", "environment", "phase", "sync_status", "health_status", "finished_at")

#: What Go's text/template prints for a missing map key, should an operator drop `toJson` from the template.
_GO_MISSING = "<no value>"
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


def from_argocd(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The deployment event of one notification, or none while the sync has no outcome.

    Raises `BadPayload` (a `ValueError`) naming every field the template failed to fill.
    """
    if not isinstance(payload, dict):
        raise BadPayload(f"an Argo CD notification must be a JSON object, got {type(payload).__name__}")
    missing = [f for f in FIELDS if not isinstance(payload.get(f), str) or payload[f] in ("", _GO_MISSING)]
    if missing:
        raise BadPayload(
            f"Argo CD notification lacks {', '.join(missing)}: render it with the aiyield template of "
            "deploy/argocd/notifications-cm.yaml"
        )
    status = _outcome(payload["phase"], payload["sync_status"], payload["health_status"])
    if status is None:
        return []
    if not _SHA.match(payload["revision"]):
        raise BadPayload(
            f"Argo CD app {payload['app']}: revision {payload['revision']!r} is not a git commit SHA "
            "(only git sources can be joined to commits)"
        )
    return [
        {
            "type": "deployment",
            "id": stable_id("argocd", payload["id"], status),
            "ts": parse_time(payload["finished_at"], "Argo CD finished_at"),
            "deploy_id": payload["id"],
            "repo": payload["repo"],
            "environment": payload["environment"],
            "status": status,
            "head": payload["revision"],
        }
    ]


def _outcome(phase: str, sync_status: str, health_status: str) -> str | None:
    if phase in ("Failed", "Error") or health_status == "Degraded":
        return "failed"
    if phase == "Succeeded" and sync_status == "Synced" and health_status == "Healthy":
        return "succeeded"
    return None
