"""Argo CD adapter, fed by the template that deploy/argocd/notifications-cm.yaml ships.

No real Argo CD notification payloads exist (the body is whatever the operator's template renders), so the test
renders the shipped template itself over an Application built around the docs' `syncResult` example, with a small
evaluator of exactly the Go-template forms the template uses: an unknown form fails the test, so the template and
the parser cannot drift apart unnoticed.
"""

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from aiyield.core.events import validate
from aiyield.gateway.argocd import FIELDS, from_argocd
from aiyield.gateway.common import BadPayload

ROOT = Path(__file__).parents[3]
CONFIG_MAP = (ROOT / "deploy" / "argocd" / "notifications-cm.yaml").read_text()
SYNC_RESULT = json.loads((ROOT / "tests" / "fixtures" / "argocd" / "syncResult.argo-cd-docs-example.json").read_text())
REVISION = "f3937462080c6946ff5ec4b5fa393e7c22388e4c"
NOW = 2_000_000_000.0

APP: dict[str, Any] = {
    "metadata": {
        "name": "guestbook",
        "namespace": "argocd",
        "annotations": {
            "notifications.argoproj.io/subscribe.aiyield.aiyield": "",
            "aiyield.io/environment": "production",
        },
    },
    "spec": {
        "source": {"repoURL": "https://github.com/argoproj/argocd-example-apps.git", "path": "guestbook"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "guestbook"},
    },
    "status": {
        "sync": {"status": "Synced", "revision": REVISION},
        "health": {"status": "Healthy"},
        "operationState": {
            "phase": "Succeeded",
            "startedAt": "2024-09-10T12:00:00Z",
            "finishedAt": "2024-09-10T12:00:42Z",
            "syncResult": SYNC_RESULT,
        },
    },
}


# -- a renderer for the template's Go-template forms ----------------------------------------------------------


def full_name_by_repo_url(url: str) -> str:
    """Argo CD's `.repo.FullNameByRepoURL`: `owner/name` of a repository URL."""
    return re.sub(r"^[a-z+]+://[^/]+/|^[^@]+@[^:]+:", "", url).removesuffix(".git")


def dig(*args: Any) -> Any:
    *keys, default, obj = args
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


FUNCTIONS = {
    "toJson": json.dumps,
    "printf": lambda fmt, *args: fmt % args,  # the template only uses %s, which Go and Python share
    "call": lambda function, *args: function(*args),
    "dig": dig,
}


def lookup(path: str, scope: dict[str, Any]) -> Any:
    value: Any = scope
    for key in path.lstrip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def evaluate(action: str, scope: dict[str, Any]) -> Any:
    """One `{{ ... }}` pipeline: each command's result is the last argument of the next."""
    missing = piped = object()
    for command in action.split("|"):
        head, *words = shlex.split(command)
        args = [lookup(w, scope) if w.startswith(".") else w for w in words]
        if piped is not missing:
            args.append(piped)
        piped = lookup(head, scope) if head.startswith(".") and not args else FUNCTIONS[head](*args)
    return piped


def template_block(key: str) -> str:
    """The literal block under `key: |` in the ConfigMap, dedented."""
    lines = CONFIG_MAP.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{key}: |")
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    block = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block)


def render(app: dict[str, Any]) -> dict[str, Any]:
    scope = {"app": app, "repo": {"FullNameByRepoURL": full_name_by_repo_url}}
    body = re.sub(r"\{\{(.*?)\}\}", lambda m: evaluate(m.group(1), scope), template_block("body"))
    return json.loads(body)


def state(phase: str, sync: str, health: str) -> dict[str, Any]:
    app = copy.deepcopy(APP)
    app["status"]["operationState"]["phase"] = phase
    app["status"]["sync"]["status"] = sync
    app["status"]["health"]["status"] = health
    return app


class Node:
    """Attribute access over the Application, as Argo CD's expr language sees it (a missing field is nil)."""

    def __init__(self, value: dict[str, Any]) -> None:
        self._value = value

    def __getattr__(self, key: str) -> Any:
        value = self._value.get(key)
        return Node(value) if isinstance(value, dict) else value


def firing_conditions(app: dict[str, Any]) -> list[int]:
    whens = re.findall(r"^\s*when: (.*)$", CONFIG_MAP, re.MULTILINE)
    return [i for i, when in enumerate(whens) if eval(when.replace("!= nil", "is not None"), {"app": Node(app)})]


