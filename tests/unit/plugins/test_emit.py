"""The plugin emitter against a real HTTP server: batching, retries, refusals, overflow, shutdown."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from gateway_double import GatewayDouble, closed_port_url

from aiyield.plugins.emit import Emitter


def token(i: int) -> dict:
    return {"type": "token", "team": "t", "tool": "x", "model": "m", "input_tokens": i, "output_tokens": 0}


@pytest.fixture
def make_emitter():
    """Emitters with fast retries, closed after the test so no thread outlives it."""
    made: list[Emitter] = []

    def make(url: str, **kw) -> Emitter:
        kw.setdefault("backoff", 0.01)
        emitter = Emitter(url, **kw)
        made.append(emitter)
        return emitter

    yield make
    for emitter in made:
        emitter.close(timeout=1.0)


def test_batches_by_size_and_flush_sends_the_rest(gateway: GatewayDouble, make_emitter) -> None:
    emitter = make_emitter(gateway.url, token="s3cret", batch_size=3, flush_interval=60)
    for i in range(7):
        emitter.emit(token(i))

    assert emitter.flush(timeout=5)

    assert [len(r["body"]["events"]) for r in gateway.requests] == [3, 3, 1]
    assert [e["input_tokens"] for e in gateway.events] == list(range(7))
    assert {r["path"] for r in gateway.requests} == {"/v1/events"}
    assert gateway.requests[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert gateway.requests[0]["headers"]["Content-Type"] == "application/json"
    assert (emitter.sent, emitter.dropped, emitter.failed) == (7, 0, 0)


def test_flush_interval_sends_a_partial_batch_without_flush(gateway: GatewayDouble, make_emitter) -> None:
    emitter = make_emitter(gateway.url, batch_size=100, flush_interval=0.05)
    emitter.emit(token(1))
    deadline = time.monotonic() + 5
    while not gateway.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(gateway.events) == 1
    assert "Authorization" not in gateway.requests[0]["headers"]


def test_adds_id_and_ts_only_when_missing_and_leaves_the_callers_dict_alone(
    gateway: GatewayDouble, make_emitter
) -> None:
    emitter = make_emitter(gateway.url)
    mine = {**token(1), "id": "evt-1", "ts": 1767225600}
    bare = token(2)
    emitter.emit(mine)
    emitter.emit(bare)
    assert emitter.flush(timeout=5)

    given, filled = gateway.events
    assert (given["id"], given["ts"]) == ("evt-1", 1767225600)
    assert len(filled["id"]) == 36
    ts = dt.datetime.fromisoformat(filled["ts"].replace("Z", "+00:00"))
    assert filled["ts"].endswith("Z") and abs(ts.timestamp() - time.time()) < 60
    assert "id" not in bare and "ts" not in bare


@pytest.mark.parametrize("status", [503, 500, 429])
def test_retries_transient_failures(gateway: GatewayDouble, make_emitter, status: int) -> None:
    gateway.script = [status, status]
    emitter = make_emitter(gateway.url)
    emitter.emit(token(1))
    emitter.emit(token(2))

    assert emitter.flush(timeout=5)

    assert len(gateway.requests) == 3
    assert gateway.requests[0]["body"] == gateway.requests[2]["body"]  # the same batch, resent
    assert (emitter.sent, emitter.failed) == (2, 0)


@pytest.mark.parametrize("status", [400, 401, 413])
def test_never_retries_a_refusal_and_warns_once(
    gateway: GatewayDouble, make_emitter, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    gateway.script = [status, status]
    emitter = make_emitter(gateway.url, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="aiyield.emit"):
        for i in range(4):
            emitter.emit(token(i))
        assert emitter.flush(timeout=5)

    assert len(gateway.requests) == 2  # two batches, one attempt each
    assert (emitter.sent, emitter.failed) == (0, 4)
    assert len([r for r in caplog.records if f"HTTP {status}" in r.getMessage()]) == 1


def test_counts_events_the_gateway_rejected_in_its_reply(gateway: GatewayDouble, make_emitter) -> None:
    gateway.reply = {"accepted": 1, "rejected": [{"index": 1, "error": "missing required field `team`"}]}
    emitter = make_emitter(gateway.url)
    emitter.emit(token(1))
    emitter.emit({"type": "token"})
    assert emitter.flush(timeout=5)
    assert (emitter.sent, emitter.failed) == (1, 1)


def test_a_full_queue_drops_the_oldest_and_counts_them(gateway: GatewayDouble, make_emitter) -> None:
    # A batch larger than the queue and a long linger keep the thread from draining while we overfill.
    emitter = make_emitter(gateway.url, batch_size=50, max_queue=5, flush_interval=60)
    for i in range(8):
        emitter.emit(token(i))
    assert emitter.dropped == 3

    assert emitter.flush(timeout=5)
    assert [e["input_tokens"] for e in gateway.events] == [3, 4, 5, 6, 7]


def test_never_raises_when_the_gateway_is_down(make_emitter) -> None:
    emitter = make_emitter(closed_port_url(), max_attempts=3)
    emitter.emit(token(1))
    emitter.emit({"type": "token", "unserialisable": object()})
    emitter.emit("not even a dict")  # type: ignore[arg-type]

    assert emitter.flush(timeout=5)  # drained: the batch was given up on after bounded attempts
    assert (emitter.sent, emitter.failed, emitter.dropped) == (0, 3, 0)


def test_close_flushes_then_drops_whatever_comes_later(gateway: GatewayDouble) -> None:
    emitter = Emitter(gateway.url, flush_interval=60)
    emitter.emit(token(1))
    emitter.close()
    emitter.emit(token(2))
    emitter.close()  # idempotent

    assert [e["input_tokens"] for e in gateway.events] == [1]
    assert (emitter.sent, emitter.dropped) == (1, 1)
    assert not emitter._thread.is_alive()


def test_close_gives_up_on_time_and_counts_the_undelivered(make_emitter) -> None:
    emitter = make_emitter(closed_port_url(), batch_size=1, backoff=10)
    for i in range(3):
        emitter.emit(token(i))

    started = time.monotonic()
    emitter.close(timeout=0.3)

    assert time.monotonic() - started < 1.5
    time.sleep(0.1)  # the in-flight batch is counted once its retry pause is cut short
    assert emitter.sent == 0 and emitter.dropped + emitter.failed == 3
