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


#: Every stored bucket width is a whole number of minutes, aligned on the epoch: events of one minute fall in the
#: same bucket of every window, so a batch is aggregated per minute first and spread over the windows once.
MINUTE = 60
assert all(width % MINUTE == 0 for _length, width in STORED.values())


class Rollup:
    """Increments of one batch, aggregated before they are written: N events cost one write per distinct series.

    `add` only sums into the event's minute (one dict increment per series); `counters` and `developers` spread each
    minute over the windows it counts in when they are read, so the per-event cost does not grow with the number of
    windows.
    """

    def __init__(self) -> None:
        self.teams: set[str] = set()
        # (minute start, now) -> series -> amount; (minute start, now, team) -> developers
        self._minutes: dict[tuple[int, float], dict[str, int]] = {}
        self._minute_developers: dict[tuple[int, float, str | None], set[str]] = {}

    def add(self, ts: float, now: float, amounts: dict[str, int], team: str | None = None, developer: str | None = None) -> None:
        """Add one event's amounts (series -> amount) and, optionally, its developer to every window it counts in."""
        key = (int(ts // MINUTE) * MINUTE, now)
        counters = self._minutes.get(key)
        if counters is None:
            counters = self._minutes[key] = defaultdict(int)
        for series_name, amount in amounts.items():
            if amount:
                counters[series_name] += amount
        if developer is not None:
            dkey = (key[0], now, team)
            developers = self._minute_developers.get(dkey)
            if developers is None:
                developers = self._minute_developers[dkey] = set()
            developers.add(developer)

    @property
    def counters(self) -> dict[tuple[str, int], dict[str, int]]:
        """(window, bucket start) -> series -> amount."""
        out: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for (minute, now), amounts in self._minutes.items():
            for key in live_buckets(minute, now):
                counters = out[key]
                history = key[0] in HISTORY
                for series_name, amount in amounts.items():
                    if amount and (not history or series_name.split(SEP, 1)[0] in HISTORY_MEASURES):
                        counters[series_name] += amount
        return out

    @property
    def developers(self) -> dict[tuple[str, int, str | None], set[str]]:
        """(window, bucket start, team) -> developers (history windows keep none)."""
        out: dict[tuple[str, int, str | None], set[str]] = defaultdict(set)
        for (minute, now, team), developers in self._minute_developers.items():
            for key in live_buckets(minute, now):
                if key[0] not in HISTORY:
                    out[(*key, team)] |= developers
        return out

    def totals(self) -> dict[str, int]:
        """series -> amount over the whole batch, whatever the events' times (the processing-time counters)."""
        out: dict[str, int] = defaultdict(int)
        for amounts in self._minutes.values():
            for series_name, amount in amounts.items():
                out[series_name] += amount
        return {k: v for k, v in out.items() if v}

    def __bool__(self) -> bool:
        return bool(self._minutes or self._minute_developers or self.teams)
