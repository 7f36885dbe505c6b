"""`aiyield pull copilot|cursor|claude-code` (docs/CONNECTORS.md): what the three seat-based tools' connectors share.

Each vendor module (`pull_cursor`, `pull_claude_code`, `pull_copilot`) turns the vendor's admin API into event
items by pure functions, and says which credential it needs; this module runs one pull: read the vendor's cursors
from Redis, fetch, validate and pseudonymise like `aiyield send`, publish to Kafka, dead-letter what is refused,
then advance the cursors. The HTTP client (retries on 429 and 5xx honouring `Retry-After`) is `reconcile.Http`.

Idempotence, in three parts:

- Every event id is derived from the vendor's record identity (a commit's SHA, a member's day, a usage record's
  user, time and model), never from the time of the pull: the pipeline counts a repeated id once.
- A stream is re-read only a little behind its cursor (`OVERLAP`): far less than the pipeline's dedup horizon
  (`keys.DEDUP_SECONDS`, 8 days), so every re-read record is still known as a duplicate. A first pull reaches back
  `--days` (default 7).
- Daily figures are read only for UTC days the vendor has finished (`settle` after the day's end), so a day is never
  published half-counted and then deduplicated when complete.

Records the connector cannot map (a commit without a repository, an abbreviated SHA, a usage-based charge without
its cost) become dead letters with their reason, like invalid events; their raw copy carries no email or login
(those are dropped, and the developer, when known, is pseudonymised).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import redis

from aiyield import keys
from aiyield.core.events import InvalidEvent, Rejected, encode, parse_items
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.gateway.common import stable_id
from aiyield.reconcile import Http, ReconcileError, Unauthorized
from aiyield.settings import Settings

DAY = 86400
#: How far behind its cursor a record stream is read again: records a vendor ingests late are still found, and
#: repeats are duplicates (well inside the 8-day dedup horizon).
OVERLAP = DAY
DEFAULT_DAYS = 7
#: Records published longer ago than this are not read again: the pipeline's dedup markers live 8 days
#: (`keys.DEDUP_SECONDS`), and a re-read must land well inside that.
REREAD_LIMIT = keys.DEDUP_SECONDS - 2 * DAY
#: Unmapped members' team.
UNASSIGNED = "unassigned"

#: The connectors' errors are reconcile's: one HTTP client, one error policy.
PullError = ReconcileError


class Publisher(Protocol):
    def publish(self, topic: str, values: Sequence[bytes]) -> None: ...
    def publish_events(self, topic: str, events: Sequence[Any]) -> int: ...


@dataclass
class Batch:
    """What one fetch found: event items (dicts, or `InvalidEvent` for refused records) and the cursors to store."""

    items: list[Any] = field(default_factory=list)
    cursors: dict[str, float] = field(default_factory=dict)
    #: What was read and skipped, by kind (shown by the command, e.g. `days`, `commits without AI lines`).
    notes: Counter[str] = field(default_factory=Counter)


class Connector(Protocol):
    vendor: str

    def missing(self, settings: Settings) -> str | None:
        """The credential variable(s) not set, or None."""

    def credential(self, settings: Settings) -> str:
        """The variable holding the credential the vendor checks (named when it answers 401)."""

    def fetch(
        self, settings: Settings, cursors: Mapping[str, float], now: float, days: int, http: Http,
        pseudonymise: Callable[[str], str],
    ) -> Batch: ...


@dataclass
class Outcome:
    vendor: str
    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    cursors: dict[str, float] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)


# ----------------------------------------------------------------------------------------------- pure helpers


def since(cursor: float | None, now: float, days: int, overlap: float = OVERLAP) -> float:
    """Where a stream's next read starts: `days` back on a first pull, else `overlap` behind its cursor (but never
    before `days` back: a connector stopped longer than that resumes `days` back).

    A record stream's cursor is the time of the pull that read through it. When that pull is older than
    `REREAD_LIMIT`, the records behind the cursor were marked seen so long ago that their dedup markers may have
    expired: they are not read again."""
    first = now - days * DAY
    if cursor is None:
        return first
    return max(first, cursor - (overlap if now - cursor < REREAD_LIMIT else 0))


def day_start(ts: float) -> int:
    return int(ts // DAY * DAY)


def settled_days(start: float, now: float, settle: float) -> list[int]:
    """UTC day starts from `start`'s day through the last day that ended at least `settle` seconds before `now`."""
    return list(range(day_start(start), int(now - settle) - DAY + 1, DAY))


def days_in_month(day: int) -> int:
    d = datetime.fromtimestamp(day, timezone.utc)
    nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=timezone.utc)
    return (nxt - datetime(d.year, d.month, 1, tzinfo=timezone.utc)).days


