"""Processing-time counters (contract v3 §3): what one batch adds to the monotonic `aiyield_*_total` metrics.

The window gauges are the event-time view; these count when aiyield *processes* an event, so Prometheus' `rate()`,
`increase()` and Grafana's time picker have counters to work on. They are stored beside the window buckets and
written in the same transaction as them and the consumed offsets (`store.Writes.totals` / `Writes.peaks`), so
exactly-once holds for them too and no process restart resets them. Pure: no I/O.

Series are the window buckets' series (`windows.series(measure, *labels)`), so labels and the cardinality guard's
folding are the same as the gauges'. Two kinds:

- **Plain** (input measures: spend, tokens, unpriced events, completed and abandoned tasks, tools' own counts, the
  guard's overflow; deployments): every accepted event only ever adds, so the batch's sum is added.
- **Peaked** (the crediting join's outputs: normalized deployments, shipped tasks, retractions, contested claims):
  the join recomputes and diffs, so its deltas can be negative: a credit that moves to an earlier deployment (-1 at
  one, +1 at the other), a credit taken back by a rollback (the credit's -1 beside the retraction's +1), a claim
  that turned out contested. A counter must never decrease, and counting only the positive deltas would count a
  moved credit twice. So each peaked series keeps its *net* sum (every delta, signed) and the counter is the
  highest the net has ever been: a decrease is carried as a deficit that later increases fill first. Whenever the
  net is at its peak the counter equals it exactly; it never runs ahead of the net for long, and never behind.

  `aiyield_normalized_deployments_total` is credit *given*: its net is credit plus retractions, so a rollback or a
  revert (credit -x, retracted +x) leaves it where it was, and `retracted / given` is the AI change-failure ratio.
  What lowers it is only a correction (credit that should never have been given: a claim found contested, a
  revert found to predate the deployment, a retraction undone), carried as a deficit as above. Moves within one
  batch cancel before they reach Redis; across batches the deficit does the same.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

from aiyield.core.events import DeploymentEvent, Event
from aiyield.core.measures import Measure
from aiyield.core.windows import Rollup, series, split_series

#: `aiyield_deployments_total{environment}`: production environments (the crediting policy's) or everything else.
PRODUCTION, OTHER = "production", "other"

#: Measures without a counter: only the waste signals read them, over event-time windows.
WINDOW_ONLY = frozenset({Measure.AI_LINES, Measure.AI_LINES_TASKS})


def split(rollup: Rollup) -> tuple[dict[str, int], dict[str, int]]:
    """(plain increments, peaked net deltas) of one batch, by series, from everything its rollup adds."""
    plain: dict[str, int] = defaultdict(int)
    net: dict[str, int] = defaultdict(int)
    for name, amount in rollup.totals().items():
        measure, labels = split_series(name)
        if measure in WINDOW_ONLY:
            continue
        if measure in (Measure.CREDIT, Measure.CONTESTED):
            net[name] += amount
        elif measure == Measure.RETRACTED:
            net[name] += amount
            net[series(Measure.CREDIT, labels[0])] += amount  # given = credit + retracted (see above)
        elif measure == Measure.TASKS and labels[2] == "shipped":
            net[name] += amount
        else:
            plain[name] += amount
    return {k: v for k, v in plain.items() if v}, {k: v for k, v in net.items() if v}


def deployment(event: Event, is_production: Callable[[str], bool]) -> str | None:
    """The `deployments` series an accepted deployment event counts in (None for any other event)."""
    if not isinstance(event, DeploymentEvent):
        return None
    return series(Measure.DEPLOYMENTS, PRODUCTION if is_production(event.environment) else OTHER, event.status)
