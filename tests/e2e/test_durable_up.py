"""`aiyield up --data DIR` (contract v3 §5): SIGKILL of the whole process tree right after the gateway's 202, `up`
again on the same directory, and every event counted exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from aiyield.embedded import free_port

from .test_cli import sample, scrape, user_env  # noqa: F401 - user_env is a fixture

pytestmark = pytest.mark.e2e

BATCHES, SIZE, RESENT = 20, 100, 150


def start_up(env: dict, data, logs) -> tuple[subprocess.Popen, int, int]:
    """`aiyield up --data DIR` in its own process group (so the whole tree can be SIGKILLed), once it answers."""
    metrics_port, gateway_port = free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "aiyield", "up", "--data", str(data),
         "--metrics-port", str(metrics_port), "--gateway-port", str(gateway_port)],
        env=env, stdout=logs, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not scrape(metrics_port) or not healthy(gateway_port):
        assert up.poll() is None and time.monotonic() < deadline, "aiyield up did not start"
        time.sleep(0.5)
    return up, metrics_port, gateway_port


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def post(port: int, events: list[dict]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=json.dumps(events).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def counted(port: int) -> tuple[float, float, float]:
    """(accepted, duplicate) token events and the 30-day spend, from /metrics."""
    text = scrape(port)
    return (sum(sample(text, 'aiyield_events_total{outcome="accepted",type="token"}')),
            sum(sample(text, 'aiyield_events_total{outcome="duplicate",type="token"}')),
            sum(sample(text, 'aiyield_spend_usd{model="m",team="pay",tool="cc",window="30d"}')))


def test_sigkill_of_the_whole_tree_then_up_again_counts_every_event_once(user_env, tmp_path):
    data = tmp_path / "data"
    now = int(time.time()) - 60
    events = [{"type": "token", "id": f"e{i}", "ts": now, "team": "pay", "tool": "cc", "model": "m",
               "input_tokens": 3, "output_tokens": 1, "cost_usd": 0.25} for i in range(BATCHES * SIZE)]
    with open(tmp_path / "up-1.log", "wb") as logs:
        up, _metrics, gateway = start_up(user_env, data, logs)
        try:
            for n in range(BATCHES):
                assert post(gateway, events[n * SIZE:(n + 1) * SIZE]) == 202
            assert post(gateway, events[:RESENT]) == 202  # re-sent: duplicates, in the very last batch
            os.killpg(up.pid, signal.SIGKILL)  # right after the 202: worker, broker, Redis, everything
            up.wait()
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
    with open(tmp_path / "up-2.log", "wb") as logs:
        up, metrics, _gateway = start_up(user_env, data, logs)
        try:
            expected = (BATCHES * SIZE, RESENT, BATCHES * SIZE * 0.25)
            deadline = time.monotonic() + 120
            while counted(metrics)[:2] != expected[:2]:
                assert time.monotonic() < deadline, f"counted {counted(metrics)}, expected {expected}"
                time.sleep(0.5)
            time.sleep(3)  # anything counted twice would show by now
            accepted, duplicates, spend = counted(metrics)
            assert (accepted, duplicates) == expected[:2]
            assert spend == pytest.approx(expected[2])
        finally:
            up.send_signal(signal.SIGINT)
            try:
                assert up.wait(30) == 0
            finally:
                if up.poll() is None:
                    os.killpg(up.pid, signal.SIGKILL)
