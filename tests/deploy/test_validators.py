"""Deployment files checked by their ecosystems' own validators, not by hand-written structure checks.

kubernetes-validate (after kustomize) for deploy/k8s, the Compose specification schema (check-jsonschema's vendored
compose-spec) for docker-compose.yml, `amtool check-config` for Alertmanager. (`promtool check config` for
Prometheus is in test_prometheus_rules.py.) Each skips, saying why, when its tool is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
K8S_ALERTMANAGER = REPO / "deploy" / "k8s" / "alertmanager" / "alertmanager.yml"


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name) or (shutil.which(name, path=str(Path(sys.executable).parent)))
    if path is None:
        pytest.skip(f"{name} not installed: {hint}")
    return path


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=180, **kw)


@pytest.fixture(scope="module")
def kustomized(tmp_path_factory) -> Path:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize:
        result = _run(kustomize, "build", "deploy/k8s")
    elif kubectl:
        result = _run(kubectl, "kustomize", "deploy/k8s")
    else:
        pytest.skip("neither kustomize nor kubectl installed")
    assert result.returncode == 0, result.stderr
    out = tmp_path_factory.mktemp("k8s") / "aiyield.yaml"
    out.write_text(result.stdout)
    return out


def test_kubernetes_manifests_validate_strictly(kustomized):
    validate = _tool("kubernetes-validate", "pip install kubernetes-validate (test extra)")
    result = _run(validate, "--strict", str(kustomized))
    assert result.returncode == 0, result.stdout + result.stderr
    for kind in ("deployment/aiyield-alertmanager", "service/aiyield-alertmanager", "deployment/aiyield-exporter",
                 "cronjob/aiyield-reconcile"):
        assert f"passed for resource {kind}" in result.stdout


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path):
    validate = _tool("kubernetes-validate", "pip install kubernetes-validate (test extra)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 'not-a-number'}]}\n")
    assert _run(validate, "--strict", str(bad)).returncode != 0


def test_compose_file_matches_the_compose_specification():
    check = _tool("check-jsonschema", "pip install check-jsonschema (test extra)")
    result = _run(check, "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_rejects_a_broken_file(tmp_path):
    check = _tool("check-jsonschema", "pip install check-jsonschema (test extra)")
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  x:\n    image: a\n    ports: {not: a-list}\n")
    assert _run(check, "--builtin-schema", "vendor.compose-spec", str(bad)).returncode != 0


@pytest.mark.parametrize("path", [ALERTMANAGER, K8S_ALERTMANAGER], ids=["compose", "k8s"])
def test_alertmanager_config_checks(path):
    amtool = _tool("amtool", "apt-get install prometheus-alertmanager")
    result = _run(amtool, "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 receivers" in result.stdout


def test_k8s_alertmanager_config_is_the_same_file():
    assert K8S_ALERTMANAGER.read_text() == ALERTMANAGER.read_text(), "copy deploy/alertmanager/alertmanager.yml to deploy/k8s/alertmanager/"


def test_alertmanager_routes_by_severity(load_yaml):
    """Every severity the rules use has a route, and every receiver has a webhook (tests/e2e replace its URL)."""
    config = load_yaml(ALERTMANAGER)
    rules = load_yaml(REPO / "deploy" / "prometheus" / "rules" / "aiyield.rules.yml")
    severities = {r["labels"]["severity"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    routed = {m.split("=", 1)[1].strip('"') for route in config["route"]["routes"] for m in route["matchers"]}
    assert severities <= routed
    assert all(r.get("webhook_configs") for r in config["receivers"])


def test_compose_runs_alertmanager_and_prometheus_sends_to_it(load_yaml):
    compose = load_yaml(REPO / "docker-compose.yml")
    am = compose["services"]["alertmanager"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in am["volumes"]
    prometheus = load_yaml(REPO / "deploy" / "prometheus" / "prometheus.yml")
    targets = [t for a in prometheus["alerting"]["alertmanagers"] for s in a["static_configs"] for t in s["targets"]]
    assert targets == ["alertmanager:9093"]
