"""Shared helpers for the deploy/ tests: repository paths, a YAML loader and a small PromQL name extractor.

The contract's metric table is copied here on purpose (CI does not have the shared contract next to the clone);
keep it in step with docs/INTERFACE.md §3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

#: docs/INTERFACE.md §3: metric name -> its labels.
CONTRACT_METRICS: dict[str, frozenset[str]] = {
    "aiyield_spend_usd": frozenset({"team", "tool", "model", "window"}),
    "aiyield_tokens": frozenset({"team", "tool", "model", "type", "window"}),
    "aiyield_tasks": frozenset({"team", "tool", "status", "window"}),
    "aiyield_normalized_deployments": frozenset({"team", "window"}),
    "aiyield_cost_per_normalized_deployment_usd": frozenset({"team", "window"}),
    "aiyield_active_developers": frozenset({"team", "window"}),
    "aiyield_events_total": frozenset({"type", "outcome"}),
    "aiyield_last_event_timestamp_seconds": frozenset({"type"}),
    "aiyield_budget_usd": frozenset({"team"}),
    "aiyield_month_spend_usd": frozenset({"team"}),
    "aiyield_month_forecast_usd": frozenset({"team"}),
    "aiyield_waste_signal": frozenset({"team", "signal"}),
    "aiyield_waste_score": frozenset({"team", "signal"}),
    "aiyield_usage_spike_score": frozenset({"team"}),
    "aiyield_retracted_normalized_deployments": frozenset({"team", "reason", "window"}),
    "aiyield_contested_claims": frozenset({"team", "window"}),
    # v3 counters, counted when processed (no window)
    "aiyield_spend_usd_total": frozenset({"team", "tool", "model"}),
    "aiyield_tokens_total": frozenset({"team", "tool", "model", "type"}),
    "aiyield_tasks_total": frozenset({"team", "tool", "status"}),
    "aiyield_normalized_deployments_total": frozenset({"team"}),
    "aiyield_retracted_normalized_deployments_total": frozenset({"team", "reason"}),
    "aiyield_deployments_total": frozenset({"environment", "status"}),
}
#: Served by the exporter beyond the contract (docs/FINANCE.md, "Metrics"): dashboards and rules may use them too.
EXTRA_METRICS: dict[str, frozenset[str]] = {
    "aiyield_budget_burn_ratio": frozenset({"team"}),
    "aiyield_cardinality_overflow": frozenset({"label", "window"}),
    "aiyield_cardinality_overflow_total": frozenset({"label"}),
    "aiyield_unpriced_token_events": frozenset({"team", "tool", "model", "window"}),
    "aiyield_unpriced_token_events_total": frozenset({"team", "tool", "model"}),
    "aiyield_contested_claims_total": frozenset({"team"}),
    # The tools' own figures (docs/INTERFACE.md §3, added metrics; docs/CONNECTORS.md), and their counters.
    "aiyield_tool_lines": frozenset({"team", "tool", "change", "window"}),
    "aiyield_tool_commits": frozenset({"team", "tool", "window"}),
    "aiyield_tool_pull_requests": frozenset({"team", "tool", "window"}),
    "aiyield_tool_suggestions": frozenset({"team", "tool", "stage", "window"}),
    "aiyield_tool_active_user_days": frozenset({"team", "tool", "engagement", "window"}),
    "aiyield_tool_lines_total": frozenset({"team", "tool", "change"}),
    "aiyield_tool_commits_total": frozenset({"team", "tool"}),
    "aiyield_tool_pull_requests_total": frozenset({"team", "tool"}),
    "aiyield_tool_suggestions_total": frozenset({"team", "tool", "stage"}),
    "aiyield_tool_active_user_days_total": frozenset({"team", "tool", "engagement"}),
    # Bills are whole UTC days: `days` (1, 7, 30), not the event-time `window`.
    "aiyield_billed_usd": frozenset({"provider", "days"}),
    "aiyield_billed_estimated_usd": frozenset({"provider", "days"}),
    "aiyield_spend_capture_ratio": frozenset({"provider", "days"}),
    "aiyield_billed_through_timestamp_seconds": frozenset({"provider"}),
    "aiyield_billed_last_sync_timestamp_seconds": frozenset({"provider"}),
}
CONTRACT_METRICS = {**CONTRACT_METRICS, **EXTRA_METRICS}
#: Metrics carrying a `window` label: a query that does not pin the window sums 1h, 24h, 7d and 30d together.
WINDOWED_METRICS = frozenset(name for name, labels in CONTRACT_METRICS.items() if "window" in labels)
#: Labels Prometheus adds at scrape time.
TARGET_LABELS = frozenset({"job", "instance"})
ALLOWED_LABELS = frozenset().union(*CONTRACT_METRICS.values()) | TARGET_LABELS
#: Anything that would identify a person. Nothing may group, filter or display by these.
PER_PERSON_LABELS = frozenset(
    {"developer", "developer_id", "dev", "user", "user_id", "username", "email", "author", "login", "person", "name"}
)

PROMQL_FUNCTIONS = frozenset(
    """
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week day_of_year
    days_in_month delta deriv exp floor histogram_quantile holt_winters hour idelta increase irate label_join
    label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort sort_desc sqrt time
    timestamp vector year avg_over_time min_over_time max_over_time sum_over_time count_over_time
    quantile_over_time stddev_over_time stdvar_over_time last_over_time present_over_time
    sum min max avg group stddev stdvar count count_values bottomk topk quantile
    """.split()
)
PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan"}
)

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\b\d[\w.]*")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^{}]*\})?")


@dataclass
class PromQL:
    """What a PromQL expression refers to: metric names, function names, label names."""

    metrics: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)


def parse_promql(expr: str) -> PromQL:
    out = PromQL()
    text = _STRING.sub('""', expr)
    for match in _GROUPING.finditer(text):
        out.labels.update(label.strip() for label in match.group(2).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    for match in _MATCHERS.finditer(text):
        out.labels.update(_MATCHER_LABEL.findall(match.group(1)))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENT.finditer(text):
        name = match.group(0)
        followed_by_paren = text[match.end():].lstrip().startswith("(")
        if followed_by_paren:
            (out.functions if name in PROMQL_FUNCTIONS else out.unknown).add(name)
        elif name in PROMQL_KEYWORDS:
            continue
        else:
            out.metrics.add(name)
    return out


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matcher block) for every selector of a contract metric in `expr` (strings kept)."""
    found = []
    for match in _SELECTOR.finditer(expr):
        if match.group(1) in CONTRACT_METRICS:
            found.append((match.group(1), match.group(2) or ""))
    return found


@pytest.fixture(scope="session")
def yaml():
    return pytest.importorskip("yaml", reason="PyYAML not installed: add pyyaml to the test dependencies")


@pytest.fixture(scope="session")
def load_yaml(yaml):
    def load(path: Path):
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)

    return load


@pytest.fixture(scope="session")
def load_yaml_all(yaml):
    def load(path: Path) -> list:
        with open(path, encoding="utf-8") as f:
            return [doc for doc in yaml.safe_load_all(f) if doc is not None]

    return load


@dataclass(frozen=True)
class Contract:
    metrics: dict
    windowed: frozenset
    allowed_labels: frozenset
    per_person_labels: frozenset
    parse: object
    selectors: object


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The contract's metric table and the PromQL helpers, as a fixture (test modules never import conftest)."""
    return Contract(
        metrics=CONTRACT_METRICS,
        windowed=WINDOWED_METRICS,
        allowed_labels=ALLOWED_LABELS,
        per_person_labels=PER_PERSON_LABELS,
        parse=parse_promql,
        selectors=selectors,
    )


@pytest.fixture(scope="session")
def promtool() -> str:
    import shutil

    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: apt-get install prometheus")
    return path
