"""A small, vendorable event emitter for plugin authors (docs/INTERFACE.md §1 and §4).

Standard library only, one file, so it can be copied into any tool. Its one promise is that the host tool never
notices it: `emit` never blocks on the network and never raises, the queue is bounded, delivery happens on a daemon
thread, and every event that is not delivered is counted (`dropped`: discarded locally; `failed`: refused by the
gateway or undeliverable after the last retry).

    emitter = Emitter("https://aiyield.example.com", token=os.environ.get("AIYIELD_INGEST_TOKEN"))
    emitter.emit({"type": "token", "team": "payments", "tool": "my-agent", "model": "claude-sonnet-4",
                  "input_tokens": 1200, "output_tokens": 340})
    emitter.close()  # also runs at interpreter exit
"""

from __future__ import annotations

import atexit
import datetime as dt
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque

__all__ = ["Emitter"]

#: Named, not `__name__`: the logger is documented (docs/PLUGINS.md) and must not change when the file is copied.
_log = logging.getLogger("aiyield.emit")

#: Statuses that say "this exact request will never succeed": retrying them only adds load. Every other 4xx is
#: treated the same way; 408 and 429 are the client errors that do invite a retry.
_RETRYABLE_4XX = frozenset({408, 429})
#: Upper bound for one backoff pause, Retry-After included, so a misbehaving proxy cannot park the thread for hours.
_MAX_BACKOFF_SECONDS = 30.0


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _retryable(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_4XX


class Emitter:
    """Batches events to `POST {url}/v1/events` from a background thread.

    Counters (events, not requests): `sent` accepted by the gateway; `failed` rejected by it (non-retryable status,
    per-event validation errors reported in the 202 body, unserialisable input) or still undelivered after
    `max_attempts`; `dropped` discarded locally (queue overflow, emitted after `close`, still queued when `close`
    gave up).
    """

    def __init__(
        self,
        url: str = "http://localhost:8787",
        token: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10000,
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self._endpoint = url.rstrip("/") + "/v1/events"
        self._headers = {"Content-Type": "application/json", "User-Agent": "aiyield-emit/1"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._batch_size = max(1, batch_size)
        self._flush_interval = flush_interval
        self._max_queue = max(1, max_queue)
        self._timeout = timeout
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff

        # Events are serialised in `emit`, so a bad event fails alone instead of poisoning a whole batch later.
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flushers = 0
        self._closed = False
        # Set once `close` has given up waiting: cuts retry pauses short so the thread exits.
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self.sent = 0
        self.dropped = 0
        self.failed = 0

        self._thread = threading.Thread(target=self._run, name="aiyield-emitter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- producer side (caller's thread) -------------------------------------------------------------------------

    def emit(self, event: dict) -> None:
        """Queue one event; adds `id` (uuid4) and `ts` (now, RFC 3339 UTC) when missing. Never blocks or raises."""
        try:
            record = dict(event)
            record.setdefault("id", str(uuid.uuid4()))
            record.setdefault("ts", _now_rfc3339())
            data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        except Exception as exc:  # anything a caller can pass must not reach the host tool
            with self._cond:
                self.failed += 1
            self._warn_once("unserialisable", "aiyield: an event could not be serialised and was not sent: %s", exc)
            return
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
            # Drop the oldest: during an outage the newest events describe the present, the oldest are already stale.
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(data)
            # Wake the thread when the first event starts its linger, and again when a batch is full.
            if len(self._queue) in (1, self._batch_size):
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True when the queue drained (delivered or counted) within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                while (self._queue or self._in_flight) and self._thread.is_alive():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return not self._queue and not self._in_flight
            finally:
                self._flushers -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Flush for at most `timeout` seconds, then stop; whatever is still queued is counted in `dropped`."""
        atexit.unregister(self.close)
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self.flush(timeout)
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self.dropped += len(self._queue)
            self._queue.clear()

    # -- delivery (background thread) ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                # Linger up to flush_interval for a full batch, unless someone is waiting for the data to leave.
                deadline = time.monotonic() + self._flush_interval
                while len(self._queue) < self._batch_size and not self._flushers and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                self._in_flight = len(batch)
            try:
                self._deliver(batch)
            except Exception as exc:  # the thread must survive anything, or the queue would only ever fill up
                self._count("failed", len(batch))
                self._warn_once("internal", "aiyield: event delivery failed unexpectedly: %r", exc)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _deliver(self, batch: list[bytes]) -> None:
        body = b'{"events":[' + b",".join(batch) + b"]}"
        delay = 0.0
        for attempt in range(self._max_attempts):
            if attempt and self._stop.wait(delay):
                self._count("dropped", len(batch))  # closing: no time left for this batch
                return
            request = urllib.request.Request(self._endpoint, data=body, headers=self._headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    self._record_reply(len(batch), response.read())
                return
            except urllib.error.HTTPError as exc:
                if not _retryable(exc.code):
                    self._count("failed", len(batch))
                    self._warn_once(f"http-{exc.code}", "aiyield: %s refused %d event(s): HTTP %d %s",
                                    self._endpoint, len(batch), exc.code, exc.reason)
                    return
                reason = f"HTTP {exc.code}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
            except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, timeout, bad status line
                reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
                retry_after = None
            delay = self._pause(attempt, retry_after)
        self._count("failed", len(batch))
        self._warn_once("unreachable", "aiyield: gave up sending %d event(s) to %s after %d attempts: %s",
                        len(batch), self._endpoint, self._max_attempts, reason)

    def _pause(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff with equal jitter (spreads retrying clients apart); Retry-After wins when longer."""
        ceiling = min(_MAX_BACKOFF_SECONDS, self._backoff * 2**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        try:
            delay = max(delay, float(retry_after or 0))
        except ValueError:
            pass  # an HTTP-date Retry-After: the computed backoff is a fine approximation
        return min(delay, _MAX_BACKOFF_SECONDS)

    def _record_reply(self, count: int, raw: bytes) -> None:
        """Count a 2xx: the gateway's 202 body says how many events it accepted and why it rejected the rest."""
        try:
            reply = json.loads(raw)
            accepted, rejected = int(reply["accepted"]), list(reply.get("rejected") or [])
        except (ValueError, TypeError, KeyError):
            accepted, rejected = count, []  # not the aiyield gateway's body (a proxy, a test double): trust the 2xx
        self._count("sent", accepted)
        if rejected:
            self._count("failed", len(rejected))
            self._warn_once("rejected", "aiyield: the gateway rejected %d event(s), first: %s",
                            len(rejected), rejected[0].get("error") if isinstance(rejected[0], dict) else rejected[0])

    def _count(self, counter: str, n: int) -> None:
        with self._cond:
            setattr(self, counter, getattr(self, counter) + n)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        # Once per kind of problem: an unreachable gateway must not flood the host tool's log on every batch.
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)
