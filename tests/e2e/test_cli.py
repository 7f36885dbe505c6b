"""The CLI as a user runs it: `aiyield up --simulate`, then `send` and `report` against it, then a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from aiyield.embedded import free_port

pytestmark = pytest.mark.e2e


def aiyield(*args: str, env: dict, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiyield", *args], env=env, input=stdin, capture_output=True,
                          timeout=timeout)


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def sample(text: str, prefix: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def user_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIYIELD_")}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), AIYIELD_PSEUDONYM_KEY="e2e", COLUMNS="200")
    return env


def test_up_simulate_send_report_and_stop(user_env, tmp_path):
    metrics_port, gateway_port, grpc_port = free_port(), free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "aiyield", "up", "--simulate", "--rate", "300", "--duration", "150",
         "--metrics-port", str(metrics_port), "--gateway-port", str(gateway_port), "--otlp-grpc-port", str(grpc_port)],
        env=user_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        spend = []
        while time.monotonic() < deadline:
            assert up.poll() is None, up.stdout.read().decode()
            text = scrape(metrics_port)
            spend = [v for v in sample(text, "aiyield_spend_usd{") if v > 0]
            deployments = [v for v in sample(text, 'aiyield_normalized_deployments{') if v > 0]
            if spend and deployments:
                break
            time.sleep(1)
        assert spend, "no non-zero aiyield_spend_usd"
        assert deployments, "the simulator's deployments produced no normalized deployment"

        # `send` and `report` find the running pipeline by themselves.
        now = time.time()
        lines = [
            json.dumps({"type": "token", "id": "e2e-1", "ts": now, "team": "e2e-team", "tool": "cli", "model": "gpt-5",
                        "input_tokens": 1_000_000, "output_tokens": 0}),
            "",
            json.dumps({"type": "token", "id": "e2e-2", "ts": now, "team": "e2e-team"}),
            json.dumps({"type": "task", "id": "e2e-3", "ts": now, "task_id": "T", "team": "e2e-team", "tool": "cli",
                        "status": "completed", "repo": "acme/shop", "commits": ["9fceb02"]}),
        ]
        sent = aiyield("send", "-", env=user_env, stdin="\n".join(lines).encode())
        assert sent.returncode == 1, sent.stderr.decode()
        out = sent.stdout.decode()
        assert "line 3: Object missing required field `tool`" in out
        # Contract v3 §1: a task claims full SHAs, and `send` says which rule an event breaks.
        assert "line 4: task commits must be full 40- or 64-character SHAs, got '9fceb02'" in " ".join(out.split())
        assert "│        1 │        2 │" in out or "1 │ 2" in out.replace("  ", " ")

        def e2e_spend() -> float | None:
            report = aiyield("report", "--window", "1h", "--format", "json", env=user_env)
            assert report.returncode == 0, report.stderr.decode()
            teams = {row["team"]: row for row in json.loads(report.stdout)["teams"]}
            return teams.get("e2e-team", {}).get("spend_usd")

        deadline = time.monotonic() + 60
        while e2e_spend() != 1.25 and time.monotonic() < deadline:
            time.sleep(1)
        assert e2e_spend() == 1.25  # 1M input tokens of gpt-5 at $1.25 per million

        table = aiyield("report", "--window", "1h", env=user_env)
        assert "growth-lab" in table.stdout.decode() and "normalized" in table.stdout.decode()
        csv = aiyield("report", "--format", "csv", env=user_env).stdout.decode().splitlines()
        assert csv[0].startswith("window,team,spend_usd,normalized_deployments")

        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    output = up.stdout.read().decode()
    assert f"http://localhost:{metrics_port}/metrics" in output
    assert f"http://localhost:{metrics_port}/ " in output  # the live page
    assert f"http://localhost:{grpc_port}" in output  # OTLP over gRPC
    # Everything it started is gone: ports closed, state file removed.
    time.sleep(1)
    assert not port_open(metrics_port) and not port_open(gateway_port) and not port_open(grpc_port)
    assert not (tmp_path / "state" / "aiyield" / "up.json").exists()


def test_up_stops_cleanly_on_sigterm(user_env):
    metrics_port, gateway_port = free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "aiyield", "up", "--metrics-port", str(metrics_port), "--gateway-port", str(gateway_port),
         "--otlp-grpc-port", "0"],
        env=user_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while not (scrape(metrics_port) and port_open(gateway_port)) and time.monotonic() < deadline:
            assert up.poll() is None, up.stdout.read().decode()
            time.sleep(0.5)
        assert port_open(gateway_port)
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    time.sleep(1)
    assert not port_open(metrics_port) and not port_open(gateway_port)


def test_commands_without_services_say_what_to_do(user_env):
    result = aiyield("report", env=user_env)
    assert result.returncode == 2
    assert "AIYIELD_REDIS not set" in result.stderr.decode()
    bad = aiyield("report", env={**user_env, "AIYIELD_PARTITIONS": "zero"})
    assert bad.returncode == 2 and "AIYIELD_PARTITIONS" in bad.stderr.decode()
