"""The local pipeline's pure parts: where the state file is, what it says, and how `up` starts its children.

Starting the whole pipeline is covered by tests/e2e/test_cli.py, with the CLI in a subprocess.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aiyield.local import (
    DataDirInUse,
    data_dir,
    lock_data,
    read_state,
    resolve_services,
    service_commands,
    service_env,
    state_dir,
    state_file,
    write_state,
)
from aiyield.settings import Settings


def test_state_file_follows_xdg_then_the_override(tmp_path):
    assert state_file({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "aiyield" / "up.json"
    assert state_file({}) == Path.home() / ".local" / "state" / "aiyield" / "up.json"
    assert state_file({"XDG_STATE_HOME": str(tmp_path), "AIYIELD_STATE_FILE": "/x/y/up.json"}) == Path("/x/y/up.json")
    assert state_dir({"AIYIELD_STATE_FILE": "/x/y/up.json"}) == Path("/x/y")


def test_state_round_trips_and_tolerates_garbage(tmp_path):
    path = tmp_path / "deep" / "up.json"
    write_state(path, "127.0.0.1:1", "redis://127.0.0.1:2/0", pid=42)
    assert json.loads(path.read_text())["pid"] == 42
    assert read_state(path) == {"kafka": "127.0.0.1:1", "redis": "redis://127.0.0.1:2/0"}
    assert read_state(tmp_path / "none") == {}
    for garbage in ("not json", "[1, 2]", '{"kafka": 5, "redis": ""}'):
        path.write_text(garbage)
        assert read_state(path) == {}


def test_services_are_found_from_a_running_up(tmp_path):
    state = tmp_path / "up.json"
    write_state(state, "127.0.0.1:1", "redis://127.0.0.1:2/0", pid=1)
    s = resolve_services(Settings(), state)
    assert (s.kafka, s.redis) == ("127.0.0.1:1", "redis://127.0.0.1:2/0")
    configured = resolve_services(Settings(kafka="mine:9092"), state)
    assert (configured.kafka, configured.redis) == ("mine:9092", "redis://127.0.0.1:2/0")
    assert resolve_services(Settings(), tmp_path / "none").kafka is None


def test_resolve_services_reads_the_state_file_named_by_the_environment(tmp_path, monkeypatch):
    state = tmp_path / "elsewhere.json"
    write_state(state, "k:1", "redis://r:2/0", pid=1)
    monkeypatch.setenv("AIYIELD_STATE_FILE", str(state))
    assert resolve_services(Settings()).redis == "redis://r:2/0"


def test_children_get_the_settled_addresses_and_ports():
    settings = Settings(kafka="k:9092", redis="redis://r/0", gateway_port=1234, metrics_port=5678, otlp_grpc_port=0)
    env = service_env(settings, {"PATH": "/bin", "AIYIELD_KAFKA": "stale:1"})
    assert env == {"PATH": "/bin", "AIYIELD_KAFKA": "k:9092", "AIYIELD_REDIS": "redis://r/0",
                   "AIYIELD_GATEWAY_PORT": "1234", "AIYIELD_METRICS_PORT": "5678", "AIYIELD_OTLP_GRPC_PORT": "0"}
    assert service_env(Settings(prices="/p.toml"), {})["AIYIELD_PRICES"] == "/p.toml"


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_then_exporter_then_gateway(workers):
    commands = service_commands(workers)
    names = [name for name, _argv in commands]
    assert names == [*(f"worker-{i}" for i in range(workers)), "exporter", "gateway"]
    for name, argv in commands:
        assert argv[:3] == [sys.executable, "-m", "aiyield"] and argv[3] == name.split("-")[0]


def test_a_child_that_stops_is_reported_by_name(tmp_path):
    from aiyield.embedded import spawn
    from aiyield.local import LocalPipeline, ServiceExited

    alive = spawn("worker-0", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path)
    dead = spawn("gateway", [sys.executable, "-c", "print('port in use'); raise SystemExit(3)"], tmp_path)
    try:
        dead.proc.wait(10)
        running = LocalPipeline(Settings(metrics_port=1, gateway_port=2), tmp_path, [alive, dead])
        assert (running.metrics_url, running.gateway_url) == ("http://localhost:1/metrics", "http://localhost:2")
        with pytest.raises(ServiceExited, match=r"gateway exited \(3\)") as caught:
            running.wait(duration=None)
        assert "port in use" in caught.value.child.tail()

        healthy = LocalPipeline(Settings(), tmp_path, [alive])
        healthy.wait(duration=0.1)  # returns when the duration is over
        assert alive.proc.poll() is None
    finally:
        alive.stop()


def test_data_lives_in_the_state_directory_by_default(tmp_path):
    assert data_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "aiyield"


def test_one_up_per_data_directory(tmp_path):
    import os

    held = lock_data(tmp_path / "data")
    try:
        with pytest.raises(DataDirInUse, match="another aiyield up is using"):
            lock_data(tmp_path / "data")
    finally:
        os.close(held)
    os.close(lock_data(tmp_path / "data"))  # free again once the holder let go