# -- tests -----------------------------------------------------------------------------------------------------


def test_the_template_renders_exactly_the_fields_the_parser_reads() -> None:
    assert tuple(render(APP)) == FIELDS


def test_the_template_trigger_and_service_refer_to_each_other() -> None:
    assert "service.webhook.aiyield: |" in CONFIG_MAP
    assert "template.aiyield-deployment: |" in CONFIG_MAP
    assert CONFIG_MAP.count("send: [aiyield-deployment]") == 3
    assert "notifications.argoproj.io/subscribe.aiyield.aiyield" in CONFIG_MAP


def test_succeeded_synced_healthy_sync_is_a_succeeded_deployment() -> None:
    body = render(APP)
    assert body == {
        "id": "argocd/guestbook@2024-09-10T12:00:00Z",
        "app": "guestbook",
        "repo": "argoproj/argocd-example-apps",
        "revision": REVISION,
        "environment": "production",
        "phase": "Succeeded",
        "sync_status": "Synced",
        "health_status": "Healthy",
        "finished_at": "2024-09-10T12:00:42Z",
    }
    (event,) = from_argocd(body)
    validate(event, NOW)
    assert event == {
        "type": "deployment",
        "id": event["id"],
        "ts": 1725969642.0,
        "deploy_id": "argocd/guestbook@2024-09-10T12:00:00Z",
        "repo": "argoproj/argocd-example-apps",
        "environment": "production",
        "status": "succeeded",
        "head": REVISION,
    }
    assert event["id"].startswith("argocd-") and len(event["id"]) <= 128


def test_environment_defaults_to_the_destination_namespace() -> None:
    app = copy.deepcopy(APP)
    del app["metadata"]["annotations"]["aiyield.io/environment"]
    assert render(app)["environment"] == "guestbook"
    del app["metadata"]["annotations"]  # subscribed through its AppProject instead
    assert render(app)["environment"] == "guestbook"


@pytest.mark.parametrize(
    "phase, sync, health, condition, status",
    [
        ("Succeeded", "Synced", "Healthy", [0], "succeeded"),
        ("Failed", "OutOfSync", "Healthy", [1], "failed"),
        ("Error", "Unknown", "Missing", [1], "failed"),
        ("Succeeded", "Synced", "Degraded", [2], "failed"),
        ("Succeeded", "Synced", "Progressing", [], None),
        ("Running", "OutOfSync", "Progressing", [], None),
        ("Succeeded", "OutOfSync", "Healthy", [], None),
    ],
)
def test_trigger_conditions_and_parser_agree(
    phase: str, sync: str, health: str, condition: list[int], status: str | None
) -> None:
    app = state(phase, sync, health)
    assert firing_conditions(app) == condition
    events = from_argocd(render(app))
    assert [e["status"] for e in events] == ([status] if status else [])


def test_no_trigger_fires_before_any_sync() -> None:
    app = copy.deepcopy(APP)
    del app["status"]["operationState"]
    assert firing_conditions(app) == []


def test_success_and_later_degradation_of_one_sync_are_two_events_of_one_deployment() -> None:
    (ok,) = from_argocd(render(APP))
    (degraded,) = from_argocd(render(state("Succeeded", "Synced", "Degraded")))
    assert ok["deploy_id"] == degraded["deploy_id"]
    assert ok["id"] != degraded["id"]
    assert from_argocd(render(APP)) == [ok]  # a retried notification repeats its id


def test_missing_fields_are_named() -> None:
    app = copy.deepcopy(APP)
    del app["status"]["operationState"]["finishedAt"]
    del app["status"]["health"]
    with pytest.raises(BadPayload, match="lacks health_status, finished_at"):
        from_argocd(render(app))


@pytest.mark.parametrize("value", ["", "<no value>", None, 7])
def test_empty_or_go_missing_values_are_rejected(value: Any) -> None:
    body = render(APP) | {"environment": value}
    with pytest.raises(ValueError, match="lacks environment"):
        from_argocd(body)


def test_non_object_body_is_rejected() -> None:
    with pytest.raises(BadPayload, match="JSON object"):
        from_argocd([render(APP)])  # type: ignore[arg-type]


def test_helm_chart_revision_is_rejected() -> None:
    with pytest.raises(BadPayload, match="guestbook: revision '1.2.3' is not a git commit SHA"):
        from_argocd(render(APP) | {"revision": "1.2.3"})
