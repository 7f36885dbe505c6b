"""Rolling windows by event time, as bucketed sums (docs/INTERFACE.md §3).

Each window is kept as a ring of buckets no coarser than 1/60 of the window. A window's value at `now` is the sum of
the buckets that cover (now - window, now]; the oldest bucket may reach at most one bucket width further back,
which the contract allows. Events from the future (allowed up to 5 minutes) sit in buckets after `now`'s and are
only counted once their time has come.

Amounts are integers in fixed-point units (see `SCALE`) so that sums are exact and a replay can be checked bit for
bit; floats only appear at the exporter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

#: window name -> (window seconds, bucket seconds)
WINDOWS: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "24h": (86400, 1200),
    "7d": (7 * 86400, 3600),
    "30d": (30 * 86400, 43200),
}

#: Stored but never exported: one bucket per UTC day, long enough for a whole calendar month plus four complete
#: weeks before it (month-to-date spend and the weekday-seasonal forecast, see `core/finance.py`). Day buckets start
#: at UTC midnight, so a calendar month is a whole number of them.
HISTORY: dict[str, tuple[int, int]] = {"days": (42 * 86400, 86400)}

#: Only these measures are kept in the history windows (their other measures would only cost memory).
HISTORY_MEASURES = frozenset({"spend"})

#: Every window the store writes: the exported ones and the history.
STORED: dict[str, tuple[int, int]] = {**WINDOWS, **HISTORY}

#: Fixed-point scales of the measures stored as integers.
SCALE = {"spend": 1_000_000_000, "credit": 1_000_000, "retracted": 1_000_000}

SEP = "\x1f"


def bucket_start(ts: float, width: int) -> int:
    return int(ts // width) * width


def window_buckets(window: str, now: float) -> list[int]:
    """Start times of the buckets that make up `window` at `now`, newest first."""
    length, width = STORED[window]
    newest = bucket_start(now, width)
    return [newest - i * width for i in range(length // width)]


def expires_at(window: str, start: int) -> int:
    """When a bucket can no longer be part of its window: the last `now` that includes it, plus one bucket of slack."""
    length, width = STORED[window]
    return start + length + width


def live_buckets(ts: float, now: float) -> list[tuple[str, int]]:
    """The (window, bucket) pairs an event at `ts` counts in; windows it has already aged out of are skipped."""
    out = []
    for name, (_length, width) in STORED.items():
        start = bucket_start(ts, width)
        if expires_at(name, start) > now:
            out.append((name, start))
    return out


def series(measure: str, *labels: str) -> str:
    return SEP.join((measure, *labels))


def split_series(field_name: str) -> tuple[str, list[str]]:
    measure, *labels = field_name.split(SEP)
    return measure, labels


@dataclass
class Rollup:
    """Increments of one batch, aggregated before they are written: N events cost one write per distinct series."""

    counters: dict[tuple[str, int], dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    developers: dict[tuple[str, int, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    teams: set[str] = field(default_factory=set)

    def add(self, ts: float, now: float, amounts: dict[str, int], team: str | None = None, developer: str | None = None) -> None:
        """Add one event's amounts (series -> amount) and, optionally, its developer to every window it counts in."""
        for key in live_buckets(ts, now):
            counters = self.counters[key]
            history = key[0] in HISTORY
            for series_name, amount in amounts.items():
                if amount and (not history or series_name.split(SEP, 1)[0] in HISTORY_MEASURES):
                    counters[series_name] += amount
            if history:
                continue
            if developer is not None:
                self.developers[(*key, team)].add(developer)

    def __bool__(self) -> bool:
        return bool(self.counters or self.developers or self.teams)
