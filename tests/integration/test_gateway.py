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


def post(url: str, body: bytes | dict | list, headers: dict | None = None) -> tuple[int, dict | bytes]:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
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
    other = meter.create_counter("claude_code.lines_of_code.count")
    attrs = {"model": "claude-sonnet-4-5"}
    tokens.add(1000, {**attrs, "type": "input"})
    tokens.add(200, {**attrs, "type": "output"})
    cost.add(0.25, attrs)
    other.add(5, {"type": "added"})
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