def iso_day(day: int) -> str:
    return datetime.fromtimestamp(day, timezone.utc).strftime("%Y-%m-%d")


def parse_day(text: str) -> int:
    """`YYYY-MM-DD` (or a longer ISO timestamp) as its UTC day start."""
    return day_start(datetime.fromisoformat(text[:10]).replace(tzinfo=timezone.utc).timestamp())


def event_id(vendor: str, *identity: Any) -> str:
    """An event id from a vendor record's identity: stable across pulls, and free of emails (a digest)."""
    return f"{vendor}:{stable_id(vendor, *identity)}"


_PERSONAL = ("email", "login", "user", "name", "actor")


def reject(reason: str, record: Mapping[str, Any], event_type: str, developer: str | None,
           pseudonymise: Callable[[str], str]) -> InvalidEvent:
    """A refused vendor record as a dead letter: the reason, and the record without personal fields."""
    raw: dict[str, Any] = {"type": event_type}
    raw.update({k: v for k, v in record.items() if not any(p in k.lower() for p in _PERSONAL)})
    if developer:
        raw["developer"] = pseudonymise(developer)
    return InvalidEvent(reason, raw)


def count(value: Any) -> Any:
    """A vendor's count as an int when it is a whole number (JSON answers parse numbers as `Decimal`); anything else
    is passed on unchanged, for the validator to refuse with its reason."""
    if isinstance(value, (float, Decimal)) and not isinstance(value, bool):
        try:
            if value == int(value):
                return int(value)
        except (ValueError, OverflowError, ArithmeticError):
            return float(value)
        return float(value)
    return value


def usd(value: Any) -> Any:
    """A vendor's amount as a float (validated as `cost_usd` afterwards)."""
    return float(value) if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else value


def context(vendor_id: str, ts: float, team: str, tool: str, metric: str, value: Any,
            developer: str | None = None) -> dict[str, Any]:
    """A tool-reported figure (`context` event, docs/INTERFACE.md §1): what the tool says it did, never credit."""
    item = {"type": "context", "id": vendor_id, "ts": ts, "team": team, "tool": tool, "metric": metric,
            "value": count(value)}
    if developer:
        item["developer"] = developer
    return item


def nonzero(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Context items that carry something (a zero adds nothing and would only fill the dedup sets)."""
    return [i for i in items if i.get("value") != 0]


# ----------------------------------------------------------------------------------------------- one pull


def publish(settings: Settings, publisher: Publisher, items: list[Any], vendor: str, now: float) -> tuple[int, list[Rejected]]:
    """Validate and pseudonymise like `aiyield send`; publish the valid events and dead-letter the rest.

    The dead letters' batch id derives from their content, so a re-pull of the same refused records is counted once.
    """
    from aiyield.kafka import dead_letters

    good, bad = parse_items(items, now, Pseudonymiser(settings.pseudonym_key.encode()))
    if good:
        publisher.publish_events(settings.events_topic, good)
    if bad:
        digest = hashlib.blake2b(encode([[r.error.reason, r.error.raw] for r in bad]), digest_size=12).hexdigest()
        publisher.publish(settings.dlq_topic, dead_letters(bad, f"pull-{vendor}", batch_id=f"pull-{vendor}:{digest}"))
    return len(good), bad


def run(connector: Connector, settings: Settings, client: redis.Redis, publisher: Publisher, now: float,
        days: int = DEFAULT_DAYS, http: Http | None = None) -> Outcome:
    """One pull of one vendor. Raises `Unauthorized` when the vendor refuses the credential, `PullError` when an
    answer cannot be used (then nothing is published and no cursor moves)."""
    key = keys.pull_cursor(connector.vendor)
    cursors = {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in client.hgetall(key).items()}
    pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())
    batch = connector.fetch(settings, cursors, now, days, http or Http(), pseudonymise)
    accepted, rejected = publish(settings, publisher, batch.items, connector.vendor, now)
    # Only once everything is on Kafka: a pull that failed half-way is read again from the same place.
    moved = {s: c for s, c in batch.cursors.items() if c > cursors.get(s, float("-inf"))}
    if moved:
        client.hset(key, mapping={s: repr(c) for s, c in moved.items()})
    return Outcome(connector.vendor, accepted, rejected, {**cursors, **moved}, batch.notes)


#: `aiyield pull VENDOR`: the module and class of each connector (imported when asked for).
VENDORS = {
    "copilot": ("aiyield.pull_copilot", "Copilot"),
    "cursor": ("aiyield.pull_cursor", "Cursor"),
    "claude-code": ("aiyield.pull_claude_code", "ClaudeCode"),
}


def connector(vendor: str) -> Connector:
    import importlib

    module, name = VENDORS[vendor]
    return getattr(importlib.import_module(module), name)()
