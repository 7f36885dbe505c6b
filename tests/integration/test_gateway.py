"""Real-shaped payloads posted to a running gateway end up on Kafka and in /metrics; bad ones change nothing."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures"
GITHUB_SECRET = "gh-webhook-secret"
GITLAB_TOKEN = "gl-token"
INGEST_TOKEN = "ingest-token-1"


def post(url: str, body: bytes | dict | list, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict | bytes]:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def bearer() -> dict:
    return {"Authorization": f"Bearer {INGEST_TOKEN}"}


@pytest.fixture
def gateway(pipeline):
    pipeline.start_worker()
    return pipeline.start_gateway(
        AIYIELD_GITHUB_SECRET=GITHUB_SECRET, AIYIELD_GITLAB_TOKEN=GITLAB_TOKEN, AIYIELD_INGEST_TOKENS=INGEST_TOKEN,
        AIYIELD_MAX_BODY_BYTES="65536", AIYIELD_REPO_TEAMS="Codertocat/Hello-World=octo",
    )


def token_event(i: int, **kw) -> dict:
    return {"type": "token", "id": f"gw-{i}", "ts": time.time() - 5, "team": "web", "tool": "cursor",
            "model": "gpt-5", "input_tokens": 100, "output_tokens": 10, **kw}


def test_events_in_every_body_form(pipeline, gateway):
    url = gateway + "/v1/events"
    assert post(url, token_event(1), bearer()) == (202, {"accepted": 1, "rejected": [], "rejected_count": 0})
    assert post(url, [token_event(2), token_event(3)], bearer()) == (202, {"accepted": 2, "rejected": [], "rejected_count": 0})
    status, answer = post(url, {"events": [token_event(4), token_event(5, input_tokens=-1)]}, bearer())
    assert status == 202 and answer["accepted"] == 1
    assert [r["index"] for r in answer["rejected"]] == [1] and "input_tokens" in answer["rejected"][0]["error"]
    ndjson = b"\n".join([json.dumps(token_event(6)).encode(), b"{oops", json.dumps(token_event(7)).encode()])
    status, answer = post(url, ndjson, {**bearer(), "Content-Type": "application/x-ndjson"})
    assert status == 202 and answer["accepted"] == 2 and answer["rejected"][0]["index"] == 1
    assert "malformed JSON" in answer["rejected"][0]["error"]

    assert post(url, token_event(8, developer="alice@acme.example"), bearer())[0] == 202

    pipeline.wait_value("aiyield_events_total", 7, type="token", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 1, type="token", outcome="invalid")
    pipeline.wait_value("aiyield_events_total", 1, type="unknown", outcome="invalid")
    assert pipeline.value("aiyield_tokens", team="web", tool="cursor", model="gpt-5", type="input", window="1h") == 700
    # Structured access logs, without secrets or developer ids.
    log = (pipeline.logdir / "gateway.log").read_text()
    assert "method=POST path=/v1/events status=202" in log and "accepted=1" in log
    assert INGEST_TOKEN not in log and "alice" not in log and GITHUB_SECRET not in log


def test_bad_requests_get_their_status_and_change_no_counter(pipeline, gateway):
    url = gateway + "/v1/events"
    assert post(url, token_event(1))[0] == 401
    assert post(url, token_event(1), {"Authorization": "Bearer wrong"})[0] == 401
    assert post(url, b"{not json", {**bearer(), "Content-Type": "application/json"})[0] == 400
    assert post(url, b'"a string"', {**bearer(), "Content-Type": "application/json"})[0] == 400
    assert post(url, [token_event(i) for i in range(1000)], bearer())[0] == 413
    push = json.loads((FIXTURES / "github/push.branch.json").read_bytes())
    body = json.dumps(push).encode()
    assert post(gateway + "/v1/webhooks/github", body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d1",
                "X-Hub-Signature-256": "sha256=" + "0" * 64})[0] == 401
    assert post(gateway + "/v1/webhooks/github", body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d1"})[0] == 401
    gitlab = (FIXTURES / "gitlab/deployment.success.go-gitlab.json").read_bytes()
    assert post(gateway + "/v1/webhooks/gitlab", gitlab, {"X-Gitlab-Token": "nope"})[0] == 401
    assert post(gateway + "/v1/webhooks/argocd", {"app": "x"})[0] == 401
    assert post(gateway + "/v1/metrics", b"", {"Content-Type": "application/x-protobuf"})[0] == 401
    # Then one good event: once it is counted, nothing from the bad requests was.
    assert post(url, token_event(99), bearer())[0] == 202
    pipeline.wait_value("aiyield_events_total", 1, type="token", outcome="accepted")
    m = pipeline.metrics()
    assert sum(v for (name, _l), v in m.items() if name == "aiyield_events_total") == 1


def github(gateway: str, event: str, payload: dict, delivery: str) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return post(gateway + "/v1/webhooks/github", body, {
        "X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": signature,
        "Content-Type": "application/json"})


def test_github_push_with_ai_trailer_and_deployment_give_a_normalized_deployment(pipeline, gateway):
    now = time.time()
    assert github(gateway, "ping", json.loads((FIXTURES / "github/ping.json").read_bytes()), "p1")[0] == 200
    push = json.loads((FIXTURES / "github/push.branch.json").read_bytes())
    push["repository"]["pushed_at"] = int(now - 60)
    push["commits"][0]["message"] += "\n\nCo-authored-by: Claude <noreply@anthropic.com>"
    status, answer = github(gateway, "push", push, "delivery-1")
    assert (status, answer) == (202, {"accepted": 2, "rejected": [], "rejected_count": 0})  # the push and the AI commit's task
    # Redelivered by GitHub: same delivery id, deduplicated downstream.
    assert github(gateway, "push", push, "delivery-1")[0] == 202

    deployment = json.loads((FIXTURES / "github/deployment_status.success.json").read_bytes())
    deployment["deployment"]["sha"] = push["after"]
    deployment["deployment_status"]["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30))
    assert github(gateway, "deployment_status", deployment, "delivery-2") == (202, {"accepted": 1, "rejected": [], "rejected_count": 0})
    assert github(gateway, "issues", {"action": "opened"}, "delivery-3")[1]["ignored"] == "issues"

    pipeline.wait_value("aiyield_normalized_deployments", 1.0, team="octo", window="1h")
    assert pipeline.value("aiyield_tasks", team="octo", tool="claude-code", status="shipped", window="1h") == 1
    assert pipeline.events_total("push", "duplicate") == 1 and pipeline.events_total("task", "duplicate") == 1
    assert pipeline.events_total("deployment", "accepted") == 1


def test_gitlab_deployment_hook(pipeline, gateway):
    hook = json.loads((FIXTURES / "gitlab/deployment.success.go-gitlab.json").read_bytes())
    hook["status_changed_at"] = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(time.time() - 10))
    status, answer = post(gateway + "/v1/webhooks/gitlab", hook, {"X-Gitlab-Token": GITLAB_TOKEN})
    assert (status, answer) == (202, {"accepted": 1, "rejected": [], "rejected_count": 0})
    pipeline.wait_value("aiyield_events_total", 1, type="deployment", outcome="accepted")
    assert pipeline.value("aiyield_last_event_timestamp_seconds", type="deployment") == pytest.approx(time.time(), abs=60)


def test_argocd_notification(pipeline, gateway):
    rendered = {
        "id": "argocd/shop@2026-11-28T10:00:00Z", "app": "shop", "repo": "acme/shop",
        "revision": "a" * 40, "environment": "production", "phase": "Succeeded", "sync_status": "Synced",
        "health_status": "Healthy", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5)),
    }
    assert post(gateway + "/v1/webhooks/argocd", rendered, bearer()) == (202, {"accepted": 1, "rejected": [], "rejected_count": 0})
    assert post(gateway + "/v1/webhooks/argocd", {**rendered, "phase": "Running", "health_status": "Progressing"},
                bearer()) == (202, {"accepted": 0, "rejected": [], "rejected_count": 0})
    assert post(gateway + "/v1/webhooks/argocd", {"app": "shop"}, bearer())[0] == 400
    pipeline.wait_value("aiyield_events_total", 1, type="deployment", outcome="accepted")


def test_otlp_from_the_real_sdk_counts_cumulative_totals_once(pipeline, gateway):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.metrics import Counter as SdkCounter

    exporter = OTLPMetricExporter(
        endpoint=gateway + "/v1/metrics", headers=bearer(),
        preferred_temporality={SdkCounter: AggregationTemporality.CUMULATIVE},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "claude-code", "team": "payments"}),
                             metric_readers=[reader])
    meter = provider.get_meter("com.anthropic.claude_code")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    cost = meter.create_counter("claude_code.cost.usage", unit="USD")
    lines = meter.create_counter("claude_code.lines_of_code.count")
    other = meter.create_counter("claude_code.session.count")
    attrs = {"model": "claude-sonnet-4-5"}
    tokens.add(1000, {**attrs, "type": "input"})
    tokens.add(200, {**attrs, "type": "output"})
    cost.add(0.25, attrs)
    lines.add(5, {"type": "added"})
    other.add(1)
    assert provider.force_flush()
    tokens.add(500, {**attrs, "type": "input"})  # the next export re-sends the cumulative total 1500
    cost.add(0.25, attrs)
    assert provider.force_flush()
    assert provider.force_flush()  # unchanged totals: nothing new
    provider.shutdown()

    labels = dict(team="payments", tool="claude-code", model="claude-sonnet-4-5", window="1h")
    pipeline.wait_value("aiyield_tokens", 1500, type="input", **labels)
    pipeline.wait_value("aiyield_spend_usd", 0.5, **labels)
    assert pipeline.value("aiyield_tokens", type="output", **labels) == 200
    pipeline.wait_value("aiyield_tool_lines", 5, team="payments", tool="claude-code", change="added", window="1h")
    with urllib.request.urlopen(gateway + "/metrics") as response:
        text = response.read().decode()
    assert 'aiyield_gateway_ignored_total{source="otlp_metrics"}' in text


def test_otlp_logs_json_and_gzip(pipeline, gateway):
    export = json.loads((FIXTURES / "otlp/beagle_claude-code-2.1.193_logs.otlp.json").read_bytes())
    now_ns = str(int((time.time() - 30) * 1e9))
    for resource in export["resourceLogs"]:
        for scope in resource["scopeLogs"]:
            for record in scope["logRecords"]:
                record["timeUnixNano"] = record["observedTimeUnixNano"] = now_ns
                record["attributes"] = [a for a in record["attributes"] if a["key"] != "event.timestamp"]
    body = gzip.compress(json.dumps(export).encode())
    status, answer = post(gateway + "/v1/logs", body,
                          {**bearer(), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 200, answer
    wait_for(lambda: pipeline.events_total("token", "accepted") >= 1, 60, "log token events")
    spend = sum(v for (name, labels), v in pipeline.metrics().items()
                if name == "aiyield_spend_usd" and ("window", "1h") in labels)
    assert spend > 0


def test_kafka_unreachable_means_not_ready_and_503(pipeline):
    from aiyield.embedded import free_port

    dead = f"127.0.0.1:{free_port()}"
    url = pipeline.start_gateway(AIYIELD_KAFKA=dead, AIYIELD_PUBLISH_TIMEOUT_SECONDS="2")
    assert post(url + "/v1/events", token_event(1))[0] == 503
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/readyz", timeout=30)
    assert info.value.code == 503
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        assert response.status == 200


# -- issue 10: each finding through a running gateway ----------------------------------------------------------

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from aiyield.embedded import free_port  # noqa: E402


def gateway_metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_finding_3_a_million_empty_objects_get_a_short_answer_and_batched_dead_letters(pipeline):
    url = pipeline.start_gateway(AIYIELD_MAX_BODY_BYTES=str(8 * 1024 * 1024))
    pipeline.start_worker()
    body = b"[" + b",".join([b"{}"] * 1_000_000) + b"]"
    # A generous client timeout: validating a million items takes tens of seconds on a loaded 2-core machine.
    status, answer = post(url + "/v1/events", body, {"Content-Type": "application/json"}, timeout=180)
    assert status == 202 and answer["accepted"] == 0 and answer["rejected_count"] == 1_000_000
    assert [r["index"] for r in answer["rejected"]] == list(range(100))
    # A thousand dead-letter messages, each counted item by item by the worker.
    pipeline.wait_value("aiyield_events_total", 1_000_000, timeout=180, type="unknown", outcome="invalid")


SCOPED = "scoped-secret"


@pytest.fixture
def scoped_gateway(pipeline):
    pipeline.start_worker()
    return pipeline.start_gateway(
        AIYIELD_INGEST_TOKENS=f"{INGEST_TOKEN},{SCOPED}@team=web+team=ops,repo-only@repo=shop/*",
        AIYIELD_GITHUB_SECRET=GITHUB_SECRET, AIYIELD_GITLAB_TOKEN=GITLAB_TOKEN,
    )


def test_finding_4_scoped_tokens_write_only_inside_their_scope(pipeline, scoped_gateway):
    url = scoped_gateway + "/v1/events"
    as_scoped = {"Authorization": f"Bearer {SCOPED}"}
    deployment = {"type": "deployment", "id": "dep-1", "ts": time.time() - 5, "deploy_id": "d1", "repo": "shop/api",
                  "environment": "production", "status": "rolled_back"}
    status, answer = post(url, deployment, as_scoped)
    assert status == 403 and answer["accepted"] == 0 and "may not write deployment" in answer["rejected"][0]["error"]
    status, answer = post(url, [token_event(1), token_event(2, team="payments")], as_scoped)
    assert status == 202 and answer["accepted"] == 1 and [r["index"] for r in answer["rejected"]] == [1]
    assert post(url, deployment, {"Authorization": "Bearer repo-only"})[0] == 202
    assert post(url, token_event(3, team="payments"), bearer())[0] == 202  # unscoped: everything
    # The scope holds on every ingest-token endpoint: Argo CD deployments are not a team token's to write.
    rendered = {"id": "argocd/shop@1", "app": "shop", "repo": "shop/api", "revision": "a" * 40,
                "environment": "production", "phase": "Succeeded", "sync_status": "Synced", "health_status": "Healthy",
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))}
    assert post(scoped_gateway + "/v1/webhooks/argocd", rendered, as_scoped)[0] == 403
    pipeline.wait_value("aiyield_events_total", 2, type="token", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 1, type="deployment", outcome="accepted")
    assert pipeline.value("aiyield_tokens", team="payments", tool="cursor", model="gpt-5", type="input",
                          window="1h") == 100  # only the unscoped token's


def timed_post(url: str, body, headers: dict) -> tuple[int, dict, float, float]:
    """A post with the wall-clock interval it took: a gateway's receive time lies inside it."""
    before = time.time()
    status, answer = post(url, body, headers)
    return status, answer, before, time.time()


