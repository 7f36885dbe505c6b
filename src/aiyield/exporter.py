"""Prometheus exporter: a custom collector that reads Redis on every scrape (docs/INTERFACE.md §3).

Own registry (no process/platform collectors mixed into the contract's namespace). A failed scrape (Redis down) is
logged, counted in `aiyield_exporter_scrape_errors_total`, and answered with HTTP 500: never a 200 with stale or
empty data that would look like "no spend".
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

import redis
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.registry import Collector

from aiyield.core import billing, finance
from aiyield.core.cardinality import Caps
from aiyield.core.finance import Budgets
from aiyield.core.measures import Measure
from aiyield.core.windows import SCALE, WINDOWS, window_buckets
from aiyield.exposition import Family
from aiyield.readout import DAILY, Billed, BucketCache, Snapshot, fold, read_billed, read_snapshot

log = logging.getLogger(__name__)


class AiyieldCollector(Collector):
    def __init__(
        self, client: redis.Redis, clock: Callable[[], float] = time.time, errors: Counter | None = None,
        budgets: Budgets = Budgets(), caps: Caps = Caps(), waste_grace: float = finance.DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.client = client
        self.clock = clock
        self.errors = errors
        self.budgets = budgets
        self.caps = caps
        self.waste_grace = waste_grace
        # Buckets read by earlier scrapes: a scrape re-reads only what changed since (readout.BucketCache). Scrapes
        # may run on several threads; one at a time uses the cache.
        self.cache = BucketCache()
        self.lock = threading.Lock()

    def collect(self) -> Iterable[Family]:
        try:
            with self.lock:
                snap = read_snapshot(self.client, self.clock(), self.cache)
            billed = read_billed(self.client)
        except redis.RedisError:
            log.exception("scrape failed: cannot read Redis")
            if self.errors is not None:
                self.errors.inc()
            self.cache = BucketCache()  # whatever a failed read left half-updated is not trusted
            raise
        yield from metric_families(fold(snap, self.caps), self.budgets, self.waste_grace)
        # The unfolded snapshot: a model folded into `other` by the read-time guard would lose its provider.
        yield from billing_families(snap, billed)


def metric_families(
    snap: Snapshot, budgets: Budgets = Budgets(), waste_grace: float = finance.DEFAULT_GRACE_SECONDS
) -> Iterable[Family]:
    spend = Family(
        "aiyield_spend_usd", "AI spend in USD over the window, by event time.", labels=["team", "tool", "model", "window"]
    )
    tokens = Family(
        "aiyield_tokens", "Tokens over the window.", labels=["team", "tool", "model", "type", "window"]
    )
    unpriced = Family(
        "aiyield_unpriced_token_events",
        "Token events over the window whose model is not in the price table and that carried no cost_usd.",
        labels=["team", "tool", "model", "window"],
    )
    tasks = Family("aiyield_tasks", "AI tasks over the window by status.", labels=["team", "tool", "status", "window"])
    nd = Family(
        "aiyield_normalized_deployments",
        "Normalized deployments (AI tasks shipped to production and surviving) over the window.",
        labels=["team", "window"],
    )
    cpnd = Family(
        "aiyield_cost_per_normalized_deployment_usd",
        "Team spend / team normalized deployments over the window; absent when there are none.",
        labels=["team", "window"],
    )
    devs = Family(
        "aiyield_active_developers",
        "Distinct pseudonymised developers with any event over the window (HyperLogLog estimate).",
        labels=["team", "window"],
    )
    retracted = Family(
        "aiyield_retracted_normalized_deployments",
        "Normalized deployments credited and then retracted (rollback or revert) over the window, at the retraction's time.",
        labels=["team", "reason", "window"],
    )
    contested = Family(
        "aiyield_contested_claims",
        "Tasks refused over the window because every commit they claimed belonged to an earlier task.",
        labels=["team", "window"],
    )
    overflow = Family(
        "aiyield_cardinality_overflow",
        "Events over the window whose team, tool or model was folded into `other` by the cardinality guard.",
        labels=["label", "window"],
    )
    for window in WINDOWS:
        for (team, tool, model), amount in snap.series(window, Measure.SPEND):
            spend.add((team, tool, model, window), amount / SCALE[Measure.SPEND])
        for (team, tool, model, kind), amount in snap.series(window, Measure.TOKENS):
            tokens.add((team, tool, model, kind, window), amount)
        for (team, tool, model), amount in snap.series(window, Measure.UNPRICED):
            unpriced.add((team, tool, model, window), amount)
        for (team, tool, status), amount in snap.series(window, Measure.TASKS):
            tasks.add((team, tool, status, window), amount)
        for row in snap.team_summary(window):
            # Every known team gets a value, zero included: "spend but no output" must be visible and alertable.
            nd.add((row.team, window), row.normalized_deployments)
            if row.cost_per_normalized_deployment_usd is not None:
                cpnd.add((row.team, window), row.cost_per_normalized_deployment_usd)
            devs.add((row.team, window), row.active_developers)
        for (team, reason), amount in snap.series(window, Measure.RETRACTED):
            retracted.add((team, reason, window), amount / SCALE[Measure.RETRACTED])
        for (team,), amount in snap.series(window, Measure.CONTESTED):
            contested.add((team, window), amount)
        for (label,), amount in snap.series(window, Measure.OVERFLOW):
            overflow.add((label, window), amount)
    yield from (spend, tokens, unpriced, tasks, nd, cpnd, devs, retracted, contested, overflow)
    yield from context_families(snap)
    yield from finance_families(snap, budgets, waste_grace)

    events = Family("aiyield_events", "Events by type and outcome.", labels=["type", "outcome"], kind="counter")
    for (event_type, outcome), n in sorted(snap.events_total.items()):
        events.add((event_type, outcome), n)
    yield events

    last = Family(
        "aiyield_last_event_timestamp_seconds", "Newest event time processed, by type.", labels=["type"]
    )
    for event_type, ts in sorted(snap.last_ts.items()):
        last.add((event_type,), ts)
    yield last


#: Context metrics (Measure.CONTEXT): family name, help, the `metric` values it shows and the label they take.
CONTEXT_FAMILIES = (
    ("aiyield_tool_lines", "Lines of code the tool reports, over the window: added and removed (Claude Code), "
     "suggested and accepted (Copilot, Cursor).",
     {"lines_added": "added", "lines_removed": "removed", "lines_suggested": "suggested", "lines_accepted": "accepted"}),
    ("aiyield_tool_commits", "Commits the tool reports it made, over the window (Claude Code).", {"commits": None}),
    ("aiyield_tool_pull_requests", "Pull requests the tool reports it opened, over the window (Claude Code).",
     {"pull_requests": None}),
    ("aiyield_tool_suggestions", "Code suggestions (completions) the tool showed and those accepted, over the window.",
     {"suggestions": "shown", "acceptances": "accepted"}),
    ("aiyield_tool_requests", "Chat, agent and edit requests the tool reports, over the window.", {"requests": None}),
    ("aiyield_tool_sessions", "Sessions the tool reports, over the window.", {"sessions": None}),
    ("aiyield_tool_edit_decisions", "Edits the tool proposed that developers accepted or rejected, over the window.",
     {"tool_accepted": "accepted", "tool_rejected": "rejected"}),
    ("aiyield_tool_active_user_days", "Daily active (and engaged) users the tool reports, summed over the window's "
     "days: user-days, not distinct users.", {"active_users": "active", "engaged_users": "engaged"}),
)


def context_families(snap: Snapshot) -> Iterable[Family]:
    """What tools report they produced, per team and tool: context beside spend, never credit (no per-person label)."""
    families = []
    for name, doc, kinds in CONTEXT_FAMILIES:
        typed = any(kinds.values())
        family = Family(name, doc, labels=["team", "tool", *(["type"] if typed else []), "window"])
        for window in WINDOWS:
            for (team, tool, metric), amount in snap.series(window, Measure.CONTEXT):
                if metric in kinds:
                    family.add((team, tool, *((kinds[metric],) if typed else ()), window), amount)
        if family.rows:  # absent until a tool reports them
            families.append(family)
    return families


def finance_families(snap: Snapshot, budgets: Budgets, waste_grace: float = finance.DEFAULT_GRACE_SECONDS) -> Iterable[Family]:
    """Budgets, month to date, forecast, burn rate, spike score and waste signals (see core/finance.py)."""
    budget = Family("aiyield_budget_usd", "Monthly AI budget in USD (AIYIELD_BUDGETS).", labels=["team"])
    month = Family(
        "aiyield_month_spend_usd", "Spend in the current calendar month (UTC) to date, by event time.", labels=["team"]
    )
    forecast = Family(
        "aiyield_month_forecast_usd",
        "Forecast spend for the whole current calendar month (UTC): month to date + weekday-seasonal run rate.",
        labels=["team"],
    )
    burn = Family(
        "aiyield_budget_burn_rate",
        "Last-24h spend / the daily spend that would use exactly the monthly budget (1 = on pace).",
        labels=["team"],
    )
    spike = Family(
        "aiyield_usage_spike_score",
        "Last hour's spend / the team's usual spend for that hour (1 = usual). Growth, not waste by itself.",
        labels=["team"],
    )
    signal = Family(
        "aiyield_waste_signal", "1 when the waste signal is flagged for the team, else 0.", labels=["team", "signal"]
    )
    score = Family(
        "aiyield_waste_score", "The number behind each waste signal (see docs/FINANCE.md).", labels=["team", "signal"]
    )
    now = snap.now
    for row in snap.month(budgets):
        month.add((row.team,), row.month_to_date_usd)
        forecast.add((row.team,), row.forecast_usd)
        if row.budget_usd is not None:
            budget.add((row.team,), row.budget_usd)
    spend_24h = {row.team: row.spend_usd for row in snap.team_summary("24h")}
    for team, fig in snap.figures().items():
        rate = finance.burn_rate(spend_24h.get(team, 0.0), budgets.for_team(team), now)
        if rate is not None:
            burn.add((team,), rate)
        spike.add((team,), finance.spike_score(fig, now))
        for reading in finance.waste(fig, now, waste_grace):
            signal.add((team, reading.signal), 1.0 if reading.flagged else 0.0)
            score.add((team, reading.signal), reading.score)
    yield from (budget, month, forecast, burn, spike, signal, score)


def billing_families(snap: Snapshot, billed: Billed) -> Iterable[Family]:
    """Billed spend per provider and the share of it aiyield saw (`aiyield reconcile`; windows: core/billing.py)."""
    amount = Family(
        "aiyield_billed_usd",
        "Cost billed by the provider over the window's whole UTC days, ending with the newest reconciled day.",
        labels=["provider", "window"],
    )
    capture = Family(
        "aiyield_spend_capture_ratio",
        "aiyield's estimated spend on the provider's models / billed cost, over the same UTC days; absent when billed is 0.",
        labels=["provider", "window"],
    )
    through = Family(
        "aiyield_billed_through_timestamp_seconds",
        "End of the newest complete UTC day reconciled for the provider (the billed windows end here).",
        labels=["provider"],
    )
    synced = Family(
        "aiyield_billed_last_sync_timestamp_seconds", "When `aiyield reconcile` last stored the provider's bill.",
        labels=["provider"],
    )
    history = min(window_buckets(DAILY, snap.now))
    estimated = billing.provider_daily_spend(snap.buckets.get(DAILY, {}))
    for reading in billing.readings(billed.days, estimated, history):
        amount.add((reading.provider, reading.window), reading.billed_usd)
        if reading.capture_ratio is not None:
            capture.add((reading.provider, reading.window), reading.capture_ratio)
    for provider, days in sorted(billed.days.items()):
        through.add((provider,), max(days) + billing.DAY)
    for provider, ts in sorted(billed.synced.items()):
        synced.add((provider,), ts)
    yield from (f for f in (amount, capture, through, synced) if f.rows)  # absent until reconcile has run


def build_registry(
    redis_url: str, clock: Callable[[], float] = time.time, budgets: Budgets = Budgets(), caps: Caps = Caps(),
    waste_grace: float = finance.DEFAULT_GRACE_SECONDS, **options,
) -> CollectorRegistry:
    """`options`: more `Redis.from_url` arguments (TLS: `Settings.redis_client_options()`)."""
    registry = CollectorRegistry(auto_describe=False)
    errors = Counter(
        "aiyield_exporter_scrape_errors", "Scrapes that failed because Redis could not be read.", registry=registry
    )
    client = redis.Redis.from_url(redis_url, socket_timeout=10, **options)
    registry.register(AiyieldCollector(client, clock, errors, budgets, caps, waste_grace))
    return registry


def serve(
    redis_url: str, port: int, host: str = "0.0.0.0", budgets: Budgets = Budgets(), caps: Caps = Caps(),
    waste_grace: float = finance.DEFAULT_GRACE_SECONDS, **options,
) -> tuple[object, threading.Thread]:
    """Serve /metrics on a background thread; returns (server, thread) so callers can shut it down."""
    from aiyield.exposition import start_server

    registry = build_registry(redis_url, budgets=budgets, caps=caps, waste_grace=waste_grace, **options)
    return start_server(registry, port, host)
