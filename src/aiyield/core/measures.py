"""What each accepted event adds to the rolling windows (input metrics), and what a credit adds (output metrics).

Series names are the measure followed by its label values (see `windows.series`); the exporter maps them to the
contract's metric names. Pure: the worker calls these and writes the resulting `Rollup` in one transaction.
"""

from __future__ import annotations

from aiyield.core.crediting import Delta
from aiyield.core.events import Event, TaskEvent, TokenEvent
from aiyield.core.pricing import PriceTable
from aiyield.core.windows import SCALE, Rollup, series

TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
)


def measure(rollup: Rollup, event: Event, prices: PriceTable, now: float) -> None:
    """Add one accepted (validated, deduplicated) event's input metrics to the batch rollup."""
    amounts: dict[str, int] = {}
    if isinstance(event, TokenEvent):
        labels = (event.team, event.tool, event.model)
        for kind, attr in TOKEN_TYPES:
            amounts[series("tokens", *labels, kind)] = getattr(event, attr)
        cost = event.cost_usd
        if cost is None:
            cost = prices.cost(
                event.model, event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens
            )
        if cost is None:
            # Unknown model: the spend is unknown, not zero. Counted so finance sees what the price table misses.
            amounts[series("unpriced", *labels)] = 1
        else:
            amounts[series("spend", *labels)] = round(cost * SCALE["spend"])
    elif isinstance(event, TaskEvent) and event.status in ("completed", "abandoned"):
        amounts[series("tasks", event.team, event.tool, event.status)] = 1
    if isinstance(event, (TokenEvent, TaskEvent)):
        rollup.teams.add(event.team)
        rollup.add(event.ts, now, amounts, event.team, event.developer)
    elif amounts:
        rollup.add(event.ts, now, amounts)


def measure_delta(rollup: Rollup, delta: Delta, now: float) -> None:
    """Add one crediting change (output metrics) at its time: a credit or its retraction at the deployment's ts,
    a retraction counted at the rollback's or revert's ts, a contested claim at the refused task's ts."""
    if delta.kind == "credit":
        amounts = {series("credit", delta.team): delta.amount, series("tasks", delta.team, delta.tool, "shipped"): delta.shipped}
    elif delta.kind == "retracted":
        amounts = {series("retracted", delta.team, delta.reason): delta.amount}
    else:
        amounts = {series("contested", delta.team): delta.amount}
    rollup.add(delta.ts, now, amounts)
    rollup.teams.add(delta.team)
