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

from aiyield import page, redisconn
from aiyield.core import billing, finance
from aiyield.core.cardinality import Caps
from aiyield.core.finance import Budgets
from aiyield.core.measures import Measure
from aiyield.core.windows import SCALE, WINDOWS, window_buckets
from aiyield.exposition import Family
from aiyield.readout import DAILY, LABELS, Billed, BucketCache, Snapshot, fold, read_billed, read_snapshot

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

    def read(self) -> tuple[Snapshot, Billed]:
        """What a scrape (or the live page) shows: the snapshot as of now and the stored bills."""
        try:
            with self.lock:
                snap = read_snapshot(self.client, self.clock(), self.cache)
            return snap, read_billed(self.client)
        except redis.RedisError:
            log.exception("scrape failed: cannot read Redis")
            if self.errors is not None:
                self.errors.inc()
            self.cache = BucketCache()  # whatever a failed read left half-updated is not trusted
            raise

    def collect(self) -> Iterable[Family]:
        snap, billed = self.read()
        yield from metric_families(fold(snap, self.caps), self.budgets, self.waste_grace)
        # The unfolded snapshot: a model folded into `other` by the read-time guard would lose its provider.
        yield from billing_families(snap, billed)

    def page(self, window: str) -> str:
        """The live page (aiyield.page) from the same read and the same folding as /metrics."""
        snap, billed = self.read()
        return page.render(fold(snap, self.caps), billed, self.budgets, self.waste_grace, window, unfolded=snap)


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
    yield from counter_families(snap)
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


#: The label of `aiyield_tool_lines` that says added or removed (`type` already means the event and the token type).
CHANGE = "change"

#: Context metrics (Measure.CONTEXT): family name, help, the label that tells the `metric` values apart (None for a
#: family of one value) and the `metric` values it shows with that label's value for each.
CONTEXT_FAMILIES = (
    ("aiyield_tool_lines", "Lines of code the tool reports: added and removed (Claude Code), suggested and accepted "
     "(Copilot, Cursor)", CHANGE,
     {"lines_added": "added", "lines_removed": "removed", "lines_suggested": "suggested", "lines_accepted": "accepted"}),
    ("aiyield_tool_commits", "Commits the tool reports it made (Claude Code)", None, {"commits": None}),
    ("aiyield_tool_pull_requests", "Pull requests the tool reports it opened (Claude Code)", None,
     {"pull_requests": None}),
    ("aiyield_tool_suggestions", "Code suggestions (completions) the tool showed and those accepted", "stage",
     {"suggestions": "shown", "acceptances": "accepted"}),
    ("aiyield_tool_requests", "Chat, agent and edit requests the tool reports", None, {"requests": None}),
    ("aiyield_tool_sessions", "Sessions the tool reports", None, {"sessions": None}),
    ("aiyield_tool_edit_decisions", "Edits the tool proposed that developers accepted or rejected", "decision",
     {"tool_accepted": "accepted", "tool_rejected": "rejected"}),
    ("aiyield_tool_active_user_days", "Daily active (and engaged) users the tool reports, summed over days (user-days, "
     "not distinct users)", "engagement", {"active_users": "active", "engaged_users": "engaged"}),
)


def context_families(snap: Snapshot) -> Iterable[Family]:
    """What tools report they produced, per team and tool: context beside spend, never credit (no per-person label)."""
    families = []
    for name, doc, kind, kinds in CONTEXT_FAMILIES:
        family = Family(name, f"{doc}, over the window.", labels=["team", "tool", *([kind] if kind else []), "window"])
        for window in WINDOWS:
            for (team, tool, metric), amount in snap.series(window, Measure.CONTEXT):
                if metric in kinds:
                    family.add((team, tool, *((kinds[metric],) if kind else ()), window), amount)
        if family.rows:  # absent until a tool reports them
            families.append(family)
    return families


#: The processing-time counters (contract v3 §3, `core.counters`): measure -> (family name, help). Label names are the
#: measure's (`readout.LABELS`); fixed-point measures are scaled back (`windows.SCALE`). Served as `<name>_total`.
COUNTERS: dict[str, tuple[str, str]] = {
    Measure.SPEND: ("aiyield_spend_usd", "AI spend in USD, counted when aiyield processed the event."),
    Measure.TOKENS: ("aiyield_tokens", "Tokens, counted when aiyield processed the event."),
    Measure.TASKS: ("aiyield_tasks", "AI tasks by status (completed, abandoned: as reported; shipped: by the crediting join), counted when processed."),
    Measure.CREDIT: ("aiyield_normalized_deployments", "Normalized deployments credited (given, including credit later retracted), counted when processed."),
    Measure.RETRACTED: ("aiyield_retracted_normalized_deployments", "Normalized deployments credited and then retracted (rollback or revert), counted when processed."),
    Measure.DEPLOYMENTS: ("aiyield_deployments", "Deployment events accepted, by environment (production or other) and status."),
    Measure.CONTESTED: ("aiyield_contested_claims", "Tasks refused because every commit they claimed belonged to an earlier task, counted when processed."),
    Measure.UNPRICED: ("aiyield_unpriced_token_events", "Token events whose model is not in the price table and that carried no cost_usd."),
    Measure.OVERFLOW: ("aiyield_cardinality_overflow", "Events whose team, tool or model was folded into `other` by the cardinality guard."),
}


