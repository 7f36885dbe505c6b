"""Prometheus config and rules: promtool checks and unit tests, plus static checks of every alert.

The promtool tests skip (saying why) when promtool is not installed; Debian/Ubuntu: `apt-get install prometheus`.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "aiyield.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "aiyield.rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
RUNBOOK = REPO / "docs" / "RUNBOOK.md"

EXPECTED_ALERTS = {
    "AiyieldExporterDown",
    "AiyieldPipelineStale",
    "AiyieldInvalidEventRatioHigh",
    "AiyieldUsageWithoutOutput",
    "AiyieldSpendSpike",
    "AiyieldBudgetForecastOverrun",
    "AiyieldWasteSignal",
    "AiyieldSpendCaptureLow",
    "AiyieldAiChangeFailureRatioHigh",
}


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([promtool, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


# ------------------------------------------------------------------------------------------------- promtool


def test_promtool_check_rules(promtool):
    result = _promtool(promtool, "check", "rules", str(RULES.relative_to(REPO)))
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests(promtool):
    result = _promtool(promtool, "test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_check_config(promtool):
    # Also loads the rule files the config points at.
    result = _promtool(promtool, "check", "config", str(CONFIG.relative_to(REPO)))
    assert "1 rule files found" in result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------- static


@pytest.fixture(scope="module")
def rules(load_yaml):
    return load_yaml(RULES)


@pytest.fixture(scope="module")
def alerts(rules):
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def recorded(rules):
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def test_expected_alerts_exist(alerts):
    assert {a["alert"] for a in alerts} == EXPECTED_ALERTS


def test_alerts_have_severity_and_annotations(alerts):
    for alert in alerts:
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name}: missing {key} annotation"
        assert annotations["runbook"] == f"docs/RUNBOOK.md#{name.lower()}", name


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_has_a_section_per_alert(alerts):
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("## ")}
    for alert in alerts:
        anchor = alert["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{alert['alert']}: docs/RUNBOOK.md has no section #{anchor}"


def test_rules_use_only_contract_metrics(rules, recorded, contract):
    allowed = set(contract.metrics) | recorded | {"up"}
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            parsed = contract.parse(rule["expr"])
            assert not parsed.unknown, f"{name}: unknown functions {parsed.unknown}"
            assert parsed.metrics <= allowed, f"{name}: not in the contract: {parsed.metrics - allowed}"
            assert parsed.labels <= contract.allowed_labels, f"{name}: labels {parsed.labels - contract.allowed_labels}"
            assert not parsed.labels & contract.per_person_labels, name


def test_rules_pin_the_window(rules, contract):
    """A windowed gauge read without `window="..."` would add 1h, 24h, 7d and 30d together."""
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("record") in ("team_window:aiyield_spend_usd:sum", "team_window:aiyield_normalized_deployments:sum"):
                continue  # these keep `window` as a label on purpose
            for metric, matchers in contract.selectors(rule["expr"]):
                if metric in contract.windowed:
                    assert re.search(r'\bwindow\s*=\s*"', matchers), f"{rule.get('alert') or rule.get('record')}: {metric}"


def test_prometheus_config_scrapes_exporter_and_loads_rules(load_yaml):
    config = load_yaml(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "aiyield-exporter" in jobs, "the alerts select up{job=\"aiyield-exporter\"}"
    targets = [t for sc in jobs["aiyield-exporter"]["static_configs"] for t in sc["targets"]]
    assert targets == ["aiyield-exporter:9464"]
    patterns = config["rule_files"]
    relative = lambda p: str(p.relative_to(PROMETHEUS))  # noqa: E731
    assert any(fnmatch.fnmatch(relative(RULES), pat) for pat in patterns)
    assert not any(fnmatch.fnmatch(relative(RULE_TESTS), pat) for pat in patterns), "test file loaded as rules"


def test_every_alert_is_tested_both_ways(alerts, load_yaml):
    """Each alert has a case where it fires and one where it stays silent."""
    cases = [case for test in load_yaml(RULE_TESTS)["tests"] for case in test.get("alert_rule_test", [])]
    for alert in alerts:
        name = alert["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no test where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no test where it stays silent"
