"""The test session's choice of services (tests/services.py): configured, containers, or embedded, with a reason."""

from __future__ import annotations

import pytest

from tests.services import choose, docker_unreachable


def test_configured_services_win():
    decision = choose({"AIYIELD_KAFKA": "k:9092", "AIYIELD_REDIS": "redis://r"}, probe=lambda: pytest.fail("probed"))
    assert decision.kind == "configured"


def test_containers_when_docker_answers():
    decision = choose({}, probe=lambda: None)
    assert decision.kind == "containers" and "KRaft" in decision.reason


def test_embedded_with_the_reason_when_docker_does_not():
    decision = choose({"AIYIELD_KAFKA": "only-kafka:9092"}, probe=lambda: "FileNotFoundError: no socket")
    assert decision.kind == "embedded" and "no Docker engine reachable (FileNotFoundError: no socket)" in decision.reason


def test_containers_can_be_turned_off():
    assert choose({"AIYIELD_TEST_CONTAINERS": "0"}, probe=lambda: None).kind == "embedded"


def test_the_real_probe_gives_a_reason_or_none():
    """Exercises the real probe on this machine: where no Docker engine runs, it must say why (that reason is
    what the session header prints); where one runs, it answers None."""
    reason = docker_unreachable()
    assert reason is None or (isinstance(reason, str) and reason)
    decision = choose({}, probe=lambda: reason)
    print(f"this machine: {decision.kind} ({decision.reason})")
    assert decision.kind == ("containers" if reason is None else "embedded")