def counter_families(snap: Snapshot) -> Iterable[Family]:
    """`aiyield_*_total`: monotonic, counted at processing time, kept in Redis with the windows (`core.counters`)."""
    for measure, (name, doc) in COUNTERS.items():
        family = Family(name, doc, labels=LABELS[measure], kind="counter")
        scale = SCALE.get(measure, 1)
        for labels, amount in sorted(snap.totals.get(measure, {}).items()):
            family.add(labels, amount / scale)
        yield family
    for name, doc, kind, kinds in CONTEXT_FAMILIES:
        family = Family(name, f"{doc}, counted when processed.", labels=["team", "tool", *([kind] if kind else [])],
                        kind="counter")
        for (team, tool, metric), amount in sorted(snap.totals.get(Measure.CONTEXT, {}).items()):
            if metric in kinds:
                family.add((team, tool, *((kinds[metric],) if kind else ())), amount)
        if family.rows:  # absent until a tool reports them, as the gauges
            yield family


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
        "aiyield_budget_burn_ratio",
        "Last-24h spend / the daily spend that would use exactly the monthly budget (1 = on pace).",
        labels=["team"],
    )
    burn_old = Family(  # the name before the `_ratio` suffix: served until the next release, then removed
        "aiyield_budget_burn_rate", "Deprecated: aiyield_budget_burn_ratio, under its former name.", labels=["team"]
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
            burn_old.add((team,), rate)
        spike.add((team,), finance.spike_score(fig, now))
        for reading in finance.waste(fig, now, waste_grace):
            signal.add((team, reading.signal), 1.0 if reading.flagged else 0.0)
            score.add((team, reading.signal), reading.score)
    yield from (budget, month, forecast, burn, burn_old, spike, signal, score)


def billing_families(snap: Snapshot, billed: Billed) -> Iterable[Family]:
    """Billed spend per provider and the share of it aiyield saw (`aiyield reconcile`; windows: core/billing.py)."""
    # `days`, not `window`: a run of whole UTC days ending with the newest reconciled one, not (now - window, now].
    amount = Family(
        "aiyield_billed_usd",
        "Cost billed by the provider over the last `days` whole UTC days reconciled.",
        labels=["provider", "days"],
    )
    estimated = Family(
        "aiyield_billed_estimated_usd",
        "aiyield's estimated spend on the provider's models over the same UTC days as aiyield_billed_usd, by event time.",
        labels=["provider", "days"],
    )
    capture = Family(
        "aiyield_spend_capture_ratio",
        "aiyield's estimated spend on the provider's models / billed cost, over the same UTC days; absent when billed is 0.",
        labels=["provider", "days"],
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
    daily = billing.provider_daily_spend(snap.buckets.get(DAILY, {}))
    for reading in billing.readings(billed.days, daily, history):
        days = (reading.provider, str(len(reading.days)))
        amount.add(days, reading.billed_usd)
        if reading.estimated_usd is not None:
            estimated.add(days, reading.estimated_usd)
        if reading.capture_ratio is not None:
            capture.add(days, reading.capture_ratio)
    for provider, days in sorted(billed.days.items()):
        through.add((provider,), max(days) + billing.DAY)
    for provider, ts in sorted(billed.synced.items()):
        synced.add((provider,), ts)
    yield from (f for f in (amount, estimated, capture, through, synced) if f.rows)  # absent until reconcile has run


def build_registry(
    redis_url: str, clock: Callable[[], float] = time.time, budgets: Budgets = Budgets(), caps: Caps = Caps(),
    waste_grace: float = finance.DEFAULT_GRACE_SECONDS, **options,
) -> CollectorRegistry:
    """`options`: more `redisconn.client` arguments (TLS: `Settings.redis_client_options()`)."""
    return _build(redis_url, clock, budgets, caps, waste_grace, **options)[0]


def _build(
    redis_url: str, clock: Callable[[], float], budgets: Budgets, caps: Caps, waste_grace: float, **options,
) -> tuple[CollectorRegistry, AiyieldCollector]:
    registry = CollectorRegistry(auto_describe=False)
    errors = Counter(
        "aiyield_exporter_scrape_errors", "Scrapes (and page views) that failed because Redis could not be read.",
        registry=registry,
    )
    client = redisconn.client(redis_url, timeout=10, **options)
    collector = AiyieldCollector(client, clock, errors, budgets, caps, waste_grace)
    registry.register(collector)
    return registry, collector


def serve(
    redis_url: str, port: int, host: str = "0.0.0.0", budgets: Budgets = Budgets(), caps: Caps = Caps(),
    waste_grace: float = finance.DEFAULT_GRACE_SECONDS, **options,
) -> tuple[object, threading.Thread]:
    """Serve /metrics and the live page (`/`) on a background thread; returns (server, thread) so callers can shut
    it down."""
    from aiyield.exposition import start_server

    registry, collector = _build(redis_url, time.time, budgets, caps, waste_grace, **options)
    return start_server(registry, port, host, page=collector.page)
