"""Billed spend beside estimated spend: which billed days a window covers, and the capture ratio (pure).

The providers bill by UTC day and publish each day's cost after it (`aiyield reconcile` stores complete days only).
So a billed window cannot end at `now` the way aiyield's event-time windows do. Here a window is a run of whole
UTC days that ends with the **newest complete day reconciled for that provider** (its "as-of" day):

| window | billed days                                        |
|--------|----------------------------------------------------|
| `1h`   | none: a daily bill says nothing about an hour (no series) |
| `24h`  | the as-of day                                      |
| `7d`   | the 7 days ending with the as-of day               |
| `30d`  | the 30 days ending with the as-of day              |

Anchoring on the as-of day rather than on "yesterday" keeps the series steady whatever the CronJob's schedule and
the provider's publication lag: a run that has not happened yet since midnight shows the previous days, never a
window with a hole. A window is shown only when every one of its days has been reconciled (a 7-day backfill shows no
`30d`). How stale the as-of day is, is `aiyield_billed_through_timestamp_seconds`.

The capture ratio over a window is aiyield's estimated spend on the same days, for the models the provider bills
(`core.pricing.provider_of`), divided by the billed amount. It needs aiyield's daily spend history (42 days,
`core/windows.HISTORY`), so it is absent when some day of the window has left that history (reconcile stopped for
over a week), and absent when the billed amount is 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Mapping

from aiyield.core.measures import Measure
from aiyield.core.pricing import provider_of
from aiyield.core.windows import SCALE

DAY = 86400

#: Billed windows and the whole UTC days each covers (see the table above). `1h` has none.
BILLED_WINDOWS: dict[str, int] = {"24h": 1, "7d": 7, "30d": 30}

#: Days of billed data kept in Redis: the longest window with a month of slack for late corrections and backfills.
RETENTION_DAYS = 62


def day_start(ts: float) -> int:
    return int(ts // DAY) * DAY


def window_days(window: str, as_of: int) -> list[int]:
    """The day starts a billed window covers, oldest first, ending with `as_of`."""
    n = BILLED_WINDOWS[window]
    return [as_of - (n - 1 - i) * DAY for i in range(n)]


def to_units(amount: Decimal) -> int:
    """USD to the store's fixed-point integer (the scale of spend), rounded half to even."""
    return int((Decimal(amount) * SCALE[Measure.SPEND]).to_integral_value(rounding=ROUND_HALF_EVEN))


def usd(units: int) -> float:
    return units / SCALE[Measure.SPEND]


@dataclass(frozen=True)
class Reading:
    provider: str
    window: str
    billed_usd: float
    #: estimated / billed; None when billed is 0 or aiyield's history no longer covers the window
    capture_ratio: float | None
    estimated_usd: float | None
    #: the window's days, oldest first
    days: tuple[int, ...]


def provider_daily_spend(
    day_buckets: Mapping[int, Mapping[str, Mapping[tuple[str, ...], int]]],
) -> dict[str, dict[int, int]]:
    """provider -> day start -> aiyield's estimated spend (fixed-point units) from the daily spend history.

    day_buckets: day start -> measure -> labels -> amount (a day bucket as the readout holds it)."""
    out: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for day, amounts in day_buckets.items():
        for labels, amount in amounts.get(Measure.SPEND, {}).items():
            provider = provider_of(labels[2]) if len(labels) >= 3 else None
            if provider is not None:
                out[provider][day] += amount
    return {p: dict(d) for p, d in out.items()}


def readings(
    billed: Mapping[str, Mapping[int, int]], estimated: Mapping[str, Mapping[int, int]], history_from: int
) -> list[Reading]:
    """Every (provider, window) that can be shown.

    billed: provider -> day start -> billed units (reconciled days only); estimated: `provider_daily_spend`;
    history_from: the oldest day aiyield's daily spend history still holds.
    """
    out = []
    for provider in sorted(billed):
        days_billed = billed[provider]
        if not days_billed:
            continue
        as_of = max(days_billed)
        for window in BILLED_WINDOWS:
            days = window_days(window, as_of)
            if any(d not in days_billed for d in days):
                continue
            total = sum(days_billed[d] for d in days)
            seen = estimated.get(provider, {})
            covered = days[0] >= history_from
            est = sum(seen.get(d, 0) for d in days) if covered else None
            ratio = est / total if est is not None and total > 0 else None
            out.append(Reading(provider, window, usd(total), ratio, usd(est) if est is not None else None, tuple(days)))
    return out