def test_v3_scopes_and_arrival_stamps_through_the_gateway(pipeline, tmp_path):
    """Contract v3 §4: a repo-scoped token writes tasks only for the teams owning the repo; §2: whatever a scoped
    token or a webhook writes carries the gateway's receive time as `arrival`, overwriting its own; an unscoped token
    is trusted with what it sends; §1: repo names are folded, abbreviated task SHAs refused naming the rule."""
    org = tmp_path / "org.toml"
    org.write_text('[teams.web]\nrepos = ["Shop/*"]\n\n[teams.payments]\nrepos = ["bank/*"]\n\n'
                   '[teams.octo]\nrepos = ["codertocat/*"]\n')
    pipeline.start_worker()
    gateway = pipeline.start_gateway(
        AIYIELD_INGEST_TOKENS=f"{INGEST_TOKEN},web-token@team=web,shop-token@repo=shop/*,pay-token@team=payments",
        AIYIELD_GITHUB_SECRET=GITHUB_SECRET, AIYIELD_GITLAB_TOKEN=GITLAB_TOKEN, AIYIELD_ORG=str(org),
    )
    url = gateway + "/v1/events"
    now = time.time()

    def task(i: int, team: str, repo: str = "Shop/API", **kw) -> dict:
        return {"type": "task", "id": f"v3-task-{i}", "ts": now - 60, "task_id": f"T{i}", "team": team,
                "tool": "cursor", "status": "completed", "repo": repo, "commits": [f"{i:040x}"], **kw}

    push = {"type": "push", "id": "v3-push", "ts": now - 30, "repo": "shop/api", "branch": "main",
            "commits": [f"{1:040x}"]}
    status, answer, shop_from, shop_to = timed_post(url, [
        task(1, "web", arrival=1.0),  # dated back by its own arrival: overwritten
        task(2, "payments"),  # another team's task in a repo web owns
        push,
        task(3, "payments", repo="bank/core"),  # a repo outside the token's scope
    ], {"Authorization": "Bearer shop-token"})
    assert status == 202 and answer["accepted"] == 2, answer
    assert [r["index"] for r in answer["rejected"]] == [1, 3]
    assert "repo-scoped token writes tasks only under the teams whose repos in the organisation file match " \
           "'shop/api' (web) (contract v3 §4)" in answer["rejected"][0]["error"]
    assert "repo 'bank/core' is outside this ingest token's scope" in answer["rejected"][1]["error"]
    status, answer = post(url, task(4, "payments"), {"Authorization": "Bearer shop-token"})
    assert status == 403 and answer["accepted"] == 0

    status, answer, web_from, web_to = timed_post(url, task(5, "web", repo="bank/core", arrival=now + 10),
                                                  {"Authorization": "Bearer web-token"})
    assert (status, answer["accepted"]) == (202, 1)

    short = {**task(6, "payments"), "commits": ["abcdef1"]}
    status, answer = post(url, [task(7, "payments", arrival=now - 100), task(8, "payments"), short], bearer())
    assert status == 202 and answer["accepted"] == 2
    assert "task commits must be full 40- or 64-character SHAs, got 'abcdef1'" in answer["rejected"][0]["error"]
    assert "contract v3 §1" in answer["rejected"][0]["error"]

    hook = json.loads((FIXTURES / "github/push.branch.json").read_bytes())
    hook["repository"]["pushed_at"] = int(now - 20)
    hook["commits"][0]["message"] += "\n\nCo-authored-by: Claude <noreply@anthropic.com>"
    before = time.time()
    assert github(gateway, "push", hook, "v3-delivery")[1]["accepted"] == 2
    github_from, github_to = before, time.time()

    # Every endpoint a scoped token opens stamps the same way: LiteLLM, OTLP, Argo CD.
    litellm_body = (FIXTURES / "litellm/single.0.json").read_bytes()  # team payments
    status, answer, llm_from, llm_to = timed_post(gateway + "/v1/webhooks/litellm", litellm_body,
                                                  {"Authorization": "Bearer pay-token"})
    assert (status, answer["accepted"]) == (202, 1), answer
    metrics = otlp_sum(1000, int((now - 120) * 1e9), int((now - 60) * 1e9))
    metrics["resourceMetrics"][0]["resource"]["attributes"][1]["value"]["stringValue"] = "web"
    status, _, otlp_from, otlp_to = timed_post(gateway + "/v1/metrics", metrics, {"Authorization": "Bearer web-token"})
    assert status == 200
    rendered = {"id": "argocd/shop@v3", "app": "shop", "repo": "Shop/API", "revision": "a" * 40,
                "environment": "production", "phase": "Succeeded", "sync_status": "Synced", "health_status": "Healthy",
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5))}
    status, answer, argo_from, argo_to = timed_post(gateway + "/v1/webhooks/argocd", rendered,
                                                    {"Authorization": "Bearer shop-token"})
    assert (status, answer["accepted"]) == (202, 1), answer

    published = {e["id"]: e for e in pipeline.published(10)}
    assert len(published) == 10, sorted(published)
    (llm,) = [e for e in published.values() if e["id"].startswith("chatcmpl-")]
    (otlp,) = [e for e in published.values() if e["type"] == "token" and e["team"] == "web"]
    (argo,) = [e for e in published.values() if e["type"] == "deployment"]
    assert llm_from <= llm["arrival"] <= llm_to and otlp_from <= otlp["arrival"] <= otlp_to
    assert argo_from <= argo["arrival"] <= argo_to and argo["repo"] == "shop/api"
    assert shop_from <= published["v3-task-1"]["arrival"] <= shop_to
    assert shop_from <= published["v3-push"]["arrival"] <= shop_to
    assert web_from <= published["v3-task-5"]["arrival"] <= web_to
    assert published["v3-task-7"]["arrival"] == now - 100  # unscoped: trusted like an operator
    assert "arrival" not in published["v3-task-8"]
    webhook = [e for e in published.values() if e["id"].startswith(("github-push-", "git-"))]
    assert len(webhook) == 2 and all(github_from <= e["arrival"] <= github_to for e in webhook)
    assert published["v3-task-1"]["repo"] == "shop/api"  # folded at the gateway, as everywhere downstream
    assert {e["repo"] for e in webhook} == {"codertocat/hello-world"}

    # The worker reads the stamped events back as valid: five tasks and two pushes.
    pipeline.wait_value("aiyield_events_total", 5, type="task", outcome="accepted")
    pipeline.wait_value("aiyield_events_total", 2, type="push", outcome="accepted")


