"""Request-rate limits per sender (aiyield.gateway.limits)."""

from aiyield.gateway.limits import RateLimiter


def test_bursts_then_the_rate() -> None:
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.retry_after("a", 0.0) for _ in range(3)] == [None, None, None]
    assert limiter.retry_after("a", 0.0) == 1  # empty: wait for the next request's worth
    assert limiter.retry_after("b", 0.0) is None  # senders do not share a bucket
    assert limiter.retry_after("a", 0.5) is None  # half a second at 2/s: one request
    assert limiter.retry_after("a", 0.5) == 1
    assert [limiter.retry_after("a", 100.0) for _ in range(4)] == [None, None, None, 1]  # refilled to the burst only


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    limiter = RateLimiter(rate=0.1, burst=1)
    assert limiter.retry_after("a", 0.0) is None
    assert limiter.retry_after("a", 0.0) == 10


def test_rate_zero_disables_and_the_table_is_bounded() -> None:
    assert all(RateLimiter(rate=0, burst=1).retry_after("a", 0.0) is None for _ in range(100))
    limiter = RateLimiter(rate=1, burst=1, max_keys=2)
    for key in "abc":
        limiter.retry_after(key, 0.0)
    assert len(limiter._buckets) == 2
    assert limiter.retry_after("a", 0.0) is None  # forgotten, so a full bucket again
