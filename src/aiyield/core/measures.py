"""What each accepted event adds to the rolling windows (input metrics), and what a credit adds (output metrics).

Series names are the measure followed by its label values (see `windows.series`); the exporter maps them to the
contract's metric names. Pure: the worker calls these and writes the resulting `Rollup` in one transaction.
"""

from __future__ import annotations

import functools
from enum import StrEnum

from aiyield.core.crediting import Delta
from aiyield.core.events import ContextEvent, Event, TaskEvent, TokenEvent
from aiyield.core.pricing import PriceTable
from aiyield.core.windows import SCALE, Rollup, series

class Measure(StrEnum):
    """The one owner of measure names: the first field of every stored series (`windows.series(measure, *labels)`).

    Writers (this module, the lead's crediting measures) and readers (`readout`, `exporter`, `core/finance`) name
    measures through this enum, never as string literals. Labels, in order, after each name.
    """

    SPEND = "spend"  # team, tool, model: USD in SCALE["spend"] fixed point
    TOKENS = "tokens"  # team, tool, model, type
    UNPRICED = "unpriced"  # team, tool, model: token events with no known price
    TASKS = "tasks"  # team, tool, status (completed, abandoned, shipped)
    CREDIT = "credit"  # team: normalized deployments in SCALE["credit"] fixed point
    RETRACTED = "retracted"  # team, reason (rollback, revert): credits retracted, SCALE["retracted"] fixed point
    CONTESTED = "contested"  # team: tasks refused because every commit they claimed was owned by an earlier task
    AI_LINES = "ai_lines"  # team, tool: AI lines of completed tasks that reported them
    AI_LINES_TASKS = "ai_lines_tasks"  # team, tool: completed tasks that reported ai_lines
    OVERFLOW = "overflow"  # label, cap name: names folded into `other` by the cardinality guard
    CONTEXT = "context"  # team, tool, metric (lines_added, lines_removed, commits, pull_requests): tools' own counts
    DEPLOYMENTS = "deployments"  # environment (production, other), status: a processing-time counter only (no window)


TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
)


@functools.lru_cache(maxsize=65536)
def _token_series(team: str, tool: str, model: str) -> tuple[tuple[str, ...], str, str]:
    """(token series by TOKEN_TYPES, spend series, unpriced series) of one label set: built once, not per event."""
    return (
        tuple(series(Measure.TOKENS, team, tool, model, kind) for kind, _attr in TOKEN_TYPES),
        series(Measure.SPEND, team, tool, model),
        series(Measure.UNPRICED, team, tool, model),
    )


def measure(rollup: Rollup, event: Event, prices: PriceTable, now: float) -> None:
    """Add one accepted (validated, deduplicated) event's input metrics to the batch rollup."""
    if isinstance(event, TokenEvent):
        tokens, spend, unpriced = _token_series(event.team, event.tool, event.model)
        amounts = {
            tokens[0]: event.input_tokens,
            tokens[1]: event.output_tokens,
            tokens[2]: event.cache_read_tokens,
            tokens[3]: event.cache_write_tokens,
        }
        cost = event.cost_usd
        if cost is None:
            cost = prices.cost(
                event.model, event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens,
                event.cache_write_1h_tokens,
            )
        if cost is None:
            # Unknown model: the spend is unknown, not zero. Counted so finance sees what the price table misses.
            amounts[unpriced] = 1
        else:
            amounts[spend] = round(cost * SCALE[Measure.SPEND])
        rollup.teams.add(event.team)
        rollup.add(event.ts, now, amounts, event.team, event.developer)
        return
    amounts: dict[str, int] = {}
    if isinstance(event, TaskEvent) and event.status in ("completed", "abandoned"):
        amounts[series(Measure.TASKS, event.team, event.tool, event.status)] = 1
        if event.status == "completed" and event.ai_lines is not None:
            # Lines per task, for the `splitting` waste signal (first report of a task; later ones are not re-counted).
            amounts[series(Measure.AI_LINES, event.team, event.tool)] = event.ai_lines
            amounts[series(Measure.AI_LINES_TASKS, event.team, event.tool)] = 1
    elif isinstance(event, ContextEvent):
        amounts[series(Measure.CONTEXT, event.team, event.tool, event.metric)] = event.value
    if isinstance(event, (TaskEvent, ContextEvent)):
        rollup.teams.add(event.team)
        rollup.add(event.ts, now, amounts, event.team, event.developer)
    elif amounts:
        rollup.add(event.ts, now, amounts)


def measure_delta(rollup: Rollup, delta: Delta, now: float) -> None:
    """Add one crediting change (output metrics) at its time: a credit or its retraction at the deployment's ts,
    a retraction counted at the rollback's or revert's ts, a contested claim at the refused task's ts."""
    if delta.kind == "credit":
        amounts = {
            series(Measure.CREDIT, delta.team): delta.amount,
            series(Measure.TASKS, delta.team, delta.tool, "shipped"): delta.shipped,
        }
    elif delta.kind == "retracted":
        amounts = {series(Measure.RETRACTED, delta.team, delta.reason): delta.amount}
    else:
        amounts = {series(Measure.CONTESTED, delta.team): delta.amount}
    rollup.add(delta.ts, now, amounts)
    rollup.teams.add(delta.team)
