from __future__ import annotations

import msgspec

from aiyield.core.events import InvalidEvent, Rejected
from aiyield.kafka import DEAD_LETTERS_PER_MESSAGE, MAX_RAW_BYTES, MAX_REASON_CHARS, dead_letters


def test_many_rejected_items_travel_in_few_capped_messages():
    rejected = [Rejected(i, InvalidEvent("x" * 10_000, {"type": "token", "blob": "y" * 10_000})) for i in range(2500)]
    messages = dead_letters(rejected, "gateway", "req-1")
    assert len(messages) == -(-2500 // DEAD_LETTERS_PER_MESSAGE) == 3
    letters = [msgspec.json.decode(m) for m in messages]
    assert [letter["id"] for letter in letters] == ["req-1#0", "req-1#1", "req-1#2"]
    items = [item for letter in letters for item in letter["rejected"]]
    assert [item["index"] for item in items] == list(range(2500))
    assert all(item["type"] == "token" for item in items)
    assert all(len(item["reason"]) == MAX_REASON_CHARS for item in items)
    assert all(isinstance(item["raw"], str) and len(item["raw"]) <= MAX_RAW_BYTES for item in items)


def test_small_raw_items_are_kept_as_they_were():
    raw = {"type": "push", "id": "p", "ts": -1}
    [message] = dead_letters([Rejected(0, InvalidEvent("ts must be >= 0", raw))], "worker", "events:0:7")
    assert msgspec.json.decode(message)["rejected"] == [{"index": 0, "type": "push", "reason": "ts must be >= 0", "raw": raw}]
