"""Alerts that reach someone: a real Prometheus and Alertmanager (Debian packages `prometheus`,
`prometheus-alertmanager`) scrape `aiyield up --simulate`; the wasteful team's alert reaches a webhook receiver run by
this test, routed by the committed Alertmanager configuration, and every dashboard query returns data.

The committed files are used with only what a test must change: addresses (free ports, the test's webhook), the
`for:` durations and evaluation intervals (seconds instead of 30 minutes; the durations themselves are covered by
`promtool test rules`), and Alertmanager's group timings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aiyield.core.finance import Signal
from aiyield.embedded import free_port

yaml = pytest.importorskip("yaml", reason="PyYAML not installed: add pyyaml to the test dependencies")

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
WASTEFUL = "growth-lab"  # simulate.py: burns tokens, never ships
FARM = "ops-farm"  # simulate.py: cuts work into many claims (contested)
HONEST = ("payments", "search", "platform", "data")

#: Dashboard queries that cannot return data under `up --simulate` yet, and why. Everything else must.
KNOWN_EMPTY = {
    "aiyield_cardinality_overflow_total": "the simulator's names stay under the caps (the guard is tested in "
                                          "tests/unit/test_batch.py)",
    "aiyield_billed_usd": "bills come from the providers' admin APIs (tests/integration/test_reconcile.py)",
    "aiyield_billed_estimated_usd": "the same",
    "aiyield_spend_capture_ratio": "the same",
    "aiyield_tool_lines_total": "the simulator sends no OTLP (tests/integration/test_otel_genai.py, test_gateway.py)",
    "aiyield_tool_commits_total": "the same",
    "aiyield_tool_pull_requests_total": "the same",
    "aiyield_tool_suggestions_total": "the pull connectors bring these (`aiyield pull`: tests/integration/test_pull.py)",
    "aiyield_tool_active_user_days_total": "the same",
    "seats": "seat spend (`model=\"seats\"`) comes from `aiyield pull` too",
}

#: A team only this test sends for: its spend counter is compared with what it sent.
COUNTED = "e2e-counted"


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    pytest.skip(f"{' / '.join(names)} not installed: apt-get install prometheus prometheus-alertmanager")


class Webhook:
    """An Alertmanager webhook receiver: records every alert it is sent."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body)
                for alert in payload.get("alerts", []):
                    received.append({**alert, "receiver": payload.get("receiver")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/alerts"

    def firing(self, alertname: str) -> list[dict]:
        return [a for a in self.alerts if a["labels"].get("alertname") == alertname and a.get("status") == "firing"]


def alertmanager_config(webhook_url: str) -> dict:
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
        receiver.pop("slack_configs", None)  # no Slack workspace in a test
    for route in [config["route"], *config["route"].get("routes", [])]:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
    return config


def rules_for_test(path: Path) -> dict:
    rules = yaml.safe_load(path.read_text())
    for group in rules["groups"]:
        group["interval"] = "2s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "4s"
    return rules


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)


def wait_for(predicate, timeout: float, what: str, procs: list[subprocess.Popen], logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                raise AssertionError(f"{log.name} exited:\n{log.read_text(errors='replace')[-3000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in logs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) of every panel target, variables set to sample values."""
    values = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "15s", "$team": ".*", "$tool": ".*"}

    def interpolated(expr: str) -> str:
        for var, value in values.items():
            expr = expr.replace(var, value)
        return expr

    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                out.append((path.stem, panel["title"], interpolated(target["expr"])))
        for annotation in dashboard["annotations"]["list"]:
            out.append((path.stem, f"annotation {annotation['name']}", interpolated(annotation["expr"])))
    return out


def test_wasteful_team_alert_reaches_the_webhook_and_dashboards_have_data(tmp_path):
    prometheus = binary("prometheus")
    alertmanager = binary("prometheus-alertmanager", "alertmanager")
    webhook = Webhook()
    metrics_port, gateway_port, am_port, prom_port = free_port(), free_port(), free_port(), free_port()

    budgets = tmp_path / "budgets.toml"
    budgets.write_text("[teams.payments]\nmonthly_usd = 1\n\n[default]\nmonthly_usd = 1000000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIYIELD_")}
    # A 2-minute grace before judging a team that never shipped (default 15 min): honest teams ship well within it,
    # even on a loaded machine where the join runs behind.
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), AIYIELD_PSEUDONYM_KEY="e2e", AIYIELD_BUDGETS=str(budgets),
               AIYIELD_WASTE_GRACE_SECONDS="120",
               COLUMNS="200")

    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(webhook.url)))
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "aiyield.rules.yml").write_text(
        yaml.safe_dump(rules_for_test(REPO / "deploy" / "prometheus" / "rules" / "aiyield.rules.yml")))
    prom_config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    prom_config["global"].update(scrape_interval="2s", evaluation_interval="2s")
    prom_config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    prom_config["rule_files"] = [str(rules_dir / "*.rules.yml")]
    for job in prom_config["scrape_configs"]:
        target = f"127.0.0.1:{metrics_port}" if job["job_name"] == "aiyield-exporter" else f"127.0.0.1:{prom_port}"
        job["static_configs"] = [{"targets": [target]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))

    logs = [tmp_path / n for n in ("up.log", "alertmanager.log", "prometheus.log")]
    procs = [
        start([sys.executable, "-m", "aiyield", "up", "--simulate", "--rate", "100", "--metrics-port", str(metrics_port),
               "--gateway-port", str(gateway_port), "--otlp-grpc-port", "0"], logs[0], env),
        start([alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], logs[1]),
        start([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}"], logs[2]),
    ]
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        wasteful = lambda: [a for a in webhook.firing("AiyieldWasteSignal") if a["labels"]["team"] == WASTEFUL]  # noqa: E731
        wait_for(wasteful, 400, "a waste alert for the wasteful team at the webhook", procs, logs)
        waste = webhook.firing("AiyieldWasteSignal")
        # Only the simulation's two gaming teams: the one that burns tokens, and the one that farms claims (its
        # line-less trailer claims are contested).
        assert {a["labels"]["team"] for a in waste} <= {WASTEFUL, FARM}, waste
        # Which of its signals fires first depends on timing (it burns tokens, abandons tasks, claims others'
        # commits); that every alert is one of the waste signals, for the wasteful team only, does not.
        assert {a["labels"]["signal"] for a in waste} <= set(Signal.ALL), waste
        assert {a["receiver"] for a in waste} == {"finance"}  # severity=warning route
        assert waste[0]["annotations"]["runbook"] == "docs/RUNBOOK.md#aiyieldwastesignal"

        # The budget route too: payments' 1 USD budget is overrun by its forecast.
        wait_for(lambda: webhook.firing("AiyieldBudgetForecastOverrun"), 60, "a budget alert", procs, logs)
        overrun = {a["labels"]["team"] for a in webhook.firing("AiyieldBudgetForecastOverrun")}
        assert overrun == {"payments"}

        # What the simulator never sends, sent as a user would: a model missing from the price table, a duplicate
        # and an invalid line (so the pipeline dashboard's rejection panels have something to show).
        now = time.time()
        unpriced = {"type": "token", "id": "e2e-unpriced", "ts": now, "team": "payments", "tool": "claude-code",
                    "model": "e2e-unknown-model", "input_tokens": 10, "output_tokens": 10}
        lines = [json.dumps(unpriced), json.dumps(unpriced), '{"type": "token", "id": "e2e-bad"}']
        sent = subprocess.run([sys.executable, "-m", "aiyield", "send", "-"], input="\n".join(lines).encode(), env=env,
                              capture_output=True, timeout=60)
        assert sent.returncode == 1 and b"line 3" in sent.stdout, sent.stdout + sent.stderr  # the invalid line

        def query(expr: str) -> list:
            result = get_json(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))
            assert result is not None and result["status"] == "success", expr
            return result["data"]["result"]

        # Honest teams are never flagged, now or at any point Prometheus saw.
        flagged = query(f'max_over_time(aiyield_waste_signal{{team=~"{"|".join(HONEST)}"}}[10m]) == 1')
        first_output = query('min_over_time(timestamp(aiyield_normalized_deployments{window="1h"} > 0)[10m:2s])')
        assert flagged == [], f"honest teams flagged: {flagged}; first output seen at: {first_output}"

        pending = [q for q in dashboard_queries() if not any(metric in q[2] for metric in KNOWN_EMPTY)]
        assert len(pending) > 30
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            pending = [q for q in pending if not query(q[2])]
            time.sleep(2)
        assert not pending, f"dashboard queries without data: {pending}"

        # The counters through a real Prometheus: increase() over 5 minutes is what was sent. A series that appears
        # mid-range has no sample before its first value, so a seed event of 1 micro-USD creates it first: Prometheus
        # extrapolates the start of a counter down to zero at most, so the answer is the sent cost plus at most the
        # seed; evaluated at the newest sample's time, nothing is extrapolated at the end.
        seed, costs = 0.000001, [0.25, 0.5, 1.125, 2.0]

        def send(events: list[dict]) -> None:
            body = "\n".join(json.dumps(e) for e in events).encode()
            done = subprocess.run([sys.executable, "-m", "aiyield", "send", "-"], input=body, env=env,
                                  capture_output=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr

        def counted() -> float | None:
            found = query(f'sum(aiyield_spend_usd_total{{team="{COUNTED}"}})')
            return float(found[0]["value"][1]) if found else None

        def token(i: int, cost: float) -> dict:
            return {"type": "token", "id": f"e2e-counted-{i}", "ts": time.time(), "team": COUNTED, "tool": "claude-code",
                    "model": "claude-sonnet-4", "input_tokens": 100, "output_tokens": 10, "cost_usd": cost}

        send([token(0, seed)])
        wait_for(lambda: counted() is not None, 60, "the seeded counter in Prometheus", procs, logs)
        send([token(i + 1, cost) for i, cost in enumerate(costs)] + [token(1, costs[0])])  # and a duplicate
        wait_for(lambda: (counted() or 0) >= seed + sum(costs) - 1e-9, 60, "the sent spend in Prometheus", procs, logs)
        time.sleep(3)  # a scrape or two more: the newest sample is flat
        newest = query(f'max(timestamp(aiyield_spend_usd_total{{team="{COUNTED}"}}))')[0]["value"][1]
        result = get_json(f"{api}/query?" + urllib.parse.urlencode({
            "query": f'sum(increase(aiyield_spend_usd_total{{team="{COUNTED}"}}[5m]))', "time": newest}))
        increase = float(result["data"]["result"][0]["value"][1])
        assert sum(costs) - 1e-9 <= increase <= sum(costs) + seed + 1e-9, (increase, sum(costs))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is procs[0] else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        webhook.server.shutdown()


def test_known_empty_queries_are_real_dashboard_queries():
    """The exemptions above name metrics the dashboards really query (so an exemption cannot hide a typo)."""
    exprs = " ".join(expr for _, _, expr in dashboard_queries())
    for metric in KNOWN_EMPTY:
        assert re.search(rf"\b{metric}\b", exprs), metric
