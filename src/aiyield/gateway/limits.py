"""How much of the gateway one sender can take: request rates per sender, connections overall, and the time a
connection may take to send its request headers. (The body timeout wraps every body read: `handlers.read_body`.)
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from typing import Callable

#: What a client over the connection cap is told before its connection is closed.
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 38\r\nConnection: close\r\n\r\n"
    b'{"error": "too many open connections"}'
)


class RateLimiter:
    """A token bucket per sender: `rate` requests per second on average, bursts of up to `burst`.

    `retry_after(key, now)` spends one request and returns None, or returns how many seconds to wait (a 429's
    `Retry-After`). `now` is passed in (monotonic seconds) so tests need no clock. Bounded: beyond `max_keys`
    senders the least recently seen is forgotten (it starts again with a full bucket). `rate` 0 disables it.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def retry_after(self, key: str, now: float) -> int | None:
        if self.rate <= 0:
            return None
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if tokens < 1:
            return max(1, math.ceil((1 - tokens) / self.rate))
        self._buckets[key] = (tokens - 1, now)
        return None


class _Busy(asyncio.Protocol):
    """A connection beyond the cap: told 503, then closed, without reading anything from it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_BUSY)  # type: ignore[attr-defined]
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol, unchanged, with the guard told when its connection closes."""

    def __init__(self, inner: asyncio.Protocol, guard: "ConnectionGuard") -> None:
        self._inner = inner
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.open -= 1
        self._guard.headers_received(self._inner)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ConnectionGuard:
    """A protocol factory for the server: at most about `max_connections` connections at once (0: no cap), and
    each connection closed when it has not sent complete request headers `header_timeout` seconds after opening or
    after its last answer (a slow-headers client, or an idle keep-alive one).

    `factory` makes aiohttp's protocols; each is wrapped so that the guard counts it from accept to close. The
    request middleware calls `headers_received` when a request starts and `await_headers` when it ends.
    """

    def __init__(self, factory: Callable[[], asyncio.Protocol], max_connections: int, header_timeout: float) -> None:
        self._factory = factory
        self.open = 0
        self._max = max_connections
        self._timeout = header_timeout
        self._deadlines: dict[asyncio.Protocol, float] = {}
        self.refused = 0
        self.timed_out = 0

    def __call__(self) -> asyncio.Protocol:
        if self._max and self.open >= self._max:
            self.refused += 1
            return _Busy()
        protocol = self._factory()
        self.open += 1
        self.await_headers(protocol)
        return _Counted(protocol, self)

    def await_headers(self, protocol: asyncio.Protocol) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        self._deadlines[protocol] = deadline
        loop.call_at(deadline, self._expire, protocol)

    def headers_received(self, protocol: asyncio.Protocol) -> None:
        self._deadlines.pop(protocol, None)

    def _expire(self, protocol: asyncio.Protocol) -> None:
        deadline = self._deadlines.get(protocol)
        if deadline is None or asyncio.get_running_loop().time() < deadline:
            return  # headers arrived, or a later deadline replaced this one (its own timer will look)
        del self._deadlines[protocol]
        transport = getattr(protocol, "transport", None)
        if transport is not None and not transport.is_closing():
            self.timed_out += 1
            transport.close()
