"""docker-compose.yml and the Dockerfile: services, wiring, scalable workers, no secret defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIYIELD_SERVICES = {"aiyield-worker": "worker", "aiyield-exporter": "exporter", "aiyield-gateway": "gateway"}
SECRETS = ("AIYIELD_PSEUDONYM_KEY", "AIYIELD_GITHUB_SECRET", "AIYIELD_GITLAB_TOKEN", "AIYIELD_INGEST_TOKENS")


@pytest.fixture(scope="module")
def compose(load_yaml) -> dict:
    return load_yaml(REPO / "docker-compose.yml")


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_services_defined(compose):
    assert set(compose["services"]) >= {
        "kafka", "redis", "aiyield-worker", "aiyield-exporter", "aiyield-gateway", "prometheus", "grafana",
    }


def test_kafka_is_a_single_kraft_node(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "healthcheck" in kafka


def test_aiyield_services_share_the_image_and_wiring(compose):
    for name, command in AIYIELD_SERVICES.items():
        service = compose["services"][name]
        assert service["build"] == "." and (REPO / "Dockerfile").is_file(), name
        assert service["command"][0] == command, name
        env = _env(service)
        assert env["AIYIELD_KAFKA"] == "kafka:9092", name
        assert env["AIYIELD_REDIS"] == "redis://redis:6379/0", name


def test_ports(compose):
    services = compose["services"]
    assert "8787:8787" in services["aiyield-gateway"]["ports"]
    assert "4317:4317" in services["aiyield-gateway"]["ports"]  # OTLP over gRPC
    assert "9464:9464" in services["aiyield-exporter"]["ports"]
    assert "9090:9090" in services["prometheus"]["ports"]
    assert "3000:3000" in services["grafana"]["ports"]


def test_workers_can_scale(compose):
    worker = compose["services"]["aiyield-worker"]
    assert "container_name" not in worker, "--scale needs generated container names"
    assert not worker.get("ports"), "--scale cannot publish the same host port twice"


def test_no_secret_has_a_default(compose):
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if key in SECRETS or re.search(r"SECRET|TOKEN|PASSWORD|KEY$", key):
                # Either passed through from the caller's environment (null) or required with ${VAR:?...}.
                assert value is None or re.fullmatch(r"\$\{" + key + r":\?[^}]*\}", str(value)), f"{name}: {key}={value!r}"
    for name in ("aiyield-worker", "aiyield-gateway"):
        assert str(_env(compose["services"][name])["AIYIELD_PSEUDONYM_KEY"]).startswith("${AIYIELD_PSEUDONYM_KEY:?")
    # The gateway listens beyond loopback: every credential is required, never passed empty.
    gateway = _env(compose["services"]["aiyield-gateway"])
    assert gateway["AIYIELD_GATEWAY_HOST"] == "0.0.0.0"
    for key in SECRETS:
        assert str(gateway[key]).startswith("${" + key + ":?"), key


def test_monitoring_mounts(compose):
    services = compose["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":", 1)[0]
        if source.startswith("./"):
            assert (REPO / source).exists(), f"{source} does not exist"


def test_dockerfile():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.12-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r'^ENTRYPOINT \["aiyield"\]', text, re.M)
    assert re.search(r"^USER ", text, re.M), "the image should not run as root"


def test_reconcile_runs_on_request_with_its_keys_from_the_caller(compose):
    service = compose["services"]["aiyield-reconcile"]
    assert service["profiles"] == ["reconcile"], "needs admin keys: not started by a plain `docker compose up`"
    assert service["command"][0] == "reconcile" and "--every" in service["command"]
    env = _env(service)
    assert env["AIYIELD_REDIS"] == "redis://redis:6379/0"
    for key in ("AIYIELD_ANTHROPIC_ADMIN_KEY", "AIYIELD_OPENAI_ADMIN_KEY"):
        assert key in env and env[key] is None, key  # passed through, optional: a provider without a key is skipped
    assert set(service["depends_on"]) == {"redis"}


@pytest.mark.parametrize("vendor, keys", [
    ("copilot", ("AIYIELD_GITHUB_TOKEN", "AIYIELD_GITHUB_ORG")),
    ("cursor", ("AIYIELD_CURSOR_API_KEY",)),
    ("claude-code", ("AIYIELD_ANTHROPIC_ADMIN_KEY", "AIYIELD_CLAUDE_CODE_SPEND")),
])
def test_pull_connectors_run_on_request_with_their_credentials_from_the_caller(compose, vendor, keys):
    service = compose["services"][f"aiyield-pull-{vendor}"]
    assert service["profiles"] == [vendor], "needs the vendor's credential: not started by a plain `docker compose up`"
    assert service["command"][:2] == ["pull", vendor] and "--every" in service["command"]
    env = _env(service)
    assert env["AIYIELD_KAFKA"] == "kafka:9092" and env["AIYIELD_REDIS"] == "redis://redis:6379/0"
    assert "AIYIELD_PSEUDONYM_KEY" in env and "AIYIELD_ORG" in env
    for key in keys:
        assert key in env and env[key] is None, key  # passed through from the caller's shell or .env