def test_finding_4_an_open_gateway_beyond_loopback_refuses_to_start(pipeline):
    env = {**pipeline.env, "AIYIELD_GATEWAY_HOST": "0.0.0.0", "AIYIELD_GATEWAY_PORT": str(free_port()),
           "AIYIELD_INGEST_TOKENS": INGEST_TOKEN}
    env.pop("AIYIELD_GITHUB_SECRET", None), env.pop("AIYIELD_GITLAB_TOKEN", None)
    refused = subprocess.run([sys.executable, "-m", "aiyield", "gateway"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2
    assert "AIYIELD_GITHUB_SECRET, AIYIELD_GITLAB_TOKEN are not set" in refused.stderr
    assert "AIYIELD_ALLOW_ANONYMOUS=true" in refused.stderr
    # Told explicitly, it starts.
    url = pipeline.start_gateway(AIYIELD_GATEWAY_HOST="0.0.0.0", AIYIELD_ALLOW_ANONYMOUS="true")
    assert post(url + "/v1/events", token_event(1))[0] == 202


def otlp_sum(value: float, start_ns: int, time_ns: int) -> dict:
    point = {"startTimeUnixNano": str(start_ns), "timeUnixNano": str(time_ns), "asDouble": value,
             "attributes": [{"key": "type", "value": {"stringValue": "input"}},
                            {"key": "model", "value": {"stringValue": "claude-sonnet-4-5"}}]}
    return {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}},
                                    {"key": "team", "value": {"stringValue": "payments"}}]},
        "scopeMetrics": [{"metrics": [{"name": "claude_code.token.usage", "sum": {
            "aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [point]}}]}]}]}


def test_finding_5_cumulative_values_cannot_be_steered(pipeline, gateway):
    labels = dict(team="payments", tool="claude-code", model="claude-sonnet-4-5", type="input", window="1h")
    now_ns = int((time.time() - 60) * 1e9)
    start = now_ns - 10**9
    for i, value in enumerate((1000, 999, 1000, 999)):  # a lower value is no reset
        assert post(gateway + "/v1/metrics", otlp_sum(value, start, now_ns + i * 10**9), bearer())[0] == 200
    # A start time far in the future is ignored: it must not freeze the series.
    far = int((time.time() + 10 * 365 * 86400) * 1e9)
    assert post(gateway + "/v1/metrics", otlp_sum(5000, far, far + 1), bearer())[0] == 200
    assert post(gateway + "/v1/metrics", otlp_sum(1500, start, now_ns + 10 * 10**9), bearer())[0] == 200
    pipeline.wait_value("aiyield_tokens", 1500, **labels)
    assert gateway_metric(gateway, 'aiyield_gateway_ignored_total{source="otlp_metrics"}') == 3


def raw_http(url: str, data: bytes, read_timeout: float = 30, first: bool = False) -> bytes:
    """Send raw bytes on a fresh connection; return everything answered until the server closes it (or, `first`,
    what the first read returns)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if first:
                    break
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def test_finding_6_unauthenticated_senders_cannot_hold_memory_or_connections(pipeline):
    url = pipeline.start_gateway(
        AIYIELD_GITHUB_SECRET=GITHUB_SECRET, AIYIELD_GITLAB_TOKEN=GITLAB_TOKEN, AIYIELD_INGEST_TOKENS=INGEST_TOKEN,
        AIYIELD_HEADER_TIMEOUT_SECONDS="1", AIYIELD_BODY_TIMEOUT_SECONDS="1", AIYIELD_MAX_CONNECTIONS="16",
        AIYIELD_RATE_LIMIT_PER_SECOND="0.01", AIYIELD_RATE_LIMIT_BURST="3",
    )
    # Authentication before the body, on every write endpoint: a promised 5 MiB is never waited for.
    for path, headers in (("/v1/webhooks/github", "X-GitHub-Event: push\r\n"), ("/v1/events", ""),
                          ("/v1/webhooks/gitlab", ""), ("/v1/webhooks/argocd", ""), ("/v1/metrics", ""),
                          ("/v1/logs", "")):
        answer = raw_http(url, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n{headers}"
                          "\r\n".encode(), first=True)
        assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:100])
    # Headers never completed: the connection is closed, without an answer.
    assert raw_http(url, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ") == b""
    assert raw_http(url, b"") == b""  # nor a connection that never sends anything
    # A body that never completes: 408 and closed.
    answer = raw_http(url, f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{".encode())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    # Connections beyond the cap: 503 at once.
    host, port = url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(16)]
    try:
        answer = raw_http(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", first=True)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer, answer[:100]
    finally:
        for sock in idle:
            sock.close()
    # Per-sender request rates: a burst of 3 (the 408 above was one), then 429 with Retry-After (1 per 100 s).
    statuses = [post(url + "/v1/events", token_event(1), bearer())[0] for _ in range(3)]
    assert statuses == [202, 202, 429]
    request = urllib.request.Request(url + "/v1/events", data=b"{}", headers=bearer(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 429 and int(info.value.headers["Retry-After"]) >= 1
    # Another sender is not limited by that one.
    assert post(url + "/v1/webhooks/gitlab", {"object_kind": "issue"}, {"X-Gitlab-Token": GITLAB_TOKEN})[0] == 202


def test_finding_7_odd_inputs_are_4xx_never_5xx(pipeline, gateway):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert post(gateway + "/v1/events", deep, {**bearer(), "Content-Type": "application/json"})[0] == 413
    deep = b"[" * 20_000 + b"]" * 20_000
    assert post(gateway + "/v1/events", deep, {**bearer(), "Content-Type": "application/json"})[0] == 400
    assert post(gateway + "/v1/webhooks/argocd", b'{"a":' + deep + b"}", bearer())[0] == 400
    assert post(gateway + "/v1/webhooks/gitlab", deep, {"X-Gitlab-Token": GITLAB_TOKEN})[0] == 400
    assert post(gateway + "/v1/metrics", b'{"resourceMetrics":' + deep + b"}",
                {**bearer(), "Content-Type": "application/json"})[0] == 400
    # NaN, infinities and 1e300 in OTLP: ignored or rejected, never a 500.
    now_ns = int((time.time() - 60) * 1e9)
    for value in ("NaN", "Infinity", "-Infinity", 1e300, -5):
        status, _ = post(gateway + "/v1/metrics", otlp_sum(value, now_ns - 10**9, now_ns), bearer())
        assert status == 200, value
        delta = otlp_sum(value, now_ns - 10**9, now_ns)
        delta["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["aggregationTemporality"] = 1
        assert post(gateway + "/v1/metrics", delta, bearer())[0] == 200, value
    # Pre-1970 times: rejected by the gateway's own timestamp parsing, as the validator rejects them.
    rendered = {"id": "argocd/shop@1", "app": "shop", "repo": "acme/shop", "revision": "a" * 40,
                "environment": "production", "phase": "Succeeded", "sync_status": "Synced",
                "health_status": "Healthy", "finished_at": "1969-12-31T23:59:59Z"}
    status, answer = post(gateway + "/v1/webhooks/argocd", rendered, bearer())
    assert status == 400 and "1970" in answer["error"]
    # /readyz is cached: a flood of probes costs one Kafka check, not one client each.
    for _ in range(30):
        with urllib.request.urlopen(gateway + "/readyz", timeout=10) as response:
            assert response.status == 200
    assert 1 <= gateway_metric(gateway, "aiyield_gateway_readiness_checks_total") <= 2
    # A client that goes away mid-body is logged as a disconnect, not as a 500.
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n"
                     "Content-Length: 1000\r\n\r\n[{".encode())
        time.sleep(0.5)
    wait_for(lambda: gateway_metric(gateway, "aiyield_gateway_client_disconnects_total") == 1, 30, "the disconnect")
    log = (pipeline.logdir / "gateway.log").read_text()
    assert "client disconnected during POST /v1/events" in log
    assert "status=500" not in log and "Traceback" not in log


# -- fuzzing: no input gives a 5xx ------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
#: Keys and values the adapters look for, so that fuzzed bodies reach deep into them.
known_keys = st.sampled_from(["type", "id", "ts", "team", "events", "ref", "after", "commits", "repository",
                              "object_kind", "deployment", "deployment_status", "resourceMetrics", "resourceLogs",
                              "app", "revision", "phase", "finished_at", "input_tokens", "cost_usd"])
shaped = st.dictionaries(known_keys, json_values, max_size=6)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
    st.lists(shaped, max_size=3).map(lambda v: json.dumps(v).encode()),
)
content_types = st.sampled_from(["application/json", "application/x-ndjson", "application/x-protobuf", "text/plain",
                                 "application/json; charset=utf-8", ""])
ENDPOINTS = ["/v1/events", "/v1/webhooks/github", "/v1/webhooks/gitlab", "/v1/webhooks/argocd", "/v1/metrics",
             "/v1/logs"]


def signed_headers(path: str, body: bytes, content_type: str, event: str) -> dict:
    headers = {"Content-Type": content_type} if content_type else {}
    if path == "/v1/webhooks/github":
        signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {**headers, "X-Hub-Signature-256": signature, "X-GitHub-Event": event, "X-GitHub-Delivery": "d"}
    if path == "/v1/webhooks/gitlab":
        return {**headers, "X-Gitlab-Token": GITLAB_TOKEN}
    return {**headers, **bearer()}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_fuzzed_bodies_never_get_a_5xx(pipeline, gateway, path):
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=bodies, content_type=content_types, event=st.sampled_from(["push", "deployment_status", "ping", "x"]),
           gzipped=st.booleans())
    def check(body: bytes, content_type: str, event: str, gzipped: bool) -> None:
        headers = signed_headers(path, gzip.compress(body) if gzipped else body, content_type, event)
        if gzipped:
            body, headers = gzip.compress(body), {**headers, "Content-Encoding": "gzip"}
        status, answer = post(gateway + path, body, headers)
        assert status < 500, (status, answer)

    check()
    log = (pipeline.logdir / "gateway.log").read_text()
    assert "Traceback" not in log and "status=500" not in log
