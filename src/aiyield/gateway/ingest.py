"""From items to Kafka: validate, stamp arrival, check the sender's scope, publish the good, dead-letter the bad.

Every source (events, webhooks, OTLP, Argo CD) ends here, so the validator (`core.events.parse_items`) applies the
same rules to all of them. Items are handled in chunks of `CHUNK` with a yield to the event loop between chunks, and
only the first `MAX_LISTED` rejections are kept for the answer: a body of a million bad items costs a thousand
dead-letter messages and a short answer, never a million objects held at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from aiyield.core.events import InvalidEvent, Rejected, parse_items, to_dict
from aiyield.core.pseudonym import Pseudonymiser
from aiyield.gateway.auth import Principal
from aiyield.kafka import DEAD_LETTERS_PER_MESSAGE, Publisher, dead_letters, envelopes
from aiyield.settings import Settings

#: Rejections listed in an answer; `rejected_count` counts them all.
MAX_LISTED = 100
#: Items validated between two yields to the event loop; one dead-letter message's worth.
CHUNK = DEAD_LETTERS_PER_MESSAGE
#: Dead-letter publications awaited together: bounds the bytes waiting for Kafka's acknowledgement.
IN_FLIGHT = 8


@dataclass
class IngestResult:
    accepted: int = 0
    #: The first `MAX_LISTED` rejections, by index.
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0
    #: Rejections because the event lies outside the sender's scope.
    out_of_scope: int = 0

    @property
    def forbidden(self) -> bool:
        """Nothing accepted and something refused for scope: a 403 rather than a 202."""
        return self.accepted == 0 and self.out_of_scope > 0

    def answer(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": [{"index": r.index, "error": r.error.reason} for r in self.rejected],
            "rejected_count": self.rejected_count,
        }


class Gateway:
    """Validation and publishing, shared by every source."""

    def __init__(self, settings: Settings, publisher: Publisher, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.publisher = publisher
        self.clock = clock
        self.pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())

    async def ingest(self, items: list[Any], source: str, principal: Principal) -> IngestResult:
        """Validate every item, publish the accepted ones (acknowledged) and dead-letter the others.

        Raises `PublishError` when Kafka does not acknowledge: the caller answers 503, never 2xx.
        """
        now = self.clock()
        result = IngestResult()
        good: list[Any] = []
        batch = f"{source}:{uuid.uuid4()}"
        in_flight: list[asyncio.Task] = []
        try:
            for start in range(0, len(items), CHUNK):
                kept, rejected = self._check(items[start : start + CHUNK], start, now, principal, result)
                good.extend(kept)
                if rejected:
                    result.rejected_count += len(rejected)
                    room = MAX_LISTED - len(result.rejected)
                    result.rejected.extend(rejected[: max(room, 0)])
                    values = dead_letters(rejected, source, f"{batch}/{start}")
                    in_flight.append(asyncio.ensure_future(self.publisher.publish_async(self.settings.dlq_topic, values)))
                    if len(in_flight) >= IN_FLIGHT:
                        await in_flight.pop(0)
                if start + CHUNK < len(items):
                    await asyncio.sleep(0)  # let other requests in between chunks
            if good:
                await self.publisher.publish_async(self.settings.events_topic, envelopes(good))
            result.accepted = len(good)
            await asyncio.gather(*in_flight)
        finally:
            for task in in_flight:  # after a failure: stop waiting for the others, and collect their outcome
                if task.done() and not task.cancelled():
                    task.exception()
                else:
                    task.cancel()
        return result

    def _check(
        self, chunk: list[Any], start: int, now: float, principal: Principal, result: IngestResult
    ) -> tuple[list[Any], list[Rejected]]:
        good, bad = parse_items(chunk, now, self.pseudonymise)
        rejected = [Rejected(r.index + start, r.error) for r in bad]
        if not principal.trusted:
            # Whatever `arrival` the sender wrote is replaced: the join ranks these claims by it (contract v3 §2).
            for event in good:
                event.arrival = now
        if principal.scope is None:
            return good, rejected
        # parse_items keeps the order and rejects or accepts each item: the good ones are the other indexes.
        bad_indexes = {r.index for r in bad}
        kept = []
        for index, event in zip((i for i in range(len(chunk)) if i not in bad_indexes), good):
            reason = principal.scope.refusal(event, self.settings.org)
            if reason is None:
                kept.append(event)
            else:
                result.out_of_scope += 1
                rejected.append(Rejected(start + index, InvalidEvent(reason, to_dict(event))))
        rejected.sort(key=lambda r: r.index)
        return kept, rejected
