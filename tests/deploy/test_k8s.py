"""deploy/k8s: plain manifests and their kustomization."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SECRET_KEYS = {"AIYIELD_PSEUDONYM_KEY", "AIYIELD_GITHUB_SECRET", "AIYIELD_GITLAB_TOKEN", "AIYIELD_INGEST_TOKENS"}


@pytest.fixture(scope="module")
def kustomization(load_yaml) -> dict:
    return load_yaml(K8S / "kustomization.yaml")


@pytest.fixture(scope="module")
def objects(kustomization, load_yaml_all) -> dict[tuple[str, str], dict]:
    out = {}
    for resource in kustomization["resources"]:
        for doc in load_yaml_all(K8S / resource):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def _deployment(objects, name) -> dict:
    return objects[("Deployment", name)]


def test_kustomization(kustomization):
    assert kustomization["namespace"] == "aiyield"
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.template.yaml" not in kustomization["resources"], "never apply placeholder secrets"


def test_objects_present(objects):
    assert ("Namespace", "aiyield") in objects
    assert ("ConfigMap", "aiyield-config") in objects
    for name in ("aiyield-worker", "aiyield-exporter", "aiyield-gateway"):
        assert ("Deployment", name) in objects
    for name in ("aiyield-exporter", "aiyield-gateway"):
        assert ("Service", name) in objects


def test_deployments(objects):
    assert _deployment(objects, "aiyield-worker")["spec"]["replicas"] == 2
    for name, command in (("aiyield-worker", "worker"), ("aiyield-exporter", "exporter"), ("aiyield-gateway", "gateway")):
        spec = _deployment(objects, name)["spec"]
        pod_labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= pod_labels.items(), name
        (container,) = spec["template"]["spec"]["containers"]
        assert container["args"][0] == command, name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert {"configMapRef": {"name": "aiyield-config"}} in container["envFrom"], name


def test_gateway_probes(objects):
    (container,) = _deployment(objects, "aiyield-gateway")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_services_select_their_pods(objects):
    for name, port in (("aiyield-exporter", 9464), ("aiyield-gateway", 8787)):
        service = objects[("Service", name)]
        pod_labels = _deployment(objects, name)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
        assert service["spec"]["ports"][0]["port"] == port


def test_secrets_come_from_the_secret_only(objects, load_yaml):
    config = objects[("ConfigMap", "aiyield-config")]["data"]
    assert not SECRET_KEYS & set(config), "secrets do not belong in the ConfigMap"
    template = load_yaml(K8S / "secret.template.yaml")
    assert template["kind"] == "Secret" and template["metadata"]["name"] == "aiyield-secrets"
    assert set(template["stringData"]) == SECRET_KEYS
    for name in ("aiyield-worker", "aiyield-gateway"):
        (container,) = _deployment(objects, name)["spec"]["template"]["spec"]["containers"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e}
        key = refs["AIYIELD_PSEUDONYM_KEY"]
        assert key["name"] == "aiyield-secrets" and not key.get("optional"), f"{name}: the pseudonym key is required"
    (gateway,) = _deployment(objects, "aiyield-gateway")["spec"]["template"]["spec"]["containers"]
    assert {e["name"] for e in gateway["env"]} == SECRET_KEYS
    for entry in gateway["env"]:  # every secret required: the gateway listens beyond loopback
        assert not entry["valueFrom"]["secretKeyRef"].get("optional"), entry["name"]
    assert config["AIYIELD_GATEWAY_HOST"] == "0.0.0.0"


def test_kustomize_builds():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "namespace: aiyield" in result.stdout


BILLING_KEYS = {"AIYIELD_ANTHROPIC_ADMIN_KEY", "AIYIELD_OPENAI_ADMIN_KEY"}


def test_reconcile_cronjob(objects, kustomization, load_yaml):
    cron = objects[("CronJob", "aiyield-reconcile")]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure") and job["activeDeadlineSeconds"] > 0
    (container,) = pod["containers"]
    assert container["args"][0] == "reconcile"
    assert {"configMapRef": {"name": "aiyield-config"}} in container["envFrom"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    # The admin keys come from their own Secret, each optional (a provider not used is skipped), and only here.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert set(refs) == BILLING_KEYS
    assert all(r["name"] == "aiyield-billing" and r["optional"] for r in refs.values())
    template = load_yaml(K8S / "billing-secret.template.yaml")
    assert template["kind"] == "Secret" and template["metadata"]["name"] == "aiyield-billing"
    assert set(template["stringData"]) == BILLING_KEYS
    assert "billing-secret.template.yaml" not in kustomization["resources"]
    assert not BILLING_KEYS & set(objects[("ConfigMap", "aiyield-config")]["data"])
    for name in ("aiyield-worker", "aiyield-exporter", "aiyield-gateway"):
        (other,) = _deployment(objects, name)["spec"]["template"]["spec"]["containers"]
        assert not BILLING_KEYS & {e["name"] for e in other.get("env", [])}, name


PULL_CREDENTIALS = {
    "copilot": {"AIYIELD_GITHUB_TOKEN": "aiyield-pull", "AIYIELD_GITHUB_ORG": "aiyield-pull",
                "AIYIELD_GITHUB_ENTERPRISE": "aiyield-pull"},
    "cursor": {"AIYIELD_CURSOR_API_KEY": "aiyield-pull"},
    "claude-code": {"AIYIELD_ANTHROPIC_ADMIN_KEY": "aiyield-billing"},
}


@pytest.mark.parametrize("vendor", sorted(PULL_CREDENTIALS))
def test_pull_cronjobs(objects, kustomization, load_yaml, vendor):
    cron = objects[("CronJob", f"aiyield-pull-{vendor}")]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["activeDeadlineSeconds"] > 0
    (container,) = pod["containers"]
    assert container["args"] == ["pull", vendor]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    # The vendor's own credential, and the pseudonym key the gateway uses (same pseudonyms): nothing else.
    assert refs == {**PULL_CREDENTIALS[vendor], "AIYIELD_PSEUDONYM_KEY": "aiyield-secrets"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert any(v.get("configMap", {}).get("name") == "aiyield-org" and v["configMap"]["optional"] for v in pod["volumes"])
    template = load_yaml(K8S / "pull-secret.template.yaml")
    assert template["metadata"]["name"] == "aiyield-pull" and "pull-secret.template.yaml" not in kustomization["resources"]
    assert set(template["stringData"]) >= {k for k, s in PULL_CREDENTIALS[vendor].items() if s == "aiyield-pull"}


def test_gateway_serves_otlp_over_grpc_on_4317(objects):
    (container,) = _deployment(objects, "aiyield-gateway")["spec"]["template"]["spec"]["containers"]
    assert {"name": "otlp-grpc", "containerPort": 4317} in container["ports"]
    service_ports = {p["name"]: p for p in objects[("Service", "aiyield-gateway")]["spec"]["ports"]}
    assert service_ports["otlp-grpc"]["port"] == 4317 and service_ports["otlp-grpc"]["targetPort"] == "otlp-grpc"
    assert objects[("ConfigMap", "aiyield-config")]["data"]["AIYIELD_OTLP_GRPC_PORT"] == "4317"
